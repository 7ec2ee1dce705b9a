//! One evaluation pass: every channel is taken by its first matching rule, channels form
//! targets, and every target gets a decision with a reason from the closed set.
//!
//! Checks run in this order, the first that applies decides: excluded / no rule, inactive,
//! band (ok), amount (pending HTLCs, below minimum size), blackout, schedule, fee gate,
//! backoff, in flight, route, script, fee caps, budget, dry run, swap. Swaps decided earlier
//! in the pass use up in-flight slots and budget for later targets, in target order (the
//! order of first appearance in the snapshot's channel list). The ledger does the real
//! reservation afterwards; the numbers here are the snapshot's.

use std::collections::{BTreeMap, HashMap};

use chrono::{DurationRound, TimeDelta};

use super::admission::{SwapCaps, category_caps, loop_in_caps, loop_in_limits, swap_limits};
use super::gate::{GateState, gate_state};
use super::model::{
    Destination, Grouping, LastHop, LoopInSettings, Matcher, Policy, Rule, Selector, Settings,
};
use super::reason::{Reason, Target};
use super::script::{ProposalView, Verdict};
use super::snapshot::{Channel, Snapshot};
use super::tally::{PassState, aggregate};
use super::values::ppm_percent;
use super::views::{ctx_view, target_view};
use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Direction, Ppm, Sat};
use crate::swap::loop_in::FUNDING_WEIGHT_ESTIMATE;

/// Weight of a Loop Out sweep (one P2TR HTLC input, one output), for the expected miner fee.
pub const SWEEP_WEIGHT_WU: u64 = 600;

/// The result of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// One decision per target, in target order.
    pub decisions: Vec<Decision>,
    /// Each gated rule's fee gate after this pass; feed it back as `Snapshot::gate_open`.
    pub gate_open: BTreeMap<String, bool>,
}

impl Plan {
    /// The decision about `target`, if there is one.
    pub fn decision(&self, target: &Target) -> Option<&Decision> {
        self.decisions.iter().find(|d| &d.target == target)
    }

    /// How many targets got each reason, by stable name; what the decisions-by-reason
    /// metric reports after a pass.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for d in &self.decisions {
            *out.entry(d.reason.name()).or_insert(0) += 1;
        }
        out
    }

    /// The decisions that ask for a swap now (reason `swap`), in dispatch order.
    pub fn swaps(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.reason == Reason::Swap)
    }
}

/// The decision about one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What it is about.
    pub target: Target,
    /// The rule that took it (`None` for `no_rule`).
    pub rule: Option<String>,
    /// The target's channels.
    pub channels: Vec<ChanId>,
    /// Inbound share of the target's capacity.
    pub inbound_share: Ppm,
    /// Why.
    pub reason: Reason,
    /// The numbers behind the reason, for people ("inbound 22% below 40%").
    pub detail: String,
    /// The swap to make, for `swap` and `dry_run` (and what was refused, for the reasons
    /// decided after the amount is known: fee caps, budget, script veto).
    pub proposal: Option<Proposal>,
}

/// A swap the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Loop Out (below the band) or Loop In (above it).
    pub direction: Direction,
    /// Amount to swap.
    pub amount: Sat,
    /// Fees expected at current estimates (Loop Out: server, miner, routing, prepay routing;
    /// Loop In: server and the HTLC funding's miner fee).
    pub expected_cost: Sat,
    /// The miner fee in `expected_cost`: Loop Out's sweep, Loop In's HTLC funding.
    pub expected_miner: Sat,
    /// The most the swap may cost: the worst case of its limits (every fee at its limit, the
    /// prepay in place of the server fee), what budget admission checks.
    pub max_cost: Sat,
    /// Per-category caps to put in the swap request.
    pub caps: SwapCaps,
    /// Loop Out: the sweep's confirmation target; Loop In: the HTLC funding's.
    pub conf_target: u32,
    /// Confirmations of the server HTLC before revealing the preimage (Loop Out).
    pub htlc_confs: u32,
    /// Channels that may pay; empty means any (Loop Out).
    pub outgoing: Vec<ChanId>,
    /// Where the swept funds go (Loop Out).
    pub destination: Destination,
    /// The peer (pubkey, lower-case hex) the server's payment must arrive through (Loop In).
    pub last_hop: Option<String>,
}

