//! The read-only input of one evaluation pass: plain data the caller assembles from lnd, the
//! fee estimator, the ledger and the swap store. Nothing here does I/O or reads a clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::script::FlowWindow;
use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Ppm, Sat};

/// Everything one pass may look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The time of the pass (UTC).
    pub now: DateTime<Utc>,
    /// Open channels.
    pub channels: Vec<Channel>,
    /// Fee estimates and their recent history.
    pub fees: FeeMarket,
    /// What the budgets have left (the ledger's numbers).
    pub budget: BudgetLeft,
    /// Swaps not yet finished, manual or automatic.
    pub in_flight: Vec<InFlightSwap>,
    /// Failure history per channel, persisted by the caller.
    pub backoff: BTreeMap<ChanId, BackoffState>,
    /// The swap server's current Loop Out terms.
    pub terms: ServerTerms,
    /// The swap server's current Loop In terms.
    pub terms_in: LoopInServerTerms,
    /// What lnd's wallet can spend on chain (confirmed), which funds Loop Ins; `None` when
    /// unknown, and then not checked.
    pub wallet: Option<Sat>,
    /// Whether each rule's fee gate was open on the previous pass (hysteresis); rules not
    /// listed start closed.
    pub gate_open: BTreeMap<String, bool>,
    /// Autoloop is off: decide everything, dispatch nothing.
    pub dry_run: bool,
}

/// One channel as lnd reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Short channel id.
    pub id: ChanId,
    /// Peer pubkey, lower-case hex.
    pub peer: String,
    /// Peer alias.
    pub alias: String,
    /// Capacity.
    pub capacity: Sat,
    /// Local balance (lnd's figure; reserve and pending HTLCs not subtracted).
    pub local: Sat,
    /// Remote balance: the inbound liquidity.
    pub remote: Sat,
    /// Whether the peer is online and the channel usable.
    pub active: bool,
    /// HTLCs pending on the channel.
    pub pending_htlcs: u32,
    /// Age in blocks.
    pub age_blocks: u32,
    /// Tags from outside the policy (e.g. the operator's labels).
    pub tags: Vec<String>,
    /// Routing activity per window.
    pub flows: Vec<FlowWindow>,
}

/// The routing fee a swap payment is expected to cost before any swap of sluice's has
/// completed (0.1 %), the same in `sluice policy test` and in the daemon.
pub const DEFAULT_ROUTING_PPM: Ppm = Ppm(1_000);

/// Fee estimates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeMarket {
    /// Current estimates as (confirmation target in blocks, rate), any order.
    pub estimates: Vec<(u32, SatPerKw)>,
    /// Past estimates for the percentile gate, any order; a rule's gate reads only the
    /// samples of the confirmation target its own estimate is for.
    pub history: Vec<FeeSample>,
    /// Typical off-chain routing fee of a swap payment, for the expected cost: the daemon
    /// derives it from sluice's recent swaps, [`DEFAULT_ROUTING_PPM`] before there are any.
    pub routing_ppm: Ppm,
}

impl Default for FeeMarket {
    fn default() -> FeeMarket {
        FeeMarket {
            estimates: Vec::new(),
            history: Vec::new(),
            routing_ppm: DEFAULT_ROUTING_PPM,
        }
    }
}

impl FeeMarket {
    /// The estimate for `conf_target`: the one for the largest target not above it, or the
    /// most urgent one if all are above.
    pub fn estimate(&self, conf_target: u32) -> Option<SatPerKw> {
        self.estimate_entry(conf_target).map(|(_, r)| r)
    }

    /// Like [`FeeMarket::estimate`], with the confirmation target the estimate is for: the
    /// key of the history samples the gate compares it with.
    pub fn estimate_entry(&self, conf_target: u32) -> Option<(u32, SatPerKw)> {
        self.estimates
            .iter()
            .filter(|(t, _)| *t <= conf_target)
            .max_by_key(|(t, _)| *t)
            .or_else(|| self.estimates.iter().min_by_key(|(t, _)| *t))
            .copied()
    }
}

/// One past fee estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeSample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The confirmation target it estimates for.
    pub conf_target: u32,
    /// The estimate.
    pub rate: SatPerKw,
}

/// Budget left, as the ledger computes it (limit minus spent minus reserved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BudgetLeft {
    /// Left in the tightest node-wide limit; `None` when no budget is configured.
    pub total: Option<Sat>,
    /// Left in each rule's sub-budget.
    pub per_rule: BTreeMap<String, Sat>,
}

/// A swap not yet finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightSwap {
    /// The channels it pays through (empty: unrestricted, counts only node-wide).
    pub outgoing: Vec<ChanId>,
    /// Its amount.
    pub amount: Sat,
    /// Started by hand (`sluice out`), not by autoloop; it still takes an in-flight slot,
    /// and decisions say so.
    pub manual: bool,
}

/// Failure history of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffState {
    /// When the last failed swap through it ended.
    pub last_failure: DateTime<Utc>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

/// The swap server's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTerms {
    /// Smallest swap the server accepts.
    pub min: Sat,
    /// Largest swap the server accepts.
    pub max: Sat,
    /// The server's swap fee, as a share of the amount.
    pub swap_fee_ppm: Ppm,
    /// The prepay (no-show penalty) it asks for.
    pub prepay: Sat,
}

impl Default for ServerTerms {
    /// Loop's mainnet terms at the time of writing: 250k–10M, about 0.1 %, 30k prepay.
    fn default() -> ServerTerms {
        ServerTerms {
            min: Sat(250_000),
            max: Sat(10_000_000),
            swap_fee_ppm: Ppm(1_000),
            prepay: Sat(30_000),
        }
    }
}

/// The swap server's Loop In terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopInServerTerms {
    /// Smallest Loop In the server accepts.
    pub min: Sat,
    /// Largest Loop In the server accepts.
    pub max: Sat,
    /// The server's swap fee, as a share of the amount.
    pub swap_fee_ppm: Ppm,
}

impl Default for LoopInServerTerms {
    /// Loop's mainnet Loop In terms at the time of writing: 250k–10M, about 0.1 %.
    fn default() -> LoopInServerTerms {
        LoopInServerTerms {
            min: Sat(250_000),
            max: Sat(10_000_000),
            swap_fee_ppm: Ppm(1_000),
        }
    }
}

impl Snapshot {
    /// An empty snapshot at `now` with default terms.
    pub fn empty(now: DateTime<Utc>) -> Snapshot {
        Snapshot {
            now,
            channels: Vec::new(),
            fees: FeeMarket::default(),
            budget: BudgetLeft::default(),
            in_flight: Vec::new(),
            backoff: BTreeMap::new(),
            terms: ServerTerms::default(),
            terms_in: LoopInServerTerms::default(),
            wallet: None,
            gate_open: BTreeMap::new(),
            dry_run: false,
        }
    }

    /// Node-wide (capacity, local, remote).
    pub fn node_totals(&self) -> (Sat, Sat, Sat) {
        self.channels
            .iter()
            .fold((Sat::ZERO, Sat::ZERO, Sat::ZERO), |(c, l, r), ch| {
                (c + ch.capacity, l + ch.local, r + ch.remote)
            })
    }
}
