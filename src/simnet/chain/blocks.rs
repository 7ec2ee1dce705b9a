//! Mining, connecting and disconnecting blocks, and reorgs.
//!
//! Blocks are real: a BIP-34 coinbase paying subsidy plus fees, a BIP-141 witness commitment,
//! a correct merkle root and regtest proof of work, so anything that parses blocks can.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::opcodes::all::OP_RETURN;
use bitcoin::script::Builder;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, Script, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Witness, absolute, transaction,
};

use super::{
    Chain, ChainError, ChainEvent, Coin, RejectReason, RemovalReason, ReorgOutcome, Spend,
    StoredBlock, TxLocation,
};
use crate::domain::{BlockHeight, Sat};

/// Regtest's proof-of-work limit: about one hash in two meets it.
const REGTEST_BITS: u32 = 0x207f_ffff;

/// Weight kept free for the coinbase when filling a block.
const COINBASE_WEIGHT_RESERVE: u64 = 4_000;

/// The BIP-141 witness commitment header.
const WITNESS_COMMITMENT_HEADER: [u8; 4] = [0xaa, 0x21, 0xa9, 0xed];

impl Chain {
    /// Mines `n` blocks on the tip, each filled from the mempool (highest fee rate first,
    /// parents before children, up to the block weight limit) and paying subsidy plus fees to
    /// `coinbase_script`. Returns the new blocks' hashes, oldest first.
    pub fn mine(&mut self, n: u32, coinbase_script: &Script) -> Vec<BlockHash> {
        (0..n).map(|_| self.mine_one(coinbase_script)).collect()
    }

    /// Leaves the mempool transaction `txid` (and anything spending it) out of every block mined
    /// until [`Chain::release`]; it stays in the mempool and can still be replaced. Holding a
    /// transaction not (yet) in the mempool holds it once it arrives.
    pub fn hold(&mut self, txid: Txid) {
        self.held.insert(txid);
    }

    /// Lets a held transaction be mined again.
    pub fn release(&mut self, txid: &Txid) {
        self.held.remove(txid);
    }

    /// Leaves every mempool transaction spending `outpoint` (whichever version, present or
    /// future) out of the blocks mined until [`Chain::release_spends`].
    pub fn hold_spends(&mut self, outpoint: OutPoint) {
        self.held_spends.insert(outpoint);
    }

    /// Lets spenders of a held outpoint be mined again.
    pub fn release_spends(&mut self, outpoint: &OutPoint) {
        self.held_spends.remove(outpoint);
    }

    /// Puts `tx` in the mempool even if a mempool transaction paying more already spends the
    /// same outputs: those (and their descendants) are evicted as replaced, as a miner who
    /// saw `tx` first would keep it. `tx` must otherwise be valid. This is how a test makes an
    /// older version of a replaced transaction the one that confirms.
    pub fn force_into_mempool(&mut self, tx: Transaction) -> Result<Txid, RejectReason> {
        let txid = tx.compute_txid();
        let conflicts: Vec<Txid> = tx
            .input
            .iter()
            .filter_map(|i| self.mempool.spender(&i.previous_output))
            .filter(|t| *t != txid)
            .collect();
        for old in self.mempool.with_descendants(&conflicts) {
            if self.mempool.remove(&old).is_some() {
                self.events.push(ChainEvent::TxRemoved {
                    txid: old,
                    reason: RemovalReason::Replaced { by: txid },
                });
            }
        }
        self.accept(tx).map(|a| a.txid)
    }

