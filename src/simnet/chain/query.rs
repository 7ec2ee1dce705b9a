//! Read access to the chain for notifiers and wallets (by height, hash, txid, outpoint and
//! script), the clock, fee estimates and the event log.

use bitcoin::{Block, BlockHash, OutPoint, Txid};

use super::{
    Chain, ChainConfig, ChainEvent, Coin, FeeTrace, MempoolEntry, ScriptOutput, Spend, TxStatus,
    UnspentOutput,
};
use crate::domain::{BlockHeight, Sat};

impl Chain {
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
