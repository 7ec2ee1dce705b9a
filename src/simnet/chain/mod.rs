//! The simnet chain: blocks, mempool and UTXO set in memory, with real validation.
//!
//! A transaction is accepted only if its inputs exist and are unspent, amounts balance with a
//! fee at or above the minimum relay fee, its lock time and every input's sequence satisfy
//! BIP-65/68/112/113, and every input's script passes Bitcoin Core's interpreter
//! (`bitcoinconsensus`, given all spent outputs so taproot is checked). Blocks are mined on
//! demand ([`Chain::mine`]); [`Chain::reorg`] disconnects blocks and returns their
//! transactions to the mempool; fee estimates follow a [`FeeTrace`].
//!
//! The core is pure and synchronous: no clocks, no I/O, no async. Time comes from the caller
//! through [`Chain::set_clock`]; the async world wraps a `Chain` in a mutex, mines on its
//! interval and turns [`ChainEvent`]s into notifier streams.
//!
//! Funding: [`ChainConfig::premine_blocks`] blocks (101 by default) pay their coinbase to the
//! chain's own faucet key, so [`Chain::faucet`] can pay any script from matured coins with a
//! real, signed, validated transaction. Coinbase outputs mature after 100 blocks, as on Bitcoin.

#![warn(missing_docs)]

mod accept;
mod blocks;
mod events;
mod faucet;
mod fees;
mod mempool;
mod reject;
pub mod sign;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
pub mod testutil;

use std::collections::HashMap;

use bitcoin::{Block, BlockHash, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

pub use events::{ChainEvent, RemovalReason};
pub use faucet::FaucetError;
pub use fees::{FEE_FLOOR_SAT_KW, FeeTrace, MAX_CONF_TARGET};
pub use mempool::MempoolEntry;
pub use reject::RejectReason;

use crate::domain::{BlockHeight, Sat};
use events::EventLog;
use mempool::Mempool;

/// Confirmations a coinbase output needs before it can be spent, as on Bitcoin.
pub const COINBASE_MATURITY: u32 = 100;

/// The consensus block weight limit.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;

/// Bitcoin Core's standard transaction weight limit.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;

/// How the chain behaves. `Default` gives a Bitcoin-like chain that starts with a funded faucet.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainConfig {
    /// The genesis block's timestamp (unix seconds); the clock starts here.
    pub genesis_time: u32,
    /// Seconds the clock moves forward after each mined block. Set 0 when the caller drives
    /// the clock with [`Chain::set_clock`].
    pub block_spacing_secs: u32,
    /// The minimum relay fee in sat per 1000 vbytes (Bitcoin Core's unit; 1000 = 1 sat/vB).
    pub min_relay_fee_sat_kvb: u64,
    /// The fee trace estimates follow.
    pub fee_trace: FeeTrace,
    /// Blocks mined to the faucet at start; 101 makes the first coinbase spendable.
    pub premine_blocks: u32,
    /// Blocks between subsidy halvings.
    pub halving_interval: u32,
    /// The most weight a mined block may carry, coinbase included.
    pub max_block_weight: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            genesis_time: 1_700_000_000,
            block_spacing_secs: 600,
            min_relay_fee_sat_kvb: 1_000,
            fee_trace: FeeTrace::default(),
            premine_blocks: COINBASE_MATURITY + 1,
            halving_interval: 210_000,
            max_block_weight: MAX_BLOCK_WEIGHT,
        }
    }
}

/// An unspent (or undo-recorded) output and where it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output.
    pub txout: TxOut,
    /// The height of the block that created it.
    pub height: BlockHeight,
    /// Whether a coinbase created it (then it matures after [`COINBASE_MATURITY`] blocks).
    pub is_coinbase: bool,
}

/// Where a confirmed transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// The block's height.
    pub height: BlockHeight,
    /// The transaction's index in the block.
    pub index: u32,
}

