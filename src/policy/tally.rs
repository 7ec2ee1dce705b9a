//! What one pass adds up: a target's channels together ([`Agg`]) and the running totals of
//! the swaps decided so far ([`PassState`]). Read by the evaluation (`eval.rs`) and by the
//! views a script gets (`views.rs`), so neither imports the other.

use std::collections::HashMap;

use super::snapshot::Snapshot;
use crate::domain::Sat;

/// Running totals of the pass.
pub(super) struct PassState {
    pub(super) dispatched: u32,
    /// On-chain funds earlier Loop Ins of the pass will spend.
    pub(super) wallet_committed: Sat,
    pub(super) spent_total: Sat,
    pub(super) spent_rule: HashMap<usize, Sat>,
}

/// A target's channels added up.
pub(super) struct Agg {
    pub(super) capacity: Sat,
    pub(super) local: Sat,
    pub(super) remote: Sat,
    pub(super) active: u32,
    pub(super) pending: u32,
    pub(super) age_blocks: u32,
}

pub(super) fn aggregate(snapshot: &Snapshot, idx: &[usize]) -> Agg {
    let mut a = Agg {
        capacity: Sat::ZERO,
        local: Sat::ZERO,
        remote: Sat::ZERO,
        active: 0,
        pending: 0,
        age_blocks: u32::MAX,
    };
    for &i in idx {
        let ch = &snapshot.channels[i];
        a.capacity += ch.capacity;
        a.local += ch.local;
        a.remote += ch.remote;
        a.active += u32::from(ch.active);
        a.pending = a.pending.saturating_add(ch.pending_htlcs);
        a.age_blocks = a.age_blocks.min(ch.age_blocks);
    }
    a
}
