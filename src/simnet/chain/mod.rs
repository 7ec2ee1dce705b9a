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
//!
//! For notifiers: [`Chain::tx`] (by txid, with block and index), [`Chain::spender`] (by
//! outpoint, with height), [`Chain::outputs_to_script`] (confirmed outputs by script, with
//! height and spender), [`Chain::block_at`] / [`Chain::block_by_hash`], and the event log
//! ([`Chain::events_since`]), whose order is: `BlockConnected`, then per transaction
//! `TxConfirmed` and its `Spent`s; on a reorg, `BlockDisconnected`, then per transaction (last
//! first) `TxUnconfirmed` and its `SpendReverted`s, and once all blocks are gone, `TxAccepted`
//! for each transaction returned to the mempool and `TxRemoved` for old mempool transactions
//! that no longer validate.

#![warn(missing_docs)]

mod accept;
mod blocks;
mod events;
mod faucet;
mod fees;
mod mempool;
mod query;
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
    /// Mempool transactions the block template leaves out (with their descendants) until
    /// released: a miner that ignores them, for tests of what a block takes.
    held: std::collections::HashSet<Txid>,
    /// Outpoints whose mempool spenders the block template leaves out until released.
    held_spends: std::collections::HashSet<OutPoint>,
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
            held: std::collections::HashSet::new(),
            held_spends: std::collections::HashSet::new(),
        };
        chain.connect_genesis();
        let script = chain.faucet.script().clone();
        chain.mine(chain.config.premine_blocks, &script);
        Ok(chain)
    }
}