/// A transaction the chain knows, confirmed or in the mempool.
#[derive(Debug, Clone, Copy)]
pub enum TxStatus<'a> {
    /// Waiting in the mempool.
    Mempool(&'a MempoolEntry),
    /// In the active chain.
    Confirmed {
        /// The transaction.
        tx: &'a Transaction,
        /// Where it is.
        location: TxLocation,
        /// The hash of its block.
        block_hash: BlockHash,
    },
}

/// Who spends an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    /// The spending transaction.
    pub txid: Txid,
    /// The spending input's index.
    pub input_index: u32,
    /// The height the spend confirmed at; `None` while it is in the mempool.
    pub height: Option<BlockHeight>,
}

/// A confirmed output paying a script (see [`Chain::outputs_to_script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// The output.
    pub outpoint: OutPoint,
    /// What it pays.
    pub value: Sat,
    /// The height it confirmed at.
    pub height: BlockHeight,
    /// Its confirmed spender, if any.
    pub spent_by: Option<Txid>,
}

/// An output a wallet can spend now or soon (see [`Chain::unspent_outputs_to_script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnspentOutput {
    /// The output's location.
    pub outpoint: OutPoint,
    /// The output.
    pub txout: TxOut,
    /// The height it confirmed at; `None` while its transaction is in the mempool.
    pub height: Option<BlockHeight>,
    /// Whether a coinbase created it (spendable after [`COINBASE_MATURITY`] confirmations).
    pub is_coinbase: bool,
}

/// What [`Chain::accept`] did with a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The transaction.
    pub txid: Txid,
    /// Its fee.
    pub fee: Sat,
    /// Its weight in weight units.
    pub weight: u64,
    /// Mempool transactions it replaced, with their descendants.
    pub replaced: Vec<Txid>,
}

/// What [`Chain::reorg`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReorgOutcome {
    /// The disconnected blocks, the old tip first.
    pub disconnected: Vec<BlockHash>,
    /// Transactions from those blocks now back in the mempool.
    pub returned: Vec<Txid>,
    /// Transactions (from those blocks or the old mempool) that no longer validate, and why.
    pub dropped: Vec<(Txid, RejectReason)>,
}

/// Why a chain operation other than accepting a transaction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A reorg deeper than the chain (the genesis block can't be disconnected).
    #[error(
        "cannot reorg {depth} blocks: the tip is at height {height}; use a depth of at most {height}"
    )]
    ReorgTooDeep {
        /// The depth asked for.
        depth: u32,
        /// The tip height.
        height: BlockHeight,
    },
}

#[derive(Clone)]
pub(super) struct StoredBlock {
    block: Block,
    hash: BlockHash,
    /// Coins the block spent, to restore on disconnect.
    undo: Vec<(OutPoint, Coin)>,
}

/// The chain state. See the module documentation. Cloning forks an independent copy.
#[derive(Clone)]
pub struct Chain {
    config: ChainConfig,
    blocks: Vec<StoredBlock>,
    by_hash: HashMap<BlockHash, u32>,
    utxos: HashMap<OutPoint, Coin>,
    tx_index: HashMap<Txid, TxLocation>,
    /// Confirmed spends of outputs (kept after the output leaves the UTXO set).
    spends: HashMap<OutPoint, Spend>,
    /// Confirmed outputs by script, spent or not.
    by_script: HashMap<ScriptBuf, Vec<OutPoint>>,
    mempool: Mempool,
    events: EventLog,
    fee_trace: FeeTrace,
    clock: u32,
    /// Counts mined blocks so a re-mined height gets a different coinbase and hash.
    mined: u64,
    faucet: faucet::Faucet,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("height", &self.height())
            .field("tip", &self.tip_hash())
            .field("mempool", &self.mempool.len())
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// A chain with its genesis block and `config.premine_blocks` blocks paying the faucet.
    pub fn new(config: ChainConfig) -> Result<Chain, FaucetError> {
        let faucet = faucet::Faucet::new()?;
        let mut chain = Chain {
            fee_trace: config.fee_trace.clone(),
            clock: config.genesis_time,
            config,
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            utxos: HashMap::new(),
            tx_index: HashMap::new(),
            spends: HashMap::new(),
            by_script: HashMap::new(),
            mempool: Mempool::default(),
            events: EventLog::default(),
            mined: 0,
            faucet,
        };
        chain.connect_genesis();
        let script = chain.faucet.script().clone();
        chain.mine(chain.config.premine_blocks, &script);
        Ok(chain)
    }

