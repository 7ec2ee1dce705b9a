//! The Loop In contract: everything agreed with the server when the swap was created.
//!
//! Roles are those of Loop's Loop In (`loop-in-protocol.md` §3): sluice is the HTLC *sender*
//! (it funds the HTLC from lnd's wallet and may take it back through the timeout leaf from the
//! expiry on), the server is the *receiver* (it pays sluice's invoice, which reveals the
//! preimage, and claims the HTLC). Like [`crate::swap::LoopOutContract`] the contract is
//! validated once and never changes; the two secrets (the preimage, which lnd holds in the
//! swap invoice, and the per-swap internal key revealed by `PushKey`) live outside it.

use std::fmt;

use bitcoin::ScriptBuf;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};

use crate::chain::fees::miner_fee_bound;
use crate::domain::{BlockHeight, Sat, SwapHash};
use crate::swap::KeyLocator;

/// The server's expiry must leave at least this many blocks after the current height (Loop's
/// `MinLoopInExpiryDelta`).
pub const MIN_EXPIRY_DELTA: u32 = 100;

/// The server's expiry may leave at most this many blocks after the current height (Loop's
/// `MaxLoopInAcceptDelta`): a longer lock-up of our coins is refused.
pub const MAX_EXPIRY_DELTA: u32 = 1_500;

/// The HTLC is funded only while at least this many blocks are left before the expiry (Loop's
/// `MinLoopInPublishDelta`); later, the swap fails without spending anything.
pub const MIN_PUBLISH_DELTA: u32 = 10;

/// The confirmation target of the HTLC funding when none is asked (Loop's
/// `DefaultHtlcConfTarget`).
pub const DEFAULT_HTLC_CONF_TARGET: u32 = 6;

/// The weight the funding fee is estimated for: one taproot key-spend input, the P2TR HTLC
/// output and a P2TR change output (lnd may select more inputs; the fee actually paid is
/// recorded from the published transaction).
pub const FUNDING_WEIGHT_ESTIMATE: bitcoin::Weight =
    bitcoin::Weight::from_wu(4 * (11 + 58 + 43 + 43) + 2 + 66);

/// The lowest confirmation target accepted for the funding (Loop's `minConfTarget`).
pub const MIN_HTLC_CONF_TARGET: u32 = 2;

/// The confirmation target of the timeout sweep (Loop's `TimeoutTxConfTarget`).
pub const TIMEOUT_SWEEP_CONF_TARGET: u32 = 2;

/// Expiry of the swap invoice: 365 days, as Loop.
pub const SWAP_INVOICE_EXPIRY_SECS: u64 = 31_536_000;

/// The per-swap MuSig2 internal key sluice reveals with `PushKey` once the server has paid.
/// With it the server can sign the HTLC's key path alone, so its bytes never reach a log line
/// (`Debug` prints `InternalKey(..)`) and they leave the process only through
/// [`crate::swap::loop_in::LoopInProgress::release_internal_key`].
#[derive(Clone, PartialEq, Eq)]
pub struct InternalKey([u8; 32]);

impl InternalKey {
    /// Wraps 32 secret bytes (from a CSPRNG, or loaded from the store). `None` if the bytes are
    /// not a valid secp256k1 secret key (zero or above the group order).
    pub fn from_bytes(bytes: [u8; 32]) -> Option<InternalKey> {
        SecretKey::from_slice(&bytes)
            .ok()
            .map(|_| InternalKey(bytes))
    }

    /// The 33-byte compressed public key sent as `sender_internal_pubkey`.
    pub fn public_key(&self) -> [u8; 33] {
        match SecretKey::from_slice(&self.0) {
            Ok(sk) => PublicKey::from_secret_key(&Secp256k1::signing_only(), &sk).serialize(),
            // `from_bytes` only admits valid secret keys.
            Err(_) => [0; 33],
        }
    }

