//! Policy test cases: `*.test.yaml` files beside a policy, each a snapshot written in YAML
//! and the decisions expected for some of its targets.
//!
//! ```yaml
//! now: 2026-03-01 02:30           # UTC
//! fees: { estimates: { 100: 8 sat/vB }, history: { every: 1h, rates: [12, 9, 20] } }
//! channels:
//!   - { id: 800000x1x0, peer: 02aa…, alias: ACINQ, capacity: 5M, local: 4.5M }
//! expect:
//!   - { target: 800000x1x0, reason: swap, amount: 2M, direction: out }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::error::PolicyError;
use super::keys::{self, Field, Kind, Scalar, f, req};
use super::reason::{Reason, Target};
use super::script::FlowWindow;
use super::snapshot::{
    BackoffState, BudgetLeft, Channel, FeeMarket, FeeSample, InFlightSwap, LoopInServerTerms,
    ServerTerms, Snapshot,
};
use super::tree::{self, Node, Value};
use super::values;
use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Direction, Sat};

const TERMS: &[Field] = &[
    f("min", Kind::Scalar(Scalar::Amount), "Server minimum swap."),
    f("max", Kind::Scalar(Scalar::Amount), "Server maximum swap."),
    f(
        "swap_fee",
        Kind::Scalar(Scalar::Percent),
        "Server swap fee.",
    ),
    f("prepay", Kind::Scalar(Scalar::Amount), "Prepay."),
];
const TERMS_IN: &[Field] = &[
    f(
        "min",
        Kind::Scalar(Scalar::Amount),
        "Server minimum Loop In.",
    ),
    f(
        "max",
        Kind::Scalar(Scalar::Amount),
        "Server maximum Loop In.",
    ),
    f(
        "swap_fee",
        Kind::Scalar(Scalar::Percent),
        "Server Loop In fee.",
    ),
];
const HISTORY: &[Field] = &[
    req(
        "every",
        Kind::Scalar(Scalar::Duration),
        "Spacing of the samples.",
    ),
    req(
        "rates",
        Kind::Seq(&Kind::Scalar(Scalar::FeeRate)),
        "Rates in sat/vB, oldest first, the last one at `now`.",
    ),
    f(
        "conf_target",
        Kind::Scalar(Scalar::Int(1, 1008)),
        "Confirmation target of the samples; default every target of `estimates`.",
    ),
];
const FEES: &[Field] = &[
    f(
        "estimates",
        Kind::Dict(&Kind::Scalar(Scalar::FeeRate), Scalar::Int(1, 1008)),
        "Current estimate per confirmation target.",
    ),
    f("history", Kind::Map(HISTORY), "Past estimates."),
    f(
        "routing",
        Kind::Scalar(Scalar::Percent),
        "Typical routing fee of a swap payment; default 0.1%, as the daemon before its first swap.",
    ),
];
const BUDGET: &[Field] = &[
    f(
        "left",
        Kind::Scalar(Scalar::Amount),
        "Budget left node-wide.",
    ),
    f(
        "per_rule",
        Kind::Dict(&Kind::Scalar(Scalar::Amount), Scalar::Name),
        "Left per rule.",
    ),
];
const FLOW: &[Field] = &[
    req("days", Kind::Scalar(Scalar::Int(1, 3650)), "Window length."),
    f(
        "fees_earned",
        Kind::Scalar(Scalar::Amount),
        "Routing fees earned.",
    ),
    f("out", Kind::Scalar(Scalar::Amount), "Forwarded out."),
    f("in", Kind::Scalar(Scalar::Amount), "Forwarded in."),
];
const CHANNEL: &[Field] = &[
    req("id", Kind::Scalar(Scalar::ChanId), "Channel id."),
    f("peer", Kind::Scalar(Scalar::Pubkey), "Peer pubkey."),
    f("alias", Kind::Scalar(Scalar::Regex), "Peer alias."),
    req("capacity", Kind::Scalar(Scalar::Amount), "Capacity."),
    req("local", Kind::Scalar(Scalar::Amount), "Local balance."),
    f(
        "remote",
        Kind::Scalar(Scalar::Amount),
        "Remote balance; default capacity - local.",
    ),
    f("active", Kind::Scalar(Scalar::Bool), "Default true."),
    f(
        "pending_htlcs",
        Kind::Scalar(Scalar::Int(0, 1000)),
        "Default 0.",
    ),
    f("age", Kind::Scalar(Scalar::Age), "Default 100d."),
    f("tags", Kind::OneOrMany(Scalar::Name), "Outside tags."),
    f("flows", Kind::Seq(&Kind::Map(FLOW)), "Routing activity."),
];
const IN_FLIGHT: &[Field] = &[
    f(
        "outgoing",
        Kind::OneOrMany(Scalar::ChanId),
        "Channels it pays through.",
    ),
    f("amount", Kind::Scalar(Scalar::Amount), "Amount."),
    f(
        "manual",
        Kind::Scalar(Scalar::Bool),
        "Started by hand; default false.",
    ),
];
const BACKOFF: &[Field] = &[
    req("last_failure", Kind::Scalar(Scalar::DateTime), "UTC."),
    f(
        "failures",
        Kind::Scalar(Scalar::Int(0, 1000)),
        "Consecutive failures; default 1.",
    ),
];
const EXPECT: &[Field] = &[
    req(
        "target",
        Kind::Scalar(Scalar::Name),
        "`800000x1x0`, `peer:<pubkey>` or `node`.",
    ),
    req(
        "reason",
        Kind::Scalar(Scalar::Enum(Reason::NAMES)),
        "Expected reason.",
    ),
    f(
        "amount",
        Kind::Scalar(Scalar::Amount),
        "Expected swap amount.",
    ),
    f("rule", Kind::Scalar(Scalar::Name), "Expected rule."),
    f(
        "direction",
        Kind::Scalar(Scalar::Enum(&["out", "in"])),
        "Expected swap direction: out (Loop Out) or in (Loop In).",
    ),
    f(
        "text_contains",
        Kind::Scalar(Scalar::Name),
        "Substring of the reason text or detail.",
    ),
];
const CASE: &[Field] = &[
    f(
        "description",
        Kind::Scalar(Scalar::Name),
        "What the case shows.",
    ),
    req(
        "now",
        Kind::Scalar(Scalar::DateTime),
        "Time of the pass, UTC.",
    ),
    f("dry_run", Kind::Scalar(Scalar::Bool), "Autoloop off."),
    f("terms", Kind::Map(TERMS), "Server terms; default Loop's."),
    f(
        "terms_in",
        Kind::Map(TERMS_IN),
        "Server Loop In terms; default Loop's.",
    ),
    f(
        "wallet",
        Kind::Scalar(Scalar::Amount),
        "lnd's confirmed on-chain balance, which funds Loop Ins; default unchecked.",
    ),
    f("fees", Kind::Map(FEES), "Fee market."),
    f("budget", Kind::Map(BUDGET), "Budget left."),
    f(
        "gate_open",
        Kind::Dict(&Kind::Scalar(Scalar::Bool), Scalar::Name),
        "Gate state of the previous pass.",
    ),
    f(
        "in_flight",
        Kind::Seq(&Kind::Map(IN_FLIGHT)),
        "Swaps in flight.",
    ),
    f(
        "backoff",
        Kind::Dict(&Kind::Map(BACKOFF), Scalar::ChanId),
        "Failures per channel.",
    ),
    req("channels", Kind::Seq(&Kind::Map(CHANNEL)), "Channels."),
    req(
        "expect",
        Kind::Seq(&Kind::Map(EXPECT)),
        "Expected decisions.",
    ),
];

