//! Every reason produced by a real scenario through `evaluate`, plus the amount, gate and
//! sandbox behaviour behind them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::script::{Clock, FlowWindow, ScriptHost, ScriptLimits};
use super::*;
use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Sat};

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
}

fn chan(n: u32, capacity: u64, local: u64) -> Channel {
    Channel {
        id: ChanId::from_parts(800_000 + n, 1, 0),
        peer: format!("02{:064x}", n),
        alias: format!("peer{n}"),
        capacity: Sat(capacity),
        local: Sat(local),
        remote: Sat(capacity - local),
        active: true,
        pending_htlcs: 0,
        age_blocks: 10_000,
        tags: Vec::new(),
        flows: Vec::new(),
    }
}

fn snap(channels: Vec<Channel>) -> Snapshot {
    let mut s = Snapshot::empty(at(2, 30));
    s.channels = channels;
    s.fees.estimates = vec![(100, SatPerKw::from_sat_per_vbyte(8))];
    s
}

/// Loads `yaml` as `policy.yaml` in a fresh directory holding `scripts` (name, text).
fn load_in(
    yaml: &str,
    scripts: &[(&str, &str)],
    host: &Arc<ScriptHost>,
) -> Result<Policy, PolicyError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in scripts {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, yaml).unwrap();
    load_with(&file, host)
}

fn pol(yaml: &str) -> Policy {
    load_in(yaml, &[], &ScriptHost::new()).unwrap()
}

const BASE: &str = "defaults:\n  band: { inbound_min: 30%, inbound_max: 70%, restore_to: 50% }\n  swap: { min: 250k, max: 2M }\nrules:\n  - { name: all, match: all }\nlimits: { in_flight: 5, in_flight_per_target: 1 }\n";

/// [`BASE`] with Loop In at the band's upper edge.
const IN_BASE: &str = "defaults:\n  band: { inbound_min: 30%, inbound_max: 70%, restore_to: 50% }\n  swap: { min: 250k, max: 2M }\n  loop_in: { min: 250k, max: 2M, htlc_conf_target: 6, fees: { max_total: 1%, max_miner: 20k } }\nrules:\n  - { name: all, match: all }\nlimits: { in_flight: 5, in_flight_per_target: 1 }\n";

/// A 5M channel with 90% inbound: 2M above a 70% band, 2M to a 50% restore.
fn full() -> Channel {
    chan(1, 5_000_000, 500_000)
}

fn one(policy: &Policy, snapshot: &Snapshot) -> Decision {
    let plan = evaluate(policy, snapshot);
    assert_eq!(plan.decisions.len(), 1, "{plan:?}");
    plan.decisions.into_iter().next().unwrap()
}

