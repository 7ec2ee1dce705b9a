//! Draws the Loop Out state machine from the code itself.
//!
//! The drawing is not maintained by hand: [`explore`] runs [`step`] breadth-first from a new
//! swap, over a finite alphabet of inputs chosen around every boundary of the rules (heights at
//! and around the reveal deadline, HTLC values at and under the amount, each payment result, each
//! spend path), and records which state changes it observes and which rule caused them.
//! [`render_document`] turns that into the mermaid diagram checked in as `docs/swap-fsm.md`; a
//! test fails when the file is stale.

use std::fmt::Write as _;

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, ScriptBuf, Txid};

use super::contract::{
    ContractError, ContractTerms, DEFAULT_FEE_CAP_LIFTED_WITHIN_BLOCKS,
    DEFAULT_REVEAL_MARGIN_BLOCKS, DEFAULT_SWEEP_FINALITY_CONFIRMATIONS, FeeLimits, InvoiceTerms,
    KeyLocator, LoopOutContract, SWAP_KEY_FAMILY,
};
use super::drawing;
use super::event::{Input, PaymentEvent, Rule};
use super::state::{
    PaymentFailureReason, PaymentKind, SpendPath, SwapProgress, SwapState, SweepFailure,
};
use super::step::step;
use crate::domain::{BlockHeight, Sat};

impl drawing::DrawnState for SwapState {
    const INITIAL: SwapState = SwapState::Initiated;

    fn as_str(self) -> &'static str {
        SwapState::as_str(self)
    }

    fn code(self) -> u16 {
        SwapState::code(self)
    }

    fn is_terminal(self) -> bool {
        SwapState::is_terminal(self)
    }
}

impl drawing::DrawnRule for Rule {
    fn label(self) -> &'static str {
        Rule::label(self)
    }
}

/// One observed change of state, with the rules that caused it.
pub type Edge = drawing::Edge<SwapState, Rule>;

/// What exploring the state machine found.
pub type Exploration = drawing::Exploration<SwapState, Rule>;

/// The contract the exploration runs against: amount 100 000 sat, initiation 1 000, expiry
/// 1 100, default margin (deadline 1 080), 2 HTLC confirmations, default finality.
pub fn sample_contract() -> Result<LoopOutContract, ContractError> {
    let hash = [1; 32];
    LoopOutContract::new(ContractTerms {
        swap_hash: crate::domain::SwapHash(hash),
        amount: Sat(100_000),
        expiry: BlockHeight(1_100),
        initiation_height: BlockHeight(1_000),
        htlc_confirmations: 2,
        reveal_margin_blocks: DEFAULT_REVEAL_MARGIN_BLOCKS,
        sweep_finality_confirmations: DEFAULT_SWEEP_FINALITY_CONFIRMATIONS,
        fee_cap_lifted_within_blocks: DEFAULT_FEE_CAP_LIFTED_WITHIN_BLOCKS,
        fee_limits: FeeLimits {
            max_swap_fee: Sat(1_000),
            max_prepay_amount: Sat(500),
            max_swap_routing_fee: Sat(2_010),
            max_prepay_routing_fee: Sat(20),
            max_miner_fee: Sat(10_000),
        },
        swap_invoice: InvoiceTerms {
            bolt11: String::new(),
            payment_hash: hash,
            amount: Sat(100_500),
        },
        prepay_invoice: InvoiceTerms {
            bolt11: String::new(),
            payment_hash: [2; 32],
            amount: Sat(500),
        },
        destination: String::new(),
        outgoing_chan_set: Vec::new(),
        label: String::new(),
        initiator: String::new(),
        protocol_version: 11,
        receiver_key_locator: KeyLocator {
            family: SWAP_KEY_FAMILY,
            index: 0,
        },
        sender_key: [2; 33],
        receiver_key: [3; 33],
        htlc_pk_script: ScriptBuf::from_bytes(vec![0x51, 0x20]),
    })
}

