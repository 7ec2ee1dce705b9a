//! The catalog: every sluice metric family, its help text, its labels, and the typed methods
//! that update it.
//!
//! `SPECS` (in `spec.rs`) is the single description of the catalog. Registration takes its help texts from
//! there and `docs/metrics.md` is generated from it (`render_doc`), so a family cannot
//! be added or renamed without the documentation following.
//!
//! Labels are low-cardinality by construction: methods take enums or `&'static str` values
//! (compile-time constants, so never a swap id, preimage, key or address), and the only label
//! filled from configuration, `target`/`budget`, passes [`safe_label`], which refuses anything
//! that looks like a 32-byte hex secret and anything long or unusual.
//!
//! # Which call goes where
//!
//! Every method is cheap (atomics behind a read lock) and never fails, so callers update the
//! catalog inline; they never spell a metric name.
//!
//! | caller | call |
//! |---|---|
//! | daemon start-up | `Metrics::with_per_channel(VERSION, config.metrics.per_channel)` |
//! | balance poller (each refresh) | [`Catalog::set_channel_targets`] with every managed target, [`Catalog::set_node_totals`] |
//! | swap engine, after storing a new swap (either direction) | [`Catalog::record_swap_started`] |
//! | swap engine, on entering a final state | [`Catalog::record_swap_finished`] with [`CostBreakdown::from_swap_costs`] (Loop Out) or [`CostBreakdown::from_loop_in_costs`] (Loop In) |
//! | swap engine, after every step and on resume | [`Catalog::set_pending_swaps`] with all non-final swaps of both directions, [`Catalog::set_quarantined_swaps`] |
//! | ledger owner, after each admission, fee or window change | [`Catalog::set_budgets`] with `Ledger::status(now)` |
//! | autoloop, per evaluated target | [`Catalog::record_policy_decision`] |
//! | policy loader, per reload | [`Catalog::record_policy_reload`] |
//! | fee gate, per estimate | [`Catalog::set_fee_gate`] |
//! | lnd connection, per RPC and on (re)connect/loss | [`Catalog::observe_lnd_rpc`], [`Catalog::set_lnd_up`] |
//! | swap-server client, per RPC and per token bought | [`Catalog::observe_server_rpc`], [`Catalog::record_l402_spent`] |
//! | simnet chain, per block | [`Catalog::set_simnet_height`] |
//!
//! RPC `method` is the gRPC method name as a literal (`"ListChannels"`, `"SendPaymentV2"`,
//! `"NewLoopOutSwap"`); error `kind` a fixed word (`unavailable`, `deadline`, `permission`,
//! `invalid`, `other`). Policy `reason` is a fixed word too (`below_band`, `in_band`,
//! `budget_exhausted`, `fee_gate_closed`, ...).
//!
//! Swap families carry `direction` ([`Direction`]: `out` or `in`), and every other label
//! of theirs comes from that direction's own closed set (its states, its failure reasons, its
//! cost categories; see [`SwapStateOf`] and `CostCategory::of`), so each family holds a fixed
//! number of series whatever the number of swaps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::{BlockHeight, Direction, Sat};
use crate::ledger::BudgetStatus;
use crate::swap::loop_in::{LoopInCosts, LoopInState};
use crate::swap::{SwapCosts, SwapState};

use super::spec::help;

/// Whether a configured name may become a label value: 1–64 characters of `[A-Za-z0-9_.:-]`
/// and not 64 hex digits (the shape of a preimage, hash or private key).
pub fn safe_label(value: &str) -> bool {
    let shape = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    let secret_like = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
    shape && !secret_like
}

/// `{target}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

/// `{budget,scope,period}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    budget: String,
    scope: String,
    period: String,
}

impl prometheus_client::encoding::EncodeLabelValue for Direction {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// `{direction,outcome,reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishLabels {
    direction: Direction,
    outcome: &'static str,
    reason: &'static str,
}

/// `{direction,initiator}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StartLabels {
    direction: Direction,
    initiator: &'static str,
}

/// `{direction,state}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    direction: Direction,
    state: &'static str,
}

/// `{direction,category}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    direction: Direction,
    category: &'static str,
}

/// `{direction,outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectedOutcome {
    direction: Direction,
    outcome: &'static str,
}

/// `{method,kind}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: &'static str,
    kind: &'static str,
}

