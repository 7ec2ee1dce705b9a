//! Validation of the server's `NewLoopOutSwap` and `NewLoopInSwap` answers against the
//! contract sluice is building, before anything is stored, paid or funded.
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

use bitcoin::{Amount, Script, Transaction, TxOut, Txid};

use super::port::{LoopInQuote, LoopInTerms, LoopOutTerms, NewLoopInResponse, NewLoopOutResponse};
use crate::chain::{HtlcKeys, HtlcV3};
use crate::domain::{BlockHeight, Network, Sat, SwapHash};
use crate::swap::loop_in::{MAX_EXPIRY_DELTA, MIN_EXPIRY_DELTA};

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

/// Blocks the server's Loop In expiry may exceed `height + quote.cltv_delta` by: the server's
/// height may be a few blocks ahead of the height sluice read before the quote and the probe.
pub const LOOP_IN_EXPIRY_SLACK_BLOCKS: u32 = 10;

/// What a Loop In answer must match: the request sluice sent, the quote and terms it accepted,
/// its limits, and the height it read before asking.
#[derive(Debug, Clone)]
pub struct LoopInExpectations {
    /// The chain sluice runs on.
    pub network: Network,
    /// The swap hash sluice generated.
    pub swap_hash: SwapHash,
    /// The HTLC value.
    pub amount: Sat,
    /// The server's terms fetched before the quote.
    pub terms: LoopInTerms,
    /// The quote the swap was created from.
    pub quote: LoopInQuote,
    /// Largest acceptable server fee.
    pub max_swap_fee: Sat,
    /// sluice's own swap invoice, as handed to the server.
    pub swap_invoice: String,
    /// sluice's script key (timeout leaf).
    pub sender_key: [u8; 33],
    /// sluice's MuSig2 internal key.
    pub sender_internal_key: [u8; 33],
    /// The best height read before the quote.
    pub height: BlockHeight,
}

/// The parts of a validated Loop In answer the engine keeps.
#[derive(Debug, Clone)]
pub struct ValidatedLoopIn {
    /// The server's script key, a point on the curve.
    pub receiver_key: [u8; 33],
    /// The server's MuSig2 internal key, a point on the curve.
    pub receiver_internal_key: [u8; 33],
    /// The HTLC's expiry, within the bounds.
    pub expiry: BlockHeight,
    /// The server's fee, fixed by the invoice amount.
    pub swap_fee: Sat,
    /// The HTLC rebuilt locally from the four keys, the hash and the expiry.
    pub htlc: HtlcV3,
}

impl ValidatedLoopIn {
    /// The one output the funding transaction must create: exactly the amount to the script.
    pub fn funding_output(&self, amount: Sat) -> TxOut {
        TxOut {
            value: Amount::from_sat(amount.0),
            script_pubkey: self.htlc.pk_script(),
        }
    }
}

/// Why a Loop In was refused before anything was stored or funded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopInValidationError {
    /// The amount is outside the server's terms.
    #[error("amount {amount} is outside the server's Loop In terms [{min}, {max}]")]
    AmountOutsideTerms {
        /// Requested amount.
        amount: Sat,
        /// Terms minimum.
        min: Sat,
        /// Terms maximum.
        max: Sat,
    },
    /// The quoted fee is above the operator's ceiling.
    #[error("swap fee {actual} exceeds max_swap_fee {max}")]
    SwapFeeTooHigh {
        /// The quoted fee.
        actual: Sat,
        /// The ceiling.
        max: Sat,
    },
    /// The quoted fee leaves nothing to receive.
    #[error("swap fee {fee} is not below the amount {amount}")]
    FeeNotBelowAmount {
        /// The quoted fee.
        fee: Sat,
        /// The amount.
        amount: Sat,
    },
    /// sluice's own invoice does not ask for `amount − swap fee` with the swap hash: a bug on
    /// sluice's side, caught before the server is trusted with it.
    #[error("{0}")]
    OwnInvoice(String),
    /// A server key has the wrong length.
    #[error("server {field} is {len} bytes; expected a 33-byte compressed public key")]
    KeyLength {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A server key is not on the curve.
    #[error("server {field} is not a valid secp256k1 point")]
    KeyNotOnCurve {
        /// Which field.
        field: &'static str,
    },
    /// The expiry is too close: the server could let it pass before paying, and sluice
    /// would have no time to publish the funding.
    #[error(
        "server expiry {expiry} is less than {min_delta} blocks after height {height}          (Loop's ErrExpiryTooSoon)"
    )]
    ExpiryTooSoon {
        /// The server's expiry.
        expiry: i64,
        /// The height.
        height: BlockHeight,
        /// The least delta accepted.
        min_delta: u32,
    },
    /// The expiry locks sluice's coins for too long.
    #[error(
        "server expiry {expiry} is more than {max_delta} blocks after height {height}: the          coins would be locked too long (Loop's ErrExpiryTooFar)"
    )]
    ExpiryTooFar {
        /// The server's expiry.
        expiry: i64,
        /// The height.
        height: BlockHeight,
        /// The largest delta accepted.
        max_delta: u32,
    },
    /// The expiry is further than the quote said.
    #[error(
        "server expiry {expiry} is beyond height {height} + quoted cltv_delta {cltv_delta} +          {LOOP_IN_EXPIRY_SLACK_BLOCKS} blocks of slack"
    )]
    ExpiryBeyondQuote {
        /// The server's expiry.
        expiry: i64,
        /// The height.
        height: BlockHeight,
        /// The quoted delta.
        cltv_delta: i32,
    },
    /// The HTLC cannot be built from the keys and the expiry.
    #[error("the HTLC cannot be built from the server's answer: {0}")]
    Htlc(String),
}

