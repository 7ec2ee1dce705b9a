//! Script verification by Bitcoin Core's own interpreter (libbitcoinconsensus, Core 26).
//!
//! The simnet checks every transaction it accepts with this, and the tests prove sluice's
//! spends with it, so "the sweep is valid" always means "Core says so", taproot included.

use bitcoin::{Transaction, TxOut};

use crate::chain::ChainError;

/// The consensus rules in force: everything up to and including taproot.
pub const FLAGS: u32 = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;

/// Verifies every input of `tx` against `prevouts` (the outputs it spends, in input order).
pub fn verify_spend(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), ChainError> {
    if prevouts.len() != tx.input.len() {
        return Err(ChainError::invalid(
            "prevouts",
            format!(
                "{} prevouts given for {} inputs; pass one per input, in order",
                prevouts.len(),
                tx.input.len()
            ),
        ));
    }
    let serialized = bitcoin::consensus::serialize(tx);
    let utxos = prevouts
        .iter()
        .map(|p| {
            Ok(bitcoinconsensus::Utxo {
                script_pubkey: p.script_pubkey.as_bytes().as_ptr(),
                script_pubkey_len: u32::try_from(p.script_pubkey.len())
                    .map_err(|_| ChainError::invalid("prevouts", "script too long"))?,
                value: i64::try_from(p.value.to_sat())
                    .map_err(|_| ChainError::invalid("prevouts", "value out of range"))?,
            })
        })
        .collect::<Result<Vec<_>, ChainError>>()?;
    for (index, prevout) in prevouts.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(
            prevout.script_pubkey.as_bytes(),
            prevout.value.to_sat(),
            &serialized,
            Some(&utxos),
            index,
            FLAGS,
        )
        .map_err(|e| ChainError::ScriptVerify {
            index,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}
