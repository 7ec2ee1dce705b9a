//! Property tests: random sequences of admissions, spends, releases, restarts, replays and
//! clock jumps across windows, checked against an independent model of the entry log.
//!
//! Properties: fees spent in any window of any limit never exceed it; at every admission,
//! spent plus worst-case reservations fit every limit; the ledger refuses exactly when the
//! model says a swap does not fit; every released swap holds no reservation; rebuilding from
//! the log equals the live ledger; and no swap ever spends more than its reservation.
//!
//! Most admitted swaps carry real fee limits: their reservation is `FeeLimits::worst_case`, and
//! their spends are what the engine's rules let them pay: the server's fee or the prepay, both
//! routing fees up to their limits, and one confirmed sweep whose fee comes from the real sweep
//! rules (`chain::fees`) at a generated regime: any estimate (below the relay floor, calm,
//! spiked), any height before or past the expiry (urgent sweeps included), any point of the
//! fee schedule, either spending path and any destination. Loop Ins carry their own limits
//! (`LoopInLimits::worst_case`) and pay the funding, then the server's fee or a timeout sweep
//! at a generated regime by the driver's rule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::tests::utc;
use super::*;
use crate::swap::FeeLimits;
use crate::swap::loop_in::LoopInLimits;

const RULES: [&str; 3] = ["a", "b", "c"];

/// The conditions a swap's confirmed sweep was published in.
#[derive(Debug, Clone)]
struct SweepRegime {
    /// lnd's estimate (sat/kw), below the floor included.
    estimate: u64,
    /// Blocks left before the expiry when it was published (≤ 10 is urgent).
    blocks_left: u32,
    /// The fee schedule's share of `max_miner_fee`.
    share: u64,
    key_path: bool,
    /// The destination script's length.
    dest_len: usize,
    /// The HTLC value swept.
    swept: u64,
}

fn sweep_regime() -> impl Strategy<Value = SweepRegime> {
    (
        prop_oneof![0u64..253, 253u64..10_000, 10_000u64..5_000_000],
        prop_oneof![0u32..=10, 0u32..300],
        prop_oneof![Just(0u64), Just(1_000_000u64), 0u64..=1_000_000],
        any::<bool>(),
        prop::sample::select(vec![22usize, 23, 25, 34, 42]),
        1_000u64..5_000_000,
    )
        .prop_map(
            |(estimate, blocks_left, share, key_path, dest_len, swept)| SweepRegime {
                estimate,
                blocks_left,
                share,
                key_path,
                dest_len,
                swept,
            },
        )
}

/// The miner fee a sweep in `regime` pays under `max_miner_fee`, by the engine's own rules.
fn sweep_fee(regime: &SweepRegime, max_miner_fee: Sat) -> u64 {
    use crate::chain::SatPerKw;
    use crate::chain::fees::{
        SweepWitness, clamp_fee, fee_for, offered_rate, sweep_fee_rate, sweep_weight,
    };
    let path = if regime.key_path {
        SweepWitness::KeyPath
    } else {
        SweepWitness::V3Success
    };
    let weight = sweep_weight(
        path,
        &bitcoin::ScriptBuf::from_bytes(vec![0; regime.dest_len]),
    );
    let needed = sweep_fee_rate(regime.blocks_left, |_| SatPerKw(regime.estimate));
    let rate = offered_rate(
        needed,
        max_miner_fee,
        weight,
        crate::domain::Ppm(regime.share),
    );
    clamp_fee(fee_for(weight, rate), Sat(regime.swept)).0.0
}

fn fee_limits() -> impl Strategy<Value = FeeLimits> {
    (
        0u64..3_000,
        0u64..1_000,
        0u64..1_000,
        0u64..100,
        prop_oneof![0u64..300, 0u64..3_000],
    )
        .prop_map(|(swap, prepay, routing, prepay_routing, miner)| FeeLimits {
            max_swap_fee: Sat(swap),
            max_prepay_amount: Sat(prepay),
            max_swap_routing_fee: Sat(routing),
            max_prepay_routing_fee: Sat(prepay_routing),
            max_miner_fee: Sat(miner),
        })
}

/// A swap's fee limits in either direction; its reservation is their worst case.
#[derive(Debug, Clone, Copy)]
enum Limits {
    Out(FeeLimits),
    In(LoopInLimits),
}

