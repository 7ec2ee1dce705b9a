//! The server's on-chain signing, pure: the key-path sighash recomputed from the client's
//! PSBT, the `MuSig2SignSweep` answer (honest or per the co-sign switch), the timeout claim,
//! the Loop In claim (key path with both internal keys, or success leaf with the preimage),
//! and the preimage read from a success-leaf witness.
//!
//! Everything reuses `crate::chain` (HTLC, sweeps, sighashes, `musig::cosign`,
//! `musig::sign_alone`); only the timeout claim, which sluice itself never builds, is
//! assembled here.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Keypair, Message, Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, Psbt, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};

use super::behaviour::CoSign;
use super::error::LoopServerError;
use crate::chain::fees::SatPerKw;
use crate::chain::fees::SweepWitness;
use crate::chain::htlc::HtlcV3;
use crate::chain::musig::{self, PARTIAL_SIG_LEN, PUB_NONCE_LEN};
use crate::chain::sweep::{
    SweepRequest, build_sweep, key_spend_sighash, key_spend_witness, script_spend_sighash,
};
use crate::domain::{BlockHeight, Preimage, Sat, SwapHash};

/// One spent output as the client describes it (`PrevoutInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prevout {
    /// The output being spent.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Sat,
    /// Its script.
    pub pk_script: ScriptBuf,
}

impl Prevout {
    /// From the wire fields; `txid_bytes` is in internal byte order.
    pub fn from_wire(
        value: u64,
        pk_script: &[u8],
        txid_bytes: &[u8],
        output_index: u32,
    ) -> Result<Prevout, LoopServerError> {
        let txid: [u8; 32] = txid_bytes
            .try_into()
            .map_err(|_| LoopServerError::InvalidField {
                field: "prevout_info.txid_bytes",
                problem: format!("{} bytes, expected 32", txid_bytes.len()),
            })?;
        Ok(Prevout {
            outpoint: OutPoint {
                txid: Txid::from_byte_array(txid),
                vout: output_index,
            },
            value: Sat(value),
            pk_script: ScriptBuf::from_bytes(pk_script.to_vec()),
        })
    }
}

/// Finds the input of the client's sweep that spends one of `funded` (the HTLC outputs this
/// server paid for `htlc`) and recomputes its BIP-341 key-path sighash over every prevout.
///
/// The prevout list must name each input's outpoint in order; the PSBT's `witness_utxo`
/// entries, where present, must agree with it. Returns the input index and the sighash.
pub fn sweep_sighash(
    psbt: &[u8],
    prevouts: &[Prevout],
    htlc: &HtlcV3,
    funded: &[OutPoint],
    swap: SwapHash,
) -> Result<(usize, [u8; 32]), LoopServerError> {
    let psbt = Psbt::deserialize(psbt).map_err(|e| LoopServerError::Psbt(e.to_string()))?;
    let tx = &psbt.unsigned_tx;
    if prevouts.len() != tx.input.len() {
        return Err(LoopServerError::Psbt(format!(
            "{} prevout_info entries for {} inputs; send one per input, in order",
            prevouts.len(),
            tx.input.len()
        )));
    }
    let mut spent = Vec::with_capacity(prevouts.len());
    for (i, ((input, prevout), psbt_input)) in tx
        .input
        .iter()
        .zip(prevouts)
        .zip(psbt.inputs.iter().map(Some).chain(std::iter::repeat(None)))
        .enumerate()
    {
        if input.previous_output != prevout.outpoint {
            return Err(LoopServerError::Psbt(format!(
                "prevout_info[{i}] names {} but input {i} spends {}",
                prevout.outpoint, input.previous_output
            )));
        }
        let txout = TxOut {
            value: Amount::from_sat(prevout.value.0),
            script_pubkey: prevout.pk_script.clone(),
        };
        if let Some(utxo) = psbt_input.and_then(|p| p.witness_utxo.as_ref())
            && *utxo != txout
        {
            return Err(LoopServerError::Psbt(format!(
                "input {i}: witness_utxo disagrees with prevout_info[{i}]"
            )));
        }
        spent.push(txout);
    }
    let script = htlc.pk_script();
    let index = tx
        .input
        .iter()
        .zip(&spent)
        .position(|(input, out)| {
            out.script_pubkey == script && funded.contains(&input.previous_output)
        })
        .ok_or(LoopServerError::NoHtlcInput(swap))?;
    Ok((index, key_spend_sighash(tx, &spent, index)?))
}

/// The `MuSig2SignSweep` answer: (nonce, partial signature), honest or per `mode`. `Err` only
/// for an honest answer that cannot be computed (e.g. the client's nonce is malformed) or
/// for `CoSign::Error`.
pub fn cosign_answer(
    htlc: &HtlcV3,
    secret: &SecretKey,
    sighash: [u8; 32],
    client_nonce: &[u8],
    nonce_seed: [u8; 32],
    mode: CoSign,
) -> Result<(Vec<u8>, Vec<u8>), LoopServerError> {
    if mode == CoSign::Error {
        return Err(LoopServerError::Refused(
            "the server refuses to co-sign this sweep (behaviour switch)",
        ));
    }
    // A partial signature over a message one bit off is well-formed but useless.
    let message = if mode == CoSign::InvalidPartialSig {
        let mut other = sighash;
        other[0] ^= 1;
        other
    } else {
        sighash
    };
    let (nonce, partial) = musig::cosign(htlc, secret, message, client_nonce, nonce_seed)?;
    let (mut nonce, mut partial) = (nonce.to_vec(), partial.to_vec());
    match mode {
        CoSign::ShortNonce => nonce.truncate(PUB_NONCE_LEN - 1),
        CoSign::ShortPartialSig => partial.truncate(PARTIAL_SIG_LEN - 1),
        _ => {}
    }
    Ok((nonce, partial))
}