    /// The configuration the chain was built with.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The tip's height.
    pub fn height(&self) -> BlockHeight {
        BlockHeight(self.blocks.len().saturating_sub(1) as u32)
    }

    /// The tip's hash.
    pub fn tip_hash(&self) -> BlockHash {
        self.blocks
            .last()
            .map_or_else(bitcoin::hashes::Hash::all_zeros, |b| b.hash)
    }

    /// The hash of the block at `height` in the active chain.
    pub fn block_hash(&self, height: BlockHeight) -> Option<BlockHash> {
        self.blocks.get(height.0 as usize).map(|b| b.hash)
    }

    /// The block at `height` in the active chain.
    pub fn block_at(&self, height: BlockHeight) -> Option<&Block> {
        self.blocks.get(height.0 as usize).map(|b| &b.block)
    }

    /// The block with `hash` and its height, if it is in the active chain (disconnected blocks
    /// are forgotten).
    pub fn block_by_hash(&self, hash: &BlockHash) -> Option<(BlockHeight, &Block)> {
        let height = *self.by_hash.get(hash)?;
        self.blocks
            .get(height as usize)
            .map(|b| (BlockHeight(height), &b.block))
    }

    /// The median of the last 11 block timestamps ending at `height` (BIP-113).
    pub fn median_time_past(&self, height: BlockHeight) -> u32 {
        let end = (height.0 as usize + 1).min(self.blocks.len());
        let start = end.saturating_sub(11);
        let mut times: Vec<u32> = self.blocks[start..end]
            .iter()
            .map(|b| b.block.header.time)
            .collect();
        times.sort_unstable();
        times
            .get(times.len() / 2)
            .copied()
            .unwrap_or(self.config.genesis_time)
    }

    /// The clock (unix seconds) the next block's timestamp derives from.
    pub fn clock(&self) -> u32 {
        self.clock
    }

    /// Sets the clock. Blocks get `max(clock, median time past + 1)` as timestamp, so moving it
    /// backwards never makes an invalid block.
    pub fn set_clock(&mut self, unix_secs: u32) {
        self.clock = unix_secs;
    }

