//! A Loop In's state (a stable integer code) and everything learned so far
//! ([`LoopInProgress`]).
//!
//! The codes are persisted next to the swap's type (a Loop In code means nothing as a Loop Out
//! code): they never move and are never reused. Where Loop's own database has a Loop In state
//! (`loopdb/swapstate.go`), the code is Loop's, so an operator can read both side by side; codes
//! from 14 on are sluice's own.

use bitcoin::{OutPoint, Txid};

use super::contract::InternalKey;
use crate::domain::{BlockHeight, Sat};
use crate::swap::HtlcOutput;

/// Where a Loop In stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoopInState {
    /// Code 0. The contract is stored; nothing is spent. Waiting for a funding fee estimate
    /// within `max_miner_fee` while at least 10 blocks are left before the expiry.
    Initiated,
    /// Code 2. The server paid our invoice and either its claim of the HTLC is final or the
    /// expiry passed. Terminal.
    Succeeded,
    /// Code 4. Our timeout sweep took the HTLC back and is final; the swap invoice is cancelled.
    /// Terminal.
    FailedTimeout,
    /// Code 8. The funding intent is saved (before lnd is asked to pay, so a crash can never
    /// fund twice); waiting for the funding transaction to confirm.
    HtlcPublished,
    /// Code 9. The server paid the swap invoice: the internal key is pushed until the server
    /// acknowledges it, and no timeout sweep is published any more.
    InvoiceSettled,
    /// Code 10. The confirmed output paying our script does not pay exactly the amount; the
    /// swap waits for the expiry and takes it back (or the server pays anyway).
    IncorrectHtlcAmount,
    /// Code 12. lnd's wallet did not fund the HTLC (it refused, or after a crash it holds no
    /// transaction paying the script); nothing was spent. Terminal.
    FailedFunding,
    /// Code 13. A wrong-value HTLC was taken back through the timeout leaf. Terminal.
    FailedIncorrectHtlcAmtSwept,
    /// Code 14. The HTLC paying exactly the amount confirmed; waiting for the server to pay
    /// (or for the expiry).
    HtlcConfirmed,
    /// Code 15. The funding never went out: fewer than 10 blocks were left before the expiry
    /// (the fee estimate stayed above `max_miner_fee` until then). Nothing was spent. Terminal.
    FailedNotPublished,
    /// Code 16. The expiry passed unpaid: a timeout sweep (capped at `max_miner_fee`) is
    /// published every block until one is final.
    TimeoutSweeping,
}

/// Why a stored state code was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown loop-in state code {0}: the store was written by a newer sluice; upgrade sluice \
     before resuming this swap"
)]
pub struct UnknownLoopInStateCode(pub u16);

impl LoopInState {
    /// Every state, in code order.
    pub const ALL: [LoopInState; 11] = [
        LoopInState::Initiated,
        LoopInState::Succeeded,
        LoopInState::FailedTimeout,
        LoopInState::HtlcPublished,
        LoopInState::InvoiceSettled,
        LoopInState::IncorrectHtlcAmount,
        LoopInState::FailedFunding,
        LoopInState::FailedIncorrectHtlcAmtSwept,
        LoopInState::HtlcConfirmed,
        LoopInState::FailedNotPublished,
        LoopInState::TimeoutSweeping,
    ];

    /// The persisted code. Never change a value, never reuse one.
    pub fn code(self) -> u16 {
        match self {
            LoopInState::Initiated => 0,
            LoopInState::Succeeded => 2,
            LoopInState::FailedTimeout => 4,
            LoopInState::HtlcPublished => 8,
            LoopInState::InvoiceSettled => 9,
            LoopInState::IncorrectHtlcAmount => 10,
            LoopInState::FailedFunding => 12,
            LoopInState::FailedIncorrectHtlcAmtSwept => 13,
            LoopInState::HtlcConfirmed => 14,
            LoopInState::FailedNotPublished => 15,
            LoopInState::TimeoutSweeping => 16,
        }
    }