    /// Disconnects the top `depth` blocks, then returns their non-coinbase transactions to the
    /// mempool (re-validated, oldest block first) and re-validates the old mempool after them.
    /// Transactions that no longer validate (e.g. spending a vanished coinbase) are dropped.
    /// Mining afterwards builds a different chain: every coinbase is unique.
    pub fn reorg(&mut self, depth: u32) -> Result<ReorgOutcome, ChainError> {
        let height = self.height();
        if depth > height.0 {
            return Err(ChainError::ReorgTooDeep { depth, height });
        }
        let mut disconnected = Vec::new();
        let mut block_txs = Vec::new();
        for _ in 0..depth {
            if let Some((hash, txs)) = self.disconnect_tip() {
                disconnected.push(hash);
                block_txs.push(txs);
            }
        }
        let old_mempool = self.mempool.drain_in_order();
        let mut returned = Vec::new();
        let mut dropped = Vec::new();
        for tx in block_txs.into_iter().rev().flatten() {
            let txid = tx.compute_txid();
            match self.accept_inner(tx, true) {
                Ok(_) => returned.push(txid),
                Err(reason) => dropped.push((txid, reason)),
            }
        }
        for tx in old_mempool {
            let txid = tx.compute_txid();
            if let Err(reason) = self.accept_inner(tx, false) {
                self.events.push(ChainEvent::TxRemoved {
                    txid,
                    reason: RemovalReason::Invalid(reason.clone()),
                });
                dropped.push((txid, reason));
            }
        }
        Ok(ReorgOutcome {
            disconnected,
            returned,
            dropped,
        })
    }

    pub(super) fn connect_genesis(&mut self) {
        let marker = Builder::new()
            .push_opcode(OP_RETURN)
            .push_slice(*b"sluice simnet")
            .into_script();
        let block = self.build_block(0, &marker, Sat::ZERO, Vec::new());
        self.connect_block(block);
    }

    fn mine_one(&mut self, coinbase_script: &Script) -> BlockHash {
        let height = self.height().0 + 1;
        let budget = self
            .config
            .max_block_weight
            .saturating_sub(COINBASE_WEIGHT_RESERVE);
        let mut fees = Sat::ZERO;
        let mut txs = Vec::new();
        for txid in self.mempool.select(budget, &self.held, &self.held_spends) {
            if let Some(entry) = self.mempool.get(&txid) {
                fees += entry.fee;
                txs.push(entry.tx.clone());
            }
        }
        let reward = self.subsidy(BlockHeight(height)) + fees;
        let block = self.build_block(height, coinbase_script, reward, txs);
        self.connect_block(block)
    }