    /// The secret bytes. Only the store (to persist them) and the key gate should call this.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalKey(..)")
    }
}

/// The fee ceilings the operator accepted for a Loop In.
///
/// `max_swap_fee` is checked against the quote before anything is created and then fixed by the
/// invoice amount (`amount − swap_fee`): the server cannot take more. `max_miner_fee` bounds
/// the HTLC funding (the funding waits, and finally fails without spending, while lnd's fee
/// estimate for it is higher) and, separately, every timeout sweep (capped at it, never above).
/// Loop stores `max_miner_fee` but enforces neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoopInLimits {
    /// Most the server may keep of the amount.
    pub max_swap_fee: Sat,
    /// Most the funding transaction may pay miners, and most a timeout sweep may pay.
    pub max_miner_fee: Sat,
}

impl LoopInLimits {
    /// The most a Loop In with these limits can cost: the funding at its cap, plus the larger of
    /// the server's fee (success) and a timeout sweep at its bound (the server never paid).
    pub fn worst_case(&self) -> Sat {
        self.max_miner_fee + self.max_swap_fee.max(miner_fee_bound(self.max_miner_fee))
    }
}

/// The fields of a Loop In contract, as gathered by the swap creator (quote, server response,
/// derived keys, locally computed HTLC script). [`LoopInContract::new`] validates them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoopInContractTerms {
    /// SHA256 of the preimage; the swap invoice's payment hash.
    pub swap_hash: SwapHash,
    /// The HTLC value sluice funds.
    pub amount: Sat,
    /// The server's fee from the quote; the swap invoice asks for `amount − swap_fee`.
    pub swap_fee: Sat,
    /// Absolute height of the HTLC's timeout leaf, chosen by the server.
    pub expiry: BlockHeight,
    /// Best height when the swap was created; the height hint for chain watches.
    pub initiation_height: BlockHeight,
    /// Confirmation target for the funding transaction's fee.
    pub htlc_conf_target: u32,
    /// Confirmations that make a spend of the HTLC final.
    pub sweep_finality_confirmations: u32,
    /// The operator's fee ceilings.
    pub limits: LoopInLimits,
    /// The swap invoice sluice created (normal invoice, our preimage, 365 days, private).
    pub swap_invoice: String,
    /// The peer the server was asked to pay through, if any (a request it may ignore).
    pub last_hop: Option<[u8; 33]>,
    /// The operator's label.
    pub label: String,
    /// Who started the swap.
    pub initiator: String,
    /// Loop protocol version, fixed for the swap's life (11).
    pub protocol_version: u32,
    /// Where lnd keeps sluice's script key (timeout leaf).
    pub sender_key_locator: KeyLocator,
    /// sluice's 33-byte script key (timeout leaf).
    pub sender_key: [u8; 33],
    /// The server's 33-byte script key (success leaf).
    pub receiver_key: [u8; 33],
    /// sluice's 33-byte per-swap MuSig2 internal key.
    pub sender_internal_key: [u8; 33],
    /// The server's 33-byte MuSig2 internal key.
    pub receiver_internal_key: [u8; 33],
    /// The HTLC output script, computed locally from the keys, the hash and the expiry.
    pub htlc_pk_script: ScriptBuf,
}

