//! What the Loop In state machine is told ([`LoopInInput`]) and what it asks the driver to do
//! ([`LoopInAction`]). Every action is safe to repeat, except [`LoopInAction::FundHtlc`], which
//! the state machine emits exactly once per swap (on the one transition out of
//! `Initiated` into `HtlcPublished`, saved before it runs) and the driver never retries.

use bitcoin::{OutPoint, ScriptBuf, Txid};

use super::state::{LoopInProgress, LoopInSpendPath, LoopInState};
use crate::chain::SatPerKw;
use crate::domain::{BlockHeight, Sat};

/// A fact the driver feeds to [`super::step`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoopInInput {
    /// The swap is (re)started with a fresh best height; re-emits every action the stored state
    /// requires.
    Resumed {
        /// The current best height.
        height: BlockHeight,
    },
    /// A new best block.
    Block {
        /// Its height.
        height: BlockHeight,
    },
    /// lnd's estimate for funding the HTLC, asked for by [`LoopInAction::EstimateFunding`].
    FundingEstimate {
        /// The best height it was asked at.
        height: BlockHeight,
        /// The fee rate at the contract's confirmation target.
        rate: SatPerKw,
        /// The whole funding transaction's fee at that rate, with lnd's coin selection.
        fee: Sat,
    },
    /// lnd's wallet published the funding transaction (`SendOutputs` answered, or after a
    /// restart the wallet holds a transaction paying the HTLC script).
    FundingPublished {
        /// Its txid.
        txid: Txid,
        /// What it paid miners.
        fee: Sat,
    },
    /// lnd's wallet did not fund the HTLC: `SendOutputs` failed and the wallet holds no
    /// transaction paying the script, or after a restart it holds none.
    FundingFailed,
    /// A confirmed output paying exactly the contract's HTLC script.
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
    /// lnd settled the swap invoice: the server paid.
    InvoiceSettled {
        /// What it paid.
        amount_paid: Sat,
    },
    /// lnd cancelled the swap invoice.
    InvoiceCanceled,
    /// A transaction spending the HTLC confirmed.
    HtlcSpent {
        /// The spending transaction.
        txid: Txid,
        /// The block it confirmed in.
        height: BlockHeight,
        /// The branch its witness used.
        path: LoopInSpendPath,
    },
    /// The spend was reorged out (or its watch had to register again).
    SpendReorged,
    /// The spend now has this many confirmations (≥ 1).
    SpendConfirmations {
        /// Confirmations.
        confirmations: u32,
    },
    /// The server acknowledged `PushKey`.
    KeyPushAcked,
    /// Publishing a requested timeout sweep failed (retried next block regardless).
    SweepPublishFailed,
}

impl LoopInInput {
    /// The variant's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            LoopInInput::Resumed { .. } => "Resumed",
            LoopInInput::Block { .. } => "Block",
            LoopInInput::FundingEstimate { .. } => "FundingEstimate",
            LoopInInput::FundingPublished { .. } => "FundingPublished",
            LoopInInput::FundingFailed => "FundingFailed",
            LoopInInput::HtlcConfirmed { .. } => "HtlcConfirmed",
            LoopInInput::HtlcReorged => "HtlcReorged",
            LoopInInput::InvoiceSettled { .. } => "InvoiceSettled",
            LoopInInput::InvoiceCanceled => "InvoiceCanceled",
            LoopInInput::HtlcSpent { .. } => "HtlcSpent",
            LoopInInput::SpendReorged => "SpendReorged",
            LoopInInput::SpendConfirmations { .. } => "SpendConfirmations",
            LoopInInput::KeyPushAcked => "KeyPushAcked",
            LoopInInput::SweepPublishFailed => "SweepPublishFailed",
        }
    }
}

/// A request to the driver, carried out after `next` is saved, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoopInAction {
    /// Ask lnd what funding the HTLC would cost now (`EstimateFee` for `amount` to the HTLC
    /// script at the contract's confirmation target) and report [`LoopInInput::FundingEstimate`].
    EstimateFunding {
        /// The best height it is asked at.
        height: BlockHeight,
    },
    /// Fund the HTLC once through lnd's wallet (`SendOutputs`: one output paying `amount` to
    /// the script) at `rate`. Never retried: on an error the driver looks the wallet up for a
    /// transaction paying the script and reports [`LoopInInput::FundingPublished`] or
    /// [`LoopInInput::FundingFailed`].
    FundHtlc {
        /// The fee rate of the estimate that fitted `max_miner_fee`.
        rate: SatPerKw,
    },
    /// After a restart with a saved funding intent and no recorded transaction: look the
    /// wallet up for a transaction paying the script (never fund again) and report
    /// [`LoopInInput::FundingPublished`] or [`LoopInInput::FundingFailed`].
    FindFunding,
    /// Watch for confirmed outputs paying exactly this script: in `funding_txid` once our
    /// funding transaction is known, in any transaction before (a restart that lost it).
    WatchHtlc {
        /// The HTLC output script.
        pk_script: ScriptBuf,
        /// Where to start looking.
        height_hint: BlockHeight,
        /// Our funding transaction, when recorded.
        funding_txid: Option<bitcoin::Txid>,
    },
    /// Watch the HTLC outpoint for a confirmed spend and its reorgs.
    WatchSpend {
        /// The HTLC outpoint.
        outpoint: OutPoint,
        /// Where to start looking.
        height_hint: BlockHeight,
    },
    /// Subscribe to the swap invoice (by the swap hash) and report settlement or cancellation.
    WatchInvoice,
    /// Send the internal key to the server (`PushKey`). The driver takes it only through
    /// [`LoopInProgress::release_internal_key`] on the progress it just saved.
    PushKey,
    /// Build, sign (timeout leaf, our key through lnd's signer) and broadcast the timeout
    /// sweep back to the wallet, at lnd's estimate for the timeout target, its fee capped at
    /// `max_fee` (and never under the relay floor).
    PublishTimeoutSweep {
        /// The HTLC outpoint.
        htlc: OutPoint,
        /// Its value.
        htlc_value: Sat,
        /// The cap on the sweep's fee (the contract's `max_miner_fee`).
        max_fee: Sat,
    },
    /// Cancel the swap invoice, so the server can no longer pay a swap we took back (an
    /// "already settled" answer is fine).
    CancelInvoice,
    /// The state changed: update metrics, the API stream and the journal.
    Notify {
        /// The new state.
        state: LoopInState,
    },
}