    /// The state a persisted code stands for.
    pub fn from_code(code: u16) -> Result<LoopInState, UnknownLoopInStateCode> {
        LoopInState::ALL
            .into_iter()
            .find(|s| s.code() == code)
            .ok_or(UnknownLoopInStateCode(code))
    }

    /// The name used in logs, the API and the diagram.
    pub fn as_str(self) -> &'static str {
        match self {
            LoopInState::Initiated => "Initiated",
            LoopInState::Succeeded => "Succeeded",
            LoopInState::FailedTimeout => "FailedTimeout",
            LoopInState::HtlcPublished => "HtlcPublished",
            LoopInState::InvoiceSettled => "InvoiceSettled",
            LoopInState::IncorrectHtlcAmount => "IncorrectHtlcAmount",
            LoopInState::FailedFunding => "FailedFunding",
            LoopInState::FailedIncorrectHtlcAmtSwept => "FailedIncorrectHtlcAmtSwept",
            LoopInState::HtlcConfirmed => "HtlcConfirmed",
            LoopInState::FailedNotPublished => "FailedNotPublished",
            LoopInState::TimeoutSweeping => "TimeoutSweeping",
        }
    }

    /// One line for the generated documentation.
    pub fn summary(self) -> &'static str {
        match self {
            LoopInState::Initiated => "contract stored, nothing spent; funding when the fee fits",
            LoopInState::Succeeded => "invoice paid; the server's claim is final or expiry passed",
            LoopInState::FailedTimeout => "our timeout sweep took the HTLC back; invoice cancelled",
            LoopInState::HtlcPublished => {
                "funding intent saved (never funded twice); awaiting conf"
            }
            LoopInState::InvoiceSettled => "server paid: push the internal key, never sweep back",
            LoopInState::IncorrectHtlcAmount => "confirmed output ≠ amount: wait for the expiry",
            LoopInState::FailedFunding => "the wallet did not fund the HTLC; nothing spent",
            LoopInState::FailedIncorrectHtlcAmtSwept => "wrong-value HTLC taken back",
            LoopInState::HtlcConfirmed => "HTLC = amount confirmed; waiting for the server to pay",
            LoopInState::FailedNotPublished => "too close to the expiry to fund; nothing spent",
            LoopInState::TimeoutSweeping => "expired unpaid: timeout sweep every block, capped",
        }
    }

    /// Whether the swap is over: no input changes the state or produces actions any more.
    pub fn is_terminal(self) -> bool {
        match self {
            LoopInState::Initiated
            | LoopInState::HtlcPublished
            | LoopInState::InvoiceSettled
            | LoopInState::IncorrectHtlcAmount
            | LoopInState::HtlcConfirmed
            | LoopInState::TimeoutSweeping => false,
            LoopInState::Succeeded
            | LoopInState::FailedTimeout
            | LoopInState::FailedFunding
            | LoopInState::FailedIncorrectHtlcAmtSwept
            | LoopInState::FailedNotPublished => true,
        }
    }

    /// Whether the internal key may leave the process in this state (given the invoice is
    /// recorded settled, which [`LoopInProgress::release_internal_key`] checks as well).
    pub fn internal_key_may_leave(self) -> bool {
        match self {
            LoopInState::InvoiceSettled | LoopInState::Succeeded => true,
            LoopInState::Initiated
            | LoopInState::FailedTimeout
            | LoopInState::HtlcPublished
            | LoopInState::IncorrectHtlcAmount
            | LoopInState::FailedFunding
            | LoopInState::FailedIncorrectHtlcAmtSwept
            | LoopInState::HtlcConfirmed
            | LoopInState::FailedNotPublished
            | LoopInState::TimeoutSweeping => false,
        }
    }
}

/// What lnd says of the swap invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InvoiceStatus {
    /// Open (or not reported yet).
    #[default]
    Open,
    /// Paid in full and settled: the server learned the preimage.
    Settled {
        /// What the server paid (it may pay more than asked).
        amount_paid: Sat,
    },
    /// Cancelled (by sluice after its timeout sweep, or by hand).
    Canceled,
}

/// The funding transaction lnd's wallet published for the HTLC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Funding {
    /// Its txid.
    pub txid: Txid,
    /// What it paid miners.
    pub fee: Sat,
}

