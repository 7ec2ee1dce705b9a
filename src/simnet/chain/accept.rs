//! Mempool acceptance: the validation order and every rule a transaction must pass.
//!
//! Order: structure, duplicates, weight, output values and dust, inputs (exist, unspent,
//! mature), amounts, lock time (BIP-65/113), sequence locks (BIP-68/112), fee, replacement
//! (BIP-125 under full RBF), and last, because it is the costly part, scripts.
//!
//! Policy kept from Bitcoin Core: dust (3 sat/vB), the 400,000 WU standard weight, the minimum
//! relay fee (rounded up per vbyte), full RBF with rules 3, 4 and 6. Not simulated: package
//! limits (ancestor/descendant counts), RBF rules 2 (new unconfirmed inputs) and 5 (at most 100
//! evictions), TRUC (v3) rules, and script standardness beyond consensus (libbitcoinconsensus
//! only knows the consensus flags).

use std::collections::HashSet;

use bitcoin::consensus::serialize;
use bitcoin::{OutPoint, Sequence, Transaction, TxOut, Txid};
use bitcoinconsensus::{VERIFY_ALL_PRE_TAPROOT, VERIFY_TAPROOT};

use super::{
    Accepted, COINBASE_MATURITY, Chain, ChainEvent, MAX_STANDARD_TX_WEIGHT, RejectReason,
    RemovalReason,
};
use crate::domain::{BlockHeight, Sat};

/// 21 million BTC in satoshis.
const MAX_MONEY_SAT: u64 = 21_000_000 * 100_000_000;

/// Lock times below this are heights, at or above it unix times.
const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// BIP-68: sequence bit 31 disables the relative lock.
const SEQUENCE_DISABLE_FLAG: u32 = 1 << 31;
/// BIP-68: sequence bit 22 makes the relative lock count 512-second units.
const SEQUENCE_TYPE_FLAG: u32 = 1 << 22;
/// BIP-68: the low 16 bits hold the lock value.
const SEQUENCE_MASK: u32 = 0xffff;

/// Every script rule libbitcoinconsensus knows, taproot included.
const SCRIPT_FLAGS: u32 = VERIFY_ALL_PRE_TAPROOT | VERIFY_TAPROOT;

impl Chain {
    /// Validates `tx` and adds it to the mempool, replacing conflicting mempool transactions
    /// that pay less (full RBF). Emits `TxRemoved` for each replaced one, then `TxAccepted`.
    pub fn accept(&mut self, tx: Transaction) -> Result<Accepted, RejectReason> {
        self.accept_inner(tx, true)
    }

    /// Runs every check [`Chain::accept`] runs without changing anything.
    pub fn test_accept(&self, tx: &Transaction) -> Result<Accepted, RejectReason> {
        self.check(tx)
    }

    /// Accepts `tx`; `announce` is false when a reorg re-validates a transaction that never left
    /// the mempool as far as readers know.
    pub(super) fn accept_inner(
        &mut self,
        tx: Transaction,
        announce: bool,
    ) -> Result<Accepted, RejectReason> {
        let accepted = self.check(&tx)?;
        for old in &accepted.replaced {
            if self.mempool.remove(old).is_some() {
                self.events.push(ChainEvent::TxRemoved {
                    txid: *old,
                    reason: RemovalReason::Replaced { by: accepted.txid },
                });
            }
        }
        self.mempool
            .insert(accepted.txid, tx, accepted.fee, accepted.weight);
        if announce {
            self.events.push(ChainEvent::TxAccepted {
                txid: accepted.txid,
                replaced: accepted.replaced.clone(),
            });
        }
        Ok(accepted)
    }

    fn check(&self, tx: &Transaction) -> Result<Accepted, RejectReason> {
        let txid = tx.compute_txid();
        check_structure(tx)?;
        if self.mempool.contains(&txid) || self.tx_index.contains_key(&txid) {
            return Err(RejectReason::Duplicate(txid));
        }
        let weight = tx.weight().to_wu();
        if weight > MAX_STANDARD_TX_WEIGHT {
            return Err(RejectReason::TooLarge { weight });
        }
        let outputs = check_outputs(tx)?;

        let next_height = self.height().0 + 1;
        let (spent, coin_heights, conflicts) = self.spent_outputs(tx, next_height)?;
        let mut inputs = 0u64;
        for out in &spent {
            inputs = inputs
                .checked_add(out.value.to_sat())
                .ok_or(RejectReason::ValueOutOfRange)?;
        }
        if outputs > inputs {
            return Err(RejectReason::OutputsExceedInputs {
                inputs: Sat(inputs),
                outputs: Sat(outputs),
            });
        }

        let mtp = self.median_time_past(self.height());
        check_final(tx, next_height, mtp)?;
        self.check_sequence_locks(tx, &coin_heights, next_height, mtp)?;

        let fee = Sat(inputs - outputs);
        let min = self.min_relay_fee(weight);
        if fee < min {
            return Err(RejectReason::FeeTooLow { fee, min });
        }
        let replaced = self.check_replacement(tx, &conflicts, fee, weight)?;

        verify_scripts(tx, &spent)?;
        Ok(Accepted {
            txid,
            fee,
            weight,
            replaced,
        })
    }