#[test]
fn every_reason_comes_from_a_real_scenario() {
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    let mut record = |d: &Decision, want: &str| {
        assert_eq!(d.reason.name(), want, "{d:?}");
        seen.insert(d.reason.name());
    };
    let base = pol(BASE);
    let depleted = || chan(1, 5_000_000, 4_500_000);

    // swap: 10% inbound, restore to 50% needs 2M.
    let d = one(&base, &snap(vec![depleted()]));
    record(&d, "swap");
    assert_eq!(d.proposal.as_ref().unwrap().amount, Sat(2_000_000));
    // ok: 50% inbound.
    record(
        &one(&base, &snap(vec![chan(2, 2_000_000, 1_000_000)])),
        "ok",
    );
    // below_min_size: needs 200k.
    record(
        &one(&base, &snap(vec![chan(3, 600_000, 500_000)])),
        "below_min_size",
    );
    // inactive.
    let mut c = depleted();
    c.active = false;
    record(&one(&base, &snap(vec![c])), "inactive");
    // pending_htlcs: 300k held in HTLCs leave 300k of the 400k needed.
    let mut c = chan(4, 1_000_000, 600_000);
    c.remote = Sat(100_000);
    c.pending_htlcs = 3;
    record(&one(&base, &snap(vec![c])), "pending_htlcs");
    // budget_exhausted / budget_insufficient.
    let mut s = snap(vec![depleted()]);
    s.budget.total = Some(Sat(0));
    record(&one(&base, &s), "budget_exhausted");
    s.budget.total = Some(Sat(1_000));
    record(&one(&base, &s), "budget_insufficient");
    // in_flight (node-wide) and in_flight (per target).
    let mut s = snap(vec![depleted()]);
    s.in_flight = vec![InFlightSwap {
        outgoing: vec![depleted().id],
        amount: Sat(1),
        manual: false,
    }];
    record(&one(&base, &s), "in_flight");
    // backoff: failed an hour ago, default after_failure 24h.
    let mut s = snap(vec![depleted()]);
    s.backoff.insert(
        depleted().id,
        BackoffState {
            last_failure: s.now - TimeDelta::hours(1),
            consecutive_failures: 1,
        },
    );
    record(&one(&base, &s), "backoff");
    // no_rule and excluded.
    let p = pol(
        "defaults: { band: { inbound_min: 30% } }\nrules:\n  - name: big\n    match: { capacity_min: 10M }\n    exclude: { alias: peer9 }\n",
    );
    record(&one(&p, &snap(vec![depleted()])), "no_rule");
    let mut c = chan(9, 20_000_000, 19_000_000);
    c.alias = "peer9".into();
    record(&one(&p, &snap(vec![c])), "excluded");
    // no_route: the peer's active channel cannot carry what both channels need.
    let p = pol(
        "defaults: { band: { inbound_min: 30% }, swap: { max: 5M } }\nrules:\n  - { name: peers, match: all, per: peer }\n",
    );
    // Together 1M of 6M inbound: restore to 65% needs 2.9M, the active channel holds 500k.
    let (a, mut b) = (chan(1, 1_000_000, 500_000), chan(5, 5_000_000, 4_500_000));
    b.peer = a.peer.clone();
    b.active = false;
    record(&one(&p, &snap(vec![a, b])), "no_route");
    // fee_cap: server cap 0.05% below the server's 0.1%.
    let p = pol(
        "defaults: { band: { inbound_min: 30% }, fees: { max_server: 0.05% } }\nrules: [ { name: r, match: all } ]\n",
    );
    record(&one(&p, &snap(vec![depleted()])), "fee_cap");
    // fee_gate: 8 sat/vB above a 5 sat/vB ceiling.
    let p = pol(
        "defaults: { band: { inbound_min: 30% }, fees: { sweep_gate: { ceiling: 5 sat/vB } } }\nrules: [ { name: r, match: all } ]\n",
    );
    record(&one(&p, &snap(vec![depleted()])), "fee_gate");
    // outside_schedule and blackout.
    let p = pol(
        "defaults:\n  band: { inbound_min: 30% }\n  schedule: { when: \"0 12 * * *\", blackout: [ { from: \"2026-03-01 02:00\", to: \"2026-03-01 03:00\" } ] }\nrules: [ { name: r, match: all } ]\n",
    );
    record(&one(&p, &snap(vec![depleted()])), "blackout");
    let mut s = snap(vec![depleted()]);
    s.now = at(4, 0);
    record(&one(&p, &s), "outside_schedule");
    let mut s = snap(vec![depleted()]);
    s.now = at(12, 0) + TimeDelta::seconds(42);
    record(&one(&p, &s), "swap");
    // dry_run, from the policy and from the snapshot.
    let p = pol(&format!("dry_run: true\n{BASE}"));
    record(&one(&p, &snap(vec![depleted()])), "dry_run");
    let mut s = snap(vec![depleted()]);
    s.dry_run = true;
    record(&one(&base, &s), "dry_run");
    // vetoed and script_error.
    let host = ScriptHost::new();
    let yaml = "defaults: { band: { inbound_min: 30% } }\nrules: [ { name: r, match: all, script: s.rhai } ]\n";
    let p = load_in(
        yaml,
        &[("s.rhai", "fn decide(t, p, c) { veto(`no: ${t.id}`) }")],
        &host,
    )
    .unwrap();
    let d = one(&p, &snap(vec![depleted()]));
    record(&d, "vetoed");
    assert_eq!(d.reason.text(), Some("no: 800001x1x0"));
    let p = load_in(yaml, &[("s.rhai", "fn decide(t, p, c) { p.nope }")], &host).unwrap();
    let d = one(&p, &snap(vec![depleted()]));
    record(&d, "script_error");
    assert!(d.reason.text().unwrap().contains("s.rhai:1:"), "{d:?}");

    // insufficient_funds: a Loop In above the band with too little in the wallet.
    let p = pol(IN_BASE);
    let mut s = snap(vec![full()]);
    s.wallet = Some(Sat(100_000));
    record(&one(&p, &s), "insufficient_funds");

    let all: BTreeSet<&str> = Reason::NAMES
        .iter()
        .copied()
        .filter(|n| !Reason::PASS_ONLY.contains(n))
        .collect();
    assert_eq!(seen, all);
}

