//! Draws the Loop In state machine from the code itself, as [`crate::swap::diagram`] does for
//! Loop Out: [`explore`] runs [`step`] breadth-first from a new swap over a finite alphabet of
//! inputs chosen around every rule boundary, and [`render_document`] turns the observed edges
//! into `docs/loop-in-fsm.md`; a test fails when the file is stale.

use std::fmt::Write as _;

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, ScriptBuf, Txid};

use super::contract::{
    DEFAULT_HTLC_CONF_TARGET, LoopInContract, LoopInContractError, LoopInContractTerms,
    LoopInLimits, MIN_PUBLISH_DELTA,
};
use super::event::{LoopInInput, LoopInRule};
use super::state::{LoopInProgress, LoopInSpendPath, LoopInState};
use super::step::step;
use crate::chain::SatPerKw;
use crate::domain::{BlockHeight, Sat, SwapHash};
use crate::swap::{KeyLocator, SWAP_KEY_FAMILY, drawing};

impl drawing::DrawnState for LoopInState {
    const INITIAL: LoopInState = LoopInState::Initiated;

    fn as_str(self) -> &'static str {
        LoopInState::as_str(self)
    }

    fn code(self) -> u16 {
        LoopInState::code(self)
    }

    fn is_terminal(self) -> bool {
        LoopInState::is_terminal(self)
    }
}

impl drawing::DrawnRule for LoopInRule {
    fn label(self) -> &'static str {
        LoopInRule::label(self)
    }
}

/// One observed change of state, with the rules that caused it.
pub type Edge = drawing::Edge<LoopInState, LoopInRule>;

/// What exploring the state machine found.
pub type Exploration = drawing::Exploration<LoopInState, LoopInRule>;

/// The contract the exploration runs against: amount 100 000, fee 500, initiation 1 000,
/// expiry 1 100, max miner fee 5 000, finality 2.
pub fn sample_contract() -> Result<LoopInContract, LoopInContractError> {
    LoopInContract::new(LoopInContractTerms {
        swap_hash: SwapHash([1; 32]),
        amount: Sat(100_000),
        swap_fee: Sat(500),
        expiry: BlockHeight(1_100),
        initiation_height: BlockHeight(1_000),
        htlc_conf_target: DEFAULT_HTLC_CONF_TARGET,
        sweep_finality_confirmations: 2,
        limits: LoopInLimits {
            max_swap_fee: Sat(1_000),
            max_miner_fee: Sat(5_000),
        },
        swap_invoice: String::new(),
        last_hop: None,
        label: String::new(),
        initiator: String::new(),
        protocol_version: 11,
        sender_key_locator: KeyLocator {
            family: SWAP_KEY_FAMILY,
            index: 0,
        },
        sender_key: [2; 33],
        receiver_key: [3; 33],
        sender_internal_key: [4; 33],
        receiver_internal_key: [5; 33],
        htlc_pk_script: ScriptBuf::from_bytes(vec![0x51, 0x20]),
    })
}

/// A finite set of inputs that touches every boundary of the rules for `contract`.
pub fn alphabet(contract: &LoopInContract) -> Vec<LoopInInput> {
    let t = contract.terms();
    let start = t.initiation_height.0;
    let expiry = t.expiry.0;
    let last_publish = expiry - MIN_PUBLISH_DELTA;
    let amount = t.amount;
    let out = |n: u8| OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: 0,
    };
    let mut inputs = Vec::new();
    for h in [start, last_publish, last_publish + 1, expiry] {
        inputs.push(LoopInInput::Resumed {
            height: BlockHeight(h),
        });
    }
    for h in [
        start + 1,
        last_publish,
        last_publish + 1,
        expiry - 1,
        expiry,
    ] {
        inputs.push(LoopInInput::Block {
            height: BlockHeight(h),
        });
    }
    for h in [start, start + 1, last_publish] {
        for fee in [t.limits.max_miner_fee, t.limits.max_miner_fee + Sat(1)] {
            inputs.push(LoopInInput::FundingEstimate {
                height: BlockHeight(h),
                rate: SatPerKw(2_000),
                fee,
            });
        }
    }
    inputs.push(LoopInInput::FundingPublished {
        txid: Txid::from_byte_array([8; 32]),
        fee: Sat(700),
    });
    inputs.push(LoopInInput::FundingFailed);
    for (n, value, height) in [
        (1, amount, start + 2),
        (1, amount - Sat(1), start + 2),
        (2, amount, expiry),
    ] {
        inputs.push(LoopInInput::HtlcConfirmed {
            outpoint: out(n),
            value,
            height: BlockHeight(height),
            confirmations: 1,
        });
    }
    inputs.push(LoopInInput::HtlcReorged);
    inputs.push(LoopInInput::InvoiceSettled {
        amount_paid: contract.invoice_amount(),
    });
    inputs.push(LoopInInput::InvoiceCanceled);
    inputs.push(LoopInInput::HtlcSpent {
        txid: Txid::from_byte_array([9; 32]),
        height: BlockHeight(start + 3),
        path: LoopInSpendPath::ServerClaim,
    });
    inputs.push(LoopInInput::HtlcSpent {
        txid: Txid::from_byte_array([10; 32]),
        height: BlockHeight(expiry + 1),
        path: LoopInSpendPath::Timeout {
            swept_value: amount - Sat(300),
        },
    });
    inputs.push(LoopInInput::SpendReorged);
    inputs.push(LoopInInput::SpendConfirmations {
        confirmations: t.sweep_finality_confirmations,
    });
    inputs.push(LoopInInput::KeyPushAcked);
    inputs.push(LoopInInput::SweepPublishFailed);
    inputs
}

