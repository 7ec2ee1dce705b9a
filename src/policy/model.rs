//! The validated policy: what `load` produces and `evaluate` reads. Every value here has
//! passed its checks, so evaluation never has to report a configuration problem.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{NaiveDateTime, TimeDelta};
use chrono_tz::Tz;
use croner::Cron;
use regex::Regex;

use super::script::Script;
use super::values::Level;
use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Ppm, Sat};

/// A loaded policy: rules in order, budgets, limits and tags, with scripts compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The files it was read from, in load order (YAML files, then scripts).
    pub files: Vec<PathBuf>,
    /// Decide everything but dispatch nothing: swap decisions become `dry_run`.
    pub dry_run: bool,
    /// Time zone of calendar budgets and the default of schedules.
    pub tz: Tz,
    /// Rules in order; each channel belongs to the first rule that matches it.
    pub rules: Vec<Rule>,
    /// Fee budgets, handed to the ledger by the autoloop.
    pub budgets: Vec<BudgetDef>,
    /// Dispatch limits.
    pub limits: Limits,
    /// Named sets of channels and peers, for `tag` selectors.
    pub tags: BTreeMap<String, TagSet>,
}

/// The members of a tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagSet {
    /// Channels carrying the tag.
    pub channels: Vec<ChanId>,
    /// Peers (pubkeys, lower-case hex) whose channels carry the tag.
    pub peers: Vec<String>,
}

/// One rule: which channels it takes, how they form targets, and the settings that apply.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name, unique in the policy.
    pub name: String,
    /// Which channels it takes.
    pub matcher: Matcher,
    /// Channels it takes but leaves alone (decision `excluded`).
    pub exclude: Option<Selector>,
    /// How the channels it takes form targets.
    pub per: Grouping,
    /// Its settings, defaults already cascaded in.
    pub settings: Settings,
    /// The script that may veto or resize its proposals.
    pub script: Option<Arc<Script>>,
}

/// Which channels a rule takes.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Every channel, each its own target unless `per` says otherwise.
    All,
    /// Every channel, together as the one `node` target.
    Node,
    /// The channels the selector matches.
    Select(Selector),
}

/// Conditions on a channel; all present conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// The channel is one of these (when non-empty).
    pub channels: Vec<ChanId>,
    /// The channel's peer is one of these (when non-empty).
    pub peers: Vec<String>,
    /// The peer alias matches.
    pub alias: Option<Regex>,
    /// Capacity at least this.
    pub capacity_min: Option<Sat>,
    /// Capacity at most this.
    pub capacity_max: Option<Sat>,
    /// Age in blocks at least this.
    pub age_min_blocks: Option<u32>,
    /// Age in blocks at most this.
    pub age_max_blocks: Option<u32>,
    /// The channel carries one of these tags (when non-empty).
    pub tags: Vec<String>,
}

/// How a rule's channels form targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Each channel is a target.
    Channel,
    /// All channels with one peer are one target.
    Peer,
    /// All the rule's channels are one target.
    Node,
}

/// What applies to a rule's targets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The inbound band.
    pub band: Band,
    /// Swap bounds and parameters.
    pub swap: SwapSettings,
    /// Per-swap fee caps.
    pub fees: FeeCaps,
    /// The fee-market gate, if configured.
    pub gate: Option<FeeGate>,
    /// When swaps may be dispatched.
    pub schedule: Schedule,
    /// What follows a failed swap.
    pub backoff: Backoff,
    /// Loop In at the band's upper edge; `None` leaves inbound above the band alone.
    pub loop_in: Option<LoopInSettings>,
}

/// Loop In settings: inbound above the band's `inbound_max` is brought back to `restore_to`
/// by a Loop In (the node pays on chain, the server pays it off chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopInSettings {
    /// Smallest Loop In; `None` is the server's minimum.
    pub min: Option<Sat>,
    /// Largest Loop In; `None` is the server's maximum.
    pub max: Option<Sat>,
    /// Confirmation target of the HTLC funding transaction, in blocks.
    pub htlc_conf_target: u32,
    /// Whether the payment must arrive through the target's peer.
    pub last_hop: LastHop,
    /// Per-swap fee caps.
    pub fees: LoopInFeeCaps,
}

/// Which way a Loop In's payment may reach the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastHop {
    /// Through the target's peer (a channel or peer target); a node target has none.
    Peer,
    /// Through any channel.
    Any,
}

/// Per-swap fee caps of a Loop In, by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopInFeeCaps {
    /// The expected fees together (server fee and HTLC miner fee), as a share of the amount.
    pub max_total: Ppm,
    /// Server swap fee, as a share of the amount.
    pub max_server: Option<Ppm>,
    /// The HTLC funding transaction's miner fee (also the cap of a timeout sweep).
    pub max_miner: Option<Sat>,
    /// What a Loop In the server never pays may lose on chain: the funding and the timeout
    /// sweep together, at their caps.
    pub max_timeout_risk: Option<Sat>,
}