impl Limits {
    fn worst_case(&self) -> Sat {
        match self {
            Limits::Out(l) => l.worst_case(),
            Limits::In(l) => l.worst_case(),
        }
    }
}

fn loop_in_limits() -> impl Strategy<Value = LoopInLimits> {
    (0u64..3_000, prop_oneof![0u64..300, 0u64..5_000]).prop_map(|(swap, miner)| LoopInLimits {
        max_swap_fee: Sat(swap),
        max_miner_fee: Sat(miner),
    })
}

fn limits_either() -> impl Strategy<Value = Limits> {
    prop_oneof![
        fee_limits().prop_map(Limits::Out),
        loop_in_limits().prop_map(Limits::In),
    ]
}

/// The miner fee a Loop In's timeout sweep in `regime` pays under `max_miner_fee`, by the
/// driver's own rule (the estimate capped by the limit, never below the relay floor).
fn timeout_sweep_fee(regime: &SweepRegime, max_miner_fee: Sat) -> u64 {
    use crate::chain::SatPerKw;
    use crate::chain::fees::{SweepWitness, capped_rate, clamp_fee, fee_for, sweep_weight};
    let weight = sweep_weight(
        SweepWitness::V3Timeout {
            script_len: 36 + regime.dest_len % 4,
        },
        &bitcoin::ScriptBuf::from_bytes(vec![0; regime.dest_len]),
    );
    let rate = capped_rate(SatPerKw(regime.estimate), max_miner_fee, weight);
    clamp_fee(fee_for(weight, rate), Sat(regime.swept)).0.0
}

#[derive(Debug, Clone)]
enum Op {
    Admit {
        rule: usize,
        expected_pct: u64,
        worst_case: u64,
        /// The swap's fee limits; its reservation is then their worst case.
        limits: Option<Limits>,
    },
    Spend {
        pick: usize,
        pct: u64,
        category: usize,
        sweep: SweepRegime,
    },
    Release {
        pick: usize,
    },
    Restart,
    Advance {
        secs: i64,
    },
    StepBack {
        secs: i64,
    },
    Replay {
        pick: usize,
    },
}

fn period() -> impl Strategy<Value = Period> {
    prop_oneof![
        Just(Period::Day),
        Just(Period::Week),
        Just(Period::Month),
        (1i64..=72).prop_map(|hours| Period::Rolling(TimeDelta::hours(hours))),
    ]
}

fn budgets() -> impl Strategy<Value = Vec<BudgetSpec>> {
    let spec = (
        period(),
        0u64..=30_000,
        prop::collection::btree_map(prop::sample::select(&RULES[..2]), 0u64..=15_000, 0..=2),
        prop::option::of((period(), 0u64..=20_000)),
    );
    prop::collection::vec(spec, 0..=2).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (period, limit, per_rule, hard_cap))| BudgetSpec {
                name: format!("budget-{i}"),
                period,
                limit: Sat(limit),
                per_rule: per_rule
                    .into_iter()
                    .map(|(rule, limit)| (rule.to_owned(), Sat(limit)))
                    .collect(),
                hard_cap: hard_cap.map(|(period, limit)| (period, Sat(limit))),
            })
            .collect()
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..RULES.len(), 0u64..=100, 0u64..=6_000, prop::option::weighted(0.75, limits_either()))
            .prop_map(|(rule, expected_pct, worst_case, limits)| Op::Admit { rule, expected_pct, worst_case, limits }),
        4 => (any::<usize>(), prop_oneof![Just(100u64), 0u64..=100], 0..SpendCategory::ALL.len(), sweep_regime())
            .prop_map(|(pick, pct, category, sweep)| Op::Spend { pick, pct, category, sweep }),
        2 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => Just(Op::Restart),
        3 => prop_oneof![0i64..3_600, 0i64..3 * 86_400, 0i64..40 * 86_400].prop_map(|secs| Op::Advance { secs }),
        1 => (0i64..2 * 86_400).prop_map(|secs| Op::StepBack { secs }),
        1 => any::<usize>().prop_map(|pick| Op::Replay { pick }),
    ]
}

