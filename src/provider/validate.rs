//! Validation of the server's `NewLoopOutSwap` answer against the contract sluice is
//! building, before anything is stored or paid.
//!
//! It checks everything Loop checks (protocol notes §2.2) and what Loop leaves open: the swap
//! invoice must pay the node that was quoted, must not be about to expire, and must not ask
//! for a final CLTV delta beyond a bound (the payment then also carries a `cltv_limit`), and
//! the amount must be within the server's own terms. Pure: no I/O, time is passed in.

use std::str::FromStr;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use lightning_invoice::{Bolt11Invoice, Currency};

use super::port::{LoopOutTerms, NewLoopOutResponse};
use crate::domain::{Network, Sat, SwapHash};

/// What the answer must match: the request sluice sent, the quote and terms it accepted,
/// and its limits.
#[derive(Debug, Clone)]
pub struct ContractExpectations {
    /// The chain sluice runs on; both invoices must be for it.
    pub network: Network,
    /// The swap hash sluice generated; the swap invoice must be keyed by it.
    pub swap_hash: SwapHash,
    /// The on-chain amount requested.
    pub amount: Sat,
    /// The terms fetched before creating the swap.
    pub terms: LoopOutTerms,
    /// The quote's `swap_payment_dest`: the swap invoice's payee must be this node.
    pub swap_payment_dest: [u8; 33],
    /// Largest acceptable total server fee (swap invoice + prepay − amount).
    pub max_swap_fee: Sat,
    /// Largest acceptable prepayment.
    pub max_prepay: Sat,
    /// Largest acceptable `min_final_cltv_expiry_delta` of the swap invoice.
    pub max_final_cltv_delta: u64,
    /// Both invoices must stay valid at least this long after `now`, so paying can start.
    pub min_invoice_validity: Duration,
    /// The current time, since the unix epoch.
    pub now: Duration,
}

/// The parts of a validated answer the swap engine keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedContract {
    /// The server's HTLC key, checked to be a point on the curve.
    pub sender_key: [u8; 33],
    /// Amount of the swap invoice (msat truncated to sat).
    pub swap_invoice_amount: Sat,
    /// Amount of the prepay invoice (msat truncated to sat).
    pub prepay_amount: Sat,
    /// The total server fee actually charged (0 if the invoices sum below the amount).
    pub swap_fee: Sat,
    /// The swap invoice's payment secret: ownership proof for cancel and MuSig2 calls.
    pub payment_address: [u8; 32],
    /// The swap invoice's final CLTV delta; the payment's `cltv_limit` must allow it.
    pub min_final_cltv_delta: u64,
    /// When the swap invoice expires, since the unix epoch.
    pub swap_invoice_expires_at: Duration,
}

/// Which of the two invoices an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceRole {
    /// The swap invoice.
    Swap,
    /// The prepayment invoice.
    Prepay,
    /// The invoice of an L402 challenge (decoded with the same rules).
    L402Token,
}

impl std::fmt::Display for InvoiceRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvoiceRole::Swap => "swap invoice",
            InvoiceRole::Prepay => "prepay invoice",
            InvoiceRole::L402Token => "L402 token invoice",
        })
    }
}