fn server_key(field: &'static str, bytes: &[u8]) -> Result<[u8; 33], LoopInValidationError> {
    let key: [u8; 33] = bytes
        .try_into()
        .map_err(|_| LoopInValidationError::KeyLength {
            field,
            len: bytes.len(),
        })?;
    PublicKey::from_slice(&key).map_err(|_| LoopInValidationError::KeyNotOnCurve { field })?;
    Ok(key)
}

/// Checks the quote against the limits before any invoice is made: the amount within the
/// terms, the fee within `max_swap_fee` and below the amount.
pub fn check_loop_in_quote(
    amount: Sat,
    terms: &LoopInTerms,
    quote: &LoopInQuote,
    max_swap_fee: Sat,
) -> Result<(), LoopInValidationError> {
    if amount < terms.min_amount || amount > terms.max_amount {
        return Err(LoopInValidationError::AmountOutsideTerms {
            amount,
            min: terms.min_amount,
            max: terms.max_amount,
        });
    }
    if quote.swap_fee > max_swap_fee {
        return Err(LoopInValidationError::SwapFeeTooHigh {
            actual: quote.swap_fee,
            max: max_swap_fee,
        });
    }
    if quote.swap_fee >= amount {
        return Err(LoopInValidationError::FeeNotBelowAmount {
            fee: quote.swap_fee,
            amount,
        });
    }
    Ok(())
}