    /// A transaction by txid, in the mempool or confirmed.
    pub fn tx(&self, txid: &Txid) -> Option<TxStatus<'_>> {
        if let Some(entry) = self.mempool.get(txid) {
            return Some(TxStatus::Mempool(entry));
        }
        let location = *self.tx_index.get(txid)?;
        let stored = self.blocks.get(location.height.0 as usize)?;
        let tx = stored.block.txdata.get(location.index as usize)?;
        Some(TxStatus::Confirmed {
            tx,
            location,
            block_hash: stored.hash,
        })
    }

    /// The confirmed, unspent output at `outpoint` (it may be spent in the mempool).
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.utxos.get(outpoint)
    }

    /// Who spends `outpoint`: a confirmed spender with its height, else a mempool spender.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<Spend> {
        if let Some(spend) = self.spends.get(outpoint) {
            return Some(*spend);
        }
        let txid = self.mempool.spender(outpoint)?;
        let entry = self.mempool.get(&txid)?;
        let input_index = entry
            .tx
            .input
            .iter()
            .position(|i| i.previous_output == *outpoint)?;
        Some(Spend {
            txid,
            input_index: input_index as u32,
            height: None,
        })
    }

    /// Every confirmed output paying `script`, spent or not, oldest first.
    pub fn outputs_to_script(&self, script: &bitcoin::Script) -> Vec<ScriptOutput> {
        let Some(outpoints) = self.by_script.get(script) else {
            return Vec::new();
        };
        outpoints
            .iter()
            .filter_map(|op| {
                let location = self.tx_index.get(&op.txid)?;
                let tx = self
                    .blocks
                    .get(location.height.0 as usize)?
                    .block
                    .txdata
                    .get(location.index as usize)?;
                let txout = tx.output.get(op.vout as usize)?;
                Some(ScriptOutput {
                    outpoint: *op,
                    value: Sat(txout.value.to_sat()),
                    height: location.height,
                    spent_by: self.spends.get(op).map(|s| s.txid),
                })
            })
            .collect()
    }

    /// Outputs paying `script` that nothing spends, not even a mempool transaction: confirmed
    /// ones oldest first, then unconfirmed ones. What a wallet lists as its UTXOs.
    pub fn unspent_outputs_to_script(&self, script: &bitcoin::Script) -> Vec<UnspentOutput> {
        let confirmed = self
            .by_script
            .get(script)
            .into_iter()
            .flatten()
            .filter_map(|op| {
                let coin = self.utxos.get(op)?;
                Some(UnspentOutput {
                    outpoint: *op,
                    txout: coin.txout.clone(),
                    height: Some(coin.height),
                    is_coinbase: coin.is_coinbase,
                })
            });
        let unconfirmed = self
            .mempool
            .outputs_to(script)
            .into_iter()
            .map(|(outpoint, txout)| UnspentOutput {
                outpoint,
                txout,
                height: None,
                is_coinbase: false,
            });
        confirmed
            .chain(unconfirmed)
            .filter(|o| self.mempool.spender(&o.outpoint).is_none())
            .collect()
    }

    /// The mempool entry for `txid`.
    pub fn mempool_entry(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.mempool.get(txid)
    }

    /// Every mempool transaction in arrival order (parents before children).
    pub fn mempool_txids(&self) -> Vec<Txid> {
        self.mempool.txids_in_order()
    }

    /// The fee rate (sat/kw) to confirm within `conf_target` blocks, from the fee trace.
    pub fn estimate_fee_sat_kw(&self, conf_target: u32) -> u64 {
        self.fee_trace.estimate(conf_target, self.height())
    }

    /// The fee trace estimates follow.
    pub fn fee_trace(&self) -> &FeeTrace {
        &self.fee_trace
    }

    /// Replaces the fee trace (e.g. a spike scenario).
    pub fn set_fee_trace(&mut self, trace: FeeTrace) {
        self.fee_trace = trace;
    }

    /// Makes every estimate `sat_kw` from now on (`sluice simnet fee`).
    pub fn set_fee_rate(&mut self, sat_kw: u64) {
        self.fee_trace = FeeTrace::Flat(sat_kw);
    }

    /// The sequence number the next event will get; read events from here on.
    pub fn next_event_seq(&self) -> u64 {
        self.events.next_seq()
    }

    /// Events with sequence number `seq` or later, with their numbers. If `seq` was pruned the
    /// first number returned is larger than `seq`, so a reader can tell it missed events.
    pub fn events_since(&self, seq: u64) -> impl Iterator<Item = (u64, &ChainEvent)> {
        self.events.since(seq)
    }

    /// Forgets events numbered below `seq` (once every reader is past them).
    pub fn prune_events(&mut self, seq: u64) {
        self.events.prune_before(seq);
    }

    /// The block subsidy at `height`: 50 BTC halving every `halving_interval` blocks.
    pub fn subsidy(&self, height: BlockHeight) -> Sat {
        let halvings = height.0 / self.config.halving_interval.max(1);
        if halvings >= 64 {
            return Sat::ZERO;
        }
        Sat((50 * 100_000_000) >> halvings)
    }
}
