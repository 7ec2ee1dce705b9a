//! The sweep transaction that moves a confirmed HTLC to sluice's destination.
//!
//! Shape (as Loop's batcher): version 2, lock time = the current height (no fee sniping), one
//! HTLC input, one output. A success-path input carries sequence 1 (the leaf's `1 CSV`), a
//! key-path input sequence 0. The fee is weight × rate, rounded up, cut to 20 % of the HTLC
//! value, and the output must stay above its dust limit. The sighash helpers work over all
//! prevouts so the same code serves a batch and the simnet server recomputing a sighash.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::script::{Script, ScriptBuf};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::TapLeafHash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, Psbt, Sequence, Transaction, TxIn, TxOut, Weight, Witness};

use crate::chain::ChainError;
use crate::chain::fees::{SatPerKw, SweepWitness, clamp_fee, fee_for, sweep_weight};
use crate::chain::htlc::SUCCESS_SEQUENCE;
use crate::domain::{BlockHeight, Sat};

/// What to sweep, where to, and at which rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRequest {
    /// The HTLC output being spent.
    pub htlc_outpoint: OutPoint,
    /// Its value.
    pub htlc_value: Sat,
    /// Its pkScript (needed for every BIP-341 sighash).
    pub htlc_pk_script: ScriptBuf,
    /// Which path the input will take; decides the sequence and the weight.
    pub path: SweepWitness,
    /// Where the funds go.
    pub destination: ScriptBuf,
    /// The fee rate, already capped by the caller's policy.
    pub fee_rate: SatPerKw,
    /// The current height, used as the lock time.
    pub height: BlockHeight,
}

/// A sweep ready to be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedSweep {
    /// The transaction with an empty witness.
    pub tx: Transaction,
    /// The outputs its inputs spend, in input order.
    pub prevouts: Vec<TxOut>,
    /// The fee it pays.
    pub fee: Sat,
    /// The weight once signed (exact for v3, an upper bound for v2).
    pub weight: Weight,
    /// Whether the 20 % clamp cut the fee below what the rate asked for.
    pub fee_clamped: bool,
}

/// The input sequence for a path: 1 for the success paths (their `1 CSV`), 0 for the key path
/// and the timeout leaf.
pub fn sequence_for(path: SweepWitness) -> Sequence {
    match path {
        // The timeout leaf's CLTV needs a non-final sequence; 0 also signals replaceability.
        SweepWitness::KeyPath | SweepWitness::V3Timeout { .. } => Sequence::ZERO,
        SweepWitness::V3Success | SweepWitness::V2Success { .. } => {
            Sequence::from_consensus(SUCCESS_SEQUENCE)
        }
    }
}

/// Builds the unsigned sweep. Fails if the lock time is not a height, if the fee leaves
/// nothing, or if the output would be dust.
pub fn build_sweep(req: &SweepRequest) -> Result<UnsignedSweep, ChainError> {
    let lock_time = LockTime::from_height(req.height.0).map_err(|_| {
        ChainError::invalid("height", format!("{} is not a block height", req.height))
    })?;
    let weight = sweep_weight(req.path, &req.destination);
    let (fee, fee_clamped) = clamp_fee(fee_for(weight, req.fee_rate), req.htlc_value);
    let value =
        req.htlc_value
            .checked_sub(fee)
            .filter(|v| v.0 > 0)
            .ok_or(ChainError::FeeExceedsValue {
                fee: Amount::from_sat(fee.0),
                value: Amount::from_sat(req.htlc_value.0),
            })?;
    let value = Amount::from_sat(value.0);
    let dust_limit = req.destination.minimal_non_dust();
    if value < dust_limit {
        return Err(ChainError::Dust { value, dust_limit });
    }
    let tx = Transaction {
        version: Version::TWO,
        lock_time,
        input: vec![TxIn {
            previous_output: req.htlc_outpoint,
            script_sig: ScriptBuf::new(),
            sequence: sequence_for(req.path),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: req.destination.clone(),
        }],
    };
    let prevouts = vec![TxOut {
        value: Amount::from_sat(req.htlc_value.0),
        script_pubkey: req.htlc_pk_script.clone(),
    }];
    Ok(UnsignedSweep {
        tx,
        prevouts,
        fee,
        weight,
        fee_clamped,
    })
}

/// `bitcoin` does not check the input index for SIGHASH_DEFAULT (it only hashes the number),
/// so a wrong index would silently give a sighash for an input that does not exist.
fn check_index(tx: &Transaction, index: usize) -> Result<(), ChainError> {
    if index >= tx.input.len() {
        return Err(ChainError::invalid(
            "input index",
            format!(
                "input {index} does not exist; the transaction has {}",
                tx.input.len()
            ),
        ));
    }
    Ok(())
}

/// The BIP-341 key-path sighash (SIGHASH_DEFAULT) of input `index`, committing to every
/// prevout: the message both MuSig2 signers sign.
pub fn key_spend_sighash(
    tx: &Transaction,
    prevouts: &[TxOut],
    index: usize,
) -> Result<[u8; 32], ChainError> {
    check_index(tx, index)?;
    SighashCache::new(tx)
        .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), TapSighashType::Default)
        .map(|h| h.to_byte_array())
        .map_err(|source| ChainError::TaprootSighash { index, source })
}

/// The BIP-341/342 script-path sighash (SIGHASH_DEFAULT) of input `index` for the leaf
/// `leaf_hash`: what the receiver signs to spend the success leaf alone.
pub fn script_spend_sighash(
    tx: &Transaction,
    prevouts: &[TxOut],
    index: usize,
    leaf_hash: TapLeafHash,
) -> Result<[u8; 32], ChainError> {
    check_index(tx, index)?;
    SighashCache::new(tx)
        .taproot_script_spend_signature_hash(
            index,
            &Prevouts::All(prevouts),
            leaf_hash,
            TapSighashType::Default,
        )
        .map(|h| h.to_byte_array())
        .map_err(|source| ChainError::TaprootSighash { index, source })
}

