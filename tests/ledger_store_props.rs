//! Property tests of the fee budget as autoloop keeps it: the ledger's entries written to the
//! real SQLite store, the daemon restarting (store reopened, ledger rebuilt from what was
//! stored), swaps costing and failing at random, and the clock crossing period boundaries.
//!
//! Properties: at every step and after every restart, fees spent in every window of every
//! limit stay within it; no swap spends more than its reservation (`FeeLimits::worst_case`),
//! its sweep paid by the engine's fee rules in any regime, urgent ones included; every terminal
//! (released) swap holds no reservation; the ledger rebuilt from the store equals the live one. The pure ledger has its own, finer property
//! tests (`src/ledger/props.rs`); these check that persistence keeps them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use sluice::chain::SatPerKw;
use sluice::chain::fees::{
    SweepWitness, clamp_fee, fee_for, offered_rate, sweep_fee_rate, sweep_weight,
};
use sluice::domain::{Ppm, Sat, SwapHash};
use sluice::ledger::{
    AdmitRequest, Applied, BudgetSpec, Entry, EntryId, EntryKind, Ledger, Period, SpendCategory,
};
use sluice::store::Store;
use sluice::swap::FeeLimits;

/// When the swap's sweep was published: lnd's estimate (sat/kw, below the floor included),
/// blocks left before the expiry (≤ 10 is urgent), the fee schedule's share (ppm), the path.
type Sweep = (u64, u32, u64, bool);

#[derive(Debug, Clone)]
enum Op {
    /// Admit a swap with these fee limits; its reservation is their worst case (expected: half
    /// of it).
    Start { limits: FeeLimits },
    /// The oldest unfinished swap ends: it spent this share (per mille) of its server and
    /// routing limits and one sweep published in `sweep`; a failed swap spends only its prepay.
    Finish {
        per_mille: u64,
        failed: bool,
        sweep: Sweep,
    },
    /// The daemon restarts: the store is reopened and the ledger rebuilt from it.
    Restart,
    /// Time passes, possibly across a day, week or month boundary.
    Advance { minutes: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..10_000, 0u64..3_000, 0u64..5_000, 0u64..200, prop_oneof![0u64..300, 0u64..15_000])
            .prop_map(|(swap, prepay, routing, prepay_routing, miner)| Op::Start {
                limits: FeeLimits {
                    max_swap_fee: Sat(swap),
                    max_prepay_amount: Sat(prepay),
                    max_swap_routing_fee: Sat(routing),
                    max_prepay_routing_fee: Sat(prepay_routing),
                    max_miner_fee: Sat(miner),
                },
            }),
        4 => (
            prop_oneof![Just(1_000u64), 0u64..=1_000],
            any::<bool>(),
            (
                prop_oneof![0u64..253, 253u64..10_000, 10_000u64..2_000_000],
                prop_oneof![0u32..=10, 0u32..200],
                prop_oneof![Just(1_000_000u64), 0u64..=1_000_000],
                any::<bool>(),
            ),
        )
            .prop_map(|(per_mille, failed, sweep)| Op::Finish { per_mille, failed, sweep }),
        1 => Just(Op::Restart),
        2 => (1i64..=3 * 24 * 60).prop_map(|minutes| Op::Advance { minutes }),
    ]
}

fn budgets() -> Vec<BudgetSpec> {
    vec![
        BudgetSpec {
            name: "monthly".to_owned(),
            period: Period::Month,
            limit: Sat(150_000),
            per_rule: BTreeMap::from([("routing".to_owned(), Sat(100_000))]),
            hard_cap: Some((Period::Day, Sat(40_000))),
        },
        BudgetSpec {
            name: "rolling".to_owned(),
            period: Period::Rolling(TimeDelta::hours(36)),
            limit: Sat(60_000),
            per_rule: BTreeMap::new(),
            hard_cap: None,
        },
    ]
}

/// The miner fee of a 250,000 sat swap's sweep to a P2TR address, by the engine's rules.
fn sweep_fee((estimate, blocks_left, share, key_path): Sweep, max_miner_fee: Sat) -> u64 {
    let path = if key_path {
        SweepWitness::KeyPath
    } else {
        SweepWitness::V3Success
    };
    let weight = sweep_weight(path, &bitcoin::ScriptBuf::from_bytes(vec![0x51; 34]));
    let needed = sweep_fee_rate(blocks_left, |_| SatPerKw(estimate));
    let rate = offered_rate(needed, max_miner_fee, weight, Ppm(share));
    clamp_fee(fee_for(weight, rate), Sat(250_000)).0.0
}

fn hash(n: u64) -> SwapHash {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&n.to_be_bytes());
    SwapHash(h)
}

fn rebuild(entries: Vec<Entry>) -> Ledger {
    let mut ledger = Ledger::new(budgets(), chrono_tz::Europe::Berlin).unwrap();
    ledger.replay(entries).unwrap();
    ledger
}