/// The test's own account of one swap.
struct ModelSwap {
    hash: SwapHash,
    rule: String,
    expected: u64,
    worst_case: u64,
    /// The swap's fee limits, when it has them.
    limits: Option<Limits>,
    /// A Loop In: its HTLC is funded (the first miner fee), and the server paid (server fee)
    /// or the HTLC was swept back (a second miner fee), never both.
    funded: bool,
    paid: bool,
    /// Spent per category (server and prepay count together: a swap pays one or the other).
    server_spent: u64,
    routing_spent: u64,
    swept: bool,
    spent: u64,
    released: bool,
    next_id: u32,
}

/// The test's own bookkeeping, kept without the ledger's code.
#[derive(Default)]
struct Model {
    clock: Option<DateTime<Utc>>,
    swaps: Vec<ModelSwap>,
    /// Every fee paid: effective time, rule, amount.
    spends: Vec<(DateTime<Utc>, String, u64)>,
}

impl Model {
    fn effective(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.clock.map_or(at, |clock| clock.max(at))
    }

    fn pending(&self) -> Vec<usize> {
        (0..self.swaps.len())
            .filter(|&i| !self.swaps[i].released)
            .collect()
    }

    /// (spent in window, worst-case remainder of pending swaps, expected remainder) for the
    /// swaps `rule` selects (all when `None`).
    fn usage(&self, window: Window, rule: Option<&str>) -> (u64, u64, u64) {
        let selected = |r: &str| rule.is_none_or(|rule| rule == r);
        let spent = self
            .spends
            .iter()
            .filter(|(at, r, _)| selected(r) && window.contains(*at))
            .map(|s| s.2)
            .sum();
        let pending = self
            .swaps
            .iter()
            .filter(|s| !s.released && selected(&s.rule));
        let (worst, expected) = pending.fold((0, 0), |(w, e), s| {
            (
                w + s.worst_case.saturating_sub(s.spent),
                e + s.expected.saturating_sub(s.spent),
            )
        });
        (spent, worst, expected)
    }
}

/// Every limit a swap of `rule` is checked against, in the ledger's documented order.
fn limits<'a>(specs: &'a [BudgetSpec], rule: &'a str) -> Vec<(&'a str, Scope, Period, u64)> {
    let mut out = Vec::new();
    for spec in specs {
        if let Some((period, limit)) = spec.hard_cap {
            out.push((spec.name.as_str(), Scope::HardCap, period, limit.0));
        }
        out.push((spec.name.as_str(), Scope::Total, spec.period, spec.limit.0));
        if let Some(limit) = spec.per_rule.get(rule) {
            out.push((
                spec.name.as_str(),
                Scope::Rule(rule.to_owned()),
                spec.period,
                limit.0,
            ));
        }
    }
    out
}

/// Fees spent in the fullest window of `period`: calendar windows by grouping, rolling
/// windows by trying each spend as the start of one.
fn fullest_window(spends: &[(DateTime<Utc>, u64)], period: Period, tz: Tz) -> u64 {
    match period {
        Period::Rolling(length) => spends
            .iter()
            .map(|&(start, _)| {
                spends
                    .iter()
                    .filter(|(t, _)| *t >= start && *t <= start + length)
                    .map(|s| s.1)
                    .sum()
            })
            .max()
            .unwrap_or(0),
        Period::Day | Period::Week | Period::Month => {
            let mut per_window: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
            for &(t, amount) in spends {
                *per_window
                    .entry(period.window_containing(t, tz).start)
                    .or_default() += amount;
            }
            per_window.into_values().max().unwrap_or(0)
        }
    }
}

/// How often each admission outcome happened in a run.
#[derive(Debug, Default)]
struct Outcomes {
    admitted: usize,
    exhausted: usize,
    insufficient: usize,
}

