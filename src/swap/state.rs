//! A Loop Out's state (a stable integer code) and everything learned so far ([`SwapProgress`]).
//!
//! The codes are persisted: they never move and are never reused. Codes 0–6 mean what they mean
//! in Loop's own database (`loopdb/swapstate.go`), so an operator can read both side by side;
//! code 7 is left unassigned because Loop uses it for an in-memory temporary failure that is
//! never stored. Codes from 8 on are sluice's own.

use bitcoin::{OutPoint, Txid};

use super::contract::Preimage;
use crate::domain::{BlockHeight, Sat};

/// Where a Loop Out stands. The variants carry no data: what the swap has learned lives in
/// [`SwapProgress`], persisted next to the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SwapState {
    /// Code 0. The contract is stored and the preimage is secret; both invoices are being paid
    /// and the HTLC is awaited. Persisted before: the contract and the preimage. Allows:
    /// paying/tracking the invoices, watching for the HTLC, cancelling with the server.
    Initiated,
    /// Code 1. An HTLC paying exactly our script with at least `amount` reached the required
    /// confirmations below the reveal deadline. The preimage may now leave, and the swap must be
    /// swept at any cost: it never gives up from here. Persisted before: the HTLC outpoint, value
    /// and confirmation height. Allows: pushing the preimage, publishing sweeps, watching the
    /// spend.
    PreimageRevealed,
    /// Code 2. Our sweep (key path or success script path) has the finality confirmations and
    /// both payments are finished. Terminal. Persisted before: the spend and the payment
    /// results, from which the costs follow. Allows nothing.
    Succeeded,
    /// Code 3. The swap or prepay payment failed terminally before the preimage was revealed.
    /// Terminal; the preimage never leaves. Allows nothing (the cancel is sent on entry).
    FailedOffchain,
    /// Code 4. The reveal deadline (`expiry − margin`) was reached before a good HTLC was
    /// confirmed. Terminal; the preimage never leaves. Allows nothing (the cancel is sent on
    /// entry).
    FailedTimeout,
    /// Code 5. After the reveal, the server took the HTLC back through its timeout path, and
    /// that spend is final. Terminal. Allows nothing.
    FailedSweepTimeout,
    /// Code 6. The HTLC paying our script was smaller than `amount`. Terminal; the preimage
    /// never leaves. Allows nothing (the cancel is sent on entry).
    FailedInsufficientValue,
    /// Code 8. A transaction spending the HTLC has confirmed (either path) but is not final yet,
    /// or (success path) a payment is still unfinished. A reorg sends the swap back to
    /// [`SwapState::PreimageRevealed`]. Persisted before: the spending txid, height and path.
    /// Allows: pushing the preimage (success path), watching the spend.
    SpendConfirming,
}

/// Why a stored state code was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown loop-out state code {0}: the store was written by a newer sluice; upgrade sluice \
     before resuming this swap"
)]
pub struct UnknownStateCode(pub u16);

impl SwapState {
    /// Every state, in code order.
    pub const ALL: [SwapState; 8] = [
        SwapState::Initiated,
        SwapState::PreimageRevealed,
        SwapState::Succeeded,
        SwapState::FailedOffchain,
        SwapState::FailedTimeout,
        SwapState::FailedSweepTimeout,
        SwapState::FailedInsufficientValue,
        SwapState::SpendConfirming,
    ];

    /// The persisted code. Never change a value, never reuse one.
    pub fn code(self) -> u16 {
        match self {
            SwapState::Initiated => 0,
            SwapState::PreimageRevealed => 1,
            SwapState::Succeeded => 2,
            SwapState::FailedOffchain => 3,
            SwapState::FailedTimeout => 4,
            SwapState::FailedSweepTimeout => 5,
            SwapState::FailedInsufficientValue => 6,
            SwapState::SpendConfirming => 8,
        }
    }

    /// The state a persisted code stands for.
    pub fn from_code(code: u16) -> Result<SwapState, UnknownStateCode> {
        match code {
            0 => Ok(SwapState::Initiated),
            1 => Ok(SwapState::PreimageRevealed),
            2 => Ok(SwapState::Succeeded),
            3 => Ok(SwapState::FailedOffchain),
            4 => Ok(SwapState::FailedTimeout),
            5 => Ok(SwapState::FailedSweepTimeout),
            6 => Ok(SwapState::FailedInsufficientValue),
            8 => Ok(SwapState::SpendConfirming),
            other => Err(UnknownStateCode(other)),
        }
    }

