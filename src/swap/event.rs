//! What the state machine is told ([`Input`]) and what it asks the driver to do ([`Action`]).
//!
//! Inputs are facts the driver observed (a block, a payment result, a confirmation reported by
//! the chain watch for our exact HTLC script). Actions are requests the driver carries out
//! *after* it has saved the transition's `next` progress. Every action is safe to repeat: paying
//! again tracks the existing payment (same hash), watches are keyed by script or outpoint,
//! pushing the preimage twice is harmless, and a sweep is rebuilt from the same stored HTLC.

use bitcoin::{OutPoint, ScriptBuf, Txid};

use super::state::{
    PaymentFailureReason, PaymentKind, PaymentStatus, SpendPath, SwapProgress, SwapState,
    SweepFailure,
};
use crate::chain::SatPerKw;
use crate::domain::{BlockHeight, Ppm, Sat};

/// A payment result from lnd (SendPaymentV2 / TrackPaymentV2 updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentEvent {
    /// lnd is trying.
    InFlight,
    /// Settled.
    Succeeded {
        /// The amount the recipient received.
        amount: Sat,
        /// The routing fee on top.
        routing_fee: Sat,
    },
    /// lnd gave up for good.
    Failed {
        /// lnd's reason.
        reason: PaymentFailureReason,
    },
}

/// A fact the driver feeds to [`crate::swap::step`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// The swap is (re)started: after creation and after every daemon start, once the first
    /// block epoch gave a fresh best height. Re-emits every action the stored state requires.
    Resumed {
        /// The current best height.
        height: BlockHeight,
    },
    /// A new best block.
    Block {
        /// Its height (it may be lower than before after a reorg).
        height: BlockHeight,
    },
    /// A result for one of the two payments.
    Payment {
        /// Which invoice.
        kind: PaymentKind,
        /// What lnd said.
        event: PaymentEvent,
    },
    /// A confirmed output paying exactly the contract's HTLC script. The chain watch never
    /// reports any other output.
    HtlcConfirmed {
        /// The output.
        outpoint: OutPoint,
        /// What it pays.
        value: Sat,
        /// The block it confirmed in.
        height: BlockHeight,
        /// Confirmations when reported (≥ 1).
        confirmations: u32,
    },
    /// The block confirming the HTLC was reorged out.
    HtlcReorged,
    /// A transaction spending the HTLC outpoint confirmed.
    HtlcSpent {
        /// The spending transaction.
        txid: Txid,
        /// The block it confirmed in.
        height: BlockHeight,
        /// The branch its witness used.
        path: SpendPath,
    },
    /// The block confirming the spend was reorged out, or the spend watch had to register again
    /// and can no longer vouch for the spend it reported (it reports it again if it is still
    /// confirmed).
    SpendReorged,
    /// The spend now has this many confirmations (≥ 1).
    SpendConfirmations {
        /// Confirmations.
        confirmations: u32,
    },
    /// The server acknowledged `LoopOutPushPreimage`.
    ServerPushAcked,
    /// Publishing a requested sweep failed.
    SweepPublishFailed {
        /// Why.
        cause: SweepFailure,
    },
    /// lnd's fee estimate, asked for by [`Action::EstimateSweepFee`] at `height`.
    SweepFeeEstimate {
        /// The best height the estimate was asked at.
        height: BlockHeight,
        /// The estimate at the sweep's deadline-driven confirmation target.
        rate: SatPerKw,
    },
}

impl Input {
    /// The variant's name, for logs and the diagram.
    pub fn name(&self) -> &'static str {
        match self {
            Input::Resumed { .. } => "Resumed",
            Input::Block { .. } => "Block",
            Input::Payment { .. } => "Payment",
            Input::HtlcConfirmed { .. } => "HtlcConfirmed",
            Input::HtlcReorged => "HtlcReorged",
            Input::HtlcSpent { .. } => "HtlcSpent",
            Input::SpendReorged => "SpendReorged",
            Input::SpendConfirmations { .. } => "SpendConfirmations",
            Input::ServerPushAcked => "ServerPushAcked",
            Input::SweepPublishFailed { .. } => "SweepPublishFailed",
            Input::SweepFeeEstimate { .. } => "SweepFeeEstimate",
        }
    }
}