/// `{decision,reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
}

/// A single-label set with a fixed name.
macro_rules! one_label {
    ($ty:ident, $field:ident, $vt:ty) => {
        #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct $ty {
            $field: $vt,
        }
    };
}
one_label!(DirectionLabels, direction, Direction);
one_label!(ResultLabels, result, &'static str);
one_label!(ConfLabels, conf_target, u32);
one_label!(MethodLabels, method, &'static str);

/// A gauge that is absent until set (empty label set in a family that is cleared).
type Optional = Family<Vec<(String, String)>, Gauge<i64>>;
type GaugeF = Gauge<f64, std::sync::atomic::AtomicU64>;
type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Who started a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The autoloop planner, following the policy.
    Autoloop,
    /// An operator through the CLI or RPC.
    Manual,
}

impl Initiator {
    /// The `initiator` label.
    fn as_str(self) -> &'static str {
        match self {
            Initiator::Autoloop => "autoloop",
            Initiator::Manual => "manual",
        }
    }
}

/// One managed target's channel balances, as [`Catalog::set_channel_targets`] takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetBalance {
    /// The target's configured name (a channel id or peer name from the policy's target list).
    pub target: String,
    /// Local balance over the target's channels.
    pub local: Sat,
    /// Remote balance over the target's channels.
    pub remote: Sat,
    /// The inbound-share band `(low, high)` the policy keeps the target in, if it has one.
    pub band: Option<(f64, f64)>,
}

/// A swap's state in its own direction's state set: what the in-flight and finish series
/// label (`direction` and `state`, or `outcome` and `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStateOf {
    /// A Loop Out's state.
    Out(SwapState),
    /// A Loop In's state.
    In(LoopInState),
}

impl SwapStateOf {
    /// The direction of the swap.
    pub fn direction(self) -> Direction {
        match self {
            SwapStateOf::Out(_) => Direction::Out,
            SwapStateOf::In(_) => Direction::In,
        }
    }

    /// The state's name, as the `state` label shows it.
    pub fn name(self) -> &'static str {
        match self {
            SwapStateOf::Out(s) => s.as_str(),
            SwapStateOf::In(s) => s.as_str(),
        }
    }

    /// Whether the swap is over.
    pub fn is_terminal(self) -> bool {
        match self {
            SwapStateOf::Out(s) => s.is_terminal(),
            SwapStateOf::In(s) => s.is_terminal(),
        }
    }

    /// Every state of both directions: Loop Out's, then Loop In's.
    pub fn all() -> impl Iterator<Item = SwapStateOf> {
        SwapState::ALL
            .into_iter()
            .map(SwapStateOf::Out)
            .chain(LoopInState::ALL.into_iter().map(SwapStateOf::In))
    }

    /// The `outcome` and `reason` labels of a final state, or `None` for a state that is not
    /// final. Each direction has its own closed set of reasons.
    fn finish(self) -> Option<(&'static str, &'static str)> {
        let failed = |reason| Some(("failed", reason));
        match self {
            SwapStateOf::Out(s) => match s {
                SwapState::Succeeded => Some(("succeeded", "none")),
                SwapState::FailedOffchain => failed("offchain"),
                SwapState::FailedTimeout => failed("timeout"),
                SwapState::FailedSweepTimeout => failed("sweep_timeout"),
                SwapState::FailedInsufficientValue => failed("insufficient_value"),
                SwapState::Initiated | SwapState::PreimageRevealed | SwapState::SpendConfirming => {
                    None
                }
            },
            SwapStateOf::In(s) => match s {
                LoopInState::Succeeded => Some(("succeeded", "none")),
                LoopInState::FailedTimeout => failed("timeout"),
                LoopInState::FailedFunding => failed("funding"),
                LoopInState::FailedNotPublished => failed("not_published"),
                LoopInState::FailedIncorrectHtlcAmtSwept => failed("incorrect_htlc_amount"),
                LoopInState::Initiated
                | LoopInState::HtlcPublished
                | LoopInState::InvoiceSettled
                | LoopInState::IncorrectHtlcAmount
                | LoopInState::HtlcConfirmed
                | LoopInState::TimeoutSweeping => None,
            },
        }
    }
}

/// A part of what a swap paid, as `sluice_swap_cost_sat_total{category}` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CostCategory {
    Server,
    Prepay,
    Routing,
    Miner,
}