#[test]
fn swaps_in_one_pass_use_up_in_flight_slots_and_budget() {
    let p = pol(&BASE.replace("in_flight: 5", "in_flight: 2"));
    let mut s = snap(vec![
        chan(1, 5_000_000, 4_500_000),
        chan(2, 5_000_000, 4_500_000),
        chan(3, 5_000_000, 4_500_000),
    ]);
    let names: Vec<&str> = evaluate(&p, &s)
        .decisions
        .iter()
        .map(|d| d.reason.name())
        .collect();
    assert_eq!(names, ["swap", "swap", "in_flight"]);
    let plan = evaluate(&p, &s);
    assert_eq!(plan.swaps().count(), 2);
    assert_eq!(plan.counts().get("in_flight"), Some(&1));
    // Admission reserves each swap's worst case (prepay in place of the server fee, every
    // fee at its limit): a budget just above one worst case admits one swap.
    let first = plan.decisions[0].proposal.clone().unwrap();
    assert!(
        first.max_cost >= first.expected_cost + Sat(28_000),
        "{first:?}"
    );
    s.budget.total = Some(first.max_cost + Sat(1));
    let names: Vec<&str> = evaluate(&p, &s)
        .decisions
        .iter()
        .map(|d| d.reason.name())
        .collect();
    assert_eq!(
        names,
        ["swap", "budget_insufficient", "budget_insufficient"]
    );
}

#[test]
fn scarce_slots_and_budget_go_to_the_most_depleted_target_first() {
    // Three channels below the band, the most depleted last in the snapshot: one in-flight
    // slot goes to it, and the plan still lists the channels in snapshot order.
    let p = pol(&BASE.replace("in_flight: 5", "in_flight: 1"));
    let s = snap(vec![
        chan(1, 5_000_000, 4_000_000),
        chan(2, 5_000_000, 4_500_000),
        chan(3, 5_000_000, 4_900_000),
    ]);
    let plan = evaluate(&p, &s);
    let names: Vec<&str> = plan.decisions.iter().map(|d| d.reason.name()).collect();
    assert_eq!(names, ["in_flight", "in_flight", "swap"]);
    let ids: Vec<u32> = plan
        .decisions
        .iter()
        .map(|d| d.channels[0].block())
        .collect();
    assert_eq!(ids, [800_001, 800_002, 800_003]);

    // The same with a budget that holds one worst case.
    let p = pol(BASE);
    let mut s = s;
    let worst = plan.decisions[2].proposal.clone().unwrap().max_cost;
    s.budget.total = Some(worst + Sat(1));
    let names: Vec<&str> = evaluate(&p, &s)
        .decisions
        .iter()
        .map(|d| d.reason.name())
        .collect();
    assert_eq!(
        names,
        ["budget_insufficient", "budget_insufficient", "swap"]
    );
}

#[test]
fn amount_shrinks_after_failures_once_backoff_has_passed() {
    let p = pol(&BASE.replace(
        "rules:",
        "  backoff: { after_failure: 1h, shrink_amount_by: 25%, max_shrinks: 2 }\nrules:",
    ));
    let c = chan(1, 5_000_000, 4_500_000);
    let mut s = snap(vec![c.clone()]);
    s.backoff.insert(
        c.id,
        BackoffState {
            last_failure: s.now - TimeDelta::hours(2),
            consecutive_failures: 5,
        },
    );
    // 2M × 0.75 × 0.75 (two shrinks at most).
    assert_eq!(one(&p, &s).proposal.unwrap().amount, Sat(1_125_000));
}

#[test]
fn percentile_gate_has_hysteresis() {
    let p = pol(
        "defaults:\n  band: { inbound_min: 30% }\n  fees: { sweep_gate: { percentile: 25, close_percentile: 75, window: 1d } }\nrules: [ { name: r, match: all } ]\n",
    );
    let mut s = snap(vec![chan(1, 5_000_000, 4_500_000)]);
    // Samples 4..=11 sat/vB over the last 8 hours: p25 = 5, p75 = 9. One stale sample is ignored.
    s.fees.history = (4..=11u64)
        .map(|r| FeeSample {
            at: s.now - TimeDelta::hours(i64::try_from(r).unwrap() - 3),
            conf_target: 100,
            rate: SatPerKw::from_sat_per_vbyte(r),
        })
        .collect();
    s.fees.history.push(FeeSample {
        at: s.now - TimeDelta::days(3),
        conf_target: 100,
        rate: SatPerKw::from_sat_per_vbyte(1),
    });
    // 8 sat/vB: closed gate stays closed (8 > p25).
    let plan = evaluate(&p, &s);
    assert_eq!(plan.decisions[0].reason, Reason::FeeGate);
    assert_eq!(plan.gate_open.get("r"), Some(&false));
    // 5 sat/vB opens it.
    s.fees.estimates = vec![(100, SatPerKw::from_sat_per_vbyte(5))];
    let plan = evaluate(&p, &s);
    assert_eq!(plan.decisions[0].reason, Reason::Swap);
    // Back at 8 with the gate open: stays open (8 ≤ p75) ...
    s.gate_open = plan.gate_open;
    s.fees.estimates = vec![(100, SatPerKw::from_sat_per_vbyte(8))];
    assert_eq!(one(&p, &s).reason, Reason::Swap);
    // ... and closes above p75.
    s.fees.estimates = vec![(100, SatPerKw::from_sat_per_vbyte(10))];
    assert_eq!(one(&p, &s).reason, Reason::FeeGate);
}