/// A target being formed: its rule and channels.
struct Group {
    rule: Option<usize>,
    excluded: bool,
    target: Target,
    channels: Vec<usize>,
}

/// Evaluates `policy` over `snapshot`.
pub fn evaluate(policy: &Policy, snapshot: &Snapshot) -> Plan {
    let groups = group(policy, snapshot);
    let gates: Vec<Option<GateState>> = policy
        .rules
        .iter()
        .map(|r| gate_state(r, snapshot))
        .collect();
    let mut gate_open = BTreeMap::new();
    for (rule, g) in policy.rules.iter().zip(&gates) {
        if let Some(g) = g {
            gate_open.insert(rule.name.clone(), g.open);
        }
    }
    let mut state = PassState {
        dispatched: 0,
        wallet_committed: Sat::ZERO,
        spent_total: Sat::ZERO,
        spent_rule: HashMap::new(),
    };
    let (node_cap, _, node_remote) = snapshot.node_totals();
    let node_inbound = Ppm::ratio(node_remote.0, node_cap.0);
    // The pass's limits (budgets, in-flight) go to the most depleted targets first: targets
    // are decided in order of inbound share, lowest first (ties in snapshot order), and the
    // plan lists them in snapshot order.
    let mut order: Vec<(Ppm, usize, Group)> = groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let agg = aggregate(snapshot, &g.channels);
            (Ppm::ratio(agg.remote.0, agg.capacity.0), i, g)
        })
        .collect();
    order.sort_by_key(|&(share, i, _)| (share, i));
    let mut decided: Vec<(usize, Decision)> = order
        .into_iter()
        .map(|(_, i, g)| {
            (
                i,
                decide(policy, snapshot, &gates, &mut state, node_inbound, g),
            )
        })
        .collect();
    decided.sort_by_key(|&(i, _)| i);
    let decisions = decided.into_iter().map(|(_, d)| d).collect();
    Plan {
        decisions,
        gate_open,
    }
}

fn group(policy: &Policy, snapshot: &Snapshot) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<(Option<usize>, bool, Target), usize> = HashMap::new();
    for (ci, ch) in snapshot.channels.iter().enumerate() {
        let found = policy.rules.iter().position(|r| rule_takes(policy, r, ch));
        let (rule, excluded, target) = match found {
            None => (None, false, Target::Channel(ch.id)),
            Some(ri) => {
                let r = &policy.rules[ri];
                let excluded = r.exclude.as_ref().is_some_and(|s| selects(policy, s, ch));
                let per = if matches!(r.matcher, Matcher::Node) {
                    Grouping::Node
                } else {
                    r.per
                };
                let target = match (excluded, per) {
                    (true, _) | (false, Grouping::Channel) => Target::Channel(ch.id),
                    (false, Grouping::Peer) => Target::Peer(ch.peer.clone()),
                    (false, Grouping::Node) => Target::Node,
                };
                (Some(ri), excluded, target)
            }
        };
        // A channel target is its own group: no lookup, no key clone.
        if let Target::Channel(_) = target {
            groups.push(Group {
                rule,
                excluded,
                target,
                channels: vec![ci],
            });
            continue;
        }
        let key = (rule, excluded, target);
        match index.get(&key) {
            Some(&gi) => groups[gi].channels.push(ci),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    rule: key.0,
                    excluded: key.1,
                    target: key.2,
                    channels: vec![ci],
                });
            }
        }
    }
    groups
}

fn rule_takes(policy: &Policy, rule: &Rule, ch: &Channel) -> bool {
    match &rule.matcher {
        Matcher::All | Matcher::Node => true,
        Matcher::Select(s) => selects(policy, s, ch),
    }
}

fn selects(policy: &Policy, s: &Selector, ch: &Channel) -> bool {
    (s.channels.is_empty() || s.channels.contains(&ch.id))
        && (s.peers.is_empty() || s.peers.contains(&ch.peer))
        && s.alias.as_ref().is_none_or(|re| re.is_match(&ch.alias))
        && s.capacity_min.is_none_or(|m| ch.capacity >= m)
        && s.capacity_max.is_none_or(|m| ch.capacity <= m)
        && s.age_min_blocks.is_none_or(|m| ch.age_blocks >= m)
        && s.age_max_blocks.is_none_or(|m| ch.age_blocks <= m)
        && (s.tags.is_empty() || s.tags.iter().any(|t| has_tag(policy, t, ch)))
}