fn run(
    specs: Vec<BudgetSpec>,
    tz: Tz,
    start: DateTime<Utc>,
    ops: Vec<Op>,
) -> Result<Outcomes, TestCaseError> {
    let mut ledger = Ledger::new(specs.clone(), tz).expect("valid specs");
    let mut model = Model::default();
    let mut log: Vec<Entry> = Vec::new();
    let mut now = start;
    let mut outcomes = Outcomes::default();
    for op in ops {
        match op {
            Op::Admit {
                rule,
                expected_pct,
                worst_case,
                limits: fees,
            } => {
                let worst_case = fees.map_or(worst_case, |l| l.worst_case().0);
                let rule = RULES[rule];
                let swap = hash_of(model.swaps.len());
                let expected = worst_case * expected_pct / 100;
                let request = AdmitRequest {
                    swap,
                    rule: rule.to_owned(),
                    expected: Sat(expected),
                    worst_case: Sat(worst_case),
                };
                let at = model.effective(now);
                let refusal =
                    limits(&specs, rule)
                        .into_iter()
                        .find_map(|(budget, scope, period, limit)| {
                            let filter = match &scope {
                                Scope::Rule(rule) => Some(rule.as_str()),
                                Scope::Total | Scope::HardCap => None,
                            };
                            let (spent, reserved, _) =
                                model.usage(period.window_containing(at, tz), filter);
                            let left = limit.saturating_sub(spent + reserved);
                            (left == 0 || worst_case > left)
                                .then(|| (budget.to_owned(), scope, left == 0))
                        });
                match (ledger.admit(request, now), refusal) {
                    (Ok(reservation), None) => {
                        let entry = reservation.into_entry();
                        prop_assert_eq!(entry.at, at);
                        prop_assert_eq!(ledger.apply(entry.clone()), Ok(Applied::Recorded));
                        log.push(entry);
                        model.clock = Some(at);
                        model.swaps.push(ModelSwap {
                            hash: swap,
                            rule: rule.to_owned(),
                            expected,
                            worst_case,
                            limits: fees,
                            server_spent: 0,
                            routing_spent: 0,
                            swept: false,
                            funded: false,
                            paid: false,
                            spent: 0,
                            released: false,
                            next_id: 1,
                        });
                        outcomes.admitted += 1;
                        // With the new reservation in, every limit still holds.
                        for (budget, scope, period, limit) in limits(&specs, rule) {
                            let filter = if let Scope::Rule(r) = &scope {
                                Some(r.as_str())
                            } else {
                                None
                            };
                            let (spent, reserved, _) =
                                model.usage(period.window_containing(at, tz), filter);
                            prop_assert!(
                                spent + reserved <= limit,
                                "{budget} {scope}: {spent} + {reserved} > {limit}"
                            );
                        }
                    }
                    (Err(AdmitError::Refused(got)), Some((budget, scope, exhausted))) => {
                        let (got_scope, got_exhausted) = match &got {
                            Refusal::Exhausted { scope, .. } => (scope.clone(), true),
                            Refusal::Insufficient { scope, .. } => (scope.clone(), false),
                        };
                        prop_assert_eq!(
                            (got.budget(), got_scope, got_exhausted),
                            (budget.as_str(), scope, exhausted)
                        );
                        if exhausted {
                            outcomes.exhausted += 1
                        } else {
                            outcomes.insufficient += 1
                        }
                    }
                    (got, expected) => prop_assert!(
                        false,
                        "admit gave {got:?}, model expected refusal {expected:?}"
                    ),
                }
            }
            Op::Spend {
                pick,
                pct,
                category,
                sweep,
            } => {
                let pending = model.pending();
                let Some(&i) = pending.get(pick % pending.len().max(1)) else {
                    continue;
                };
                let swap = &mut model.swaps[i];
                let category = SpendCategory::ALL[category];
                let amount = match swap.limits {
                    None => (swap.worst_case - swap.spent) * pct / 100,
                    // What a Loop In's driver lets it pay: the funding up to its limit, then
                    // either the server's fee (paid) or one timeout sweep (swept back).
                    Some(Limits::In(l)) => match category {
                        SpendCategory::Miner if !swap.funded => {
                            swap.funded = true;
                            l.max_miner_fee.0 * pct / 100
                        }
                        SpendCategory::Miner if !swap.swept && !swap.paid => {
                            swap.swept = true;
                            timeout_sweep_fee(&sweep, l.max_miner_fee)
                        }
                        SpendCategory::Server if !swap.swept => {
                            let amount =
                                l.max_swap_fee.0.saturating_sub(swap.server_spent) * pct / 100;
                            swap.server_spent += amount;
                            swap.paid |= amount > 0;
                            amount
                        }
                        _ => 0,
                    },
                    // What the engine's rules let a swap with these limits pay.
                    Some(Limits::Out(l)) => match category {
                        SpendCategory::Server | SpendCategory::Prepay => {
                            let cap = l.max_swap_fee.max(l.max_prepay_amount).0;
                            let amount = cap.saturating_sub(swap.server_spent) * pct / 100;
                            swap.server_spent += amount;
                            amount
                        }
                        SpendCategory::Routing => {
                            let cap = (l.max_swap_routing_fee + l.max_prepay_routing_fee).0;
                            let amount = cap.saturating_sub(swap.routing_spent) * pct / 100;
                            swap.routing_spent += amount;
                            amount
                        }
                        // One sweep confirms, whatever regime it was published in.
                        SpendCategory::Miner if !swap.swept => {
                            swap.swept = true;
                            sweep_fee(&sweep, l.max_miner_fee)
                        }
                        // L402 tokens and timeout losses are not a swap's fees: no reservation holds them.
                        SpendCategory::Miner | SpendCategory::L402 | SpendCategory::Loss => 0,
                    },
                };
                let entry = Entry {
                    swap: swap.hash,
                    id: EntryId(swap.next_id),
                    at: now,
                    kind: EntryKind::Spend {
                        amount: Sat(amount),
                        category,
                    },
                };
                swap.next_id += 1;
                swap.spent += amount;
                let at = model.effective(now);
                model.clock = Some(at);
                model.spends.push((at, model.swaps[i].rule.clone(), amount));
                // Spend ≤ reservation per swap: never an overrun, in any regime.
                prop_assert!(
                    model.swaps[i].spent <= model.swaps[i].worst_case,
                    "swap {} spent {} over its reservation {} ({:?}, {:?})",
                    i,
                    model.swaps[i].spent,
                    model.swaps[i].worst_case,
                    model.swaps[i].limits,
                    sweep
                );
                prop_assert_eq!(ledger.apply(entry.clone()), Ok(Applied::Recorded));
                log.push(entry);
            }
            Op::Release { pick } => {
                let pending = model.pending();
                let Some(&i) = pending.get(pick % pending.len().max(1)) else {
                    continue;
                };
                let entry = Entry {
                    swap: model.swaps[i].hash,
                    id: EntryId::RELEASE,
                    at: now,
                    kind: EntryKind::Release,
                };
                model.swaps[i].released = true;
                model.clock = Some(model.effective(now));
                prop_assert_eq!(ledger.apply(entry.clone()), Ok(Applied::Recorded));
                prop_assert_eq!(
                    ledger
                        .swap(&model.swaps[i].hash)
                        .map(SwapAccount::reserved_worst),
                    Some(Sat::ZERO)
                );
                log.push(entry);
            }
            Op::Restart => {
                let mut rebuilt = Ledger::new(specs.clone(), tz).expect("valid specs");
                rebuilt.replay(log.clone()).expect("the log replays");
                prop_assert_eq!(&rebuilt, &ledger);
                ledger = rebuilt;
            }
            Op::Advance { secs } => now += TimeDelta::seconds(secs),
            Op::StepBack { secs } => now -= TimeDelta::seconds(secs),
            Op::Replay { pick } => {
                let Some(entry) = log.get(pick % log.len().max(1)) else {
                    continue;
                };
                let again = Entry {
                    at: now,
                    ..entry.clone()
                };
                prop_assert_eq!(ledger.apply(again), Ok(Applied::Replayed));
            }
        }
        // The status agrees with the model at every step.
        let at = model.effective(now);
        for (spec, status) in specs.iter().zip(ledger.status(now)) {
            for (scope, line) in status.lines() {
                let filter = if let Scope::Rule(r) = &scope {
                    Some(r.as_str())
                } else {
                    None
                };
                let (spent, worst, expected) = model.usage(line.window, filter);
                prop_assert!(
                    line.window.contains(at),
                    "{} {scope}: {} does not hold {at}",
                    spec.name,
                    line.window
                );
                prop_assert_eq!(
                    (
                        line.spent.0,
                        line.reserved_worst.0,
                        line.reserved_expected.0
                    ),
                    (spent, worst, expected)
                );
                prop_assert_eq!(line.available.0, line.limit.0.saturating_sub(spent + worst));
            }
        }
        for rule in RULES {
            let left = limits(&specs, rule)
                .into_iter()
                .map(|(_, scope, period, limit)| {
                    let filter = if let Scope::Rule(r) = &scope {
                        Some(r.as_str())
                    } else {
                        None
                    };
                    let (spent, worst, _) = model.usage(period.window_containing(at, tz), filter);
                    Sat(limit.saturating_sub(spent + worst))
                })
                .min();
            prop_assert_eq!(ledger.available(rule, now), left, "rule {}", rule);
        }
    }

    // No window of any limit ever held more fees than the limit.
    for spec in &specs {
        let all: Vec<_> = model
            .spends
            .iter()
            .map(|(t, _, amount)| (*t, *amount))
            .collect();
        let mut checks = vec![(Scope::Total, spec.period, spec.limit, all.clone())];
        if let Some((period, limit)) = spec.hard_cap {
            checks.push((Scope::HardCap, period, limit, all));
        }
        for (rule, &limit) in &spec.per_rule {
            let mine = model
                .spends
                .iter()
                .filter(|(_, r, _)| r == rule)
                .map(|(t, _, amount)| (*t, *amount))
                .collect();
            checks.push((Scope::Rule(rule.clone()), spec.period, limit, mine));
        }
        for (scope, period, limit, spends) in checks {
            let fullest = fullest_window(&spends, period, tz);
            prop_assert!(
                fullest <= limit.0,
                "{} {scope} ({period}): {fullest} spent in one window, limit {limit}",
                spec.name
            );
        }
    }
    for swap in &model.swaps {
        let account = ledger
            .swap(&swap.hash)
            .expect("admitted swaps have accounts");
        prop_assert_eq!(account.spent().0, swap.spent);
        prop_assert_eq!(account.is_released(), swap.released);
        if swap.released {
            prop_assert_eq!(
                (account.reserved_worst(), account.reserved_expected()),
                (Sat::ZERO, Sat::ZERO)
            );
        }
    }
    prop_assert_eq!(ledger.pending().count(), model.pending().len());
    prop_assert_eq!(ledger.swaps.len(), outcomes.admitted);
    let mut rebuilt = Ledger::new(specs, tz).expect("valid specs");
    rebuilt.replay(log).expect("the log replays");
    prop_assert_eq!(rebuilt, ledger);
    Ok(outcomes)
}