#[test]
fn urgent_targets_ignore_the_gate() {
    let p = pol(
        "defaults:\n  band: { inbound_min: 30% }\n  fees: { sweep_gate: { ceiling: 5 sat/vB, urgent_below: 5% } }\nrules: [ { name: r, match: all } ]\n",
    );
    let s = snap(vec![
        chan(1, 5_000_000, 4_500_000),
        chan(2, 5_000_000, 4_900_000),
    ]);
    let names: Vec<&str> = evaluate(&p, &s)
        .decisions
        .iter()
        .map(|d| d.reason.name())
        .collect();
    assert_eq!(names, ["fee_gate", "swap"]);
}

#[test]
fn amount_levels_in_sats_work_like_shares() {
    let p = pol(
        "defaults: { band: { inbound_min: 1M, inbound_max: 4M, restore_to: 3M } }\nrules: [ { name: r, match: all } ]\n",
    );
    // 500k inbound below 1M; restore to 3M needs 2.5M; reserve 1M leaves 3.5M available.
    assert_eq!(
        one(&p, &snap(vec![chan(1, 5_000_000, 4_500_000)]))
            .proposal
            .unwrap()
            .amount,
        Sat(2_500_000)
    );
}

#[test]
fn script_may_resize_and_propose() {
    let host = ScriptHost::new();
    let yaml = "defaults: { band: { inbound_min: 30% } }\nrules: [ { name: r, match: all, script: s.rhai } ]\nlimits: { in_flight: 3 }\n";
    let script = "fn decide(t, p, c) { p.amount_sat = 300000; p }\n\
                  fn propose(t, c) { if t.fees_earned_sat(7) > 100 { 400000 } }";
    let p = load_in(yaml, &[("s.rhai", script)], &host).unwrap();
    let mut inside = chan(2, 2_000_000, 1_000_000);
    inside.flows = vec![FlowWindow {
        days: 7,
        fees_earned_sat: 700,
        out_sat: 0,
        in_sat: 0,
    }];
    let mut quiet = chan(3, 2_000_000, 1_000_000);
    quiet.flows = vec![FlowWindow {
        days: 7,
        fees_earned_sat: 0,
        out_sat: 0,
        in_sat: 0,
    }];
    let plan = evaluate(
        &p,
        &snap(vec![chan(1, 5_000_000, 4_500_000), inside, quiet]),
    );
    let amounts: Vec<Option<u64>> = plan
        .decisions
        .iter()
        .map(|d| d.proposal.as_ref().map(|p| p.amount.0))
        .collect();
    // Resized by decide; proposed by propose (700 earned in 7 days > 100); quiet stays ok.
    assert_eq!(amounts, [Some(300_000), Some(400_000), None], "{plan:?}");
    assert_eq!(plan.decisions[2].reason, Reason::Ok);
}

/// A clock that moves 1 ms every time it is read, so a runaway script meets the wall-clock
/// cut-off after a fixed number of reads, however fast the machine.
struct Ticking(AtomicU64);

impl Clock for Ticking {
    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

/// A clock that never moves, so only the counted limits can stop a script.
struct Frozen;

impl Clock for Frozen {
    fn elapsed(&self) -> Duration {
        Duration::ZERO
    }
}

#[test]
fn sandbox_limits_turn_into_script_errors() {
    let limits = ScriptLimits {
        max_operations: 0,
        wall_clock: Duration::from_millis(20),
        ..ScriptLimits::default()
    };
    let wall = ScriptHost::with(limits, Arc::new(Ticking(AtomicU64::new(0))));
    let counted = ScriptHost::with(ScriptLimits::default(), Arc::new(Frozen));
    let yaml = "defaults: { band: { inbound_min: 30% } }\nrules: [ { name: r, match: all, script: s.rhai } ]\n";
    let cases: [(&Arc<ScriptHost>, &str, &str); 4] = [
        (
            &wall,
            "fn decide(t, p, c) { loop { } }",
            "Script terminated",
        ),
        (
            &counted,
            "fn decide(t, p, c) { loop { } }",
            "Too many operations",
        ),
        (
            &counted,
            "fn f(n) { f(n + 1) }\nfn decide(t, p, c) { f(0) }",
            "Stack overflow",
        ),
        (
            &counted,
            "fn decide(t, p, c) { let s = \"xx\"; loop { s += s; } }",
            "Length of string too large",
        ),
    ];
    for (host, script, want) in cases {
        let p = load_in(yaml, &[("s.rhai", script)], host).unwrap();
        let d = one(&p, &snap(vec![chan(1, 5_000_000, 4_500_000)]));
        let text = d.reason.text().unwrap_or_default().to_owned();
        assert_eq!(d.reason.name(), "script_error", "{script}: {d:?}");
        assert!(text.contains(want), "{script}: {text}");
    }
}

#[test]
fn loading_a_missing_path_names_it() {
    let e = load(Path::new("/nonexistent/policy")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/policy: no such file"),
        "{e}"
    );
}

#[test]
fn a_policy_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Policy>();
    send_sync::<Plan>();
}