/// Which branch of the HTLC a confirmed spend used (v3: 1 or 4 witness elements ⇒ the server's
/// claim, 3 ⇒ the timeout leaf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoopInSpendPath {
    /// The server, by key path (after `PushKey`) or success leaf (with the preimage).
    ServerClaim,
    /// Our timeout sweep.
    Timeout {
        /// What the sweep paid back to our wallet.
        swept_value: Sat,
    },
}

/// A confirmed transaction spending the HTLC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoopInSpend {
    /// The spending transaction.
    pub txid: Txid,
    /// The block it confirmed in.
    pub height: BlockHeight,
    /// Confirmations seen so far (≥ 1).
    pub confirmations: u32,
    /// The branch it used.
    pub path: LoopInSpendPath,
}

/// What a Loop In cost. `server_sat` is what the server earned: the HTLC value it kept minus
/// what it paid us (negative if it paid and still lost the HTLC). The node's wallet plus
/// channel balance moves by exactly `−(server_sat + onchain)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LoopInCosts {
    /// HTLC left to the server − invoice amount paid to us.
    pub server_sat: i64,
    /// The funding fee plus, if our timeout sweep is the spend, what it paid miners.
    pub onchain: Sat,
}

/// Everything a Loop In has learned, persisted with its state after every step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoopInProgress {
    /// The state; its code is what the store indexes.
    pub state: LoopInState,
    /// The last best height the driver reported.
    pub best_height: Option<BlockHeight>,
    /// The funding transaction, once lnd reported it.
    pub funding: Option<Funding>,
    /// The output paying our script, once confirmed.
    pub htlc: Option<HtlcOutput>,
    /// The swap invoice.
    pub invoice: InvoiceStatus,
    /// The confirmed spend of the HTLC, if any.
    pub spend: Option<LoopInSpend>,
    /// Whether the server acknowledged `PushKey`.
    pub key_push_acked: bool,
    /// Timeout sweeps requested.
    pub sweeps_requested: u32,
    /// Timeout sweep publications that failed.
    pub sweep_failures: u32,
}

/// The stored progress does not allow the internal key to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the internal key may not leave in state {0:?}: the swap invoice is not settled")]
pub struct InternalKeyLocked(pub LoopInState);

impl LoopInProgress {
    /// A freshly created Loop In: `Initiated`, nothing learned.
    pub fn new() -> LoopInProgress {
        LoopInProgress {
            state: LoopInState::Initiated,
            best_height: None,
            funding: None,
            htlc: None,
            invoice: InvoiceStatus::Open,
            spend: None,
            key_push_acked: false,
            sweeps_requested: 0,
            sweep_failures: 0,
        }
    }

    /// Whether the server has paid the swap invoice.
    pub fn invoice_settled(&self) -> bool {
        matches!(self.invoice, InvoiceStatus::Settled { .. })
    }

    /// The one gate for the internal key: only once the invoice is recorded settled and the
    /// stored state allows it.
    pub fn release_internal_key<'k>(
        &self,
        key: &'k InternalKey,
    ) -> Result<&'k [u8; 32], InternalKeyLocked> {
        if self.invoice_settled() && self.state.internal_key_may_leave() {
            Ok(key.expose_secret())
        } else {
            Err(InternalKeyLocked(self.state))
        }
    }

    /// The swap's costs from what has been recorded; final once the state is terminal.
    pub fn costs(&self, amount: Sat) -> LoopInCosts {
        let funding_fee = self.funding.map_or(Sat::ZERO, |f| f.fee);
        let paid = match self.invoice {
            InvoiceStatus::Settled { amount_paid } => amount_paid,
            InvoiceStatus::Open | InvoiceStatus::Canceled => Sat::ZERO,
        };
        let value = self.htlc.map_or(amount, |h| h.value);
        let funded = self.funding.is_some() || self.htlc.is_some();
        // What came back to the wallet through our timeout sweep, if it is the spend.
        let swept_back = match self.spend {
            Some(LoopInSpend {
                path: LoopInSpendPath::Timeout { swept_value },
                ..
            }) if self.state.is_terminal() => Some(swept_value),
            _ => None,
        };
        let (kept_by_server, sweep_fee) = match swept_back {
            Some(swept) => (Sat::ZERO, value.saturating_sub(swept)),
            None if funded => (value, Sat::ZERO),
            None => (Sat::ZERO, Sat::ZERO),
        };
        let server = i128::from(kept_by_server.0) - i128::from(paid.0);
        LoopInCosts {
            server_sat: i64::try_from(server).unwrap_or(if server < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            onchain: funding_fee + sweep_fee,
        }
    }
}