impl CostCategory {
    /// The categories a direction pays: Loop Out all four; Loop In only `server` and `miner`
    /// (it has no prepay, and the server pays the routing of its payment to us).
    fn of(direction: Direction) -> &'static [CostCategory] {
        match direction {
            Direction::Out => &[
                CostCategory::Server,
                CostCategory::Prepay,
                CostCategory::Routing,
                CostCategory::Miner,
            ],
            Direction::In => &[CostCategory::Server, CostCategory::Miner],
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CostCategory::Server => "server",
            CostCategory::Prepay => "prepay",
            CostCategory::Routing => "routing",
            CostCategory::Miner => "miner",
        }
    }

    fn amount(self, costs: &CostBreakdown) -> Sat {
        match self {
            CostCategory::Server => costs.server,
            CostCategory::Prepay => costs.prepay,
            CostCategory::Routing => costs.routing,
            CostCategory::Miner => costs.miner,
        }
    }
}

/// What a finished swap paid, split the way the cost counter labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CostBreakdown {
    /// The swap server's fee, without the prepay (Loop In: what the server kept).
    pub server: Sat,
    /// The prepay (no-show) invoice the server kept. Loop Out only.
    pub prepay: Sat,
    /// Routing fees of both payments. Loop Out only.
    pub routing: Sat,
    /// On-chain fees: Loop Out's sweep; Loop In's HTLC funding and timeout sweep.
    pub miner: Sat,
}

impl CostBreakdown {
    /// Splits a swap's [`SwapCosts`] given the prepay it paid: the server's share of
    /// `server_sat` beyond the prepay is `server` (a negative `server_sat` counts as zero),
    /// `offchain` is `routing`, `onchain` is `miner`.
    pub fn from_swap_costs(costs: &SwapCosts, prepay_paid: Sat) -> CostBreakdown {
        let server_total = Sat(u64::try_from(costs.server_sat).unwrap_or(0));
        let prepay = prepay_paid.min(server_total);
        CostBreakdown {
            server: server_total.saturating_sub(prepay),
            prepay,
            routing: costs.offchain,
            miner: costs.onchain,
        }
    }

    /// Splits a Loop In's [`LoopInCosts`]: what the server kept is `server` (zero when it
    /// lost money), the funding and any timeout sweep are `miner`.
    pub fn from_loop_in_costs(costs: &LoopInCosts) -> CostBreakdown {
        CostBreakdown {
            server: Sat(u64::try_from(costs.server_sat).unwrap_or(0)),
            miner: costs.onchain,
            ..CostBreakdown::default()
        }
    }
}

/// A swap that is not final yet, as [`Catalog::set_pending_swaps`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSwap {
    /// Its state, in its direction (a final state is ignored).
    pub state: SwapStateOf,
    /// How long it has been in that state.
    pub in_state_for: Duration,
    /// Blocks left until its HTLC expires, once the HTLC is known. Counted only for a Loop
    /// Out that revealed the preimage (it must then be swept before the expiry).
    pub blocks_to_expiry: Option<u32>,
}

/// The families of the catalog, registered when the `Metrics` registry is built. Reach it through
/// `Metrics::catalog`.
#[derive(Debug)]
pub struct Catalog {
    per_channel: AtomicBool,
    /// The policy's band per target, from the last autoloop pass ([`Catalog::set_bands`]).
    bands: std::sync::Mutex<BTreeMap<String, (f64, f64)>>,
    chan_local: Family<TargetLabels, Gauge<i64>>,
    chan_remote: Family<TargetLabels, Gauge<i64>>,
    chan_share: Family<TargetLabels, GaugeF>,
    band_low: Family<TargetLabels, GaugeF>,
    band_high: Family<TargetLabels, GaugeF>,
    node_local: Gauge<i64>,
    node_remote: Gauge<i64>,
    node_onchain: Gauge<i64>,
    started: Family<StartLabels, Counter>,
    finished: Family<FinishLabels, Counter>,
    in_flight: Family<StateLabels, Gauge<i64>>,
    oldest_age: Family<StateLabels, GaugeF>,
    blocks_to_expiry: Optional,
    quarantined: Family<DirectionLabels, Gauge<i64>>,
    amount: Family<DirectionLabels, Counter>,
    cost: Family<CostLabels, Counter>,
    duration: HistFamily<DirectedOutcome>,
    budget_limit: Family<BudgetLabels, Gauge<i64>>,
    budget_spent: Family<BudgetLabels, Gauge<i64>>,
    budget_res_expected: Family<BudgetLabels, Gauge<i64>>,
    budget_res_worst: Family<BudgetLabels, Gauge<i64>>,
    budget_available: Family<BudgetLabels, Gauge<i64>>,
    decisions: Family<DecisionLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    policy_rejected: Gauge<i64>,
    fee_gate_open: Gauge<i64>,
    fee_estimate: Family<ConfLabels, GaugeF>,
    lnd_up: Gauge<i64>,
    lnd_rpc: HistFamily<MethodLabels>,
    lnd_errors: Family<ErrorLabels, Counter>,
    server_rpc: HistFamily<MethodLabels>,
    server_errors: Family<ErrorLabels, Counter>,
    l402_spent: Counter,
    simnet_height: Optional,
}