fn has_tag(policy: &Policy, tag: &str, ch: &Channel) -> bool {
    ch.tags.iter().any(|t| t == tag)
        || policy
            .tags
            .get(tag)
            .is_some_and(|set| set.channels.contains(&ch.id) || set.peers.contains(&ch.peer))
}

/// A share rounded down to a hundredth of a percent, for details: `22.5%`.
fn pct(p: Ppm) -> String {
    ppm_percent(Ppm(p.0 / 100 * 100))
}

fn decide(
    policy: &Policy,
    snapshot: &Snapshot,
    gates: &[Option<GateState>],
    state: &mut PassState,
    node_inbound: Ppm,
    g: Group,
) -> Decision {
    let agg = aggregate(snapshot, &g.channels);
    let inbound_share = Ppm::ratio(agg.remote.0, agg.capacity.0);
    let channels: Vec<ChanId> = g
        .channels
        .iter()
        .map(|&i| snapshot.channels[i].id)
        .collect();
    let mut d = Decision {
        target: g.target,
        rule: g.rule.map(|ri| policy.rules[ri].name.clone()),
        channels,
        inbound_share,
        reason: Reason::Ok,
        detail: String::new(),
        proposal: None,
    };
    let Some(ri) = g.rule else {
        d.reason = Reason::NoRule;
        d.detail = "no rule matches the channel".to_owned();
        return d;
    };
    let rule = &policy.rules[ri];
    let s = &rule.settings;
    if g.excluded {
        d.reason = Reason::Excluded;
        d.detail = format!("excluded by rule {}", rule.name);
        return d;
    }
    if agg.active == 0 {
        d.reason = Reason::Inactive;
        d.detail = "no active channel".to_owned();
        return d;
    }

    let min_level = s.band.inbound_min.resolve(agg.capacity);
    let max_level = s
        .band
        .inbound_max
        .map_or(agg.capacity, |l| l.resolve(agg.capacity));
    let restore = s
        .band
        .restore_to
        .map_or(Sat((min_level.0 + max_level.0) / 2), |l| {
            l.resolve(agg.capacity)
        });
    let band_text = || {
        format!(
            "band {}–{}",
            s.band.inbound_min,
            s.band
                .inbound_max
                .map_or_else(|| "100%".to_owned(), |l| l.to_string())
        )
    };
    let target = d.target.clone();
    let view = || target_view(snapshot, rule, &target, &g.channels, &agg, inbound_share);
    let ctx = || ctx_view(snapshot, rule, ri, state, node_inbound);

    // A Loop In when inbound is above the band and the rule swaps in; else a Loop Out.
    let loop_in = s.loop_in.filter(|_| agg.remote > max_level);
    let direction = if loop_in.is_some() {
        Direction::In
    } else {
        Direction::Out
    };
    let last_hop = match (&loop_in, &d.target) {
        (Some(li), Target::Channel(_) | Target::Peer(_)) if li.last_hop == LastHop::Peer => g
            .channels
            .first()
            .map(|&i| snapshot.channels[i].peer.clone()),
        _ => None,
    };

    // The amount: from the band, or from the script's `propose` when inside the band.
    let mut from_script = false;
    let mut amount = if loop_in.is_some() {
        agg.remote.saturating_sub(restore)
    } else if agg.remote >= min_level {
        let proposed = match &rule.script {
            Some(script) if script.has_propose() => script.propose(&view(), &ctx()),
            _ => Verdict::Nothing,
        };
        match proposed {
            Verdict::Nothing => {
                d.reason = Reason::Ok;
                let place = if agg.remote > max_level {
                    "above"
                } else {
                    "inside"
                };
                d.detail = format!("inbound {} {place} {}", pct(inbound_share), band_text());
                return d;
            }
            Verdict::Veto(t) => {
                d.reason = Reason::Vetoed(t);
                return d;
            }
            Verdict::Error(t) => {
                d.reason = Reason::ScriptError(t);
                return d;
            }
            Verdict::Swap(a) => {
                from_script = true;
                Sat(a)
            }
        }
    } else {
        let required = restore.saturating_sub(agg.remote);
        let reserve = agg.capacity.saturating_sub(max_level);
        let available = agg.local.saturating_sub(reserve);
        if available < required && agg.pending > 0 {
            d.reason = Reason::PendingHtlcs;
            d.detail = format!(
                "{} pending HTLCs leave {} of the {} needed",
                agg.pending, available.0, required.0
            );
            return d;
        }
        required.min(available)
    };

    // Amount backoff after failures, then the size bounds.
    let (failures, last_failure) = g
        .channels
        .iter()
        .filter_map(|&i| snapshot.backoff.get(&snapshot.channels[i].id))
        .fold((0u32, None), |(f, last), b| {
            (
                f.max(b.consecutive_failures),
                Some(
                    last.map_or(b.last_failure, |l: chrono::DateTime<chrono::Utc>| {
                        l.max(b.last_failure)
                    }),
                ),
            )
        });
    for _ in 0..failures.min(s.backoff.max_shrinks) {
        amount = amount.saturating_sub(amount.mul_ppm(s.backoff.shrink_by));
    }
    let (own_min, own_max, server_min, server_max) = match &loop_in {
        Some(li) => (li.min, li.max, snapshot.terms_in.min, snapshot.terms_in.max),
        None => (
            s.swap.min,
            s.swap.max,
            snapshot.terms.min,
            snapshot.terms.max,
        ),
    };
    let min_amount = own_min.unwrap_or(server_min).max(server_min);
    let max_amount = own_max.unwrap_or(server_max).min(server_max);
    amount = amount.min(max_amount);
    let side = match direction {
        Direction::Out => "below",
        Direction::In => "above",
    };
    if amount < min_amount {
        d.reason = Reason::BelowMinSize;
        d.detail = format!(
            "inbound {} {side} {}, but {} is below the minimum {} {}",
            pct(inbound_share),
            band_text(),
            amount.0,
            direction.swap_name(),
            min_amount.0
        );
        return d;
    }
    let why_swap = if from_script {
        "proposed by script".to_owned()
    } else {
        format!(
            "inbound {} {side} {}, restore to {} by {}",
            pct(inbound_share),
            band_text(),
            restore.0,
            direction.swap_name()
        )
    };

    // Time: blackout, then the cron window.
    let local = snapshot.now.with_timezone(&s.schedule.tz);
    let local_naive = local.naive_local();
    if let Some(b) = s
        .schedule
        .blackouts
        .iter()
        .find(|b| b.from <= local_naive && local_naive < b.to)
    {
        d.reason = Reason::Blackout;
        d.detail = format!("blackout {} to {}", b.from, b.to);
        return d;
    }
    if let Some(cron) = &s.schedule.when {
        let minute = local.duration_trunc(TimeDelta::minutes(1)).unwrap_or(local);
        if !cron.is_time_matching(&minute).unwrap_or(false) {
            d.reason = Reason::OutsideSchedule;
            d.detail = format!(
                "{} is outside `{}`",
                minute.format("%H:%M %Z"),
                cron.pattern
            );
            return d;
        }
    }

    // The fee-market gate, unless the target is depleted enough to be urgent (a Loop In is
    // never urgent: too much inbound costs no routing).
    if let Some(gs) = &gates[ri] {
        let urgent = direction == Direction::Out
            && s.gate
                .and_then(|gt| gt.urgent_below)
                .is_some_and(|u| inbound_share < u);
        if !gs.open && !urgent {
            d.reason = Reason::FeeGate;
            d.detail = gs.detail.clone();
            return d;
        }
    }

    if let Some(last) = last_failure {
        let until = last + s.backoff.after_failure;
        if snapshot.now < until {
            d.reason = Reason::Backoff;
            d.detail = format!("{failures} failure(s); skipped until {until}");
            return d;
        }
    }

    let total_in_flight = snapshot.in_flight.len() as u64 + u64::from(state.dispatched);
    if total_in_flight >= u64::from(policy.limits.in_flight) {
        d.reason = Reason::InFlight;
        let manual = snapshot.in_flight.iter().filter(|f| f.manual).count();
        d.detail = format!(
            "{total_in_flight} swap(s) in flight, limit {}",
            policy.limits.in_flight
        );
        if manual > 0 {
            d.detail.push_str(&format!(
                " ({manual} of them manual: manual swaps take autoloop's slots too)"
            ));
        }
        return d;
    }
    let target_in_flight = snapshot
        .in_flight
        .iter()
        .filter(|f| f.outgoing.iter().any(|c| d.channels.contains(c)))
        .count() as u64;
    if target_in_flight >= u64::from(policy.limits.in_flight_per_target) {
        d.reason = Reason::InFlight;
        d.detail = format!(
            "{target_in_flight} swap(s) in flight on this target, limit {}",
            policy.limits.in_flight_per_target
        );
        return d;
    }

    // What can pay: the target's local balance for a Loop Out, the wallet for a Loop In.
    let mut payable_by_target = None;
    let outgoing = match (&loop_in, s.swap.outgoing) {
        (Some(_), _) | (None, super::model::Outgoing::Any) => Vec::new(),
        (None, super::model::Outgoing::Target) => {
            let mut active: Vec<&Channel> = g
                .channels
                .iter()
                .map(|&i| &snapshot.channels[i])
                .filter(|c| c.active)
                .collect();
            active.sort_by_key(|c| std::cmp::Reverse(c.local));
            let payable: Sat = active.iter().map(|c| c.local).sum();
            if payable < amount {
                d.reason = Reason::NoRoute;
                d.detail = format!(
                    "too little local balance: the target's active channels hold {} but the swap needs {}",
                    payable.0, amount.0
                );
                return d;
            }
            payable_by_target = Some(payable);
            active.iter().map(|c| c.id).collect()
        }
    };
    let wallet_left = snapshot
        .wallet
        .map(|w| w.saturating_sub(state.wallet_committed));
    let propose_for = |amount: Sat, outgoing: Vec<ChanId>| match &loop_in {
        Some(li) => propose_in(li, snapshot, amount, last_hop.clone()),
        None => propose(s, snapshot, amount, outgoing),
    };
    let short_of_funds = |p: &Proposal| -> Option<String> {
        let left = wallet_left?;
        let needs = p.amount + p.expected_miner;
        (p.direction == Direction::In && left < needs).then(|| {
            format!(
                "the wallet has {} sat confirmed for Loop Ins; this one needs {} (amount and expected funding fee)",
                left.0, needs.0
            )
        })
    };

    let mut proposal = propose_for(amount, outgoing);
    if let Some(why) = short_of_funds(&proposal) {
        d.reason = Reason::InsufficientFunds;
        d.detail = why;
        d.proposal = Some(proposal);
        return d;
    }
    if let Some(script) = rule.script.as_ref().filter(|_| !from_script) {
        let pv = ProposalView {
            direction: direction.as_str(),
            amount_sat: proposal.amount.0,
            expected_cost_sat: proposal.expected_cost.0,
            max_cost_sat: proposal.max_cost.0,
            conf_target: i64::from(proposal.conf_target),
        };
        match script.decide(&view(), &pv, &ctx()) {
            Verdict::Swap(a) if a == proposal.amount.0 => {}
            Verdict::Swap(a) => {
                let a = Sat(a).min(max_amount);
                if a < min_amount {
                    d.reason = Reason::BelowMinSize;
                    d.detail = format!(
                        "script set {} below the minimum {} {}",
                        a.0,
                        direction.swap_name(),
                        min_amount.0
                    );
                    return d;
                }
                if let Some(payable) = payable_by_target.filter(|p| *p < a) {
                    d.reason = Reason::NoRoute;
                    d.detail = format!(
                        "too little local balance: script set {} but the active channels hold {}",
                        a.0, payable.0
                    );
                    return d;
                }
                proposal = propose_for(a, proposal.outgoing);
                if let Some(why) = short_of_funds(&proposal) {
                    d.reason = Reason::InsufficientFunds;
                    d.detail = format!("script set {}: {why}", a.0);
                    d.proposal = Some(proposal);
                    return d;
                }
            }
            Verdict::Veto(t) => {
                d.reason = Reason::Vetoed(t);
                d.proposal = Some(proposal);
                return d;
            }
            Verdict::Error(t) => {
                d.reason = Reason::ScriptError(t);
                d.proposal = Some(proposal);
                return d;
            }
            Verdict::Nothing => {
                d.reason = Reason::ScriptError("decide returned nothing".to_owned());
                return d;
            }
        }
    }

    let breach = match &loop_in {
        Some(li) => fee_cap_breach_in(li, snapshot, &proposal),
        None => fee_cap_breach(s, snapshot, &proposal),
    };
    if let Some(why) = breach {
        d.reason = Reason::FeeCap;
        d.detail = why;
        d.proposal = Some(proposal);
        return d;
    }

    // Admission as the ledger does it: the worst case must fit what every budget has left.
    let cost = proposal.max_cost;
    let rule_spent = state.spent_rule.get(&ri).copied().unwrap_or(Sat::ZERO);
    let budgets = [
        snapshot
            .budget
            .total
            .map(|left| ("budget", left.saturating_sub(state.spent_total))),
        snapshot
            .budget
            .per_rule
            .get(&rule.name)
            .map(|left| ("rule budget", left.saturating_sub(rule_spent))),
    ];
    for (name, left) in budgets.into_iter().flatten() {
        if left == Sat::ZERO {
            d.reason = Reason::BudgetExhausted;
            d.detail = format!("{name} exhausted");
            d.proposal = Some(proposal);
            return d;
        }
        if cost > left {
            d.reason = Reason::BudgetInsufficient;
            d.detail = format!(
                "{name} has {} left; the swap's worst case needs {} (expected fees {})",
                left.0, cost.0, proposal.expected_cost.0
            );
            d.proposal = Some(proposal);
            return d;
        }
    }

    state.dispatched += 1;
    state.spent_total += cost;
    *state.spent_rule.entry(ri).or_insert(Sat::ZERO) += cost;
    if direction == Direction::In {
        state.wallet_committed += proposal.amount + proposal.expected_miner;
    }
    d.detail = format!(
        "{why_swap}; {} {} expecting {} in fees, at most {}",
        direction.swap_name(),
        proposal.amount.0,
        proposal.expected_cost.0,
        cost.0
    );
    d.reason = if policy.dry_run || snapshot.dry_run {
        Reason::DryRun
    } else {
        Reason::Swap
    };
    d.proposal = Some(proposal);
    d
}

