//! Property tests of the fee budget as autoloop keeps it: the ledger's entries written to the
//! real SQLite store, the daemon restarting (store reopened, ledger rebuilt from what was
//! stored), swaps costing and failing at random, and the clock crossing period boundaries.
//!
//! Properties: at every step and after every restart, fees spent in every window of every
//! limit stay within it; every terminal (released) swap holds no reservation; the ledger
//! rebuilt from the store equals the live one. The pure ledger has its own, finer property
//! tests (`src/ledger/props.rs`); these check that persistence keeps them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use sluice::domain::{Sat, SwapHash};
use sluice::ledger::{
    AdmitRequest, BudgetSpec, Entry, EntryId, EntryKind, Ledger, Period, SpendCategory,
};
use sluice::store::Store;

#[derive(Debug, Clone)]
enum Op {
    /// Admit a swap whose worst case is this many sat (expected: half of it).
    Start { worst_case: u64 },
    /// The oldest unfinished swap ends: it spent this share (per mille) of its worst case,
    /// more than expected when a fee spiked; a failed swap spends only its prepay share.
    Finish { per_mille: u64, failed: bool },
    /// The daemon restarts: the store is reopened and the ledger rebuilt from it.
    Restart,
    /// Time passes, possibly across a day, week or month boundary.
    Advance { minutes: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=30_000).prop_map(|worst_case| Op::Start { worst_case }),
        4 => (0u64..=1_000, any::<bool>()).prop_map(|(per_mille, failed)| Op::Finish { per_mille, failed }),
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
        let mut open: Vec<(SwapHash, u64)> = Vec::new();
        let mut finished: Vec<SwapHash> = Vec::new();
        for op in ops {
            match op {
                Op::Start { worst_case } => {
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
                        open.push((swap, worst_case));
                    }
                }
                Op::Finish { per_mille, failed } => {
                    if open.is_empty() {
                        continue;
                    }
                    let (swap, worst_case) = open.remove(0);
                    // The engine's caps keep a swap within its worst case.
                    let total = worst_case * per_mille / 1_000;
                    let spends = if failed {
                        vec![(SpendCategory::Prepay, total / 3)]
                    } else {
                        vec![
                            (SpendCategory::Server, total / 2),
                            (SpendCategory::Routing, total / 4),
                            (SpendCategory::Miner, total - total / 2 - total / 4),
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
                        ledger.apply(entry.clone()).unwrap();
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