/// A finite set of inputs that touches every boundary of the rules for `contract`.
pub fn alphabet(contract: &LoopOutContract) -> Vec<Input> {
    let t = contract.terms();
    let start = t.initiation_height.0;
    let deadline = contract.reveal_deadline().0;
    let expiry = t.expiry.0;
    let amount = t.amount;
    let htlc = |n: u8| OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: 0,
    };
    let mut inputs = Vec::new();
    for h in [start, deadline - 1, deadline] {
        inputs.push(Input::Resumed {
            height: BlockHeight(h),
        });
    }
    for h in [
        start + 1,
        start + 2,
        deadline - 1,
        deadline,
        expiry + 1,
        expiry + 5,
    ] {
        inputs.push(Input::Block {
            height: BlockHeight(h),
        });
    }
    for (n, value, height, confs) in [
        (1, amount, start + 1, 1),
        (1, amount, start + 1, t.htlc_confirmations),
        (1, amount - Sat(1), start + 1, t.htlc_confirmations),
        (2, amount + Sat(1), start + 2, t.htlc_confirmations),
    ] {
        inputs.push(Input::HtlcConfirmed {
            outpoint: htlc(n),
            value,
            height: BlockHeight(height),
            confirmations: confs,
        });
    }
    // Fee estimates at every height a reveal can be decided at: one the heaviest sweep
    // affords under `max_miner_fee` (the floor) and one it does not.
    let unaffordable = crate::chain::SatPerKw(
        t.fee_limits.max_miner_fee.0 * 1_000 / crate::chain::fees::max_sweep_weight().to_wu() + 1,
    );
    for h in [start + 1, start + 2, deadline - 1] {
        for rate in [crate::chain::SatPerKw::FLOOR, unaffordable] {
            inputs.push(Input::SweepFeeEstimate {
                height: BlockHeight(h),
                rate,
            });
        }
    }
    inputs.push(Input::HtlcReorged);
    inputs.push(Input::HtlcSpent {
        txid: Txid::from_byte_array([9; 32]),
        height: BlockHeight(start + 2),
        path: SpendPath::Success {
            swept_value: amount - Sat(300),
        },
    });
    inputs.push(Input::HtlcSpent {
        txid: Txid::from_byte_array([10; 32]),
        height: BlockHeight(expiry + 1),
        path: SpendPath::Timeout,
    });
    inputs.push(Input::SpendReorged);
    inputs.push(Input::SpendConfirmations { confirmations: 1 });
    inputs.push(Input::SpendConfirmations {
        confirmations: t.sweep_finality_confirmations,
    });
    for kind in [PaymentKind::Swap, PaymentKind::Prepay] {
        let invoice = match kind {
            PaymentKind::Swap => &t.swap_invoice,
            PaymentKind::Prepay => &t.prepay_invoice,
        };
        for event in [
            PaymentEvent::InFlight,
            PaymentEvent::Succeeded {
                amount: invoice.amount,
                routing_fee: Sat(3),
            },
            PaymentEvent::Failed {
                reason: PaymentFailureReason::NoRoute,
            },
        ] {
            inputs.push(Input::Payment { kind, event });
        }
    }
    inputs.push(Input::ServerPushAcked);
    inputs.push(Input::SweepPublishFailed {
        cause: SweepFailure::Rejected,
    });
    inputs
}

/// Bookkeeping fields that never influence a transition are zeroed so the exploration stays
/// finite.
fn normalized(progress: &SwapProgress) -> SwapProgress {
    SwapProgress {
        preimage_push_acked: false,
        sweeps_requested: 0,
        sweep_failures: 0,
        last_sweep_failure: None,
        ..progress.clone()
    }
}

/// Whether a transition that keeps the state is worth drawing as a self-loop: it acts, and not
/// merely because the swap was resumed or a fact recorded.
fn drawn_as_loop(rule: Rule) -> bool {
    match rule {
        Rule::Sweep
        | Rule::HtlcReorged
        | Rule::HtlcReplaced
        | Rule::SpendReorged
        | Rule::SpendUnverified => true,
        Rule::Resumed
        | Rule::Recorded
        | Rule::Ignored
        | Rule::WaitingForConfirmations
        | Rule::WaitingForFeeEstimate
        | Rule::SweepFeeAboveCap
        | Rule::Reveal
        | Rule::RevealDeadlineReached
        | Rule::InsufficientHtlcValue
        | Rule::PaymentFailed
        | Rule::TimeoutSpendBeforeReveal
        | Rule::SpendSeen
        | Rule::AwaitingPayments
        | Rule::SweepFinal
        | Rule::TimeoutSpendFinal => false,
    }
}

/// The drawing's view of [`step`].
struct Drawn;

impl drawing::Machine for Drawn {
    type Contract = LoopOutContract;
    type Progress = SwapProgress;
    type Input = Input;
    type State = SwapState;
    type Rule = Rule;

    fn start() -> SwapProgress {
        SwapProgress::new()
    }

    fn state(progress: &SwapProgress) -> SwapState {
        progress.state
    }

    fn step(
        contract: &LoopOutContract,
        progress: &SwapProgress,
        input: Input,
    ) -> Option<(SwapProgress, Rule, bool)> {
        step(contract, progress, input).ok().map(|t| {
            let acts = !t.actions.is_empty();
            (t.next, t.rule, acts)
        })
    }