/// Buckets for swap durations: one minute to four days.
fn swap_duration_histogram() -> Histogram {
    Histogram::new([
        60.0, 300.0, 600.0, 1_800.0, 3_600.0, 7_200.0, 14_400.0, 43_200.0, 86_400.0, 172_800.0,
        345_600.0,
    ])
}

/// Buckets for RPC latencies: 5 ms to 60 s.
fn rpc_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

fn sat_i64(amount: Sat) -> i64 {
    i64::try_from(amount.0).unwrap_or(i64::MAX)
}

/// The finish labels of a final state, or `None` for a state that is not final.
fn finish_labels(state: SwapStateOf) -> Option<FinishLabels> {
    let (outcome, reason) = state.finish()?;
    Some(FinishLabels {
        direction: state.direction(),
        outcome,
        reason,
    })
}

impl Catalog {
    /// Creates every family and registers it in `registry`. With `per_channel` false the
    /// per-target balance series are never exported.
    pub(crate) fn register(registry: &mut Registry, per_channel: bool) -> Catalog {
        let c = Catalog {
            per_channel: AtomicBool::new(per_channel),
            bands: std::sync::Mutex::new(BTreeMap::new()),
            chan_local: Family::default(),
            chan_remote: Family::default(),
            chan_share: Family::default(),
            band_low: Family::default(),
            band_high: Family::default(),
            node_local: Gauge::default(),
            node_remote: Gauge::default(),
            node_onchain: Gauge::default(),
            started: Family::default(),
            finished: Family::default(),
            in_flight: Family::default(),
            oldest_age: Family::default(),
            blocks_to_expiry: Family::default(),
            quarantined: Family::default(),
            amount: Family::default(),
            cost: Family::default(),
            duration: Family::new_with_constructor(swap_duration_histogram),
            budget_limit: Family::default(),
            budget_spent: Family::default(),
            budget_res_expected: Family::default(),
            budget_res_worst: Family::default(),
            budget_available: Family::default(),
            decisions: Family::default(),
            reloads: Family::default(),
            policy_rejected: Gauge::default(),
            fee_gate_open: Gauge::default(),
            fee_estimate: Family::default(),
            lnd_up: Gauge::default(),
            lnd_rpc: Family::new_with_constructor(rpc_histogram),
            lnd_errors: Family::default(),
            server_rpc: Family::new_with_constructor(rpc_histogram),
            server_errors: Family::default(),
            l402_spent: Counter::default(),
            simnet_height: Family::default(),
        };
        macro_rules! reg {
            ($name:literal, $field:ident) => {
                registry.register($name, help($name), c.$field.clone())
            };
        }
        reg!("sluice_channel_local_balance_sat", chan_local);
        reg!("sluice_channel_remote_balance_sat", chan_remote);
        reg!("sluice_channel_inbound_share_ratio", chan_share);
        reg!("sluice_channel_inbound_share_band_low_ratio", band_low);
        reg!("sluice_channel_inbound_share_band_high_ratio", band_high);
        reg!("sluice_node_local_balance_sat", node_local);
        reg!("sluice_node_remote_balance_sat", node_remote);
        reg!("sluice_node_onchain_balance_sat", node_onchain);
        reg!("sluice_swaps_started", started);
        reg!("sluice_swaps_finished", finished);
        reg!("sluice_swaps_in_flight", in_flight);
        reg!("sluice_swap_oldest_state_age_seconds", oldest_age);
        reg!("sluice_swap_blocks_to_expiry", blocks_to_expiry);
        reg!("sluice_swaps_quarantined", quarantined);
        reg!("sluice_swap_amount_sat", amount);
        reg!("sluice_swap_cost_sat", cost);
        reg!("sluice_swap_duration_seconds", duration);
        reg!("sluice_budget_limit_sat", budget_limit);
        reg!("sluice_budget_spent_sat", budget_spent);
        reg!("sluice_budget_reserved_expected_sat", budget_res_expected);
        reg!("sluice_budget_reserved_worst_sat", budget_res_worst);
        reg!("sluice_budget_available_sat", budget_available);
        reg!("sluice_policy_decisions", decisions);
        reg!("sluice_policy_reloads", reloads);
        reg!("sluice_policy_rejected", policy_rejected);
        reg!("sluice_fee_gate_open", fee_gate_open);
        reg!("sluice_fee_estimate_sat_per_vbyte", fee_estimate);
        reg!("sluice_lnd_up", lnd_up);
        reg!("sluice_lnd_rpc_duration_seconds", lnd_rpc);
        reg!("sluice_lnd_rpc_errors", lnd_errors);
        reg!("sluice_server_rpc_duration_seconds", server_rpc);
        reg!("sluice_server_rpc_errors", server_errors);
        reg!("sluice_l402_spent_sat", l402_spent);
        reg!("sluice_simnet_block_height", simnet_height);
        c.set_pending_swaps(&[]);
        c.set_quarantined_swaps(&[]);
        c.fee_gate_open.set(1);
        c.zero_closed_sets();
        c
    }