/// Bookkeeping fields that never influence a transition are zeroed so the exploration stays
/// finite.
fn normalized(progress: &LoopInProgress) -> LoopInProgress {
    LoopInProgress {
        sweeps_requested: 0,
        sweep_failures: 0,
        ..progress.clone()
    }
}

/// Whether a transition that keeps the state is worth drawing as a self-loop.
fn drawn_as_loop(rule: LoopInRule) -> bool {
    match rule {
        LoopInRule::Sweep | LoopInRule::PushKey | LoopInRule::SpendReorged => true,
        LoopInRule::Resumed
        | LoopInRule::Recorded
        | LoopInRule::Ignored
        | LoopInRule::WaitingForFundingEstimate
        | LoopInRule::FundingFeeAboveCap
        | LoopInRule::Fund
        | LoopInRule::PublishDeadlineReached
        | LoopInRule::FundingFailed
        | LoopInRule::HtlcConfirmed
        | LoopInRule::IncorrectHtlcAmount
        | LoopInRule::HtlcReorged
        | LoopInRule::InvoicePaid
        | LoopInRule::ExpiryAfterPayment
        | LoopInRule::Expired
        | LoopInRule::SpendSeen
        | LoopInRule::ClaimFinal
        | LoopInRule::TimeoutSpendFinal => false,
    }
}

/// The drawing's view of [`step`].
struct Drawn;

impl drawing::Machine for Drawn {
    type Contract = LoopInContract;
    type Progress = LoopInProgress;
    type Input = LoopInInput;
    type State = LoopInState;
    type Rule = LoopInRule;

    fn start() -> LoopInProgress {
        LoopInProgress::new()
    }

    fn state(progress: &LoopInProgress) -> LoopInState {
        progress.state
    }

    fn step(
        contract: &LoopInContract,
        progress: &LoopInProgress,
        input: LoopInInput,
    ) -> Option<(LoopInProgress, LoopInRule, bool)> {
        step(contract, progress, input).ok().map(|t| {
            let acts = !t.actions.is_empty();
            (t.next, t.rule, acts)
        })
    }

    fn normalized(progress: &LoopInProgress) -> LoopInProgress {
        normalized(progress)
    }

    fn drawn_as_loop(rule: LoopInRule) -> bool {
        drawn_as_loop(rule)
    }
}

/// Runs [`step`] breadth-first from a new swap over `inputs` and collects the edges.
pub fn explore(contract: &LoopInContract, inputs: &[LoopInInput]) -> Exploration {
    drawing::explore::<Drawn>(contract, inputs)
}

/// The mermaid `stateDiagram-v2` for an exploration.
pub fn mermaid(exploration: &Exploration) -> String {
    drawing::mermaid(exploration)
}

/// The whole of `docs/loop-in-fsm.md`: the diagram and the table of states.
pub fn render_document() -> Result<String, LoopInContractError> {
    let contract = sample_contract()?;
    let exploration = explore(&contract, &alphabet(&contract));
    let mut doc = String::new();
    doc.push_str("# The Loop In state machine\n\n");
    doc.push_str(
        "<!-- Generated from src/swap/loop_in/ by exploring `swap::loop_in::step`; do not edit. \
         Regenerate with\n     UPDATE_FSM_DOC=1 cargo test --lib swap::loop_in::diagram -->\n\n",
    );
    doc.push_str(
        "Drawn by running the pure `step` function breadth-first from a new Loop In over inputs \
         chosen\naround every rule boundary. Self-loops are shown only where the swap acts \
         without changing\nstate. `amt` is the contract amount (the HTLC value sluice funds).\n\n",
    );
    doc.push_str("```mermaid\n");
    doc.push_str(&mermaid(&exploration));
    doc.push_str("```\n\n");
    doc.push_str("| code | state | terminal | internal key may leave | meaning |\n");
    doc.push_str("|---|---|---|---|---|\n");
    for state in LoopInState::ALL {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(
            doc,
            "| {} | {} | {} | {} | {} |",
            state.code(),
            state.as_str(),
            yes_no(state.is_terminal()),
            yes_no(state.internal_key_may_leave()),
            state.summary()
        );
    }
    doc.push_str(
        "\nCodes 0–13 are those of Loop's own database for the same Loop In states; 14–16 are \
         sluice's.\nThey are stored next to the swap's type, never move and are never \
         reused.\n",
    );
    Ok(doc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn doc_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/loop-in-fsm.md")
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
            "{} is stale: the Loop In state machine changed. Regenerate it with \
             `UPDATE_FSM_DOC=1 cargo test --lib swap::loop_in::diagram` and commit the result.",
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
        let all: BTreeSet<LoopInState> = LoopInState::ALL.into_iter().collect();
        assert_eq!(found.reached, all);
        for edge in &found.edges {
            assert!(!edge.from.is_terminal(), "edge out of {:?}", edge.from);
        }
    }

    #[test]
    fn only_settlement_leads_to_the_key_states() {
        let contract = sample_contract().unwrap();
        let found = explore(&contract, &alphabet(&contract));
        for edge in &found.edges {
            if edge.to == LoopInState::InvoiceSettled && edge.from != edge.to {
                assert_eq!(
                    edge.rules,
                    BTreeSet::from([LoopInRule::InvoicePaid]),
                    "{:?} -> InvoiceSettled",
                    edge.from
                );
            }
            if edge.to == LoopInState::Succeeded {
                assert_eq!(edge.from, LoopInState::InvoiceSettled);
            }
        }
    }
}