/// Why a set of Loop In terms was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopInContractError {
    /// The swap amount is zero.
    #[error("amount is 0 sat")]
    ZeroAmount,
    /// The fee takes the whole amount: the invoice would be for nothing.
    #[error("swap fee {fee} is not below the amount {amount}: the invoice would be for nothing")]
    FeeNotBelowAmount {
        /// The fee.
        fee: Sat,
        /// The amount.
        amount: Sat,
    },
    /// The fee is above the operator's ceiling.
    #[error("swap fee {fee} is above max_swap_fee {max}")]
    FeeAboveLimit {
        /// The fee.
        fee: Sat,
        /// The ceiling.
        max: Sat,
    },
    /// The expiry leaves no block in which the HTLC may be funded.
    #[error(
        "expiry {expiry} leaves no block to fund the HTLC: it must be at least initiation height \
         {initiation_height} + {MIN_PUBLISH_DELTA}"
    )]
    NoPublishWindow {
        /// The contract's expiry.
        expiry: BlockHeight,
        /// The contract's initiation height.
        initiation_height: BlockHeight,
    },
    /// A spend with zero confirmations is not an outcome.
    #[error("sweep_finality_confirmations is 0: set it to at least 1 (default 3)")]
    NoFinalityConfirmations,
    /// There is no HTLC script to watch.
    #[error("htlc_pk_script is empty: compute the HTLC script before building the contract")]
    EmptyHtlcScript,
}

/// A validated, immutable Loop In contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoopInContract {
    terms: LoopInContractTerms,
}

impl LoopInContract {
    /// Validates the terms: a non-zero amount, a fee below it and within `max_swap_fee`, a
    /// funding window before the expiry, finality confirmations and an HTLC script.
    pub fn new(terms: LoopInContractTerms) -> Result<LoopInContract, LoopInContractError> {
        if terms.amount == Sat::ZERO {
            return Err(LoopInContractError::ZeroAmount);
        }
        if terms.swap_fee >= terms.amount {
            return Err(LoopInContractError::FeeNotBelowAmount {
                fee: terms.swap_fee,
                amount: terms.amount,
            });
        }
        if terms.swap_fee > terms.limits.max_swap_fee {
            return Err(LoopInContractError::FeeAboveLimit {
                fee: terms.swap_fee,
                max: terms.limits.max_swap_fee,
            });
        }
        if u64::from(terms.expiry.0)
            < u64::from(terms.initiation_height.0) + u64::from(MIN_PUBLISH_DELTA)
        {
            return Err(LoopInContractError::NoPublishWindow {
                expiry: terms.expiry,
                initiation_height: terms.initiation_height,
            });
        }
        if terms.sweep_finality_confirmations == 0 {
            return Err(LoopInContractError::NoFinalityConfirmations);
        }
        if terms.htlc_pk_script.is_empty() {
            return Err(LoopInContractError::EmptyHtlcScript);
        }
        Ok(LoopInContract { terms })
    }

    /// Every field of the contract.
    pub fn terms(&self) -> &LoopInContractTerms {
        &self.terms
    }

    /// What the swap invoice asks for: `amount − swap_fee` (validation keeps it positive).
    pub fn invoice_amount(&self) -> Sat {
        self.terms.amount.saturating_sub(self.terms.swap_fee)
    }

    /// Blocks from `height` until the expiry (zero at or past it).
    pub fn blocks_left(&self, height: BlockHeight) -> u32 {
        self.terms.expiry.0.saturating_sub(height.0)
    }

    /// Whether the HTLC may still be funded at `height`: at least [`MIN_PUBLISH_DELTA`] blocks
    /// left.
    pub fn may_publish_at(&self, height: BlockHeight) -> bool {
        self.blocks_left(height) >= MIN_PUBLISH_DELTA
    }