/// Which rule produced a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoopInRule {
    /// The swap was (re)started and its required actions re-emitted.
    Resumed,
    /// A fact was recorded; nothing else follows from it.
    Recorded,
    /// The input changes nothing in this state.
    Ignored,
    /// At least 10 blocks left: ask what the funding costs.
    WaitingForFundingEstimate,
    /// The funding estimate is above `max_miner_fee`: wait, ask again next block.
    FundingFeeAboveCap,
    /// The funding fits `max_miner_fee` with at least 10 blocks left: save the intent, fund.
    Fund,
    /// Fewer than 10 blocks left before the HTLC was funded.
    PublishDeadlineReached,
    /// The wallet did not fund the HTLC.
    FundingFailed,
    /// The HTLC paying exactly the amount confirmed.
    HtlcConfirmed,
    /// The confirmed output pays another value than the amount.
    IncorrectHtlcAmount,
    /// The HTLC's confirmation was reorged out: watch again.
    HtlcReorged,
    /// The server paid the invoice: push the key, stop sweeping.
    InvoicePaid,
    /// Settled and not acknowledged yet: push the key again.
    PushKey,
    /// Settled and the expiry passed: success even if the server never claimed.
    ExpiryAfterPayment,
    /// Expiry reached unpaid: sweep back.
    Expired,
    /// A block while sweeping back: publish again with a fresh fee.
    Sweep,
    /// A spend of the HTLC confirmed.
    SpendSeen,
    /// The spend was reorged out.
    SpendReorged,
    /// The server's claim is final and the invoice paid.
    ClaimFinal,
    /// Our timeout sweep is final.
    TimeoutSpendFinal,
}

impl LoopInRule {
    /// A short label for the diagram and logs.
    pub fn label(self) -> &'static str {
        match self {
            LoopInRule::Resumed => "resumed",
            LoopInRule::Recorded => "recorded",
            LoopInRule::Ignored => "ignored",
            LoopInRule::WaitingForFundingEstimate => "ask the funding fee",
            LoopInRule::FundingFeeAboveCap => "funding fee above max_miner_fee: wait",
            LoopInRule::Fund => "funding fee fits, ≥ 10 blocks left: save intent, fund once",
            LoopInRule::PublishDeadlineReached => "fewer than 10 blocks left, not funded",
            LoopInRule::FundingFailed => "wallet did not fund",
            LoopInRule::HtlcConfirmed => "htlc = amt confirmed",
            LoopInRule::IncorrectHtlcAmount => "htlc ≠ amt confirmed",
            LoopInRule::HtlcReorged => "htlc reorged: watch again",
            LoopInRule::InvoicePaid => "invoice settled: push key, stop sweeping",
            LoopInRule::PushKey => "block: push key until acknowledged",
            LoopInRule::ExpiryAfterPayment => "paid and height ≥ expiry",
            LoopInRule::Expired => "height ≥ expiry unpaid: sweep back",
            LoopInRule::Sweep => "block: timeout sweep again",
            LoopInRule::SpendSeen => "spend confirmed",
            LoopInRule::SpendReorged => "spend reorged: sweep again",
            LoopInRule::ClaimFinal => "server's claim final",
            LoopInRule::TimeoutSpendFinal => "timeout sweep final: cancel invoice",
        }
    }
}

/// The result of one step: the progress to save, then the actions to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInTransition {
    /// The progress to persist before any action runs.
    pub next: LoopInProgress,
    /// What to do once `next` is saved, in order.
    pub actions: Vec<LoopInAction>,
    /// The rule that fired.
    pub rule: LoopInRule,
}

/// An input that cannot be right in the stored state: nothing is saved or done, the driver
/// logs it loudly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopInRejected {
    /// A funding result before the funding intent was saved.
    #[error("a funding result arrived before the funding intent was saved")]
    FundingBeforeIntent,
    /// The wallet reported a failure for a funding it had already published.
    #[error("funding reported failed after the funding transaction {0} was recorded")]
    FundingFailedAfterPublish(Txid),
    /// A spend of an HTLC that is not recorded.
    #[error("a spend of the HTLC arrived before the HTLC confirmed")]
    SpendBeforeHtlc,
    /// An acknowledgement for a key push never made.
    #[error("the server acknowledged a key push before the invoice was settled")]
    KeyAckBeforeSettlement,
    /// A sweep result before any sweep was requested.
    #[error("a timeout sweep failure arrived in {0:?}, where no sweep was requested")]
    SweepNotRequested(LoopInState),
    /// lnd reported a cancellation of a settled invoice.
    #[error("the swap invoice is settled; lnd now reports it cancelled")]
    ConflictingInvoiceResult,
    /// Confirmation counts start at one.
    #[error("{input} reported with zero confirmations")]
    ZeroConfirmations {
        /// The input's name.
        input: &'static str,
    },
}