/// One parsed test case.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// What it shows.
    pub description: String,
    /// The snapshot to evaluate.
    pub snapshot: Snapshot,
    /// The decisions to check.
    pub expect: Vec<Expectation>,
    /// Whether the case sets its own `budget:`; without it the policy's budgets apply, as
    /// a fresh ledger would report them ([`super::fresh_budget`]).
    pub budget_given: bool,
}

/// One expected decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The target, as written (`800000x1x0`, `peer:<pubkey>`, `node`).
    pub target: Target,
    /// The reason's stable name.
    pub reason: String,
    /// The swap amount, if checked.
    pub amount: Option<Sat>,
    /// The rule, if checked.
    pub rule: Option<String>,
    /// The swap's direction, if checked.
    pub direction: Option<Direction>,
    /// A substring of the reason's text or the detail, if checked.
    pub text_contains: Option<String>,
    /// Line of the expectation in the test file.
    pub line: u64,
}

struct Map<'a>(Vec<(&'a str, &'a Node)>, String);

impl<'a> Map<'a> {
    fn of(node: &'a Node, path: &str) -> Map<'a> {
        let v = match &node.value {
            Value::Map(e) => e
                .iter()
                .filter(|(_, _, v)| !matches!(v.value, Value::Null))
                .map(|(k, _, v)| (k.as_str(), v))
                .collect(),
            _ => Vec::new(),
        };
        Map(v, path.to_owned())
    }
    fn get(&self, key: &str) -> Option<(&'a Node, String)> {
        let p = if self.1.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.1)
        };
        self.0.iter().find(|(k, _)| *k == key).map(|(_, n)| (*n, p))
    }
    fn val<T>(
        &self,
        key: &str,
        kind: Scalar,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, PolicyError> {
        match self.get(key) {
            None => Ok(None),
            Some((n, p)) => text(n, &p, kind, parse).map(Some),
        }
    }
}