    /// Whether the timeout leaf can be spent in a block after `height` (lock time = height ≥
    /// expiry).
    pub fn expired_at(&self, height: BlockHeight) -> bool {
        height >= self.terms.expiry
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod fixtures {
    use super::*;
    use crate::swap::{Preimage, SWAP_KEY_FAMILY};

    /// A valid Loop In: amount 500 000, fee 1 500, expiry 1 200, initiation 1 000, finality 3,
    /// max miner fee 20 000.
    pub(crate) fn terms() -> LoopInContractTerms {
        LoopInContractTerms {
            swap_hash: preimage().swap_hash(),
            amount: Sat(500_000),
            swap_fee: Sat(1_500),
            expiry: BlockHeight(1_200),
            initiation_height: BlockHeight(1_000),
            htlc_conf_target: DEFAULT_HTLC_CONF_TARGET,
            sweep_finality_confirmations: 3,
            limits: LoopInLimits {
                max_swap_fee: Sat(2_000),
                max_miner_fee: Sat(20_000),
            },
            swap_invoice: "lnbcrt1loopin".to_owned(),
            last_hop: None,
            label: "test".to_owned(),
            initiator: "unit-test".to_owned(),
            protocol_version: 11,
            sender_key_locator: KeyLocator {
                family: SWAP_KEY_FAMILY,
                index: 7,
            },
            sender_key: [2; 33],
            receiver_key: [3; 33],
            sender_internal_key: [4; 33],
            receiver_internal_key: [5; 33],
            htlc_pk_script: ScriptBuf::from_bytes(vec![0x51, 0x20, 0xcd]),
        }
    }

    pub(crate) fn preimage() -> Preimage {
        Preimage::from_bytes([24; 32])
    }

    pub(crate) fn contract() -> LoopInContract {
        LoopInContract::new(terms()).unwrap()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn internal_key_hides_its_bytes_and_refuses_invalid_scalars() {
        let k = InternalKey::from_bytes([0xab; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "InternalKey(..)");
        assert!(InternalKey::from_bytes([0; 32]).is_none());
        assert!(InternalKey::from_bytes([0xff; 32]).is_none());
        let mut one = [0u8; 32];
        one[31] = 1;
        // 1·G
        assert_eq!(
            hex::encode(InternalKey::from_bytes(one).unwrap().public_key()),
            "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        );
    }

    #[test]
    fn validation_rejects_each_bad_field() {
        let mut t = terms();
        t.amount = Sat::ZERO;
        assert_eq!(LoopInContract::new(t), Err(LoopInContractError::ZeroAmount));
        let mut t = terms();
        t.swap_fee = t.amount;
        t.limits.max_swap_fee = t.amount;
        assert!(matches!(
            LoopInContract::new(t),
            Err(LoopInContractError::FeeNotBelowAmount { .. })
        ));
        let mut t = terms();
        t.swap_fee = Sat(2_001);
        assert!(matches!(
            LoopInContract::new(t),
            Err(LoopInContractError::FeeAboveLimit { .. })
        ));
        let mut t = terms();
        t.expiry = BlockHeight(1_009);
        assert!(matches!(
            LoopInContract::new(t),
            Err(LoopInContractError::NoPublishWindow { .. })
        ));
        let mut t = terms();
        t.expiry = BlockHeight(1_010);
        assert!(LoopInContract::new(t).is_ok());
        let mut t = terms();
        t.sweep_finality_confirmations = 0;
        assert_eq!(
            LoopInContract::new(t),
            Err(LoopInContractError::NoFinalityConfirmations)
        );
        let mut t = terms();
        t.htlc_pk_script = ScriptBuf::new();
        assert_eq!(
            LoopInContract::new(t),
            Err(LoopInContractError::EmptyHtlcScript)
        );
    }

    #[test]
    fn invoice_amount_and_windows() {
        let c = contract();
        assert_eq!(c.invoice_amount(), Sat(498_500));
        assert!(c.may_publish_at(BlockHeight(1_190)));
        assert!(!c.may_publish_at(BlockHeight(1_191)));
        assert!(!c.expired_at(BlockHeight(1_199)));
        assert!(c.expired_at(BlockHeight(1_200)));
    }

    #[test]
    fn worst_case_covers_funding_plus_the_larger_of_fee_and_sweep() {
        let l = LoopInLimits {
            max_swap_fee: Sat(2_000),
            max_miner_fee: Sat(20_000),
        };
        assert_eq!(l.worst_case(), Sat(40_000));
        let l = LoopInLimits {
            max_swap_fee: Sat(50_000),
            max_miner_fee: Sat(20_000),
        };
        assert_eq!(l.worst_case(), Sat(70_000));
    }
}