/// A category without its own key is capped by `max_total` (the prepay included), and the
/// `max_cost_sat` a script sees is the proposal's worst case, the figure admission checks.
#[test]
fn an_unset_fee_cap_is_max_total_and_scripts_see_the_worst_case() {
    // 2M at 2%: 40k covers Loop's 30k prepay; 1M at 2% (20k) does not.
    let p = pol(BASE);
    let d = one(&p, &snap(vec![chan(1, 5_000_000, 4_500_000)]));
    assert_eq!(d.reason, Reason::Swap, "{d:?}");
    let small = pol(&BASE.replace("max: 2M", "max: 1M"));
    let d = one(&small, &snap(vec![chan(1, 5_000_000, 4_500_000)]));
    assert_eq!(d.reason, Reason::FeeCap, "{d:?}");
    assert!(d.detail.contains("prepay 30000 > cap 20000"), "{d:?}");
    let own = pol(&BASE.replace(
        "swap: { min: 250k, max: 2M }",
        "swap: { min: 250k, max: 1M }\n  fees: { max_prepay: 30k }",
    ));
    let d = one(&own, &snap(vec![chan(1, 5_000_000, 4_500_000)]));
    assert_eq!(d.reason, Reason::Swap, "{d:?}");

    // The script vetoes unless max_cost_sat is the worst case: the prepay (30k) plus the
    // limits sharing what 2% of 1M leaves after the 1k server fee (19k).
    let yaml = BASE.replace(
        "swap: { min: 250k, max: 2M }",
        "swap: { min: 250k, max: 1M }\n  fees: { max_prepay: 30k }\n  script: s.rhai",
    );
    let host = ScriptHost::new();
    let script = "fn decide(t, p, c) { if p.max_cost_sat > 30000 && p.max_cost_sat <= 49000 { p } else { veto(`max ${p.max_cost_sat}`) } }";
    let p = load_in(&yaml, &[("s.rhai", script)], &host).unwrap();
    let d = one(&p, &snap(vec![chan(1, 5_000_000, 4_500_000)]));
    assert_eq!(d.reason, Reason::Swap, "{d:?}");
}

/// Manual swaps take autoloop's in-flight slots, and the decision says so.
#[test]
fn an_in_flight_decision_says_when_manual_swaps_hold_the_slots() {
    let p = pol(&BASE.replace("in_flight: 5", "in_flight: 1"));
    let mut s = snap(vec![chan(1, 5_000_000, 4_500_000)]);
    s.in_flight = vec![InFlightSwap {
        outgoing: vec![chan(9, 1, 0).id],
        amount: Sat(500_000),
        manual: true,
    }];
    let d = one(&p, &s);
    assert_eq!(d.reason, Reason::InFlight, "{d:?}");
    assert!(d.detail.contains("1 of them manual"), "{d:?}");
}

/// The gate compares the rule's own estimate with past estimates for the same confirmation
/// target: cheap 6-block history says nothing about a 100-block estimate.
#[test]
fn the_gate_compares_like_with_like() {
    let p = pol(
        "defaults:\n  band: { inbound_min: 30% }\n  swap: { conf_target: 100 }\n  fees: { sweep_gate: { percentile: 25, window: 1d } }\nrules: [ { name: r, match: all } ]\n",
    );
    let mut s = snap(vec![chan(1, 5_000_000, 4_500_000)]);
    s.fees.estimates = vec![
        (6, SatPerKw::from_sat_per_vbyte(30)),
        (100, SatPerKw::from_sat_per_vbyte(8)),
    ];
    for h in 1..=8 {
        // 6-block estimates were dear (21–28 sat/vB); 100-block ones 6–13. Mixed, p25 would
        // be 9 and 8 sat/vB would pass; the 100-block p25 is 7.
        s.fees.history.push(FeeSample {
            at: s.now - TimeDelta::hours(h),
            conf_target: 6,
            rate: SatPerKw::from_sat_per_vbyte(20 + u64::try_from(h).unwrap()),
        });
        s.fees.history.push(FeeSample {
            at: s.now - TimeDelta::hours(h),
            conf_target: 100,
            rate: SatPerKw::from_sat_per_vbyte(5 + u64::try_from(h).unwrap()),
        });
    }
    let d = one(&p, &s);
    assert_eq!(d.reason, Reason::FeeGate, "{d:?}");
    // At the 100-block p25 (7 sat/vB) it opens.
    s.fees.estimates[1].1 = SatPerKw::from_sat_per_vbyte(7);
    assert_eq!(one(&p, &s).reason, Reason::Swap);
}