/// The proposal for `amount`: expected fees at current estimates, the caps and the worst
/// case of the limits the swap would get (with the snapshot's terms for the server's fee).
fn propose(s: &Settings, snapshot: &Snapshot, amount: Sat, outgoing: Vec<ChanId>) -> Proposal {
    let terms = &snapshot.terms;
    let miner = expected_miner(s, snapshot);
    let server = amount.mul_ppm(terms.swap_fee_ppm);
    let routing = amount.mul_ppm(snapshot.fees.routing_ppm);
    let prepay_routing = terms.prepay.mul_ppm(snapshot.fees.routing_ppm);
    let caps = category_caps(&s.fees, amount, terms.prepay);
    let expected_cost = server + miner + routing + prepay_routing;
    let max_cost = swap_limits(
        &caps,
        &s.fees,
        amount,
        expected_cost,
        server,
        terms.prepay,
        snapshot.fees.routing_ppm,
    )
    .map_or_else(
        || caps.server.max(caps.prepay) + caps.routing + caps.prepay_routing + caps.miner,
        |l| l.worst_case(),
    );
    Proposal {
        direction: Direction::Out,
        amount,
        expected_cost,
        expected_miner: miner,
        max_cost,
        caps,
        conf_target: s.swap.conf_target,
        htlc_confs: s.swap.htlc_confs,
        outgoing,
        destination: s.swap.destination.clone(),
        last_hop: None,
    }
}