fn hash_of(n: usize) -> SwapHash {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
    SwapHash(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn spending_never_exceeds_any_budget(
        specs in budgets(),
        tz in prop::sample::select(vec![Tz::UTC, Tz::Europe__Berlin, Tz::America__Santiago]),
        start_secs in 0i64..365 * 86_400,
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run(specs, tz, utc("2026-01-01T00:00:00Z") + TimeDelta::seconds(start_secs), ops)?;
    }
}

/// A fixed, busy scenario so the property is known to exercise admissions that succeed and
/// refusals of both kinds, whatever the random cases happen to draw.
#[test]
fn the_harness_sees_admissions_and_refusals() {
    let spec = BudgetSpec {
        name: "monthly".to_owned(),
        period: Period::Month,
        limit: Sat(10_000),
        per_rule: BTreeMap::from([("a".to_owned(), Sat(2_000))]),
        hard_cap: Some((Period::Day, Sat(6_000))),
    };
    let mut ops = Vec::new();
    for day in 0..20 {
        // Two swaps fill the daily cap exactly; a third finds it exhausted. From the second
        // day on, the month has less left than a second swap needs.
        for (rule, worst_case) in [(2, 3_000), (2, 3_000), (1, 100), (0, 2_500)] {
            ops.push(Op::Admit {
                rule,
                expected_pct: 50,
                worst_case,
                limits: None,
            });
        }
        // An urgent sweep at a spiked estimate, past the end of the fee schedule.
        let urgent = SweepRegime {
            estimate: 1_000_000,
            blocks_left: 2,
            share: 1_000_000,
            key_path: false,
            dest_len: 34,
            swept: 250_000,
        };
        ops.push(Op::Spend {
            pick: 0,
            pct: 100,
            category: day % 5,
            sweep: urgent.clone(),
        });
        ops.push(Op::Spend {
            pick: 1,
            pct: 40,
            category: 0,
            sweep: urgent,
        });
        for _ in 0..4 {
            ops.push(Op::Release { pick: 0 });
        }
        ops.push(Op::Replay { pick: day * 7 });
        if day % 4 == 0 {
            ops.push(Op::Restart);
            ops.push(Op::StepBack { secs: 7_200 });
        }
        ops.push(Op::Advance { secs: 86_400 });
    }
    let outcomes = run(
        vec![spec],
        Tz::Europe__Berlin,
        utc("2026-03-20T08:00:00Z"),
        ops,
    )
    .expect("properties hold");
    assert!(
        outcomes.admitted > 5 && outcomes.exhausted > 0 && outcomes.insufficient > 0,
        "{outcomes:?}"
    );
}
