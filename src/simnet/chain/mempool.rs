//! The mempool: accepted, unconfirmed transactions, indexed by txid and by the outputs they
//! spend, with the parent/child links needed for chains, RBF and block templates.

use std::collections::{HashMap, HashSet};

use bitcoin::{OutPoint, Transaction, TxOut, Txid};

use crate::domain::Sat;

/// One mempool transaction and what validation learnt about it.
#[derive(Debug, Clone)]
pub struct MempoolEntry {
    /// The transaction.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Sat,
    /// Its weight in weight units.
    pub weight: u64,
    /// Arrival order; parents always arrive before children.
    pub(super) seq: u64,
}

impl MempoolEntry {
    /// The fee rate in sat/kw.
    pub fn fee_rate_sat_kw(&self) -> u64 {
        self.fee.0.saturating_mul(1000) / self.weight.max(1)
    }

    /// The virtual size in vbytes (weight / 4, rounded up).
    pub fn vsize(&self) -> u64 {
        self.weight.div_ceil(4)
    }
}

#[derive(Debug, Default, Clone)]
pub(super) struct Mempool {
    entries: HashMap<Txid, MempoolEntry>,
    /// Which mempool transaction spends each outpoint.
    spends: HashMap<OutPoint, Txid>,
    next_seq: u64,
}

impl Mempool {
    pub(super) fn get(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.entries.get(txid)
    }

    pub(super) fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The mempool transaction spending `outpoint`, if any.
    pub(super) fn spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spends.get(outpoint).copied()
    }

    /// An output created by a mempool transaction (spent or not).
    pub(super) fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.entries
            .get(&outpoint.txid)
            .and_then(|e| e.tx.output.get(usize::try_from(outpoint.vout).ok()?))
    }

    pub(super) fn insert(&mut self, txid: Txid, tx: Transaction, fee: Sat, weight: u64) {
        for input in &tx.input {
            self.spends.insert(input.previous_output, txid);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            txid,
            MempoolEntry {
                tx,
                fee,
                weight,
                seq,
            },
        );
    }

    /// Removes one transaction (not its descendants) and its spend index entries.
    pub(super) fn remove(&mut self, txid: &Txid) -> Option<MempoolEntry> {
        let entry = self.entries.remove(txid)?;
        for input in &entry.tx.input {
            if self.spends.get(&input.previous_output) == Some(txid) {
                self.spends.remove(&input.previous_output);
            }
        }
        Some(entry)
    }

    /// `roots` and every mempool transaction descending from them, parents before children.
    pub(super) fn with_descendants(&self, roots: &[Txid]) -> Vec<Txid> {
        let mut seen: HashSet<Txid> = HashSet::new();
        let mut stack: Vec<Txid> = roots.to_vec();
        while let Some(txid) = stack.pop() {
            if !seen.insert(txid) {
                continue;
            }
            if let Some(entry) = self.entries.get(&txid) {
                for vout in 0..entry.tx.output.len() {
                    let op = OutPoint {
                        txid,
                        vout: vout as u32,
                    };
                    if let Some(child) = self.spends.get(&op) {
                        stack.push(*child);
                    }
                }
            }
        }
        let mut out: Vec<Txid> = seen
            .into_iter()
            .filter(|t| self.entries.contains_key(t))
            .collect();
        out.sort_by_key(|t| self.entries.get(t).map_or(0, |e| e.seq));
        out
    }

    /// Every transaction in arrival order (parents before children).
    pub(super) fn txids_in_order(&self) -> Vec<Txid> {
        let mut all: Vec<(&Txid, u64)> = self.entries.iter().map(|(t, e)| (t, e.seq)).collect();
        all.sort_by_key(|(_, seq)| *seq);
        all.into_iter().map(|(t, _)| *t).collect()
    }

    /// Empties the mempool, returning its transactions in arrival order.
    pub(super) fn drain_in_order(&mut self) -> Vec<Transaction> {
        let order = self.txids_in_order();
        self.spends.clear();
        order
            .iter()
            .filter_map(|t| self.entries.remove(t))
            .map(|e| e.tx)
            .collect()
    }

    /// A block template: the highest fee-rate transactions whose mempool parents are already
    /// in, up to `max_weight`, in dependency order, leaving out `held` and every spender of
    /// `held_spends` (and so their descendants).
    pub(super) fn select(
        &self,
        max_weight: u64,
        held: &HashSet<Txid>,
        held_spends: &HashSet<OutPoint>,
    ) -> Vec<Txid> {
        let mut candidates: Vec<(&Txid, &MempoolEntry)> = self.entries.iter().collect();
        candidates.sort_by(|a, b| {
            b.1.fee_rate_sat_kw()
                .cmp(&a.1.fee_rate_sat_kw())
                .then(a.1.seq.cmp(&b.1.seq))
        });
        let mut chosen: Vec<Txid> = Vec::new();
        let mut included: HashSet<Txid> = HashSet::new();
        let mut weight = 0u64;
        loop {
            let mut progressed = false;
            for (txid, entry) in &candidates {
                if included.contains(*txid)
                    || held.contains(*txid)
                    || entry
                        .tx
                        .input
                        .iter()
                        .any(|i| held_spends.contains(&i.previous_output))
                    || weight + entry.weight > max_weight
                {
                    continue;
                }
                let parents_in = entry.tx.input.iter().all(|i| {
                    let parent = &i.previous_output.txid;
                    !self.entries.contains_key(parent) || included.contains(parent)
                });
                if parents_in {
                    included.insert(**txid);
                    chosen.push(**txid);
                    weight += entry.weight;
                    progressed = true;
                }
            }
            if !progressed {
                return chosen;
            }
        }
    }
}

impl Mempool {
    /// Outputs of mempool transactions paying `script` (spent in the mempool or not).
    pub(super) fn outputs_to(&self, script: &bitcoin::Script) -> Vec<(OutPoint, TxOut)> {
        let mut out = Vec::new();
        for (txid, entry) in &self.entries {
            for (vout, txout) in entry.tx.output.iter().enumerate() {
                if txout.script_pubkey.as_script() == script {
                    out.push((
                        OutPoint {
                            txid: *txid,
                            vout: vout as u32,
                        },
                        txout.clone(),
                    ));
                }
            }
        }
        out
    }
}