/// The Loop In proposal for `amount`: the server's fee at the snapshot's terms and the HTLC
/// funding's expected miner fee, the caps, and the worst case of the limits it would get
/// ([`loop_in_limits`]; at its caps when no limits fit, which the fee-cap check then refuses).
fn propose_in(
    li: &LoopInSettings,
    snapshot: &Snapshot,
    amount: Sat,
    last_hop: Option<String>,
) -> Proposal {
    let server = amount.mul_ppm(snapshot.terms_in.swap_fee_ppm);
    let miner = expected_funding(li.htlc_conf_target, snapshot);
    let caps = loop_in_caps(&li.fees, amount);
    let max_cost = loop_in_limits(&caps, &li.fees, amount, server, miner).map_or_else(
        || {
            crate::swap::loop_in::LoopInLimits {
                max_swap_fee: caps.server,
                max_miner_fee: caps.miner,
            }
            .worst_case()
        },
        |l| l.worst_case(),
    );
    Proposal {
        direction: Direction::In,
        amount,
        expected_cost: server + miner,
        expected_miner: miner,
        max_cost,
        caps,
        conf_target: li.htlc_conf_target,
        htlc_confs: 0,
        outgoing: Vec::new(),
        destination: Destination::Wallet,
        last_hop,
    }
}