/// `policy test` and the daemon expect the same routing fee before any swap: 0.1 %.
#[test]
fn routing_fees_default_the_same_in_tests_and_live() {
    assert_eq!(
        Snapshot::empty(at(0, 0)).fees.routing_ppm,
        DEFAULT_ROUTING_PPM
    );
    let case = parse_test_case(
        Path::new("t.test.yaml"),
        "now: 2026-03-01 02:30\nfees: { estimates: { 100: 8 sat/vB } }\nchannels: []\nexpect: []\n",
    )
    .unwrap();
    assert_eq!(case.snapshot.fees.routing_ppm, DEFAULT_ROUTING_PPM);
    let p = pol(BASE);
    let d = one(&p, &snap(vec![chan(1, 5_000_000, 4_500_000)]));
    // 2M: server 2000 + miner 1200 + routing 2000 + prepay routing 30.
    assert_eq!(d.proposal.unwrap().expected_cost, Sat(5_230));
}

/// An explicit `null` or `none` in a rule removes what `defaults` set: the script, the
/// gate's percentile, the schedule's `when`.
#[test]
fn a_rule_can_unset_an_inherited_key() {
    let host = ScriptHost::new();
    let yaml = "defaults:\n  band: { inbound_min: 30% }\n  script: s.rhai\n  fees: { sweep_gate: { ceiling: 50 sat/vB, percentile: 10, window: 1d } }\n  schedule: { when: \"0 0 1 1 *\" }\nrules:\n  - { name: a, match: { channel: 800001x1x0 } }\n  - name: b\n    match: all\n    script: null\n    fees: { sweep_gate: { percentile: none } }\n    schedule: { when: ~ }\n";
    let p = load_in(
        yaml,
        &[("s.rhai", "fn decide(t, p, c) { veto(\"no\") }")],
        &host,
    )
    .unwrap();
    assert!(p.rules[0].script.is_some());
    assert!(p.rules[1].script.is_none());
    assert_eq!(p.rules[0].settings.gate.unwrap().percentile, Some(10));
    let gate = p.rules[1].settings.gate.unwrap();
    assert_eq!(gate.percentile, None);
    assert!(gate.ceiling.is_some(), "the rest of the gate is kept");
    assert!(p.rules[0].settings.schedule.when.is_some());
    assert!(p.rules[1].settings.schedule.when.is_none());
    let mut s = snap(vec![
        chan(1, 5_000_000, 4_500_000),
        chan(2, 5_000_000, 4_500_000),
    ]);
    s.fees.history = (1..=8)
        .map(|h| FeeSample {
            at: s.now - TimeDelta::hours(h),
            conf_target: 100,
            rate: SatPerKw::from_sat_per_vbyte(1),
        })
        .collect();
    let names: Vec<&str> = evaluate(&p, &s)
        .decisions
        .iter()
        .map(|d| d.reason.name())
        .collect();
    assert_eq!(names, ["outside_schedule", "swap"]);
}

/// A script asking for a flow window gets that window's figure, or an error naming the
/// windows there are: never another window's number.
#[test]
fn a_script_gets_the_flow_window_it_asks_for_or_an_error() {
    let host = ScriptHost::new();
    let yaml = BASE.replace("rules:", "  script: s.rhai\nrules:");
    let script = "fn decide(t, p, c) { veto(`earned ${t.fees_earned_sat(30)}`) }";
    let p = load_in(&yaml, &[("s.rhai", script)], &host).unwrap();
    let mut c = chan(1, 5_000_000, 4_500_000);
    c.flows = vec![
        FlowWindow {
            days: 7,
            fees_earned_sat: 70,
            out_sat: 0,
            in_sat: 0,
        },
        FlowWindow {
            days: 30,
            fees_earned_sat: 300,
            out_sat: 0,
            in_sat: 0,
        },
    ];
    let d = one(&p, &snap(vec![c.clone()]));
    assert_eq!(d.reason.text(), Some("earned 300"), "{d:?}");
    let script = "fn decide(t, p, c) { veto(`earned ${t.fees_earned_sat(90)}`) }";
    let p = load_in(&yaml, &[("s.rhai", script)], &host).unwrap();
    let d = one(&p, &snap(vec![c]));
    assert_eq!(d.reason.name(), "script_error", "{d:?}");
    assert!(
        d.reason
            .text()
            .unwrap()
            .contains("no 90-day flow window; the windows are 7, 30 days"),
        "{d:?}"
    );
}

