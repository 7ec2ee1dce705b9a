//! Draws the Loop Out state machine from the code itself.
//!
//! The drawing is not maintained by hand: [`explore`] runs [`step`] breadth-first from a new
//! swap, over a finite alphabet of inputs chosen around every boundary of the rules (heights at
//! and around the reveal deadline, HTLC values at and under the amount, each payment result, each
//! spend path), and records which state changes it observes and which rule caused them.
//! [`render_document`] turns that into the mermaid diagram checked in as `docs/swap-fsm.md`; a
//! test fails when the file is stale.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Write as _;

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, ScriptBuf, Txid};

use super::contract::{
    ContractError, ContractTerms, DEFAULT_FEE_CAP_LIFTED_WITHIN_BLOCKS,
    DEFAULT_REVEAL_MARGIN_BLOCKS, DEFAULT_SWEEP_FINALITY_CONFIRMATIONS, FeeLimits, InvoiceTerms,
    KeyLocator, LoopOutContract, SWAP_KEY_FAMILY,
};
use super::event::{Input, PaymentEvent, Rule};
use super::state::{
    PaymentFailureReason, PaymentKind, SpendPath, SwapProgress, SwapState, SweepFailure,
};
use super::step::step;
use crate::domain::{BlockHeight, Sat};

/// Upper bound on explored progress values; the alphabet keeps the space far below it.
const MAX_EXPLORED: usize = 200_000;

/// One observed change of state (or a self-loop that acts), with the rules that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Where the swap was.
    pub from: SwapState,
    /// Where it went.
    pub to: SwapState,
    /// Every rule observed producing this edge, in declaration order.
    pub rules: BTreeSet<Rule>,
}

/// What exploring the state machine found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exploration {
    /// Every state reached.
    pub reached: BTreeSet<SwapState>,
    /// The edges, ordered by (from, to).
    pub edges: Vec<Edge>,
    /// How many distinct progress values were visited.
    pub visited: usize,
}

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

/// Runs [`step`] breadth-first from a new swap over `inputs` and collects the edges.
pub fn explore(contract: &LoopOutContract, inputs: &[Input]) -> Exploration {
    let start = SwapProgress::new();
    let mut seen: HashSet<SwapProgress> = HashSet::from([normalized(&start)]);
    let mut queue = VecDeque::from([start]);
    let mut reached = BTreeSet::from([SwapState::Initiated]);
    let mut edges: BTreeMap<(SwapState, SwapState), BTreeSet<Rule>> = BTreeMap::new();
    while let Some(progress) = queue.pop_front() {
        for input in inputs {
            let Ok(t) = step(contract, &progress, input.clone()) else {
                continue;
            };
            let (from, to) = (progress.state, t.next.state);
            reached.insert(to);
            if from != to || (!t.actions.is_empty() && drawn_as_loop(t.rule)) {
                edges.entry((from, to)).or_default().insert(t.rule);
            }
            if seen.len() < MAX_EXPLORED && seen.insert(normalized(&t.next)) {
                queue.push_back(t.next);
            }
        }
    }
    Exploration {
        reached,
        edges: edges
            .into_iter()
            .map(|((from, to), rules)| Edge { from, to, rules })
            .collect(),
        visited: seen.len(),
    }
}

/// The mermaid `stateDiagram-v2` for an exploration.
pub fn mermaid(exploration: &Exploration) -> String {
    let mut out = String::from("stateDiagram-v2\n");
    let _ = writeln!(out, "    [*] --> {}", SwapState::Initiated.as_str());
    for state in &exploration.reached {
        let _ = writeln!(out, "    {}: code {}", state.as_str(), state.code());
    }
    for edge in &exploration.edges {
        let label: Vec<&str> = edge.rules.iter().map(|r| r.label()).collect();
        let _ = writeln!(
            out,
            "    {} --> {}: {}",
            edge.from.as_str(),
            edge.to.as_str(),
            label.join(" / ")
        );
    }
    for state in exploration.reached.iter().filter(|s| s.is_terminal()) {
        let _ = writeln!(out, "    {} --> [*]", state.as_str());
    }
    out
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
        assert!(found.visited < MAX_EXPLORED, "exploration hit its bound");
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
