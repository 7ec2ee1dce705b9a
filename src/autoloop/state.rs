//! The scheduler's mutable state, shared by the pass and the supervision of finished swaps
//! (its own module so neither imports the other for it).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ledger::Ledger;
use crate::policy::{FeeSample, Policy};

/// The scheduler's mutable state; one pass at a time holds it.
#[derive(Debug)]
pub(super) struct State {
    /// The fee ledger, replayed from the store at start.
    pub ledger: Ledger,
    /// The last good policy.
    pub policy: Option<Arc<Policy>>,
    /// Fee gates open on the previous pass (persisted: a restart keeps the hysteresis).
    pub gate_open: BTreeMap<String, bool>,
    /// Past fee estimates per confirmation target for the percentile gate, oldest first.
    pub fee_history: VecDeque<FeeSample>,
    /// The last pass's id.
    pub pass_id: i64,
    /// Each target's last decision (reason, rule): the journal writes a decision only when
    /// it changes or acts. Empty after a start, so the first pass journals every target.
    pub last_journalled: BTreeMap<String, (String, Option<String>)>,
    /// The paid L402 token file (modification time, length) whose price the ledger holds:
    /// while the file is unchanged, a pass looks at its metadata instead of reading it.
    pub l402_booked: Option<(std::time::SystemTime, u64)>,
}