/// Why the server's answer was refused. Each is a reason not to pay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The requested amount is outside the server's terms.
    #[error("amount {amount} is outside the server's terms [{min}, {max}]")]
    AmountOutsideTerms {
        /// Requested amount.
        amount: Sat,
        /// Terms minimum.
        min: Sat,
        /// Terms maximum.
        max: Sat,
    },
    /// `sender_key` is not 33 bytes.
    #[error("server sender_key is {0} bytes; expected a 33-byte compressed public key")]
    SenderKeyLength(usize),
    /// `sender_key` is 33 bytes but not a point on secp256k1.
    #[error("server sender_key is not a valid secp256k1 point")]
    SenderKeyNotOnCurve,
    /// The invoice does not decode or its signature is invalid.
    #[error("{role} does not decode as a signed BOLT11 invoice: {reason}")]
    InvoiceDecode {
        /// Which invoice.
        role: InvoiceRole,
        /// The decoder's message.
        reason: String,
    },
    /// The invoice is for another chain.
    #[error("{role} is for {found:?}, but sluice runs on {expected}")]
    WrongNetwork {
        /// Which invoice.
        role: InvoiceRole,
        /// Its currency.
        found: Currency,
        /// sluice's network.
        expected: Network,
    },
    /// The invoice has no amount.
    #[error("{role} has no amount")]
    NoAmount {
        /// Which invoice.
        role: InvoiceRole,
    },
    /// The swap invoice is not keyed by the swap hash.
    #[error("swap invoice payment hash {found} is not the swap hash {expected}")]
    WrongPaymentHash {
        /// The invoice's hash (hex).
        found: String,
        /// The swap hash.
        expected: SwapHash,
    },
    /// The swap invoice has no payment secret (BOLT11 makes it optional for old invoices).
    #[error("swap invoice has no payment secret")]
    NoPaymentSecret,
    /// The swap invoice pays another node than the quote named.
    #[error("swap invoice pays node {found}, but the quote named {expected}")]
    WrongDestination {
        /// The invoice's payee (hex).
        found: String,
        /// The quoted node (hex).
        expected: String,
    },
    /// The invoice expires too soon (or already has).
    #[error("{role} expires in {remaining_s} s; at least {required_s} s are required")]
    ExpiresTooSoon {
        /// Which invoice.
        role: InvoiceRole,
        /// Seconds left (0 if expired).
        remaining_s: u64,
        /// Seconds required.
        required_s: u64,
    },
    /// The swap invoice asks for a longer final CLTV delta than allowed.
    #[error("swap invoice min_final_cltv_expiry_delta {found} exceeds the limit {max}")]
    FinalCltvTooLarge {
        /// The invoice's delta.
        found: u64,
        /// The configured bound.
        max: u64,
    },
    /// The total server fee exceeds `max_swap_fee`.
    #[error("swap fee {actual} (swap invoice + prepay − amount) exceeds max_swap_fee {max}")]
    SwapFeeTooHigh {
        /// Fee the invoices charge.
        actual: Sat,
        /// The limit.
        max: Sat,
    },
    /// The prepayment exceeds `max_prepay`.
    #[error("prepay amount {actual} exceeds max_prepay {max}")]
    PrepayTooHigh {
        /// The prepay invoice's amount.
        actual: Sat,
        /// The limit.
        max: Sat,
    },
}

/// The BOLT11 currency of a network. lightning-invoice's own conversion has no arm for
/// testnet4, whose invoices use the testnet prefix.
pub fn currency_of(network: Network) -> Currency {
    match network {
        Network::Mainnet => Currency::Bitcoin,
        Network::Testnet | Network::Testnet4 => Currency::BitcoinTestnet,
        Network::Signet => Currency::Signet,
        Network::Regtest | Network::Simnet => Currency::Regtest,
    }
}

/// Decodes a BOLT11 invoice (signature checked) for `network` that carries an amount.
/// Returns the invoice and its amount in sat (msat truncated).
pub fn decode_invoice(
    invoice: &str,
    network: Network,
    role: InvoiceRole,
) -> Result<(Bolt11Invoice, Sat), ContractError> {
    let parsed =
        Bolt11Invoice::from_str(invoice.trim()).map_err(|e| ContractError::InvoiceDecode {
            role,
            reason: e.to_string(),
        })?;
    if parsed.check_signature().is_err() {
        return Err(ContractError::InvoiceDecode {
            role,
            reason: "invalid signature".to_owned(),
        });
    }
    if parsed.currency() != currency_of(network) {
        return Err(ContractError::WrongNetwork {
            role,
            found: parsed.currency(),
            expected: network,
        });
    }
    let amount_msat = parsed
        .amount_milli_satoshis()
        .filter(|a| *a > 0)
        .ok_or(ContractError::NoAmount { role })?;
    Ok((parsed, Sat(amount_msat / 1000)))
}