/// Every window of every limit: spent within the limit.
fn check_limits(ledger: &Ledger, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    for budget in ledger.status(now) {
        for (scope, w) in budget.lines() {
            prop_assert!(
                w.spent <= w.limit,
                "{} {scope}: spent {} over limit {}",
                budget.name,
                w.spent,
                w.limit
            );
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let mut store = Store::open(&path).await.unwrap();
        let mut ledger = rebuild(Vec::new());
        let mut now: DateTime<Utc> = "2026-01-30T22:00:00Z".parse().unwrap();
        let mut next = 0u64;
        let mut open: Vec<(SwapHash, FeeLimits)> = Vec::new();
        let mut finished: Vec<SwapHash> = Vec::new();
        for op in ops {
            match op {
                Op::Start { limits } => {
                    let worst_case = limits.worst_case().0;
                    next += 1;
                    let swap = hash(next);
                    let request = AdmitRequest {
                        swap,
                        rule: "routing".to_owned(),
                        expected: Sat(worst_case / 2),
                        worst_case: Sat(worst_case),
                    };
                    // Refusals are decisions; only admitted swaps are persisted and run.
                    if let Ok(reservation) = ledger.admit(request, now) {
                        let entry = reservation.into_entry();
                        store.append_ledger_entry(&entry).await.unwrap();
                        ledger.apply(entry).unwrap();
                        open.push((swap, limits));
                    }
                }
                Op::Finish {
                    per_mille,
                    failed,
                    sweep,
                } => {
                    if open.is_empty() {
                        continue;
                    }
                    let (swap, l) = open.remove(0);
                    let share = |limit: Sat| limit.0 * per_mille / 1_000;
                    let spends = if failed {
                        vec![(SpendCategory::Prepay, share(l.max_prepay_amount))]
                    } else {
                        vec![
                            (SpendCategory::Server, share(l.max_swap_fee)),
                            (
                                SpendCategory::Routing,
                                share(l.max_swap_routing_fee + l.max_prepay_routing_fee),
                            ),
                            (SpendCategory::Miner, sweep_fee(sweep, l.max_miner_fee)),
                        ]
                    };
                    let mut entries: Vec<Entry> = spends
                        .into_iter()
                        .filter(|(_, a)| *a > 0)
                        .enumerate()
                        .map(|(i, (category, amount))| Entry {
                            swap,
                            id: EntryId(u32::try_from(i).unwrap() + 1),
                            at: now,
                            kind: EntryKind::Spend {
                                amount: Sat(amount),
                                category,
                            },
                        })
                        .collect();
                    entries.push(Entry {
                        swap,
                        id: EntryId::RELEASE,
                        at: now,
                        kind: EntryKind::Release,
                    });
                    for entry in entries {
                        // Written before it is applied, like autoloop's settlement; applying
                        // it twice (a retried settlement) changes nothing.
                        store.append_ledger_entry(&entry).await.unwrap();
                        // Spend ≤ reservation: never an overrun, whatever the sweep's regime.
                        let applied = ledger.apply(entry.clone()).unwrap();
                        prop_assert_eq!(applied, Applied::Recorded, "{:?} {:?}", l, sweep);
                        ledger.apply(entry).unwrap();
                    }
                    finished.push(swap);
                }
                Op::Restart => {
                    store.close().await;
                    store = Store::open(&path).await.unwrap();
                    let rebuilt = rebuild(store.ledger_entries().await.unwrap());
                    prop_assert_eq!(&rebuilt, &ledger, "the store lost or changed an entry");
                    ledger = rebuilt;
                }
                Op::Advance { minutes } => now += TimeDelta::minutes(minutes),
            }
            check_limits(&ledger, now)?;
            for swap in &finished {
                let account = ledger.swap(swap).unwrap();
                prop_assert!(account.is_released());
                prop_assert_eq!(account.reserved_worst(), Sat::ZERO);
                prop_assert_eq!(account.reserved_expected(), Sat::ZERO);
            }
        }
        // Nothing in flight: nothing reserved anywhere.
        for (swap, _) in open.drain(..) {
            let entry = Entry {
                swap,
                id: EntryId::RELEASE,
                at: now,
                kind: EntryKind::Release,
            };
            store.append_ledger_entry(&entry).await.unwrap();
            ledger.apply(entry).unwrap();
        }
        for budget in ledger.status(now) {
            for (_, w) in budget.lines() {
                prop_assert_eq!(w.reserved_worst, Sat::ZERO);
            }
        }
        let rebuilt = rebuild(store.ledger_entries().await.unwrap());
        prop_assert_eq!(rebuilt, ledger);
        store.close().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn spent_never_exceeds_a_budget_and_terminal_swaps_release_through_restarts(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(ops)?;
    }
}