fn text<T>(
    node: &Node,
    path: &str,
    kind: Scalar,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, PolicyError> {
    match &node.value {
        Value::Scalar(s) => parse(s).map_err(|m| node.place.error(path, m, kind.expected())),
        other => Err(node.place.error(
            path,
            format!("wrong type: found {}", other.shape()),
            kind.expected(),
        )),
    }
}

fn utc(t: &str) -> Result<DateTime<Utc>, String> {
    let t = t.trim().trim_end_matches('Z');
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
        .map(|n| n.and_utc())
        .map_err(|_| format!("`{t}` is not a date and time"))
}

fn rate(t: &str) -> Result<SatPerKw, String> {
    if t.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
        values::fee_rate(&format!("{t} sat/vB"))
    } else {
        values::fee_rate(t)
    }
}

fn target(t: &str) -> Result<Target, String> {
    if t == "node" {
        Ok(Target::Node)
    } else if let Some(p) = t.strip_prefix("peer:") {
        values::pubkey(p).map(Target::Peer)
    } else {
        values::chan_id(t).map(Target::Channel)
    }
}

fn seq(node: Option<(&Node, String)>) -> Vec<(&Node, String)> {
    match node {
        Some((n, p)) => match &n.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| (it, format!("{p}[{i}]")))
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// Parses a test case file's text.
pub fn parse_test_case(file: &Path, source: &str) -> Result<TestCase, PolicyError> {
    let root = tree::parse(file, source)?;
    keys::check(&root, &Kind::Map(CASE), "")?;
    let m = Map::of(&root, "");
    let now = m.val("now", Scalar::DateTime, utc)?.unwrap_or_default();
    let mut snap = Snapshot::empty(now);
    snap.dry_run = m
        .val("dry_run", Scalar::Bool, values::boolean)?
        .unwrap_or(false);
    if let Some((n, p)) = m.get("terms_in") {
        let t = Map::of(n, &p);
        let d = LoopInServerTerms::default();
        snap.terms_in = LoopInServerTerms {
            min: t
                .val("min", Scalar::Amount, values::amount)?
                .unwrap_or(d.min),
            max: t
                .val("max", Scalar::Amount, values::amount)?
                .unwrap_or(d.max),
            swap_fee_ppm: t
                .val("swap_fee", Scalar::Percent, values::percent)?
                .unwrap_or(d.swap_fee_ppm),
        };
    }
    snap.wallet = m.val("wallet", Scalar::Amount, values::amount)?;
    if let Some((n, p)) = m.get("terms") {
        let t = Map::of(n, &p);
        let d = ServerTerms::default();
        snap.terms = ServerTerms {
            min: t
                .val("min", Scalar::Amount, values::amount)?
                .unwrap_or(d.min),
            max: t
                .val("max", Scalar::Amount, values::amount)?
                .unwrap_or(d.max),
            swap_fee_ppm: t
                .val("swap_fee", Scalar::Percent, values::percent)?
                .unwrap_or(d.swap_fee_ppm),
            prepay: t
                .val("prepay", Scalar::Amount, values::amount)?
                .unwrap_or(d.prepay),
        };
    }
    if let Some((n, p)) = m.get("fees") {
        let fm = Map::of(n, &p);
        let mut market = FeeMarket::default();
        if let Some((e, ep)) = fm.get("estimates") {
            for (k, v) in Map::of(e, &ep).0 {
                let key = format!("{ep}.{k}");
                let conf = text(v, &key, Scalar::Int(1, 1008), |_| {
                    values::int(k, 1, 1008).map_err(|m| format!("confirmation target {m}"))
                })?;
                let r = text(v, &key, Scalar::FeeRate, rate)?;
                market
                    .estimates
                    .push((u32::try_from(conf).unwrap_or(u32::MAX), r));
            }
        }
        if let Some((h, hp)) = fm.get("history") {
            let hm = Map::of(h, &hp);
            let every = hm
                .val("every", Scalar::Duration, values::duration)?
                .unwrap_or(TimeDelta::hours(1));
            let targets: Vec<u32> = match hm.val("conf_target", Scalar::Int(1, 1008), |t| {
                values::int(t, 1, 1008)
            })? {
                Some(t) => vec![u32::try_from(t).unwrap_or(u32::MAX)],
                None => market.estimates.iter().map(|(t, _)| *t).collect(),
            };
            let rates = seq(hm.get("rates"));
            let count = rates.len() as i32;
            for (i, (rn, rp)) in rates.into_iter().enumerate() {
                let r = text(rn, &rp, Scalar::FeeRate, rate)?;
                let back = count - 1 - i as i32;
                for &conf_target in &targets {
                    market.history.push(FeeSample {
                        at: now - every * back,
                        conf_target,
                        rate: r,
                    });
                }
            }
        }
        market.routing_ppm = fm
            .val("routing", Scalar::Percent, values::percent)?
            .unwrap_or(super::snapshot::DEFAULT_ROUTING_PPM);
        snap.fees = market;
    }
    let budget_given = m.get("budget").is_some();
    if let Some((n, p)) = m.get("budget") {
        let b = Map::of(n, &p);
        let mut left = BudgetLeft {
            total: b.val("left", Scalar::Amount, values::amount)?,
            per_rule: BTreeMap::new(),
        };
        if let Some((r, rp)) = b.get("per_rule") {
            for (k, v) in Map::of(r, &rp).0 {
                let key = format!("{rp}.{k}");
                left.per_rule
                    .insert(k.to_owned(), text(v, &key, Scalar::Amount, values::amount)?);
            }
        }
        snap.budget = left;
    }
    if let Some((n, p)) = m.get("gate_open") {
        for (k, v) in Map::of(n, &p).0 {
            let open = text(v, &format!("{p}.{k}"), Scalar::Bool, values::boolean)?;
            snap.gate_open.insert(k.to_owned(), open);
        }
    }
    for (n, p) in seq(m.get("in_flight")) {
        let fm = Map::of(n, &p);
        let outgoing = match fm.get("outgoing") {
            None => Vec::new(),
            Some((o, op)) => chan_list(o, &op)?,
        };
        snap.in_flight.push(InFlightSwap {
            outgoing,
            amount: fm
                .val("amount", Scalar::Amount, values::amount)?
                .unwrap_or_default(),
            manual: fm
                .val("manual", Scalar::Bool, values::boolean)?
                .unwrap_or(false),
        });
    }
    if let Some((n, p)) = m.get("backoff")
        && let Value::Map(entries) = &n.value
    {
        for (k, kp, v) in entries {
            let key = format!("{p}.{k}");
            let id =
                values::chan_id(k).map_err(|e| kp.error(&key, e, Scalar::ChanId.expected()))?;
            let b = Map::of(v, &key);
            snap.backoff.insert(
                id,
                BackoffState {
                    last_failure: b
                        .val("last_failure", Scalar::DateTime, utc)?
                        .unwrap_or_default(),
                    consecutive_failures: b
                        .val("failures", Scalar::Int(0, 1000), |t| {
                            values::int(t, 0, 1000)
                        })?
                        .map_or(1, |v| u32::try_from(v).unwrap_or(u32::MAX)),
                },
            );
        }
    }
    for (n, p) in seq(m.get("channels")) {
        snap.channels.push(channel(n, &p)?);
    }
    let mut expect = Vec::new();
    for (n, p) in seq(m.get("expect")) {
        let e = Map::of(n, &p);
        expect.push(Expectation {
            target: e
                .val("target", Scalar::Name, target)?
                .unwrap_or(Target::Node),
            reason: e
                .val("reason", Scalar::Enum(Reason::NAMES), |t| Ok(t.to_owned()))?
                .unwrap_or_default(),
            amount: e.val("amount", Scalar::Amount, values::amount)?,
            rule: e.val("rule", Scalar::Name, |t| Ok(t.to_owned()))?,
            direction: e.val("direction", Scalar::Enum(&["out", "in"]), |t| match t {
                "out" => Ok(Direction::Out),
                "in" => Ok(Direction::In),
                other => Err(format!("`{other}` is not a direction")),
            })?,
            text_contains: e.val("text_contains", Scalar::Name, |t| Ok(t.to_owned()))?,
            line: n.place.line,
        });
    }
    for (e, (n, p)) in expect.iter().zip(seq(m.get("expect"))) {
        if !Reason::NAMES.contains(&e.reason.as_str()) {
            return Err(n.place.error(
                &format!("{p}.reason"),
                format!("`{}` is not a reason", e.reason),
                Scalar::Enum(Reason::NAMES).expected(),
            ));
        }
    }
    Ok(TestCase {
        description: m
            .val("description", Scalar::Name, |t| Ok(t.to_owned()))?
            .unwrap_or_default(),
        snapshot: snap,
        expect,
        budget_given,
    })
}

fn chan_list(node: &Node, path: &str) -> Result<Vec<ChanId>, PolicyError> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, it)| text(it, &format!("{path}[{i}]"), Scalar::ChanId, values::chan_id))
            .collect(),
        _ => text(node, path, Scalar::ChanId, values::chan_id).map(|c| vec![c]),
    }
}