fn check_expiry(
    invoice: &Bolt11Invoice,
    role: InvoiceRole,
    exp: &ContractExpectations,
) -> Result<Duration, ContractError> {
    let expires_at = invoice
        .duration_since_epoch()
        .saturating_add(invoice.expiry_time());
    let remaining = expires_at.saturating_sub(exp.now);
    if remaining < exp.min_invoice_validity {
        return Err(ContractError::ExpiresTooSoon {
            role,
            remaining_s: remaining.as_secs(),
            required_s: exp.min_invoice_validity.as_secs(),
        });
    }
    Ok(expires_at)
}

/// Checks the server's answer to `NewLoopOutSwap`; the first failed check is returned.
pub fn validate_loop_out(
    resp: &NewLoopOutResponse,
    exp: &ContractExpectations,
) -> Result<ValidatedContract, ContractError> {
    if exp.amount < exp.terms.min_amount || exp.amount > exp.terms.max_amount {
        return Err(ContractError::AmountOutsideTerms {
            amount: exp.amount,
            min: exp.terms.min_amount,
            max: exp.terms.max_amount,
        });
    }

    let sender_key: [u8; 33] = resp
        .sender_key
        .as_slice()
        .try_into()
        .map_err(|_| ContractError::SenderKeyLength(resp.sender_key.len()))?;
    PublicKey::from_slice(&sender_key).map_err(|_| ContractError::SenderKeyNotOnCurve)?;

    let (swap, swap_amount) = decode_invoice(&resp.swap_invoice, exp.network, InvoiceRole::Swap)?;
    let hash = swap.payment_hash().to_byte_array();
    if hash != exp.swap_hash.0 {
        return Err(ContractError::WrongPaymentHash {
            found: hex::encode(hash),
            expected: exp.swap_hash,
        });
    }
    // lightning-invoice refuses to parse an invoice without a payment secret, so this is a
    // second line of defence should that ever be relaxed.
    let payment_address = swap.payment_secret().0;
    if payment_address == [0u8; 32] {
        return Err(ContractError::NoPaymentSecret);
    }
    let payee = swap.get_payee_pub_key().serialize();
    if payee != exp.swap_payment_dest {
        return Err(ContractError::WrongDestination {
            found: hex::encode(payee),
            expected: hex::encode(exp.swap_payment_dest),
        });
    }
    let swap_invoice_expires_at = check_expiry(&swap, InvoiceRole::Swap, exp)?;
    let min_final_cltv_delta = swap.min_final_cltv_expiry_delta();
    if min_final_cltv_delta > exp.max_final_cltv_delta {
        return Err(ContractError::FinalCltvTooLarge {
            found: min_final_cltv_delta,
            max: exp.max_final_cltv_delta,
        });
    }

    let (prepay, prepay_amount) =
        decode_invoice(&resp.prepay_invoice, exp.network, InvoiceRole::Prepay)?;
    check_expiry(&prepay, InvoiceRole::Prepay, exp)?;

    let charged = u128::from(swap_amount.0) + u128::from(prepay_amount.0);
    let fee = charged.saturating_sub(u128::from(exp.amount.0));
    let swap_fee = Sat(u64::try_from(fee).unwrap_or(u64::MAX));
    if swap_fee > exp.max_swap_fee {
        return Err(ContractError::SwapFeeTooHigh {
            actual: swap_fee,
            max: exp.max_swap_fee,
        });
    }
    if prepay_amount > exp.max_prepay {
        return Err(ContractError::PrepayTooHigh {
            actual: prepay_amount,
            max: exp.max_prepay,
        });
    }

    Ok(ValidatedContract {
        sender_key,
        swap_invoice_amount: swap_amount,
        prepay_amount,
        swap_fee,
        payment_address,
        min_final_cltv_delta,
        swap_invoice_expires_at,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "validate_tests.rs"]
mod tests;