    /// Creates every series whose labels come from a closed set at zero, so each exists from
    /// the first scrape: a rate over it is 0, not "no data", before the first event.
    fn zero_closed_sets(&self) {
        for direction in Direction::ALL {
            for initiator in [Initiator::Autoloop, Initiator::Manual] {
                let _ = self.started.get_or_create(&StartLabels {
                    direction,
                    initiator: initiator.as_str(),
                });
            }
            let _ = self.amount.get_or_create(&DirectionLabels { direction });
            for category in CostCategory::of(direction) {
                let _ = self.cost.get_or_create(&CostLabels {
                    direction,
                    category: category.as_str(),
                });
            }
        }
        for state in SwapStateOf::all() {
            if let Some(labels) = finish_labels(state) {
                let _ = self.duration.get_or_create(&DirectedOutcome {
                    direction: labels.direction,
                    outcome: labels.outcome,
                });
                let _ = self.finished.get_or_create(&labels);
            }
        }
        for &reason in crate::policy::Reason::NAMES {
            let decision = if reason == "swap" { "swap" } else { "hold" };
            let _ = self
                .decisions
                .get_or_create(&DecisionLabels { decision, reason });
        }
        for result in ["ok", "rejected"] {
            let _ = self.reloads.get_or_create(&ResultLabels { result });
        }
    }

    /// Turns the per-target series on or off (config `metrics.per_channel`); off removes them.
    pub fn set_per_channel(&self, on: bool) {
        self.per_channel.store(on, Ordering::Relaxed);
        if !on {
            self.set_channel_targets(&[]);
        }
    }

    /// Replaces the per-target series with `targets`, so a target that left the managed set
    /// (or a closed channel) disappears. Targets whose name is not [`safe_label`] are skipped.
    pub fn set_channel_targets(&self, targets: &[TargetBalance]) {
        for f in [&self.chan_local, &self.chan_remote] {
            f.clear();
        }
        for f in [&self.chan_share, &self.band_low, &self.band_high] {
            f.clear();
        }
        if !self.per_channel.load(Ordering::Relaxed) {
            return;
        }
        for t in targets.iter().filter(|t| safe_label(&t.target)) {
            let l = TargetLabels {
                target: t.target.clone(),
            };
            self.chan_local.get_or_create(&l).set(sat_i64(t.local));
            self.chan_remote.get_or_create(&l).set(sat_i64(t.remote));
            let capacity = t.local.0.saturating_add(t.remote.0);
            if capacity > 0 {
                #[allow(clippy::cast_precision_loss)]
                let share = t.remote.0 as f64 / capacity as f64;
                self.chan_share.get_or_create(&l).set(share);
            }
            let known = self
                .bands
                .lock()
                .ok()
                .and_then(|b| b.get(&t.target).copied());
            if let Some((low, high)) = t.band.or(known) {
                self.band_low.get_or_create(&l).set(low);
                self.band_high.get_or_create(&l).set(high);
            }
        }
    }