fn channel(node: &Node, path: &str) -> Result<Channel, PolicyError> {
    let m = Map::of(node, path);
    let id = m
        .val("id", Scalar::ChanId, values::chan_id)?
        .unwrap_or(ChanId(0));
    let capacity = m
        .val("capacity", Scalar::Amount, values::amount)?
        .unwrap_or_default();
    let local = m
        .val("local", Scalar::Amount, values::amount)?
        .unwrap_or_default();
    let remote = m
        .val("remote", Scalar::Amount, values::amount)?
        .unwrap_or(capacity.saturating_sub(local));
    if local + remote > capacity {
        return Err(node.place.error(
            path,
            format!(
                "local {} + remote {} exceed capacity {}",
                local.0, remote.0, capacity.0
            ),
            "local + remote ≤ capacity",
        ));
    }
    let tags = match m.get("tags") {
        None => Vec::new(),
        Some((t, tp)) => match &t.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| text(it, &format!("{tp}[{i}]"), Scalar::Name, values::name))
                .collect::<Result<_, _>>()?,
            _ => vec![text(t, &tp, Scalar::Name, values::name)?],
        },
    };
    let mut flows = Vec::new();
    for (fnode, fp) in seq(m.get("flows")) {
        let fm = Map::of(fnode, &fp);
        flows.push(FlowWindow {
            days: fm
                .val("days", Scalar::Int(1, 3650), |t| values::int(t, 1, 3650))?
                .map_or(30, |d| u32::try_from(d).unwrap_or(30)),
            fees_earned_sat: fm
                .val("fees_earned", Scalar::Amount, values::amount)?
                .unwrap_or_default()
                .0,
            out_sat: fm
                .val("out", Scalar::Amount, values::amount)?
                .unwrap_or_default()
                .0,
            in_sat: fm
                .val("in", Scalar::Amount, values::amount)?
                .unwrap_or_default()
                .0,
        });
    }
    let default_peer = format!("02{:064x}", id.0);
    Ok(Channel {
        id,
        peer: m
            .val("peer", Scalar::Pubkey, values::pubkey)?
            .unwrap_or(default_peer),
        alias: m
            .val("alias", Scalar::Regex, |t| Ok(t.to_owned()))?
            .unwrap_or_default(),
        capacity,
        local,
        remote,
        active: m
            .val("active", Scalar::Bool, values::boolean)?
            .unwrap_or(true),
        pending_htlcs: m
            .val("pending_htlcs", Scalar::Int(0, 1000), |t| {
                values::int(t, 0, 1000)
            })?
            .map_or(0, |v| u32::try_from(v).unwrap_or(0)),
        age_blocks: m
            .val("age", Scalar::Age, values::age_blocks)?
            .unwrap_or(14_400),
        tags,
        flows,
    })
}