/// The sequence of a timeout claim: not final, so the lock time (and `CHECKLOCKTIMEVERIFY`)
/// applies, and signalling replaceability.
pub const TIMEOUT_SEQUENCE: Sequence = Sequence::ENABLE_RBF_NO_LOCKTIME;

fn timeout_tx(
    htlc: &HtlcV3,
    outpoint: OutPoint,
    value: Amount,
    destination: &ScriptBuf,
) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(htlc.expiry()),
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: TIMEOUT_SEQUENCE,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: destination.clone(),
        }],
    }
}

fn timeout_witness(htlc: &HtlcV3, sig: &[u8]) -> Witness {
    let mut w = Witness::new();
    w.push(sig);
    w.push(htlc.timeout_script().as_bytes());
    w.push(htlc.timeout_control_block().serialize());
    w
}

/// The server's claim of an expired HTLC through the timeout leaf: version 2, lock time =
/// expiry, one input, everything but the fee to `destination`. Signed with the sender key.
pub fn timeout_claim(
    htlc: &HtlcV3,
    secret: &SecretKey,
    outpoint: OutPoint,
    htlc_value: Sat,
    destination: &ScriptBuf,
    fee_rate: SatPerKw,
) -> Result<Transaction, LoopServerError> {
    // Weigh the transaction with a signature-sized placeholder, then price it.
    let mut sized = timeout_tx(htlc, outpoint, Amount::from_sat(htlc_value.0), destination);
    sized.input[0].witness = timeout_witness(htlc, &[0u8; 64]);
    let fee = sized
        .weight()
        .to_wu()
        .saturating_mul(fee_rate.0)
        .div_ceil(1000);
    let value = htlc_value
        .0
        .checked_sub(fee)
        .filter(|v| Amount::from_sat(*v) >= destination.minimal_non_dust())
        .ok_or_else(|| {
            LoopServerError::Refused("the timeout claim fee leaves only dust of the HTLC")
        })?;
    let mut tx = timeout_tx(htlc, outpoint, Amount::from_sat(value), destination);
    let prevout = TxOut {
        value: Amount::from_sat(htlc_value.0),
        script_pubkey: htlc.pk_script(),
    };
    let sighash = script_spend_sighash(&tx, &[prevout], 0, htlc.timeout_leaf_hash())?;
    let secp = Secp256k1::signing_only();
    let keypair = Keypair::from_secret_key(&secp, secret);
    let sig = secp.sign_schnorr_no_aux_rand(&Message::from_digest(sighash), &keypair);
    tx.input[0].witness = timeout_witness(htlc, sig.as_ref());
    Ok(tx)
}

/// How the server claims a Loop In HTLC it has paid for.
pub enum InClaim<'a> {
    /// The key path, with both internal secret keys (the client's was pushed).
    KeyPath {
        /// The server's internal key.
        ours: &'a SecretKey,
        /// The client's pushed internal key.
        theirs: &'a SecretKey,
    },
    /// The success leaf, with the server's script key and the preimage its payment bought.
    SuccessLeaf {
        /// The server's success-leaf key.
        key: &'a SecretKey,
        /// The preimage.
        preimage: Preimage,
    },
}

/// The server's claim of a Loop In HTLC (the server is the receiver there): the sweep shape
/// sluice uses for Loop Out (`chain::sweep`), signed by the key path or the success leaf.
pub fn loop_in_claim(
    htlc: &HtlcV3,
    outpoint: OutPoint,
    htlc_value: Sat,
    destination: &ScriptBuf,
    fee_rate: SatPerKw,
    height: BlockHeight,
    how: &InClaim<'_>,
) -> Result<Transaction, LoopServerError> {
    let path = match how {
        InClaim::KeyPath { .. } => SweepWitness::KeyPath,
        InClaim::SuccessLeaf { .. } => SweepWitness::V3Success,
    };
    let sweep = build_sweep(&SweepRequest {
        htlc_outpoint: outpoint,
        htlc_value,
        htlc_pk_script: htlc.pk_script(),
        path,
        destination: destination.clone(),
        fee_rate,
        height,
    })?;
    let witness = match how {
        InClaim::KeyPath { ours, theirs } => {
            let sighash = sweep.key_spend_sighash()?;
            key_spend_witness(&musig::sign_alone(htlc, [*ours, *theirs], sighash)?)
        }
        InClaim::SuccessLeaf { key, preimage } => {
            let sighash = sweep.script_spend_sighash(htlc.success_leaf_hash())?;
            let secp = Secp256k1::signing_only();
            let keypair = Keypair::from_secret_key(&secp, key);
            let sig = secp.sign_schnorr_no_aux_rand(&Message::from_digest(sighash), &keypair);
            let sig = bitcoin::taproot::Signature {
                signature: sig,
                sighash_type: bitcoin::TapSighashType::Default,
            };
            htlc.success_witness(&preimage.0, &sig)
        }
    };
    Ok(sweep.signed(witness))
}

/// The preimage of `hash` revealed by a success-leaf witness (4 elements, the first being the
/// 32-byte preimage); `None` for a key-path or timeout spend.
pub fn preimage_from_witness(witness: &Witness, hash: SwapHash) -> Option<Preimage> {
    if witness.len() != 4 {
        return None;
    }
    let first: [u8; 32] = witness.nth(0)?.try_into().ok()?;
    let preimage = Preimage(first);
    (preimage.hash() == hash).then_some(preimage)
}

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;
