//! The chain's event log: every change to blocks, mempool and spends, in order, with a sequence
//! number, so the simulated lnd can serve ChainNotifier streams (and catch up after a hint)
//! by reading from a cursor instead of holding callbacks into the pure core.

use std::collections::VecDeque;

use bitcoin::{BlockHash, OutPoint, Txid};

use super::RejectReason;
use crate::domain::BlockHeight;

/// One change to the chain, as a notifier would report it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEvent {
    /// A block became the new tip. Followed by its `TxConfirmed` and `Spent` events.
    BlockConnected {
        /// The block's height.
        height: BlockHeight,
        /// The block's hash.
        hash: BlockHash,
        /// Every transaction in the block, coinbase first.
        txids: Vec<Txid>,
    },
    /// The tip block was disconnected by a reorg. Followed by its `TxUnconfirmed` and
    /// `SpendReverted` events; returned transactions re-enter the mempool afterwards.
    BlockDisconnected {
        /// The height the block had.
        height: BlockHeight,
        /// The block's hash.
        hash: BlockHash,
        /// Every transaction the block had, coinbase first.
        txids: Vec<Txid>,
    },
    /// A transaction entered the mempool (new, or returned there by a reorg).
    TxAccepted {
        /// The transaction.
        txid: Txid,
        /// Mempool transactions it replaced (with their descendants), by RBF.
        replaced: Vec<Txid>,
    },
    /// A transaction left the mempool without confirming.
    TxRemoved {
        /// The transaction.
        txid: Txid,
        /// Why it left.
        reason: RemovalReason,
    },
    /// A transaction confirmed in a connected block.
    TxConfirmed {
        /// The transaction.
        txid: Txid,
        /// The block's height.
        height: BlockHeight,
        /// The block's hash.
        block_hash: BlockHash,
        /// The transaction's index in the block.
        index: u32,
    },
    /// A confirmed transaction's block was disconnected.
    TxUnconfirmed {
        /// The transaction.
        txid: Txid,
        /// The height it had confirmed at.
        height: BlockHeight,
    },
    /// An output was spent by a transaction in a connected block.
    Spent {
        /// The spent output.
        outpoint: OutPoint,
        /// The spending transaction.
        spender: Txid,
        /// The spending input's index.
        input_index: u32,
        /// The height the spend confirmed at.
        height: BlockHeight,
    },
    /// A confirmed spend was undone by a reorg; the output is unspent on chain again.
    SpendReverted {
        /// The output.
        outpoint: OutPoint,
        /// The transaction whose spend was undone.
        spender: Txid,
        /// The height the spend had confirmed at.
        height: BlockHeight,
    },
}

/// Why a transaction left the mempool without confirming.
#[derive(Debug, Clone, PartialEq)]
pub enum RemovalReason {
    /// A conflicting transaction paying more replaced it (or one of its ancestors).
    Replaced {
        /// The replacement.
        by: Txid,
    },
    /// After a reorg it no longer validates (e.g. it spent a coinbase that is gone).
    Invalid(RejectReason),
}

/// An append-only log with a moving start, addressed by sequence numbers that never repeat.
#[derive(Debug, Default, Clone)]
pub(super) struct EventLog {
    events: VecDeque<ChainEvent>,
    /// The sequence number of `events[0]`.
    base: u64,
}

impl EventLog {
    pub(super) fn push(&mut self, event: ChainEvent) {
        self.events.push_back(event);
    }

    /// The sequence number the next event will get.
    pub(super) fn next_seq(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    /// Events with sequence number `seq` or later (from the oldest kept, if `seq` was pruned).
    pub(super) fn since(&self, seq: u64) -> impl Iterator<Item = (u64, &ChainEvent)> {
        let skip = usize::try_from(seq.saturating_sub(self.base)).unwrap_or(usize::MAX);
        let base = self.base;
        self.events
            .iter()
            .enumerate()
            .skip(skip)
            .map(move |(i, e)| (base + i as u64, e))
    }

    /// Drops events older than `seq`.
    pub(super) fn prune_before(&mut self, seq: u64) {
        while self.base < seq && self.events.pop_front().is_some() {
            self.base += 1;
        }
    }
}