/// The HTLC funding's expected miner fee: the estimate for its confirmation target × the
/// funding transaction's estimated weight.
fn expected_funding(conf_target: u32, snapshot: &Snapshot) -> Sat {
    let rate = snapshot.fees.estimate(conf_target).unwrap_or(SatPerKw(0));
    Sat(rate.0.saturating_mul(FUNDING_WEIGHT_ESTIMATE.to_wu()) / 1000)
}

fn fee_cap_breach_in(li: &LoopInSettings, snapshot: &Snapshot, p: &Proposal) -> Option<String> {
    let server = p.amount.mul_ppm(snapshot.terms_in.swap_fee_ppm);
    if server > p.caps.server {
        return Some(format!("server fee {} > cap {}", server.0, p.caps.server.0));
    }
    let miner = expected_funding(li.htlc_conf_target, snapshot);
    if miner > p.caps.miner {
        return Some(format!(
            "HTLC miner fee {} > cap {}",
            miner.0, p.caps.miner.0
        ));
    }
    let total_cap = p.amount.mul_ppm(li.fees.max_total);
    if p.expected_cost > total_cap {
        return Some(format!(
            "expected fees {} > {} of the amount ({})",
            p.expected_cost.0,
            ppm_percent(li.fees.max_total),
            total_cap.0
        ));
    }
    if loop_in_limits(&p.caps, &li.fees, p.amount, server, miner).is_none() {
        return Some(format!(
            "no miner-fee limit fits: the HTLC needs {} expected, a timeout sweep at least {}, \
             within the miner cap {}, what the {} total leaves after the server fee {} ({}), \
             and half the timeout-risk cap {}",
            miner.0,
            crate::chain::fees::min_sweep_fee().0,
            p.caps.miner.0,
            ppm_percent(li.fees.max_total),
            server.0,
            total_cap.saturating_sub(server).0,
            p.caps.timeout_risk.0
        ));
    }
    None
}