#[test]
fn inbound_above_the_band_is_looped_in_back_to_restore_to() {
    let p = pol(IN_BASE);
    let mut s = snap(vec![full()]);
    s.fees.estimates.push((6, SatPerKw::from_sat_per_vbyte(10)));
    s.wallet = Some(Sat(5_000_000));
    let d = one(&p, &s);
    assert_eq!(d.reason, Reason::Swap, "{d:?}");
    let prop = d.proposal.clone().unwrap();
    assert_eq!(prop.direction, crate::domain::Direction::In);
    // 4.5M inbound of 5M, restore to 50% = 2.5M: 2M in.
    assert_eq!(prop.amount, Sat(2_000_000));
    assert_eq!(prop.conf_target, 6);
    // A channel target pays through its own peer.
    assert_eq!(prop.last_hop.as_deref(), Some(s.channels[0].peer.as_str()));
    // The expected cost: the server's 0.1 % and the funding at 10 sat/vB for the HTLC's
    // conf target (not the Loop Out sweep's 100-block estimate).
    let funding = Sat(10 * 250 * crate::swap::loop_in::FUNDING_WEIGHT_ESTIMATE.to_wu() / 1000);
    assert_eq!(prop.expected_miner, funding);
    assert_eq!(prop.expected_cost, Sat(2_000) + funding);
    // The worst case is the engine's: the funding at its limit plus the larger of the server
    // fee and a timeout sweep at that limit.
    let limits = loop_in_limits(
        &prop.caps,
        &p.rules[0].settings.loop_in.unwrap().fees,
        prop.amount,
        Sat(2_000),
        funding,
    )
    .unwrap();
    assert_eq!(prop.max_cost, limits.worst_case());
    assert!(
        d.detail.contains("above band") && d.detail.contains("loop in"),
        "{d:?}"
    );

    // Without `loop_in` the same channel is only reported above its band.
    let d = one(&pol(BASE), &s);
    assert_eq!(d.reason, Reason::Ok);
    assert!(d.detail.contains("above"), "{d:?}");
    // `enabled: false` in a rule turns the defaults' Loop In off.
    let off = IN_BASE.replace(
        "{ name: all, match: all }",
        "{ name: all, match: all, loop_in: { enabled: false } }",
    );
    assert_eq!(one(&pol(&off), &s).reason, Reason::Ok);
}

#[test]
fn a_loop_in_obeys_its_own_caps_limits_and_the_wallet() {
    let p = pol(IN_BASE);
    let base = || {
        let mut s = snap(vec![full()]);
        s.fees.estimates.push((6, SatPerKw::from_sat_per_vbyte(10)));
        s.wallet = Some(Sat(5_000_000));
        s
    };
    // Its own max, not Loop Out's: 1M.
    let small = IN_BASE.replace(
        "loop_in: { min: 250k, max: 2M",
        "loop_in: { min: 250k, max: 1M",
    );
    assert_eq!(
        one(&pol(&small), &base()).proposal.unwrap().amount,
        Sat(1_000_000)
    );
    // Its own min: 2.5M is more than the 2M needed.
    let big = IN_BASE.replace(
        "loop_in: { min: 250k, max: 2M",
        "loop_in: { min: 2.5M, max: 3M",
    );
    let d = one(&pol(&big), &base());
    assert_eq!(d.reason, Reason::BelowMinSize, "{d:?}");
    assert!(d.detail.contains("minimum loop in"), "{d:?}");
    // The server's Loop In terms bound it too.
    let mut s = base();
    s.terms_in.max = Sat(1_500_000);
    assert_eq!(one(&p, &s).proposal.unwrap().amount, Sat(1_500_000));
    // The HTLC's miner fee above its cap: at 100 sat/vB the funding costs more than 20k.
    let mut s = base();
    s.fees.estimates = vec![(6, SatPerKw::from_sat_per_vbyte(200))];
    let d = one(&p, &s);
    assert_eq!(d.reason, Reason::FeeCap, "{d:?}");
    assert!(d.detail.contains("HTLC miner fee"), "{d:?}");
    // A server fee above max_server.
    let capped = IN_BASE.replace(
        "fees: { max_total: 1%",
        "fees: { max_total: 1%, max_server: 0.05%",
    );
    let d = one(&pol(&capped), &base());
    assert_eq!(d.reason, Reason::FeeCap, "{d:?}");
    assert!(d.detail.contains("server fee"), "{d:?}");
    // A timeout-risk cap below two smallest sweeps leaves no miner limit.
    let risky = IN_BASE.replace("max_miner: 20k", "max_miner: 20k, max_timeout_risk: 500");
    let d = one(&pol(&risky), &base());
    assert_eq!(d.reason, Reason::FeeCap, "{d:?}");
    assert!(d.detail.contains("timeout-risk"), "{d:?}");
    // The wallet must hold the amount and the expected funding fee; earlier Loop Ins of the
    // pass use it up.
    let mut s = base();
    s.wallet = Some(Sat(2_000_000));
    assert_eq!(one(&p, &s).reason, Reason::InsufficientFunds);
    let mut s = base();
    s.channels = vec![full(), chan(2, 5_000_000, 500_000)];
    s.wallet = Some(Sat(3_000_000));
    let plan = evaluate(&p, &s);
    let reasons: Vec<&str> = plan.decisions.iter().map(|d| d.reason.name()).collect();
    assert_eq!(reasons, ["swap", "insufficient_funds"], "{plan:?}");
    // The budget counts a Loop In's worst case like a Loop Out's.
    let mut s = base();
    s.budget.total = Some(Sat(1_000));
    assert_eq!(one(&p, &s).reason, Reason::BudgetInsufficient);
    // The in-flight limit counts both directions.
    let mut s = base();
    s.in_flight = vec![InFlightSwap {
        outgoing: vec![s.channels[0].id],
        amount: Sat(1_000_000),
        manual: false,
    }];
    assert_eq!(one(&p, &s).reason, Reason::InFlight);
}