/// The inbound band of a target. All levels are shares or all are amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    /// Swap when inbound falls below this.
    pub inbound_min: Level,
    /// A swap never pushes inbound above this; `None` is the whole capacity.
    pub inbound_max: Option<Level>,
    /// Where a swap brings inbound back to; `None` is the midpoint of min and max.
    pub restore_to: Option<Level>,
}

/// Swap bounds and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapSettings {
    /// Smallest swap; `None` is the server's minimum.
    pub min: Option<Sat>,
    /// Largest swap; `None` is the server's maximum.
    pub max: Option<Sat>,
    /// Sweep confirmation target in blocks.
    pub conf_target: u32,
    /// Confirmations of the server's HTLC before the preimage is revealed.
    pub htlc_confs: u32,
    /// Where the swept funds go.
    pub destination: Destination,
    /// Which channels may pay the swap.
    pub outgoing: Outgoing,
}

/// Where swept funds go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A fresh address of the lnd wallet.
    Wallet,
    /// This address (checked to parse as a bitcoin address; the network is checked later).
    Address(String),
}

/// Which channels may pay a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Only the target's own active channels.
    Target,
    /// Any channel.
    Any,
}

/// Per-swap fee caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeCaps {
    /// All expected fees together, as a share of the amount.
    pub max_total: Ppm,
    /// Server swap fee, as a share of the amount.
    pub max_server: Option<Ppm>,
    /// Routing fee of the swap invoice, as a share of the amount.
    pub max_routing: Option<Ppm>,
    /// Routing fee of the prepay invoice, as a share of the prepay.
    pub max_prepay_routing: Option<Ppm>,
    /// The prepay itself.
    pub max_prepay: Option<Sat>,
    /// The sweep's miner fee.
    pub max_miner: Option<Sat>,
}

/// The fee-market gate.
///
/// Hysteresis: with the gate closed, it opens when the current estimate is at or below the
/// `percentile` of the samples in `window`; once open, it stays open until the estimate rises
/// above the `close_percentile`. The absolute `ceiling` closes it regardless. Below
/// `urgent_below` inbound share a target ignores the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeGate {
    /// Never dispatch above this estimate.
    pub ceiling: Option<SatPerKw>,
    /// Open at or below this percentile (1–99).
    pub percentile: Option<u8>,
    /// Once open, close above this percentile.
    pub close_percentile: u8,
    /// How far back samples count.
    pub window: TimeDelta,
    /// Inbound share below which the gate is ignored.
    pub urgent_below: Option<Ppm>,
}

/// When swaps may be dispatched.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The minutes in which dispatch is allowed; `None` is always.
    pub when: Option<Cron>,
    /// The time zone of `when` and `blackouts`.
    pub tz: Tz,
    /// Local-time windows `[from, to)` in which nothing is dispatched.
    pub blackouts: Vec<Blackout>,
}

/// A local-time window in which nothing is dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blackout {
    /// Start, inclusive.
    pub from: NaiveDateTime,
    /// End, exclusive.
    pub to: NaiveDateTime,
}

/// What follows a failed swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// How long the target is skipped after a failure.
    pub after_failure: TimeDelta,
    /// Each consecutive failure shrinks the next amount by this share.
    pub shrink_by: Ppm,
    /// Shrinking stops after this many failures.
    pub max_shrinks: u32,
}

/// Dispatch limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most swaps pending at once.
    pub in_flight: u32,
    /// Most swaps pending per target.
    pub in_flight_per_target: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            in_flight: 1,
            in_flight_per_target: 1,
        }
    }
}

/// A budget period as written in the policy; the autoloop maps it to the ledger's `Period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodSpec {
    /// Calendar day in the policy's `tz`.
    Day,
    /// Calendar week (Monday first) in the policy's `tz`.
    Week,
    /// Calendar month in the policy's `tz`.
    Month,
    /// A rolling window of this length.
    Rolling(TimeDelta),
}

/// One fee budget as written; plain data for the ledger's `BudgetSpec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetDef {
    /// Unique name.
    pub name: String,
    /// The period of `limit` and `per_rule`.
    pub period: PeriodSpec,
    /// Fees all swaps together may spend per window.
    pub limit: Sat,
    /// Sub-limits per rule name (every name is a rule of the policy).
    pub per_rule: BTreeMap<String, Sat>,
    /// A ceiling over its own period that no script can lift.
    pub hard_cap: Option<(PeriodSpec, Sat)>,
}

impl Policy {
    /// The rule with this name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}
