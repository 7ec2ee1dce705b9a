//! The read-only views a script gets of a target and of the pass.

use chrono::{Datelike, Timelike};

use super::model::Rule;
use super::reason::Target;
use super::script::{CtxView, FlowWindow, TargetView};
use super::snapshot::Snapshot;
use super::tally::{Agg, PassState};
use crate::chain::fees::SatPerKw;
use crate::domain::{Ppm, Sat};

fn flows_of(snapshot: &Snapshot, idx: &[usize]) -> Vec<FlowWindow> {
    let mut out: Vec<FlowWindow> = Vec::new();
    for &i in idx {
        for w in &snapshot.channels[i].flows {
            match out.iter_mut().find(|o| o.days == w.days) {
                Some(o) => {
                    o.fees_earned_sat = o.fees_earned_sat.saturating_add(w.fees_earned_sat);
                    o.out_sat = o.out_sat.saturating_add(w.out_sat);
                    o.in_sat = o.in_sat.saturating_add(w.in_sat);
                }
                None => out.push(*w),
            }
        }
    }
    out
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn target_view(
    snapshot: &Snapshot,
    rule: &Rule,
    target: &Target,
    idx: &[usize],
    agg: &Agg,
    inbound: Ppm,
) -> TargetView {
    let first = idx.first().map(|&i| &snapshot.channels[i]);
    let (alias, peer) = match (target, first) {
        (Target::Node, _) | (_, None) => (String::new(), String::new()),
        (_, Some(c)) => (c.alias.clone(), c.peer.clone()),
    };
    TargetView {
        id: target.to_string(),
        kind: target.kind(),
        rule: rule.name.clone(),
        alias,
        peer,
        channels: idx.len() as i64,
        capacity_sat: i64_of(agg.capacity.0),
        local_sat: i64_of(agg.local.0),
        remote_sat: i64_of(agg.remote.0),
        inbound_pct: inbound.0 as f64 / 10_000.0,
        active: agg.active > 0,
        pending_htlcs: i64::from(agg.pending),
        age_blocks: i64::from(agg.age_blocks),
        flows: flows_of(snapshot, idx),
    }
}

pub(super) fn ctx_view(
    snapshot: &Snapshot,
    rule: &Rule,
    ri: usize,
    state: &PassState,
    node_inbound: Ppm,
) -> CtxView {
    let local = snapshot.now.with_timezone(&rule.settings.schedule.tz);
    let rate = snapshot
        .fees
        .estimate(rule.settings.swap.conf_target)
        .unwrap_or(SatPerKw(0));
    let left_total = snapshot
        .budget
        .total
        .map(|l| l.saturating_sub(state.spent_total));
    let left_rule = snapshot
        .budget
        .per_rule
        .get(&rule.name)
        .map(|l| l.saturating_sub(state.spent_rule.get(&ri).copied().unwrap_or(Sat::ZERO)));
    let left = match (left_total, left_rule) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    CtxView {
        now: snapshot.now.timestamp(),
        hour: i64::from(local.hour()),
        weekday: i64::from(local.weekday().number_from_monday()),
        fee_rate_sat_vb: rate.0 as f64 / 250.0,
        budget_left_sat: left.map_or(-1, |l| i64_of(l.0)),
        in_flight: snapshot.in_flight.len() as i64 + i64::from(state.dispatched),
        node_inbound_pct: node_inbound.0 as f64 / 10_000.0,
    }
}