    /// Sets the inbound-share band (low, high) the policy keeps each target in; the balance
    /// series of those targets carry it from the next [`Catalog::set_channel_targets`] on,
    /// and targets that already have balance series get it at once.
    pub fn set_bands(&self, bands: BTreeMap<String, (f64, f64)>) {
        for (target, (low, high)) in &bands {
            let l = TargetLabels {
                target: target.clone(),
            };
            let exported = self.per_channel.load(Ordering::Relaxed)
                && safe_label(target)
                && self.chan_local.get(&l).is_some();
            if exported {
                self.band_low.get_or_create(&l).set(*low);
                self.band_high.get_or_create(&l).set(*high);
            }
        }
        if let Ok(mut known) = self.bands.lock() {
            *known = bands;
        }
    }

    /// Sets the node totals over all active channels and the confirmed on-chain balance.
    pub fn set_node_totals(&self, local: Sat, remote: Sat, onchain: Sat) {
        self.node_local.set(sat_i64(local));
        self.node_remote.set(sat_i64(remote));
        self.node_onchain.set(sat_i64(onchain));
    }

    /// Counts a swap of `direction` started (after it was stored).
    pub fn record_swap_started(&self, direction: Direction, initiator: Initiator) {
        self.started
            .get_or_create(&StartLabels {
                direction,
                initiator: initiator.as_str(),
            })
            .inc();
    }

    /// Counts a swap that reached the final `state` after `duration`, with what it moved
    /// (`amount`, counted on success only) and paid (the cost categories of its direction:
    /// Loop In has no `prepay` or `routing`, which are ignored for it). Non-final states are
    /// ignored.
    pub fn record_swap_finished(
        &self,
        state: SwapStateOf,
        amount: Sat,
        costs: CostBreakdown,
        duration: Duration,
    ) {
        let Some(labels) = finish_labels(state) else {
            return;
        };
        let direction = labels.direction;
        if labels.outcome == "succeeded" {
            self.amount
                .get_or_create(&DirectionLabels { direction })
                .inc_by(amount.0);
        }
        for category in CostCategory::of(direction) {
            self.cost
                .get_or_create(&CostLabels {
                    direction,
                    category: category.as_str(),
                })
                .inc_by(category.amount(&costs).0);
        }
        self.duration
            .get_or_create(&DirectedOutcome {
                direction,
                outcome: labels.outcome,
            })
            .observe(duration.as_secs_f64());
        self.finished.get_or_create(&labels).inc();
    }

    /// Replaces the in-flight view: counts and oldest age per non-final state of each
    /// direction (zeros included) and the nearest expiry among Loop Outs still to be swept
    /// (absent without one).
    pub fn set_pending_swaps(&self, pending: &[PendingSwap]) {
        self.blocks_to_expiry.clear();
        let mut nearest: Option<u32> = None;
        for state in SwapStateOf::all().filter(|s| !s.is_terminal()) {
            let in_state = pending.iter().filter(|p| p.state == state);
            let count = in_state.clone().count();
            let oldest = in_state
                .map(|p| p.in_state_for.as_secs_f64())
                .fold(0.0, f64::max);
            let l = StateLabels {
                direction: state.direction(),
                state: state.name(),
            };
            self.in_flight
                .get_or_create(&l)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
            self.oldest_age.get_or_create(&l).set(oldest);
        }
        let must_sweep = |s: SwapStateOf| {
            matches!(
                s,
                SwapStateOf::Out(SwapState::PreimageRevealed | SwapState::SpendConfirming)
            )
        };
        for p in pending.iter().filter(|p| must_sweep(p.state)) {
            if let Some(b) = p.blocks_to_expiry {
                nearest = Some(nearest.map_or(b, |n| n.min(b)));
            }
        }
        if let Some(b) = nearest {
            self.blocks_to_expiry
                .get_or_create(&Vec::new())
                .set(i64::from(b));
        }
    }