    /// The name used in logs, metrics labels and the diagram.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapState::Initiated => "Initiated",
            SwapState::PreimageRevealed => "PreimageRevealed",
            SwapState::Succeeded => "Succeeded",
            SwapState::FailedOffchain => "FailedOffchain",
            SwapState::FailedTimeout => "FailedTimeout",
            SwapState::FailedSweepTimeout => "FailedSweepTimeout",
            SwapState::FailedInsufficientValue => "FailedInsufficientValue",
            SwapState::SpendConfirming => "SpendConfirming",
        }
    }

    /// One line for the generated documentation.
    pub fn summary(self) -> &'static str {
        match self {
            SwapState::Initiated => "paying both invoices, waiting for the HTLC; preimage secret",
            SwapState::PreimageRevealed => {
                "HTLC good and confirmed: push the preimage and sweep every block (the last \
                 signed sweep again while its rate holds), never give up"
            }
            SwapState::Succeeded => "our sweep is final and both payments finished",
            SwapState::FailedOffchain => "a payment failed before the reveal; cancelled",
            SwapState::FailedTimeout => "reveal deadline reached before a good HTLC; cancelled",
            SwapState::FailedSweepTimeout => "the server's timeout spend is final",
            SwapState::FailedInsufficientValue => "the HTLC paid less than the amount; cancelled",
            SwapState::SpendConfirming => "an HTLC spend confirmed, waiting for finality",
        }
    }

    /// Whether the swap is over: no input changes the state or produces actions any more.
    pub fn is_terminal(self) -> bool {
        match self {
            SwapState::Initiated | SwapState::PreimageRevealed | SwapState::SpendConfirming => {
                false
            }
            SwapState::Succeeded
            | SwapState::FailedOffchain
            | SwapState::FailedTimeout
            | SwapState::FailedSweepTimeout
            | SwapState::FailedInsufficientValue => true,
        }
    }

    /// Whether the preimage may leave the process (pushed to the server, put in a sweep) when
    /// this state is the stored one. True from the reveal on; false before it and in the failure
    /// states reached before it.
    pub fn preimage_may_leave(self) -> bool {
        match self {
            SwapState::PreimageRevealed
            | SwapState::SpendConfirming
            | SwapState::Succeeded
            | SwapState::FailedSweepTimeout => true,
            SwapState::Initiated
            | SwapState::FailedOffchain
            | SwapState::FailedTimeout
            | SwapState::FailedInsufficientValue => false,
        }
    }
}

/// Which of the swap's two invoices a payment is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentKind {
    /// The swap invoice (hash = swap hash), held by the server until it learns the preimage.
    Swap,
    /// The prepay ("no-show") invoice, settled by the server right away.
    Prepay,
}

/// Why lnd gave up on a payment; lnd's `PaymentFailureReason`, codes included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentFailureReason {
    /// Code 1: the payment timed out.
    Timeout,
    /// Code 2: no route was found.
    NoRoute,
    /// Code 3: an unexpected error.
    Error,
    /// Code 4: the recipient rejected the payment details.
    IncorrectPaymentDetails,
    /// Code 5: not enough outbound balance.
    InsufficientBalance,
    /// Code 6: the payment was cancelled.
    Canceled,
}

impl PaymentFailureReason {
    /// lnd's numeric value, also used in Loop's `RouteCancel.failure`.
    pub fn code(self) -> u8 {
        match self {
            PaymentFailureReason::Timeout => 1,
            PaymentFailureReason::NoRoute => 2,
            PaymentFailureReason::Error => 3,
            PaymentFailureReason::IncorrectPaymentDetails => 4,
            PaymentFailureReason::InsufficientBalance => 5,
            PaymentFailureReason::Canceled => 6,
        }
    }
}

/// What is known about one of the two payments. Results only move forward:
/// `NotDispatched → InFlight → Succeeded | Failed`; a final result never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PaymentStatus {
    /// No result seen yet.
    #[default]
    NotDispatched,
    /// lnd is trying.
    InFlight,
    /// Settled: what left our node (invoice amount) and the routing fee on top.
    Succeeded {
        /// The amount the recipient received.
        amount: Sat,
        /// The routing fee paid on top.
        routing_fee: Sat,
    },
    /// lnd gave up for good (any retry policy is the driver's and is over).
    Failed {
        /// lnd's reason.
        reason: PaymentFailureReason,
    },
}