/// Why the swap is cancelled with the server (Loop's `CancelLoopOutSwap`, best effort).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// One of the payments failed terminally before the reveal.
    PaymentFailed {
        /// Which invoice.
        kind: PaymentKind,
        /// lnd's reason.
        reason: PaymentFailureReason,
    },
    /// The reveal deadline passed before a good HTLC confirmed.
    RevealDeadlineReached,
    /// The HTLC paid less than the contract amount.
    InsufficientHtlcValue {
        /// What it paid.
        value: Sat,
    },
}

/// A request to the driver, carried out after `next` is saved, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Pay the invoice, or track it if lnd already has a payment for its hash. The invoice and
    /// routing-fee limit come from the contract.
    DispatchPayment {
        /// Which invoice.
        kind: PaymentKind,
    },
    /// Watch for confirmed outputs paying exactly this script, from `height_hint` on, and report
    /// them as [`Input::HtlcConfirmed`] once they have `confirmations`.
    WatchHtlc {
        /// The HTLC output script.
        pk_script: ScriptBuf,
        /// Where to start looking.
        height_hint: BlockHeight,
        /// Confirmations to wait for.
        confirmations: u32,
    },
    /// Watch the HTLC outpoint for a confirmed spend and its reorgs ([`Input::HtlcSpent`],
    /// [`Input::SpendReorged`], [`Input::SpendConfirmations`]).
    WatchSpend {
        /// The HTLC outpoint.
        outpoint: OutPoint,
        /// Where to start looking.
        height_hint: BlockHeight,
    },
    /// Tell the server the swap is off (best effort; errors are only logged).
    CancelWithServer {
        /// Why.
        reason: CancelReason,
    },
    /// Send the preimage to the server (`LoopOutPushPreimage`). The driver takes it through
    /// [`SwapProgress::release_preimage`] on the saved progress.
    PushPreimage,
    /// Build, sign and broadcast the sweep of the HTLC: cooperative MuSig2 key path first, the
    /// success script path as fallback. The fee rate is driven by `blocks_left`, raised to at
    /// least `fee_share` of the contract's `max_miner_fee` and never above it
    /// (`chain::fees::offered_rate`).
    PublishSweep {
        /// The HTLC outpoint.
        htlc: OutPoint,
        /// Its value.
        htlc_value: Sat,
        /// Blocks until the expiry; the sweep's confirmation target.
        blocks_left: u32,
        /// The share of `max_miner_fee` the sweep offers at least (the schedule from the
        /// reveal to the deadline, `chain::fees::fee_schedule_share`).
        fee_share: Ppm,
    },
    /// Ask lnd for the fee estimate a sweep published at `height` would start from, and report
    /// it as [`Input::SweepFeeEstimate`]: the reveal waits for it.
    EstimateSweepFee {
        /// The best height it is asked at.
        height: BlockHeight,
        /// Blocks until the expiry; decides the confirmation target.
        blocks_left: u32,
    },
    /// The state changed: update metrics, the API stream and the journal.
    Notify {
        /// The new state.
        state: SwapState,
    },
}

/// Which rule of the state machine produced a transition: the "why" for logs, the journal and
/// the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The swap was (re)started and its required actions re-emitted.
    Resumed,
    /// A fact was recorded; nothing else follows from it.
    Recorded,
    /// The input changes nothing in this state (duplicate, late, or the swap is over).
    Ignored,
    /// A good HTLC is known but not yet deep enough.
    WaitingForConfirmations,
    /// Everything allows the reveal but the fee: the sweep's fee estimate is asked for.
    WaitingForFeeEstimate,
    /// The sweep at the needed rate does not fit `max_miner_fee` (or the 20 % clamp): no
    /// reveal; asked again next block, until the reveal deadline.
    SweepFeeAboveCap,
    /// HTLC value ≥ amount, confirmations ≥ required, height < expiry − margin, and a sweep at
    /// the needed rate fits `max_miner_fee`: reveal.
    Reveal,
    /// Height ≥ expiry − margin before the reveal.
    RevealDeadlineReached,
    /// The HTLC pays less than the amount.
    InsufficientHtlcValue,
    /// A payment failed before the reveal.
    PaymentFailed,
    /// The server's timeout spend was seen before any reveal.
    TimeoutSpendBeforeReveal,
    /// A block after the reveal: push the preimage (until the swap payment settles) and sweep.
    Sweep,
    /// The HTLC's confirmation was reorged out before the reveal: wait for it again.
    HtlcReorged,
    /// After the reveal the HTLC was reorged out and another output paying our script confirmed.
    HtlcReplaced,
    /// A spend of the HTLC confirmed.
    SpendSeen,
    /// The spend was reorged out: sweep again.
    SpendReorged,
    /// Resumed with a confirmed spend stored: it is not trusted until the chain reports it
    /// again, so sweep meanwhile.
    SpendUnverified,
    /// Our sweep is final but a payment is still unfinished.
    AwaitingPayments,
    /// Our sweep is final and both payments finished.
    SweepFinal,
    /// The server's timeout spend is final.
    TimeoutSpendFinal,
}