    /// Sets how many stored swaps of each direction the engine does not drive: one entry of
    /// `quarantined` per quarantined swap (both directions are always present, zeros
    /// included).
    pub fn set_quarantined_swaps(&self, quarantined: &[Direction]) {
        for direction in Direction::ALL {
            let count = quarantined.iter().filter(|d| **d == direction).count();
            self.quarantined
                .get_or_create(&DirectionLabels { direction })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Replaces the budget series with `budgets` (every limit of every budget).
    pub fn set_budgets(&self, budgets: &[BudgetStatus]) {
        let families = [
            &self.budget_limit,
            &self.budget_spent,
            &self.budget_res_expected,
            &self.budget_res_worst,
            &self.budget_available,
        ];
        for f in families {
            f.clear();
        }
        for b in budgets.iter().filter(|b| safe_label(&b.name)) {
            for (scope, w) in b.lines() {
                let l = BudgetLabels {
                    budget: b.name.clone(),
                    scope: scope.to_string(),
                    period: w.period.to_string().replace(' ', "_"),
                };
                self.budget_limit.get_or_create(&l).set(sat_i64(w.limit));
                self.budget_spent.get_or_create(&l).set(sat_i64(w.spent));
                self.budget_res_expected
                    .get_or_create(&l)
                    .set(sat_i64(w.reserved_expected));
                self.budget_res_worst
                    .get_or_create(&l)
                    .set(sat_i64(w.reserved_worst));
                self.budget_available
                    .get_or_create(&l)
                    .set(sat_i64(w.available));
            }
        }
    }

    /// Counts one policy decision: `swap` or `hold` and its reason (a fixed word).
    pub fn record_policy_decision(&self, swap: bool, reason: &'static str) {
        let decision = if swap { "swap" } else { "hold" };
        self.decisions
            .get_or_create(&DecisionLabels { decision, reason })
            .inc();
    }

    /// Counts a policy reload and sets `sluice_policy_rejected` from its result.
    pub fn record_policy_reload(&self, accepted: bool) {
        let result = if accepted { "ok" } else { "rejected" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.policy_rejected.set(i64::from(!accepted));
    }

    /// Sets the fee gate's state and the estimate it decided on.
    pub fn set_fee_gate(&self, open: bool, conf_target: u32, sat_per_vbyte: f64) {
        self.fee_gate_open.set(i64::from(open));
        self.fee_estimate
            .get_or_create(&ConfLabels { conf_target })
            .set(sat_per_vbyte);
    }

    /// Sets whether lnd answers.
    pub fn set_lnd_up(&self, up: bool) {
        self.lnd_up.set(i64::from(up));
    }

    /// Records one lnd RPC: its latency, and on failure the error kind (a fixed word such as
    /// `unavailable`, `deadline`, `permission`, `other`).
    pub fn observe_lnd_rpc(
        &self,
        method: &'static str,
        elapsed: Duration,
        result: Result<(), &'static str>,
    ) {
        observe_rpc(&self.lnd_rpc, &self.lnd_errors, method, elapsed, result);
    }

    /// Records one swap-server RPC, like [`Catalog::observe_lnd_rpc`].
    pub fn observe_server_rpc(
        &self,
        method: &'static str,
        elapsed: Duration,
        result: Result<(), &'static str>,
    ) {
        observe_rpc(
            &self.server_rpc,
            &self.server_errors,
            method,
            elapsed,
            result,
        );
    }

    /// Counts satoshis paid for an L402 token.
    pub fn record_l402_spent(&self, amount: Sat) {
        self.l402_spent.inc_by(amount.0);
    }

    /// Sets the simnet chain height (call only under `--simnet`; the series is absent otherwise).
    pub fn set_simnet_height(&self, height: BlockHeight) {
        self.simnet_height
            .get_or_create(&Vec::new())
            .set(i64::from(height.0));
    }
}

fn observe_rpc(
    hist: &HistFamily<MethodLabels>,
    errors: &Family<ErrorLabels, Counter>,
    method: &'static str,
    elapsed: Duration,
    result: Result<(), &'static str>,
) {
    hist.get_or_create(&MethodLabels { method })
        .observe(elapsed.as_secs_f64());
    if let Err(kind) = result {
        errors.get_or_create(&ErrorLabels { method, kind }).inc();
    }
}