    fn build_block(
        &mut self,
        height: u32,
        coinbase_script: &Script,
        reward: Sat,
        txs: Vec<Transaction>,
    ) -> Block {
        self.mined += 1;
        let script_sig = Builder::new()
            .push_int(i64::from(height))
            .push_slice(self.mined.to_le_bytes())
            .into_script();
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(reward.0),
                script_pubkey: coinbase_script.to_owned(),
            }],
        };
        let time = if self.blocks.is_empty() {
            self.clock
        } else {
            self.clock
                .max(self.median_time_past(self.height()).saturating_add(1))
        };
        let mut txdata = Vec::with_capacity(txs.len() + 1);
        txdata.push(coinbase);
        txdata.extend(txs);
        let mut block = Block {
            header: Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: self.tip_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time,
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata,
        };
        if let Some(root) = block.witness_root() {
            let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
            let mut data = [0u8; 36];
            data[..4].copy_from_slice(&WITNESS_COMMITMENT_HEADER);
            data[4..].copy_from_slice(commitment.as_byte_array());
            let script = Builder::new()
                .push_opcode(OP_RETURN)
                .push_slice(data)
                .into_script();
            if let Some(cb) = block.txdata.first_mut() {
                cb.output.push(TxOut {
                    value: Amount::ZERO,
                    script_pubkey: script,
                });
            }
        }
        block.header.merkle_root = block
            .compute_merkle_root()
            .unwrap_or_else(TxMerkleNode::all_zeros);
        while block.header.validate_pow(block.header.target()).is_err() {
            block.header.nonce = block.header.nonce.wrapping_add(1);
        }
        self.clock = time.saturating_add(self.config.block_spacing_secs);
        block
    }

    /// Appends `block` to the tip, updating the UTXO set and indexes, removing its transactions
    /// from the mempool and logging its events.
    fn connect_block(&mut self, block: Block) -> BlockHash {
        let height = BlockHeight(self.blocks.len() as u32);
        let hash = block.block_hash();
        let txids: Vec<Txid> = block.txdata.iter().map(Transaction::compute_txid).collect();
        self.events.push(ChainEvent::BlockConnected {
            height,
            hash,
            txids: txids.clone(),
        });
        let mut undo = Vec::new();
        for (index, (tx, &txid)) in block.txdata.iter().zip(&txids).enumerate() {
            let is_coinbase = index == 0;
            self.tx_index.insert(
                txid,
                TxLocation {
                    height,
                    index: index as u32,
                },
            );
            self.mempool.remove(&txid);
            self.events.push(ChainEvent::TxConfirmed {
                txid,
                height,
                block_hash: hash,
                index: index as u32,
            });
            if !is_coinbase {
                for (input_index, txin) in tx.input.iter().enumerate() {
                    let outpoint = txin.previous_output;
                    if let Some(coin) = self.utxos.remove(&outpoint) {
                        undo.push((outpoint, coin));
                    }
                    let input_index = input_index as u32;
                    self.spends.insert(
                        outpoint,
                        Spend {
                            txid,
                            input_index,
                            height: Some(height),
                        },
                    );
                    self.events.push(ChainEvent::Spent {
                        outpoint,
                        spender: txid,
                        input_index,
                        height,
                    });
                }
            }
            for (vout, txout) in tx.output.iter().enumerate() {
                if txout.script_pubkey.is_op_return() {
                    continue;
                }
                let outpoint = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                self.by_script
                    .entry(txout.script_pubkey.clone())
                    .or_default()
                    .push(outpoint);
                self.utxos.insert(
                    outpoint,
                    Coin {
                        txout: txout.clone(),
                        height,
                        is_coinbase,
                    },
                );
            }
        }
        self.by_hash.insert(hash, height.0);
        self.blocks.push(StoredBlock { block, hash, undo });
        hash
    }

    /// Removes the tip block (never genesis), restoring the coins it spent. Returns its hash
    /// and its non-coinbase transactions in block order.
    fn disconnect_tip(&mut self) -> Option<(BlockHash, Vec<Transaction>)> {
        if self.blocks.len() <= 1 {
            return None;
        }
        let stored = self.blocks.pop()?;
        let height = BlockHeight(self.blocks.len() as u32);
        self.by_hash.remove(&stored.hash);
        let txids: Vec<Txid> = stored
            .block
            .txdata
            .iter()
            .map(Transaction::compute_txid)
            .collect();
        self.events.push(ChainEvent::BlockDisconnected {
            height,
            hash: stored.hash,
            txids: txids.clone(),
        });
        for (index, (tx, &txid)) in stored.block.txdata.iter().zip(&txids).enumerate().rev() {
            for (vout, txout) in tx.output.iter().enumerate() {
                let outpoint = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                self.utxos.remove(&outpoint);
                if let Some(list) = self.by_script.get_mut(&txout.script_pubkey) {
                    list.retain(|op| *op != outpoint);
                    if list.is_empty() {
                        self.by_script.remove(&txout.script_pubkey);
                    }
                }
            }
            self.tx_index.remove(&txid);
            self.events.push(ChainEvent::TxUnconfirmed { txid, height });
            if index > 0 {
                for txin in &tx.input {
                    let outpoint = txin.previous_output;
                    self.spends.remove(&outpoint);
                    self.events.push(ChainEvent::SpendReverted {
                        outpoint,
                        spender: txid,
                        height,
                    });
                }
            }
        }
        for (outpoint, coin) in stored.undo {
            self.utxos.insert(outpoint, coin);
        }
        let txs = stored.block.txdata.into_iter().skip(1).collect();
        Some((stored.hash, txs))
    }
}