/// The BIP-143 sighash (SIGHASH_ALL) of a v2 HTLC input.
pub fn v2_sighash(
    tx: &Transaction,
    index: usize,
    witness_script: &Script,
    value: Sat,
) -> Result<[u8; 32], ChainError> {
    SighashCache::new(tx)
        .p2wsh_signature_hash(
            index,
            witness_script,
            Amount::from_sat(value.0),
            EcdsaSighashType::All,
        )
        .map(|h| h.to_byte_array())
        .map_err(|source| ChainError::SegwitSighash { index, source })
}

/// The key-path witness: the 64-byte aggregate signature alone (SIGHASH_DEFAULT, no byte).
pub fn key_spend_witness(sig: &bitcoin::secp256k1::schnorr::Signature) -> Witness {
    let mut w = Witness::new();
    w.push(sig.as_ref());
    w
}

impl UnsignedSweep {
    /// The key-path sighash of the HTLC input.
    pub fn key_spend_sighash(&self) -> Result<[u8; 32], ChainError> {
        key_spend_sighash(&self.tx, &self.prevouts, 0)
    }

    /// The script-path sighash of the HTLC input for `leaf_hash`.
    pub fn script_spend_sighash(&self, leaf_hash: TapLeafHash) -> Result<[u8; 32], ChainError> {
        script_spend_sighash(&self.tx, &self.prevouts, 0, leaf_hash)
    }

    /// The BIP-143 sighash of the HTLC input for a v2 script.
    pub fn v2_sighash(&self, witness_script: &Script) -> Result<[u8; 32], ChainError> {
        let value = self
            .prevouts
            .first()
            .map_or(Sat(0), |p| Sat(p.value.to_sat()));
        v2_sighash(&self.tx, 0, witness_script, value)
    }

    /// The sweep as a PSBT with `witness_utxo` set on every input: what `MuSig2SignSweep`
    /// carries so the server can recompute the sighash itself.
    pub fn psbt(&self) -> Result<Psbt, ChainError> {
        let mut psbt = Psbt::from_unsigned_tx(self.tx.clone())
            .map_err(|e| ChainError::invalid("sweep transaction", e.to_string()))?;
        for (input, prevout) in psbt.inputs.iter_mut().zip(&self.prevouts) {
            input.witness_utxo = Some(prevout.clone());
        }
        Ok(psbt)
    }

    /// The finished transaction with `witness` on the HTLC input.
    pub fn signed(mut self, witness: Witness) -> Transaction {
        if let Some(input) = self.tx.input.first_mut() {
            input.witness = witness;
        }
        self.tx
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn request(value: u64, rate: u64, height: u32) -> SweepRequest {
        SweepRequest {
            htlc_outpoint: OutPoint {
                txid: bitcoin::Txid::from_byte_array([1; 32]),
                vout: 0,
            },
            htlc_value: Sat(value),
            htlc_pk_script: ScriptBuf::from_bytes([vec![0x51, 0x20], vec![2; 32]].concat()),
            path: SweepWitness::KeyPath,
            destination: ScriptBuf::from_bytes([vec![0x00, 0x14], vec![3; 20]].concat()),
            fee_rate: SatPerKw(rate),
            height: BlockHeight(height),
        }
    }

    #[test]
    fn shape_follows_the_path_and_height() {
        let key = build_sweep(&request(100_000, 1_000, 800_123)).unwrap();
        assert_eq!(key.tx.lock_time, LockTime::from_height(800_123).unwrap());
        assert_eq!(key.tx.input[0].sequence, Sequence::ZERO);
        assert_eq!(key.fee, fee_for(key.weight, SatPerKw(1_000)));
        assert!(!key.fee_clamped);
        let script = build_sweep(&SweepRequest {
            path: SweepWitness::V3Success,
            ..request(100_000, 1_000, 800_123)
        })
        .unwrap();
        assert_eq!(script.tx.input[0].sequence, Sequence(1));
        assert!(script.fee > key.fee, "the script path is heavier");
    }

    #[test]
    fn impossible_sweeps_are_refused() {
        let err = build_sweep(&request(100_000, 1_000, 500_000_000)).unwrap_err();
        assert!(err.to_string().starts_with("height:"), "{err}");
        // A zero-value HTLC clamps the fee to zero and leaves nothing.
        assert!(matches!(
            build_sweep(&request(0, 1_000, 1)),
            Err(ChainError::FeeExceedsValue { .. })
        ));
        // P2WPKH dust is 294 sat: 300 minus a floor fee is below it.
        assert!(matches!(
            build_sweep(&request(300, 253, 1)),
            Err(ChainError::Dust { .. })
        ));
    }

    #[test]
    fn psbt_carries_every_prevout() {
        let sweep = build_sweep(&request(100_000, 1_000, 800_000)).unwrap();
        let psbt = sweep.psbt().unwrap();
        assert_eq!(psbt.unsigned_tx, sweep.tx);
        assert_eq!(psbt.inputs[0].witness_utxo.as_ref(), sweep.prevouts.first());
        // The server's recomputation from the PSBT equals ours.
        let prevouts: Vec<TxOut> = psbt
            .inputs
            .iter()
            .map(|i| i.witness_utxo.clone().unwrap())
            .collect();
        assert_eq!(
            key_spend_sighash(&psbt.unsigned_tx, &prevouts, 0).unwrap(),
            sweep.key_spend_sighash().unwrap()
        );
        assert!(key_spend_sighash(&sweep.tx, &prevouts, 1).is_err());
    }
}