#[test]
fn the_gate_holds_a_loop_in_and_no_depletion_makes_it_urgent() {
    let gated = IN_BASE.replace(
        "fees: { max_total: 1%, max_miner: 20k } }",
        "fees: { max_total: 1%, max_miner: 20k } }\n  fees: { sweep_gate: { ceiling: 5 sat/vB, urgent_below: 99% } }",
    );
    let p = pol(&gated);
    let mut s = snap(vec![full()]);
    s.fees.estimates.push((6, SatPerKw::from_sat_per_vbyte(10)));
    // 90 % inbound is "below" a 99 % urgency share, but a Loop In is never urgent.
    let d = one(&p, &s);
    assert_eq!(d.reason, Reason::FeeGate, "{d:?}");
}

#[test]
fn a_script_sees_the_direction_and_a_peer_target_sends_its_peer_as_last_hop() {
    let host = ScriptHost::new();
    let yaml = IN_BASE.replace(
        "{ name: all, match: all }",
        "{ name: all, match: all, per: peer, script: s.rhai }",
    );
    let p = load_in(
        &yaml,
        &[(
            "s.rhai",
            "fn decide(t, p, c) { if p.direction == \"in\" { veto(`no loop in for ${t.peer}`) } else { p } }",
        )],
        &host,
    )
    .unwrap();
    let mut s = snap(vec![full()]);
    s.fees.estimates.push((6, SatPerKw::from_sat_per_vbyte(10)));
    let d = one(&p, &s);
    assert_eq!(d.reason.name(), "vetoed", "{d:?}");
    assert!(d.reason.text().unwrap().contains("no loop in"), "{d:?}");
    assert_eq!(
        d.proposal.unwrap().last_hop.as_deref(),
        Some(s.channels[0].peer.as_str())
    );
    // The same script lets a Loop Out through.
    let mut s = snap(vec![chan(1, 5_000_000, 4_500_000)]);
    s.fees.estimates.push((6, SatPerKw::from_sat_per_vbyte(10)));
    let d = one(&p, &s);
    assert_eq!(d.reason, Reason::Swap, "{d:?}");
    assert_eq!(d.proposal.unwrap().direction, crate::domain::Direction::Out);
    // `last_hop: any`, and a node target, send none.
    let any = IN_BASE.replace("htlc_conf_target: 6", "htlc_conf_target: 6, last_hop: any");
    let mut s = snap(vec![full()]);
    s.fees.estimates.push((6, SatPerKw::from_sat_per_vbyte(10)));
    assert_eq!(one(&pol(&any), &s).proposal.unwrap().last_hop, None);
}

#[test]
fn loop_in_needs_a_band_with_an_upper_edge() {
    let yaml = "defaults:\n  band: { inbound_min: 30% }\n  loop_in: { max: 2M }\nrules:\n  - { name: all, match: all }\n";
    let err = load_in(yaml, &[], &ScriptHost::new()).unwrap_err();
    assert!(err.message.contains("no inbound_max"), "{err:?}");
    assert_eq!(err.key, "rules[0].loop_in", "{err:?}");
    // Inverted bounds name the key.
    let yaml = IN_BASE.replace(
        "loop_in: { min: 250k, max: 2M",
        "loop_in: { min: 3M, max: 2M",
    );
    let err = load_in(&yaml, &[], &ScriptHost::new()).unwrap_err();
    assert!(err.key.ends_with("loop_in.max"), "{err:?}");
}
