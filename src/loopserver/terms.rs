//! The server's terms and prices, and the pure checks of a request against them.

use std::time::Duration;

use super::error::LoopServerError;
use crate::domain::{BlockHeight, Network, Ppm, Sat};

/// The oldest protocol version served: P2TR HTLCs with BIP-327 MuSig2 (`MUSIG2`).
pub const MIN_PROTOCOL_VERSION: i32 = 11;

/// The default `expiry - height` of a Loop In: inside Loop's accepted 100..=1500 blocks with
/// room for a client whose height lags the server's.
pub const LOOP_IN_CLTV_DELTA: u32 = 200;

/// The client's accepted range of a Loop In's `expiry - height` (Loop's
/// `MinLoopInExpiryDelta` and `MaxLoopInAcceptDelta`).
pub const LOOP_IN_CLIENT_CLTV_RANGE: std::ops::RangeInclusive<u32> = 100..=1500;

/// How the server prices and bounds swaps, and what it puts in its invoices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The chain the server's invoices and HTLCs are for.
    pub network: Network,
    /// The smallest swap accepted.
    pub min_swap_amount: Sat,
    /// The largest swap accepted.
    pub max_swap_amount: Sat,
    /// The smallest accepted `expiry - height`.
    pub min_cltv_delta: u32,
    /// The largest accepted `expiry - height`.
    pub max_cltv_delta: u32,
    /// The fixed part of the swap fee.
    pub fee_base: Sat,
    /// The proportional part of the swap fee.
    pub fee_rate: Ppm,
    /// The prepay ("no-show" fee) charged up front; never more than the whole fee.
    pub prepay: Sat,
    /// The final CLTV delta of both invoices, in blocks.
    pub invoice_cltv_delta: u64,
    /// How long both invoices stay payable.
    pub invoice_expiry: Duration,
    /// The smallest Loop In accepted.
    pub loop_in_min_amount: Sat,
    /// The largest Loop In accepted.
    pub loop_in_max_amount: Sat,
    /// The `expiry - height` of a Loop In's HTLC, which the server picks alone (Loop's client
    /// accepts 100..=1500 blocks from its own, possibly older, height).
    pub loop_in_cltv_delta: u32,
}

impl Default for Terms {
    /// Regtest terms in the spirit of Loop's: 10k..5M sat, deltas 30..400 blocks (room for the
    /// client's 20-block reveal margin), a 50 sat + 0.1 % fee and a 1000 sat prepay.
    fn default() -> Self {
        Terms {
            network: Network::Regtest,
            min_swap_amount: Sat(10_000),
            max_swap_amount: Sat(5_000_000),
            min_cltv_delta: 30,
            max_cltv_delta: 400,
            fee_base: Sat(50),
            fee_rate: Ppm(1_000),
            prepay: Sat(1_000),
            invoice_cltv_delta: 40,
            invoice_expiry: Duration::from_secs(3_600),
            loop_in_min_amount: Sat(10_000),
            loop_in_max_amount: Sat(5_000_000),
            loop_in_cltv_delta: LOOP_IN_CLTV_DELTA,
        }
    }
}

/// What the server charges for one amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// The amount quoted for.
    pub amount: Sat,
    /// The whole server fee, prepay included.
    pub swap_fee: Sat,
    /// The part of the fee paid up front.
    pub prepay: Sat,
}

impl Quote {
    /// The swap invoice's honest amount: `amount + swap_fee - prepay`.
    pub fn swap_invoice_amount(&self) -> Sat {
        Sat(self.amount.0 + self.swap_fee.0 - self.prepay.0)
    }
}

/// What the server charges for one Loop In amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InQuote {
    /// The amount quoted for: the HTLC's value.
    pub amount: Sat,
    /// The server's fee; the client's invoice asks `amount - swap_fee`.
    pub swap_fee: Sat,
    /// The `expiry - height` the server will pick.
    pub cltv_delta: u32,
}

impl InQuote {
    /// The amount the client's swap invoice must ask for.
    pub fn invoice_amount(&self) -> Sat {
        self.amount.saturating_sub(self.swap_fee)
    }
}

/// Refuses requests older than protocol 11; newer versions are cumulative and accepted.
pub fn check_protocol(version: i32) -> Result<(), LoopServerError> {
    if version >= MIN_PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(LoopServerError::ProtocolVersion(version))
    }
}

impl Terms {
    /// Refuses an amount outside `[min_swap_amount, max_swap_amount]`.
    pub fn check_amount(&self, amount: Sat) -> Result<(), LoopServerError> {
        if amount < self.min_swap_amount || amount > self.max_swap_amount {
            return Err(LoopServerError::AmountOutsideTerms {
                amount,
                min: self.min_swap_amount,
                max: self.max_swap_amount,
            });
        }
        Ok(())
    }

    /// Refuses an expiry outside `[height + min_cltv_delta, height + max_cltv_delta]`.
    pub fn check_expiry(&self, expiry: i64, height: BlockHeight) -> Result<u32, LoopServerError> {
        let min = height.0.saturating_add(self.min_cltv_delta);
        let max = height.0.saturating_add(self.max_cltv_delta);
        match u32::try_from(expiry) {
            Ok(e) if (min..=max).contains(&e) => Ok(e),
            _ => Err(LoopServerError::ExpiryOutsideTerms {
                expiry,
                height,
                min,
                max,
            }),
        }
    }