/// The sweep's expected miner fee: the estimate for the rule's confirmation target × the
/// sweep's weight.
fn expected_miner(s: &Settings, snapshot: &Snapshot) -> Sat {
    let rate = snapshot
        .fees
        .estimate(s.swap.conf_target)
        .unwrap_or(SatPerKw(0));
    Sat(rate.0.saturating_mul(SWEEP_WEIGHT_WU) / 1000)
}

fn fee_cap_breach(s: &Settings, snapshot: &Snapshot, p: &Proposal) -> Option<String> {
    let terms = &snapshot.terms;
    let server = p.amount.mul_ppm(terms.swap_fee_ppm);
    if server > p.caps.server {
        return Some(format!("server fee {} > cap {}", server.0, p.caps.server.0));
    }
    if terms.prepay > p.caps.prepay {
        return Some(format!(
            "prepay {} > cap {}",
            terms.prepay.0, p.caps.prepay.0
        ));
    }
    let miner = expected_miner(s, snapshot);
    if miner > p.caps.miner {
        return Some(format!("miner fee {} > cap {}", miner.0, p.caps.miner.0));
    }
    let total_cap = p.amount.mul_ppm(s.fees.max_total);
    if p.expected_cost > total_cap {
        return Some(format!(
            "expected fees {} > {} of the amount ({})",
            p.expected_cost.0,
            ppm_percent(s.fees.max_total),
            total_cap.0
        ));
    }
    let limits = swap_limits(
        &p.caps,
        &s.fees,
        p.amount,
        p.expected_cost,
        server,
        terms.prepay,
        snapshot.fees.routing_ppm,
    );
    if limits.is_none() {
        return Some(format!(
            "a server fee of {} leaves too little of the {} cap ({}) for the expected routing and miner fees",
            server.0,
            ppm_percent(s.fees.max_total),
            total_cap.0
        ));
    }
    None
}