impl Rule {
    /// A short label for the diagram and logs.
    pub fn label(self) -> &'static str {
        match self {
            Rule::Resumed => "resumed",
            Rule::Recorded => "recorded",
            Rule::Ignored => "ignored",
            Rule::WaitingForConfirmations => "waiting for confirmations",
            Rule::WaitingForFeeEstimate => "htlc good: ask the sweep's fee estimate",
            Rule::SweepFeeAboveCap => "needed sweep fee above max_miner_fee",
            Rule::Reveal => {
                "htlc ≥ amt, confs ≥ required, height below expiry − margin, sweep fee fits"
            }
            Rule::RevealDeadlineReached => "height ≥ expiry − margin",
            Rule::InsufficientHtlcValue => "htlc value below amt",
            Rule::PaymentFailed => "payment failed",
            Rule::TimeoutSpendBeforeReveal => "timeout spend seen",
            Rule::Sweep => "block: push preimage + sweep",
            Rule::HtlcReorged => "htlc reorged: watch again",
            Rule::HtlcReplaced => "htlc replaced after reorg: sweep it",
            Rule::SpendSeen => "spend confirmed",
            Rule::SpendReorged => "spend reorged",
            Rule::SpendUnverified => "resumed: spend unverified, sweep until the chain reports it",
            Rule::AwaitingPayments => "sweep final, payment unfinished",
            Rule::SweepFinal => "sweep final, payments finished",
            Rule::TimeoutSpendFinal => "timeout spend final",
        }
    }
}

/// The result of one step: the progress to save, then the actions to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The progress to persist before any action runs.
    pub next: SwapProgress,
    /// What to do once `next` is saved, in order.
    pub actions: Vec<Action>,
    /// The rule that fired.
    pub rule: Rule,
}

/// An input that cannot be right in the stored state. Nothing is saved and nothing is done; the
/// driver logs it loudly, because it means a bug or a misbehaving collaborator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// A success-path spend before we revealed the preimage: the preimage leaked or the chain
    /// watch is wrong.
    #[error("the HTLC was spent through the success path before the preimage was revealed")]
    SuccessSpendBeforeReveal,
    /// A server acknowledgement for a push we never made.
    #[error("the server acknowledged a preimage push before the preimage was revealed")]
    PushAckBeforeReveal,
    /// A sweep result before any sweep was requested.
    #[error("a sweep publication failed before the preimage was revealed; none was requested")]
    SweepBeforeReveal,
    /// lnd reported a different final result for a payment that already had one.
    #[error("{kind:?} payment already final as {recorded:?}; lnd now reports {reported:?}")]
    ConflictingPaymentResult {
        /// Which invoice.
        kind: PaymentKind,
        /// The stored final result.
        recorded: PaymentStatus,
        /// The new report.
        reported: PaymentEvent,
    },
    /// Confirmation counts start at one.
    #[error("{input} reported with zero confirmations")]
    ZeroConfirmations {
        /// The input's name.
        input: &'static str,
    },
    /// The stored progress lacks the HTLC its state requires (a corrupted or hand-edited row).
    #[error("state {0:?} requires a recorded HTLC but none is stored")]
    MissingHtlc(SwapState),
}