    /// Refuses a Loop In amount outside `[loop_in_min_amount, loop_in_max_amount]`.
    pub fn check_in_amount(&self, amount: Sat) -> Result<(), LoopServerError> {
        if amount < self.loop_in_min_amount || amount > self.loop_in_max_amount {
            return Err(LoopServerError::LoopInAmountOutsideTerms {
                amount,
                min: self.loop_in_min_amount,
                max: self.loop_in_max_amount,
            });
        }
        Ok(())
    }

    /// The price of a Loop In of `amount` (the same fee schedule as Loop Out, no prepay); zero
    /// asks for the largest amount. The client's invoice asks `amount - swap_fee`.
    pub fn quote_in(&self, amount: Sat) -> Result<InQuote, LoopServerError> {
        let amount = if amount.0 == 0 {
            self.loop_in_max_amount
        } else {
            amount
        };
        self.check_in_amount(amount)?;
        let swap_fee = self.fee_base + amount.mul_ppm(self.fee_rate);
        if swap_fee >= amount {
            return Err(LoopServerError::LoopInAmountOutsideTerms {
                amount,
                min: Sat(swap_fee.0.saturating_add(1)),
                max: self.loop_in_max_amount,
            });
        }
        Ok(InQuote {
            amount,
            swap_fee,
            cltv_delta: self.loop_in_cltv_delta,
        })
    }

    /// The price of `amount`; zero asks for the largest amount, as Loop's quote does.
    pub fn quote(&self, amount: Sat) -> Result<Quote, LoopServerError> {
        let amount = if amount.0 == 0 {
            self.max_swap_amount
        } else {
            amount
        };
        self.check_amount(amount)?;
        let swap_fee = self.fee_base + amount.mul_ppm(self.fee_rate);
        let prepay = Sat(self.prepay.0.min(swap_fee.0));
        Ok(Quote {
            amount,
            swap_fee,
            prepay,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions_before_musig2_are_refused() {
        assert!(check_protocol(11).is_ok());
        assert!(check_protocol(12).is_ok(), "versions are cumulative");
        let err = check_protocol(10).unwrap_err();
        assert!(err.to_string().contains("MUSIG2 (11)"), "{err}");
        assert_eq!(err.to_status().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn amounts_are_bounded_by_the_terms() {
        let t = Terms::default();
        assert!(t.check_amount(t.min_swap_amount).is_ok());
        assert!(t.check_amount(t.max_swap_amount).is_ok());
        assert!(t.check_amount(Sat(t.min_swap_amount.0 - 1)).is_err());
        assert!(t.check_amount(Sat(t.max_swap_amount.0 + 1)).is_err());
    }

    #[test]
    fn expiry_must_sit_within_the_cltv_deltas() {
        let t = Terms::default();
        let h = BlockHeight(1_000);
        assert_eq!(t.check_expiry(1_030, h).unwrap(), 1_030);
        assert_eq!(t.check_expiry(1_400, h).unwrap(), 1_400);
        for bad in [1_029, 1_401, -1, i64::from(u32::MAX) + 1] {
            let err = t.check_expiry(bad, h).unwrap_err();
            assert!(
                matches!(
                    err,
                    LoopServerError::ExpiryOutsideTerms {
                        min: 1_030,
                        max: 1_400,
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn loop_in_quotes_its_own_amounts_and_the_same_fee() {
        let t = Terms {
            loop_in_min_amount: Sat(20_000),
            loop_in_max_amount: Sat(2_000_000),
            ..Terms::default()
        };
        let q = t.quote_in(Sat(1_000_000)).unwrap();
        assert_eq!(q.swap_fee, Sat(50 + 1_000));
        assert_eq!(q.invoice_amount(), Sat(1_000_000 - 1_050));
        assert_eq!(q.cltv_delta, LOOP_IN_CLTV_DELTA);
        assert_eq!(t.quote_in(Sat(0)).unwrap().amount, Sat(2_000_000));
        for bad in [19_999, 2_000_001] {
            let err = t.quote_in(Sat(bad)).unwrap_err();
            assert!(err.to_string().contains("LoopInTerms"), "{err}");
        }
        assert!(t.check_in_amount(Sat(20_000)).is_ok());
        assert!(LOOP_IN_CLIENT_CLTV_RANGE.contains(&LOOP_IN_CLTV_DELTA));
    }

    #[test]
    fn quote_charges_base_plus_rate_and_a_prepay_within_the_fee() {
        let t = Terms::default();
        let q = t.quote(Sat(1_000_000)).unwrap();
        assert_eq!(q.swap_fee, Sat(50 + 1_000));
        assert_eq!(q.prepay, Sat(1_000));
        assert_eq!(q.swap_invoice_amount(), Sat(1_000_000 + 1_050 - 1_000));

        let max = t.quote(Sat(0)).unwrap();
        assert_eq!(
            max.amount, t.max_swap_amount,
            "zero quotes the largest amount"
        );

        let tiny_fee = Terms {
            fee_base: Sat(10),
            fee_rate: Ppm(0),
            ..Terms::default()
        };
        assert_eq!(tiny_fee.quote(Sat(20_000)).unwrap().prepay, Sat(10));
        assert!(t.quote(Sat(1)).is_err());
    }
}