    fn normalized(progress: &SwapProgress) -> SwapProgress {
        normalized(progress)
    }

    fn drawn_as_loop(rule: Rule) -> bool {
        drawn_as_loop(rule)
    }
}

/// Runs [`step`] breadth-first from a new swap over `inputs` and collects the edges.
pub fn explore(contract: &LoopOutContract, inputs: &[Input]) -> Exploration {
    drawing::explore::<Drawn>(contract, inputs)
}

/// The mermaid `stateDiagram-v2` for an exploration.
pub fn mermaid(exploration: &Exploration) -> String {
    drawing::mermaid(exploration)
}

/// The whole of `docs/swap-fsm.md`: the diagram and the table of states.
pub fn render_document() -> Result<String, ContractError> {
    let contract = sample_contract()?;
    let exploration = explore(&contract, &alphabet(&contract));
    let mut doc = String::new();
    doc.push_str("# The Loop Out state machine\n\n");
    doc.push_str(
        "<!-- Generated from src/swap/ by exploring `swap::step`; do not edit. Regenerate with\n     \
         UPDATE_FSM_DOC=1 cargo test --lib swap::diagram -->\n\n",
    );
    doc.push_str(
        "Drawn by running the pure `step` function breadth-first from a new swap over inputs \
         chosen\naround every rule boundary. Self-loops are shown only where the swap acts \
         without changing\nstate. `amt` is the contract amount, `margin` the reveal margin \
         (default 20 blocks).\n\n",
    );
    doc.push_str("```mermaid\n");
    doc.push_str(&mermaid(&exploration));
    doc.push_str("```\n\n");
    doc.push_str("| code | state | terminal | preimage may leave | meaning |\n");
    doc.push_str("|---|---|---|---|---|\n");
    for state in SwapState::ALL {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(
            doc,
            "| {} | {} | {} | {} | {} |",
            state.code(),
            state.as_str(),
            yes_no(state.is_terminal()),
            yes_no(state.preimage_may_leave()),
            state.summary()
        );
    }
    doc.push_str(
        "\nCode 7 is deliberately unassigned (Loop's in-memory temporary failure). Codes never \
         move and are\nnever reused.\n",
    );
    Ok(doc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn doc_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/swap-fsm.md")
    }

    #[test]
    fn the_checked_in_diagram_is_current() {
        let fresh = render_document().unwrap();
        let path = doc_path();
        if std::env::var_os("UPDATE_FSM_DOC").is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == fresh,
            "{} is stale: the state machine changed. Regenerate it with \
             `UPDATE_FSM_DOC=1 cargo test --lib swap::diagram` and commit the result.",
            path.display()
        );
    }

    #[test]
    fn exploration_reaches_every_state_and_terminals_have_no_exits() {
        let contract = sample_contract().unwrap();
        let found = explore(&contract, &alphabet(&contract));
        assert!(
            found.visited < drawing::MAX_EXPLORED,
            "exploration hit its bound"
        );
        let all: BTreeSet<SwapState> = SwapState::ALL.into_iter().collect();
        assert_eq!(found.reached, all);
        for edge in &found.edges {
            assert!(
                !edge.from.is_terminal(),
                "edge out of terminal {:?}",
                edge.from
            );
        }
    }

    #[test]
    fn the_safety_edges_are_drawn() {
        let contract = sample_contract().unwrap();
        let found = explore(&contract, &alphabet(&contract));
        let rules = |from, to| {
            found
                .edges
                .iter()
                .find(|e| e.from == from && e.to == to)
                .map(|e| e.rules.clone())
                .unwrap_or_default()
        };
        assert!(rules(SwapState::Initiated, SwapState::PreimageRevealed).contains(&Rule::Reveal));
        assert!(
            rules(SwapState::Initiated, SwapState::FailedTimeout)
                .contains(&Rule::RevealDeadlineReached)
        );
        assert!(
            rules(SwapState::PreimageRevealed, SwapState::PreimageRevealed).contains(&Rule::Sweep)
        );
        // After the reveal, the only failure is the server's final timeout spend.
        for edge in &found.edges {
            if edge.from.preimage_may_leave() && edge.to != edge.from {
                assert!(
                    !edge.to.is_terminal()
                        || matches!(
                            edge.to,
                            SwapState::Succeeded | SwapState::FailedSweepTimeout
                        ),
                    "{:?} -> {:?}",
                    edge.from,
                    edge.to
                );
            }
        }
    }
}