impl PaymentStatus {
    /// Whether lnd has a final result.
    pub fn is_final(self) -> bool {
        match self {
            PaymentStatus::NotDispatched | PaymentStatus::InFlight => false,
            PaymentStatus::Succeeded { .. } | PaymentStatus::Failed { .. } => true,
        }
    }

    /// Whether the payment settled.
    pub fn is_succeeded(self) -> bool {
        match self {
            PaymentStatus::Succeeded { .. } => true,
            PaymentStatus::NotDispatched
            | PaymentStatus::InFlight
            | PaymentStatus::Failed { .. } => false,
        }
    }

    /// (amount, routing fee) actually paid; zero unless settled.
    fn paid(self) -> (Sat, Sat) {
        match self {
            PaymentStatus::Succeeded {
                amount,
                routing_fee,
            } => (amount, routing_fee),
            PaymentStatus::NotDispatched
            | PaymentStatus::InFlight
            | PaymentStatus::Failed { .. } => (Sat::ZERO, Sat::ZERO),
        }
    }
}

/// The HTLC output the swap relies on: the first output paying exactly our script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HtlcOutput {
    /// Where it is.
    pub outpoint: OutPoint,
    /// What it pays.
    pub value: Sat,
    /// The block it confirmed in; `None` after a reorg took it out (only kept after the reveal,
    /// when the swap keeps sweeping it regardless).
    pub conf_height: Option<BlockHeight>,
}

/// Which branch of the HTLC a confirmed spend used, read from its witness by the driver
/// (v3: 1 or 4 witness elements ⇒ success, 3 ⇒ timeout; any other shape ⇒ success if an element
/// is the preimage, else timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpendPath {
    /// Our sweep, through the MuSig2 key path or the success leaf.
    Success {
        /// What the sweep paid to our destination for this HTLC (our share, when batched).
        swept_value: Sat,
    },
    /// The server's timeout leaf.
    Timeout,
}

/// A confirmed transaction spending the HTLC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HtlcSpend {
    /// The spending transaction.
    pub txid: Txid,
    /// The block it confirmed in.
    pub height: BlockHeight,
    /// Confirmations seen so far (≥ 1).
    pub confirmations: u32,
    /// The branch it used.
    pub path: SpendPath,
}

/// Why publishing a sweep failed, as the driver reports it. Recorded for operators; the next
/// block retries regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SweepFailure {
    /// The mempool refused it (for example a replacement whose fee did not rise).
    Rejected,
    /// Under the miner-fee cap the sweep could not pay the minimum relay fee. No longer
    /// produced (a sweep now always goes out at least at the relay floor, and the reveal waits
    /// for a fee that fits the cap); kept because stored progress may name it.
    FeeCapBelowRelayFee,
    /// Neither the cooperative nor the script-path signature could be made.
    SigningFailed,
    /// lnd or the chain backend did not answer.
    BackendUnavailable,
}

/// What the swap cost, from the recorded payments and spend. Positive `server_sat` is what the
/// server earned; it goes negative only if the server failed to collect (e.g. the swap payment
/// failed after our sweep took the HTLC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SwapCosts {
    /// Prepay + swap invoice paid − amount received on chain (the amount only on success).
    pub server_sat: i64,
    /// HTLC value − what our sweep paid us, on success; zero otherwise.
    pub onchain: Sat,
    /// Routing fees of both payments.
    pub offchain: Sat,
}

/// Everything a swap has learned, persisted together with its state after every step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SwapProgress {
    /// The state; its code is what the store indexes.
    pub state: SwapState,
    /// The last best height the driver reported.
    pub best_height: Option<BlockHeight>,
    /// The swap invoice payment.
    pub swap_payment: PaymentStatus,
    /// The prepay invoice payment.
    pub prepay_payment: PaymentStatus,
    /// The HTLC output, once one paying our script confirmed.
    pub htlc: Option<HtlcOutput>,
    /// The height at which the swap entered `PreimageRevealed` the first time.
    pub revealed_at: Option<BlockHeight>,
    /// The confirmed spend of the HTLC, if any.
    pub spend: Option<HtlcSpend>,
    /// Whether the server acknowledged a preimage push.
    pub preimage_push_acked: bool,
    /// Sweep publications requested (one per block after the reveal).
    pub sweeps_requested: u32,
    /// Sweep publications that failed.
    pub sweep_failures: u32,
    /// The last sweep failure.
    pub last_sweep_failure: Option<SweepFailure>,
}