impl Default for LoopInProgress {
    fn default() -> LoopInProgress {
        LoopInProgress::new()
    }
}

/// An output reported by the chain watch, as recorded.
pub(super) fn htlc_output(outpoint: OutPoint, value: Sat, height: BlockHeight) -> HtlcOutput {
    HtlcOutput {
        outpoint,
        value,
        conf_height: Some(height),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_published_ones() {
        // Changing this table breaks every stored Loop In: add states, never renumber.
        let expected = [
            ("Initiated", 0),
            ("Succeeded", 2),
            ("FailedTimeout", 4),
            ("HtlcPublished", 8),
            ("InvoiceSettled", 9),
            ("IncorrectHtlcAmount", 10),
            ("FailedFunding", 12),
            ("FailedIncorrectHtlcAmtSwept", 13),
            ("HtlcConfirmed", 14),
            ("FailedNotPublished", 15),
            ("TimeoutSweeping", 16),
        ];
        let actual: Vec<(&str, u16)> = LoopInState::ALL
            .iter()
            .map(|s| (s.as_str(), s.code()))
            .collect();
        assert_eq!(actual, expected);
        for s in LoopInState::ALL {
            assert_eq!(LoopInState::from_code(s.code()), Ok(s));
        }
        assert_eq!(
            LoopInState::from_code(1),
            Err(UnknownLoopInStateCode(1)),
            "PreimageRevealed is not a Loop In state"
        );
    }

    #[test]
    fn key_gate_needs_settlement_and_state() {
        let key = InternalKey::from_bytes([7; 32]).unwrap();
        let mut p = LoopInProgress::new();
        p.state = LoopInState::InvoiceSettled;
        assert!(
            p.release_internal_key(&key).is_err(),
            "state without payment"
        );
        p.invoice = InvoiceStatus::Settled {
            amount_paid: Sat(10),
        };
        assert_eq!(p.release_internal_key(&key), Ok(&[7; 32]));
        p.state = LoopInState::TimeoutSweeping;
        assert!(p.release_internal_key(&key).is_err());
    }

    #[test]
    fn costs_follow_the_outcome() {
        use bitcoin::hashes::Hash as _;
        let amount = Sat(100_000);
        let mut p = LoopInProgress::new();
        assert_eq!(p.costs(amount), LoopInCosts::default());
        p.funding = Some(Funding {
            txid: Txid::from_byte_array([1; 32]),
            fee: Sat(700),
        });
        p.htlc = Some(htlc_output(OutPoint::null(), amount, BlockHeight(10)));
        // Paid: the server keeps the HTLC and paid amount − fee.
        p.invoice = InvoiceStatus::Settled {
            amount_paid: Sat(99_000),
        };
        p.state = LoopInState::Succeeded;
        assert_eq!(
            p.costs(amount),
            LoopInCosts {
                server_sat: 1_000,
                onchain: Sat(700)
            }
        );
        // Unpaid and swept back.
        p.invoice = InvoiceStatus::Canceled;
        p.state = LoopInState::FailedTimeout;
        p.spend = Some(LoopInSpend {
            txid: Txid::from_byte_array([2; 32]),
            height: BlockHeight(20),
            confirmations: 3,
            path: LoopInSpendPath::Timeout {
                swept_value: Sat(99_500),
            },
        });
        assert_eq!(
            p.costs(amount),
            LoopInCosts {
                server_sat: 0,
                onchain: Sat(1_200)
            }
        );
    }
}