    /// The minimum relay fee for a transaction of `weight`, rounded up as Bitcoin Core does.
    pub fn min_relay_fee(&self, weight: u64) -> Sat {
        let vsize = weight.div_ceil(4);
        Sat((vsize.saturating_mul(self.config.min_relay_fee_sat_kvb)).div_ceil(1000))
    }

    /// The minimum relay fee as a rate in sat/kw (for lnd's `EstimateFee`), never below
    /// lnd's floor of 253.
    pub fn min_relay_fee_sat_kw(&self) -> u64 {
        self.config
            .min_relay_fee_sat_kvb
            .div_ceil(4)
            .max(super::FEE_FLOOR_SAT_KW)
    }

    /// The outputs `tx` spends (mempool first, then the UTXO set), the height each was created
    /// at (the next block's for mempool outputs, as Bitcoin Core counts), and the mempool
    /// transactions it conflicts with.
    #[allow(clippy::type_complexity)]
    fn spent_outputs<'a>(
        &'a self,
        tx: &Transaction,
        next_height: u32,
    ) -> Result<(Vec<&'a TxOut>, Vec<u32>, Vec<(OutPoint, Txid)>), RejectReason> {
        let mut spent = Vec::with_capacity(tx.input.len());
        let mut heights = Vec::with_capacity(tx.input.len());
        let mut conflicts = Vec::new();
        for input in &tx.input {
            let op = input.previous_output;
            if let Some(other) = self.mempool.spender(&op) {
                conflicts.push((op, other));
            }
            if let Some(out) = self.mempool.output(&op) {
                spent.push(out);
                heights.push(next_height);
            } else if let Some(coin) = self.utxos.get(&op) {
                let confirmations = next_height - coin.height.0;
                if coin.is_coinbase && confirmations < COINBASE_MATURITY {
                    return Err(RejectReason::ImmatureCoinbase {
                        outpoint: op,
                        confirmations,
                    });
                }
                spent.push(&coin.txout);
                heights.push(coin.height.0);
            } else if let Some(spend) = self.spends.get(&op) {
                return Err(RejectReason::DoubleSpend {
                    outpoint: op,
                    spent_by: spend.txid,
                });
            } else {
                return Err(RejectReason::MissingInput(op));
            }
        }
        Ok((spent, heights, conflicts))
    }

    /// BIP-68 relative lock times, enforced for transaction version 2 and above.
    fn check_sequence_locks(
        &self,
        tx: &Transaction,
        coin_heights: &[u32],
        next_height: u32,
        mtp: u32,
    ) -> Result<(), RejectReason> {
        // Bitcoin Core compares the version as unsigned, so negative versions enforce BIP-68.
        if (tx.version.0 as u32) < 2 {
            return Ok(());
        }
        for (input, (txin, &coin_height)) in tx.input.iter().zip(coin_heights).enumerate() {
            let seq = txin.sequence.to_consensus_u32();
            if seq & SEQUENCE_DISABLE_FLAG != 0 {
                continue;
            }
            let value = i64::from(seq & SEQUENCE_MASK);
            if seq & SEQUENCE_TYPE_FLAG != 0 {
                let coin_time =
                    i64::from(self.median_time_past(BlockHeight(coin_height.saturating_sub(1))));
                let min_time = coin_time + (value << 9) - 1;
                if min_time >= i64::from(mtp) {
                    return Err(RejectReason::SequenceLock {
                        input,
                        detail: format!(
                            "it needs a median time past above {min_time} ({value} × 512 s after \
                             the spent output's {coin_time}); the tip's is {mtp}"
                        ),
                    });
                }
            } else {
                let min_height = i64::from(coin_height) + value - 1;
                if min_height >= i64::from(next_height) {
                    return Err(RejectReason::SequenceLock {
                        input,
                        detail: format!(
                            "the spent output confirmed at height {coin_height} and the lock is \
                             {value} blocks, so the earliest block is {}; the next block is {next_height}",
                            min_height + 1
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// BIP-125 rules 3, 4 and 6: the replacement pays for everything it evicts plus its own
    /// relay, and a higher rate than each transaction it conflicts with directly. Returns the
    /// evicted transactions (conflicts and their descendants).
    fn check_replacement(
        &self,
        tx: &Transaction,
        conflicts: &[(OutPoint, Txid)],
        fee: Sat,
        weight: u64,
    ) -> Result<Vec<Txid>, RejectReason> {
        let Some(&(outpoint, spent_by)) = conflicts.first() else {
            return Ok(Vec::new());
        };
        let direct: Vec<Txid> = conflicts.iter().map(|(_, t)| *t).collect();
        let evicted = self.mempool.with_descendants(&direct);
        let evicted_set: HashSet<&Txid> = evicted.iter().collect();
        if let Some(input) = tx
            .input
            .iter()
            .find(|i| evicted_set.contains(&i.previous_output.txid))
        {
            // The replacement spends an output of a transaction it would evict.
            return Err(RejectReason::MissingInput(input.previous_output));
        }
        let evicted_fees: u64 = evicted
            .iter()
            .filter_map(|t| self.mempool.get(t))
            .map(|e| e.fee.0)
            .sum();
        let mut required = evicted_fees.saturating_add(self.min_relay_fee(weight).0);
        for txid in &direct {
            if let Some(entry) = self.mempool.get(txid) {
                let same_rate =
                    u128::from(entry.fee.0) * u128::from(weight) / u128::from(entry.weight.max(1));
                required = required.max(
                    u64::try_from(same_rate)
                        .unwrap_or(u64::MAX)
                        .saturating_add(1),
                );
            }
        }
        if fee.0 < required {
            return Err(RejectReason::InsufficientReplacementFee {
                outpoint,
                spent_by,
                fee,
                required_fee: Sat(required),
            });
        }
        Ok(evicted)
    }
}

fn check_structure(tx: &Transaction) -> Result<(), RejectReason> {
    if tx.is_coinbase() {
        return Err(RejectReason::Malformed(
            "a coinbase can only be mined, not relayed".to_owned(),
        ));
    }
    if tx.input.is_empty() {
        return Err(RejectReason::Malformed("it has no inputs".to_owned()));
    }
    if tx.output.is_empty() {
        return Err(RejectReason::Malformed("it has no outputs".to_owned()));
    }
    if tx.input.len() > 1 {
        let mut seen = HashSet::with_capacity(tx.input.len());
        for input in &tx.input {
            if !seen.insert(input.previous_output) {
                return Err(RejectReason::Malformed(format!(
                    "it spends {} twice",
                    input.previous_output
                )));
            }
        }
    }
    Ok(())
}

/// Checks each output's value range and dust threshold; returns the outputs' sum.
fn check_outputs(tx: &Transaction) -> Result<u64, RejectReason> {
    let mut total = 0u64;
    for (vout, out) in tx.output.iter().enumerate() {
        let value = out.value.to_sat();
        if value > MAX_MONEY_SAT {
            return Err(RejectReason::ValueOutOfRange);
        }
        total = total
            .checked_add(value)
            .ok_or(RejectReason::ValueOutOfRange)?;
        let min = out.script_pubkey.minimal_non_dust().to_sat();
        if value < min {
            return Err(RejectReason::Dust {
                vout: vout as u32,
                value: Sat(value),
                min: Sat(min),
            });
        }
    }
    if total > MAX_MONEY_SAT {
        return Err(RejectReason::ValueOutOfRange);
    }
    Ok(total)
}

/// BIP-65/113 finality: a lock time below the next height (or below the tip's median time
/// past, for time locks) is final, and so is any transaction whose inputs all opt out.
fn check_final(tx: &Transaction, next_height: u32, mtp: u32) -> Result<(), RejectReason> {
    let lock_time = tx.lock_time.to_consensus_u32();
    if lock_time == 0 || tx.input.iter().all(|i| i.sequence == Sequence::MAX) {
        return Ok(());
    }
    let reached = if lock_time < LOCKTIME_THRESHOLD {
        lock_time < next_height
    } else {
        lock_time < mtp
    };
    if reached {
        Ok(())
    } else {
        Err(RejectReason::NonFinalLocktime {
            lock_time,
            next_height: BlockHeight(next_height),
            median_time_past: mtp,
        })
    }
}

/// Runs every input through libbitcoinconsensus with all spent outputs (taproot needs them).
/// The transaction is serialized once for all inputs.
fn verify_scripts(tx: &Transaction, spent: &[&TxOut]) -> Result<(), RejectReason> {
    let bytes = serialize(tx);
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .map(|out| bitcoinconsensus::Utxo {
            script_pubkey: out.script_pubkey.as_bytes().as_ptr(),
            script_pubkey_len: out.script_pubkey.len() as u32,
            value: i64::try_from(out.value.to_sat()).unwrap_or(i64::MAX),
        })
        .collect();
    for (input, (out, txin)) in spent.iter().zip(&tx.input).enumerate() {
        bitcoinconsensus::verify_with_flags(
            out.script_pubkey.as_bytes(),
            out.value.to_sat(),
            &bytes,
            Some(&utxos),
            input,
            SCRIPT_FLAGS,
        )
        .map_err(|error| RejectReason::Script {
            input,
            outpoint: txin.previous_output,
            error,
        })?;
    }
    Ok(())
}