/// The stored state does not allow the preimage to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the preimage may not leave in state {0:?}: the HTLC has not been accepted for reveal")]
pub struct PreimageLocked(pub SwapState);

impl SwapProgress {
    /// A freshly created swap: `Initiated`, nothing learned. Persist it with the contract and the
    /// preimage, then feed `Input::Resumed` to start it.
    pub fn new() -> SwapProgress {
        SwapProgress {
            state: SwapState::Initiated,
            best_height: None,
            swap_payment: PaymentStatus::NotDispatched,
            prepay_payment: PaymentStatus::NotDispatched,
            htlc: None,
            revealed_at: None,
            spend: None,
            preimage_push_acked: false,
            sweeps_requested: 0,
            sweep_failures: 0,
            last_sweep_failure: None,
        }
    }

    /// The recorded status of one payment.
    pub fn payment(&self, kind: PaymentKind) -> PaymentStatus {
        match kind {
            PaymentKind::Swap => self.swap_payment,
            PaymentKind::Prepay => self.prepay_payment,
        }
    }

    /// The one gate for the preimage: the driver calls it with the progress it loaded from (or
    /// just wrote to) the store, and only gets the bytes when that state allows them to leave.
    pub fn release_preimage<'p>(
        &self,
        preimage: &'p Preimage,
    ) -> Result<&'p [u8; 32], PreimageLocked> {
        if self.state.preimage_may_leave() {
            Ok(preimage.expose_secret())
        } else {
            Err(PreimageLocked(self.state))
        }
    }

    /// The swap's costs from what has been recorded so far; final once the state is terminal
    /// and both payments are final.
    pub fn costs(&self) -> SwapCosts {
        let (swap_amount, swap_fee) = self.swap_payment.paid();
        let (prepay_amount, prepay_fee) = self.prepay_payment.paid();
        // On-chain money reached us only if our own sweep is the final spend.
        let swept = if let (
            SwapState::Succeeded,
            Some(HtlcSpend {
                path: SpendPath::Success { swept_value },
                ..
            }),
            Some(htlc),
        ) = (self.state, self.spend, self.htlc)
        {
            Some((htlc.value, swept_value))
        } else {
            None
        };
        // What the server paid on chain is what we swept from: an HTLC worth more than the
        // amount (a server that overpays) is money received, not a lower miner fee.
        let received = match swept {
            Some((value, _)) => value,
            None => Sat::ZERO,
        };
        let paid = i128::from(swap_amount.0) + i128::from(prepay_amount.0);
        let server = paid - i128::from(received.0);
        SwapCosts {
            server_sat: i64::try_from(server).unwrap_or(if server < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            onchain: swept.map(|(value, out)| value - out).unwrap_or(Sat::ZERO),
            offchain: swap_fee + prepay_fee,
        }
    }
}

impl Default for SwapProgress {
    fn default() -> SwapProgress {
        SwapProgress::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_never_collide() {
        let mut seen = std::collections::BTreeSet::new();
        for s in SwapState::ALL {
            assert_eq!(SwapState::from_code(s.code()), Ok(s));
            assert!(seen.insert(s.code()), "code {} used twice", s.code());
        }
        assert_eq!(SwapState::from_code(7), Err(UnknownStateCode(7)));
        assert_eq!(SwapState::from_code(9), Err(UnknownStateCode(9)));
    }

    #[test]
    fn codes_are_the_published_ones() {
        // Changing this table breaks every stored swap: add states, never renumber.
        let expected = [
            ("Initiated", 0),
            ("PreimageRevealed", 1),
            ("Succeeded", 2),
            ("FailedOffchain", 3),
            ("FailedTimeout", 4),
            ("FailedSweepTimeout", 5),
            ("FailedInsufficientValue", 6),
            ("SpendConfirming", 8),
        ];
        let actual: Vec<(&str, u16)> = SwapState::ALL
            .iter()
            .map(|s| (s.as_str(), s.code()))
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn preimage_gate_follows_the_state() {
        let p = Preimage::from_bytes([9; 32]);
        let mut progress = SwapProgress::new();
        assert_eq!(
            progress.release_preimage(&p),
            Err(PreimageLocked(SwapState::Initiated))
        );
        progress.state = SwapState::PreimageRevealed;
        assert_eq!(progress.release_preimage(&p), Ok(&[9; 32]));
        progress.state = SwapState::FailedTimeout;
        assert!(progress.release_preimage(&p).is_err());
    }
}