/// Checks the server's answer to `NewLoopInSwap` (and sluice's own invoice, once more) before
/// anything is stored or funded; the first failed check is returned. Beyond Loop's checks
/// (key lengths and points, 100 ≤ expiry − height ≤ 1 500): the amount within the terms, the
/// expiry no further than the quote's `cltv_delta` allowed, and the invoice asking exactly
/// `amount − swap fee` with the swap hash.
pub fn validate_loop_in(
    resp: &NewLoopInResponse,
    exp: &LoopInExpectations,
) -> Result<ValidatedLoopIn, LoopInValidationError> {
    check_loop_in_quote(exp.amount, &exp.terms, &exp.quote, exp.max_swap_fee)?;
    let swap_fee = exp.quote.swap_fee;
    let own = |e: ContractError| LoopInValidationError::OwnInvoice(e.to_string());
    let (invoice, invoice_amount) =
        decode_invoice(&exp.swap_invoice, exp.network, InvoiceRole::Swap).map_err(own)?;
    if invoice.payment_hash().to_byte_array() != exp.swap_hash.0 {
        return Err(LoopInValidationError::OwnInvoice(
            "the swap invoice is not keyed by the swap hash".to_owned(),
        ));
    }
    let expected_amount = exp.amount.saturating_sub(swap_fee);
    if invoice_amount != expected_amount
        || invoice.amount_milli_satoshis() != Some(expected_amount.0.saturating_mul(1000))
    {
        return Err(LoopInValidationError::OwnInvoice(format!(
            "the swap invoice asks for {} msat; it must ask for exactly amount {} − swap fee              {swap_fee} = {expected_amount}",
            invoice.amount_milli_satoshis().unwrap_or(0),
            exp.amount
        )));
    }

    let receiver_key = server_key("receiver_key", &resp.receiver_key)?;
    let receiver_internal_key =
        server_key("receiver_internal_pubkey", &resp.receiver_internal_key)?;

    let expiry = i64::from(resp.expiry);
    let height = i64::from(exp.height.0);
    if expiry < height + i64::from(MIN_EXPIRY_DELTA) {
        return Err(LoopInValidationError::ExpiryTooSoon {
            expiry,
            height: exp.height,
            min_delta: MIN_EXPIRY_DELTA,
        });
    }
    if expiry - height > i64::from(MAX_EXPIRY_DELTA) {
        return Err(LoopInValidationError::ExpiryTooFar {
            expiry,
            height: exp.height,
            max_delta: MAX_EXPIRY_DELTA,
        });
    }
    if exp.quote.cltv_delta > 0
        && expiry
            > height + i64::from(exp.quote.cltv_delta) + i64::from(LOOP_IN_EXPIRY_SLACK_BLOCKS)
    {
        return Err(LoopInValidationError::ExpiryBeyondQuote {
            expiry,
            height: exp.height,
            cltv_delta: exp.quote.cltv_delta,
        });
    }
    // Bounded above by height + 1 500, so it fits a u32.
    let expiry = u32::try_from(expiry).map_err(|_| {
        LoopInValidationError::Htlc(format!("expiry {expiry} is not a block height"))
    })?;

    let point = |field: &'static str, k: &[u8; 33]| {
        PublicKey::from_slice(k).map_err(|_| LoopInValidationError::KeyNotOnCurve { field })
    };
    let htlc = HtlcV3::with_internal_keys(
        HtlcKeys {
            sender: point("sender_key", &exp.sender_key)?,
            receiver: point("receiver_key", &receiver_key)?,
            sender_internal: point("sender_internal_key", &exp.sender_internal_key)?,
            receiver_internal: point("receiver_internal_pubkey", &receiver_internal_key)?,
        },
        exp.swap_hash,
        expiry,
        exp.network,
    )
    .map_err(|e| LoopInValidationError::Htlc(e.to_string()))?;
    Ok(ValidatedLoopIn {
        receiver_key,
        receiver_internal_key,
        expiry: BlockHeight(expiry),
        swap_fee,
        htlc,
    })
}

/// Why a funding transaction lnd published does not honour the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FundingCheckError {
    /// No output pays the HTLC script.
    #[error("the funding transaction {txid} has no output paying the HTLC script")]
    NoHtlcOutput {
        /// The transaction.
        txid: Txid,
    },
    /// More than one output pays the script (the server would refuse the swap).
    #[error("the funding transaction {txid} pays the HTLC script {count} times")]
    SeveralHtlcOutputs {
        /// The transaction.
        txid: Txid,
        /// How many outputs.
        count: usize,
    },
    /// The output pays another value than the amount.
    #[error("the funding transaction {txid} pays {value} to the HTLC, not the amount {amount}")]
    WrongValue {
        /// The transaction.
        txid: Txid,
        /// What it pays.
        value: Sat,
        /// The amount.
        amount: Sat,
    },
}

/// Checks a funding transaction: exactly one output paying `pk_script`, of exactly `amount`.
/// Returns that output's index.
pub fn check_funding_tx(
    tx: &Transaction,
    pk_script: &Script,
    amount: Sat,
) -> Result<u32, FundingCheckError> {
    let txid = tx.compute_txid();
    let paying: Vec<(usize, &TxOut)> = tx
        .output
        .iter()
        .enumerate()
        .filter(|(_, o)| o.script_pubkey.as_script() == pk_script)
        .collect();
    let (index, out) = match paying.as_slice() {
        [] => return Err(FundingCheckError::NoHtlcOutput { txid }),
        [one] => *one,
        more => {
            return Err(FundingCheckError::SeveralHtlcOutputs {
                txid,
                count: more.len(),
            });
        }
    };
    if out.value.to_sat() != amount.0 {
        return Err(FundingCheckError::WrongValue {
            txid,
            value: Sat(out.value.to_sat()),
            amount,
        });
    }
    Ok(u32::try_from(index).unwrap_or(u32::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "validate_loop_in_tests.rs"]
mod loop_in_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "validate_tests.rs"]
mod tests;
