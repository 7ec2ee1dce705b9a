//! Example-based tests of admission, entry validation and status. The property tests are in
//! `props.rs`; the calendar tables are in `period.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::*;

pub(super) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

pub(super) fn hash(n: u8) -> SwapHash {
    SwapHash([n; 32])
}

fn budget(name: &str, period: Period, limit: u64) -> BudgetSpec {
    BudgetSpec {
        name: name.to_owned(),
        period,
        limit: Sat(limit),
        per_rule: BTreeMap::new(),
        hard_cap: None,
    }
}

fn request(swap: u8, rule: &str, expected: u64, worst_case: u64) -> AdmitRequest {
    AdmitRequest {
        swap: hash(swap),
        rule: rule.to_owned(),
        expected: Sat(expected),
        worst_case: Sat(worst_case),
    }
}

fn spend(swap: u8, id: u32, amount: u64, at: DateTime<Utc>) -> Entry {
    Entry {
        swap: hash(swap),
        id: EntryId(id),
        at,
        kind: EntryKind::Spend {
            amount: Sat(amount),
            category: SpendCategory::Server,
        },
    }
}

fn release(swap: u8, at: DateTime<Utc>) -> Entry {
    Entry {
        swap: hash(swap),
        id: EntryId::RELEASE,
        at,
        kind: EntryKind::Release,
    }
}

/// Admits and applies, as the scheduler does once the store has committed the entry.
fn reserve(ledger: &mut Ledger, req: AdmitRequest, now: DateTime<Utc>) -> Entry {
    let entry = ledger.admit(req, now).expect("admitted").into_entry();
    assert_eq!(ledger.apply(entry.clone()), Ok(Applied::Recorded));
    entry
}

fn berlin() -> Tz {
    "Europe/Berlin".parse().expect("zone")
}

#[test]
fn reservation_spend_and_release_move_budget_from_reserved_to_spent() {
    let mut ledger = Ledger::new(vec![budget("monthly", Period::Month, 10_000)], berlin()).unwrap();
    let t0 = utc("2026-05-10T10:00:00Z");
    reserve(&mut ledger, request(1, "sinks", 1_000, 4_000), t0);
    let line = &ledger.status(t0)[0].total;
    assert_eq!(
        (
            line.spent,
            line.reserved_expected,
            line.reserved_worst,
            line.available
        ),
        (Sat(0), Sat(1_000), Sat(4_000), Sat(6_000))
    );

    ledger
        .apply(spend(1, 1, 1_500, t0 + TimeDelta::minutes(5)))
        .unwrap();
    let line = &ledger.status(t0 + TimeDelta::minutes(5))[0].total;
    // Spending past the expected fees leaves nothing expected but the rest of the worst case.
    assert_eq!(
        (
            line.spent,
            line.reserved_expected,
            line.reserved_worst,
            line.available
        ),
        (Sat(1_500), Sat(0), Sat(2_500), Sat(6_000))
    );

    ledger
        .apply(release(1, t0 + TimeDelta::minutes(30)))
        .unwrap();
    let line = &ledger.status(t0 + TimeDelta::minutes(30))[0].total;
    assert_eq!(
        (line.spent, line.reserved_worst, line.available),
        (Sat(1_500), Sat(0), Sat(8_500))
    );
    assert_eq!(
        ledger.swap(&hash(1)).map(SwapAccount::reserved_worst),
        Some(Sat(0))
    );
    assert_eq!(ledger.pending().count(), 0);
}

#[test]
fn admission_uses_worst_case_and_tells_exhausted_from_insufficient() {
    let mut ledger = Ledger::new(vec![budget("monthly", Period::Month, 10_000)], Tz::UTC).unwrap();
    let now = utc("2026-05-10T10:00:00Z");
    reserve(&mut ledger, request(1, "r", 1_000, 7_000), now);
    match ledger.admit(request(2, "r", 100, 3_001), now) {
        Err(AdmitError::Refused(Refusal::Insufficient {
            budget,
            scope,
            available,
            needed,
            ..
        })) => {
            assert_eq!(
                (budget.as_str(), scope, available, needed),
                ("monthly", Scope::Total, Sat(3_000), Sat(3_001))
            );
        }
        other => panic!("expected insufficient, got {other:?}"),
    }
    // Exactly filling the limit is allowed; after that even a free swap is refused.
    reserve(&mut ledger, request(2, "r", 100, 3_000), now);
    match ledger.admit(request(3, "r", 0, 0), now) {
        Err(AdmitError::Refused(Refusal::Exhausted {
            spent,
            reserved,
            limit,
            ..
        })) => {
            assert_eq!((spent, reserved, limit), (Sat(0), Sat(10_000), Sat(10_000)));
        }
        other => panic!("expected exhausted, got {other:?}"),
    }
}

#[test]
fn rule_sub_budget_binds_only_its_rule() {
    let mut spec = budget("monthly", Period::Month, 10_000);
    spec.per_rule.insert("big-sinks".to_owned(), Sat(3_000));
    let mut ledger = Ledger::new(vec![spec], Tz::UTC).unwrap();
    let now = utc("2026-05-10T10:00:00Z");
    reserve(&mut ledger, request(1, "big-sinks", 1_000, 2_000), now);
    let refusal = ledger
        .admit(request(2, "big-sinks", 1_000, 2_000), now)
        .unwrap_err();
    assert!(
        matches!(&refusal, AdmitError::Refused(Refusal::Insufficient { scope: Scope::Rule(rule), available: Sat(1_000), .. }) if rule == "big-sinks"),
        "{refusal:?}"
    );
    assert_eq!(ledger.available("big-sinks", now), Some(Sat(1_000)));
    assert_eq!(ledger.available("everything-else", now), Some(Sat(8_000)));
    reserve(
        &mut ledger,
        request(3, "everything-else", 1_000, 2_000),
        now,
    );
    let status = &ledger.status(now)[0];
    assert_eq!(status.per_rule["big-sinks"].reserved_worst, Sat(2_000));
    assert_eq!(status.total.reserved_worst, Sat(4_000));
}

#[test]
fn hard_daily_cap_refuses_while_the_month_has_room() {
    let mut spec = budget("monthly", Period::Month, 150_000);
    spec.hard_cap = Some((Period::Day, Sat(20_000)));
    let mut ledger = Ledger::new(vec![spec], berlin()).unwrap();
    let day1 = utc("2026-05-10T10:00:00Z");
    reserve(&mut ledger, request(1, "r", 5_000, 15_000), day1);
    ledger.apply(spend(1, 1, 15_000, day1)).unwrap();
    ledger.apply(release(1, day1)).unwrap();
    let refusal = ledger
        .admit(request(2, "r", 1_000, 6_000), day1)
        .unwrap_err();
    assert!(
        matches!(
            refusal,
            AdmitError::Refused(Refusal::Insufficient {
                scope: Scope::HardCap,
                available: Sat(5_000),
                ..
            })
        ),
        "{refusal:?}"
    );
    assert!(refusal.to_string().contains("hard_cap"), "{refusal}");
    // The next Berlin day (22:00 UTC in summer time) starts the cap afresh.
    ledger
        .admit(request(2, "r", 1_000, 6_000), utc("2026-05-10T22:00:00Z"))
        .unwrap();
}

#[test]
fn rollover_starts_at_zero_spent_but_keeps_pending_reservations() {
    let mut ledger = Ledger::new(vec![budget("daily", Period::Day, 10_000)], berlin()).unwrap();
    let evening = utc("2026-05-10T21:00:00Z"); // 23:00 in Berlin
    reserve(&mut ledger, request(1, "r", 1_000, 3_000), evening);
    reserve(&mut ledger, request(2, "r", 1_000, 3_000), evening);
    ledger.apply(spend(1, 1, 2_000, evening)).unwrap();
    ledger.apply(spend(2, 1, 500, evening)).unwrap();
    ledger.apply(release(1, evening)).unwrap();

    let next_day = utc("2026-05-10T22:30:00Z");
    let line = &ledger.status(next_day)[0].total;
    assert_eq!(line.window.start, utc("2026-05-10T22:00:00Z"));
    assert_eq!(
        (line.spent, line.reserved_worst, line.available),
        (Sat(0), Sat(2_500), Sat(7_500))
    );
    // The rollover released nothing: swap 2 is still pending and may still spend.
    assert_eq!(ledger.pending().copied().collect::<Vec<_>>(), vec![hash(2)]);
    ledger.apply(spend(2, 2, 2_500, next_day)).unwrap();
    let status = ledger.status(next_day);
    assert_eq!(
        (status[0].total.spent, status[0].total.reserved_worst),
        (Sat(2_500), Sat(0))
    );
}

#[test]
fn a_clock_stepped_back_cannot_reopen_a_spent_window() {
    let mut ledger = Ledger::new(vec![budget("daily", Period::Day, 5_000)], Tz::UTC).unwrap();
    let late = utc("2026-05-11T00:10:00Z");
    reserve(&mut ledger, request(1, "r", 5_000, 5_000), late);
    ledger.apply(spend(1, 1, 5_000, late)).unwrap();
    ledger.apply(release(1, late)).unwrap();
    // The clock jumps back into the previous day; the ledger keeps counting in the later one.
    let earlier = utc("2026-05-10T23:50:00Z");
    let refusal = ledger.admit(request(2, "r", 1, 1), earlier).unwrap_err();
    assert!(
        matches!(refusal, AdmitError::Refused(Refusal::Exhausted { .. })),
        "{refusal:?}"
    );
    assert_eq!(
        ledger.status(earlier)[0].total.window.start,
        utc("2026-05-11T00:00:00Z")
    );
}

#[test]
fn entries_that_disagree_with_the_account_are_refused() {
    let mut ledger = Ledger::new(vec![], Tz::UTC).unwrap();
    let now = utc("2026-05-10T10:00:00Z");
    assert_eq!(
        ledger.available("r", now),
        None,
        "no budget means fees are not budgeted"
    );
    assert_eq!(
        ledger.apply(spend(9, 1, 10, now)),
        Err(EntryError::NoReservation {
            swap: hash(9),
            id: EntryId(1)
        })
    );
    assert_eq!(
        ledger.apply(release(9, now)),
        Err(EntryError::NoReservation {
            swap: hash(9),
            id: EntryId::RELEASE
        })
    );

    let reserved = reserve(&mut ledger, request(1, "r", 10, 20), now);
    let again = ledger.admit(request(1, "r", 10, 20), now).unwrap_err();
    assert!(
        matches!(
            again,
            AdmitError::Invalid(EntryError::AlreadyReserved { .. })
        ),
        "{again:?}"
    );
    let other_id = Entry {
        id: EntryId(7),
        ..reserved.clone()
    };
    assert_eq!(
        ledger.apply(other_id),
        Err(EntryError::AlreadyReserved {
            swap: hash(1),
            id: EntryId(7),
            existing: EntryId::RESERVE
        })
    );

    // Replays are harmless, even with a later timestamp; a reused id with new content is not.
    assert_eq!(ledger.apply(spend(1, 1, 15, now)), Ok(Applied::Recorded));
    assert_eq!(
        ledger.apply(spend(1, 1, 15, now + TimeDelta::hours(1))),
        Ok(Applied::Replayed)
    );
    assert_eq!(ledger.apply(reserved), Ok(Applied::Replayed));
    assert_eq!(
        ledger.apply(spend(1, 1, 16, now)),
        Err(EntryError::Conflict {
            swap: hash(1),
            id: EntryId(1)
        })
    );
    assert_eq!(ledger.swap(&hash(1)).map(SwapAccount::spent), Some(Sat(15)));

    assert_eq!(
        ledger.apply(spend(1, 2, 10, now)),
        Ok(Applied::Overrun {
            spent: Sat(25),
            worst_case: Sat(20)
        })
    );
    assert_eq!(ledger.apply(release(1, now)), Ok(Applied::Recorded));
    assert_eq!(ledger.apply(release(1, now)), Ok(Applied::Replayed));
    assert_eq!(
        ledger.apply(spend(1, 3, 1, now)),
        Err(EntryError::AfterRelease {
            swap: hash(1),
            id: EntryId(3)
        })
    );

    let bad = ledger.admit(request(2, "r", 30, 20), now).unwrap_err();
    assert!(
        matches!(
            bad,
            AdmitError::Invalid(EntryError::ExpectedAboveWorstCase { .. })
        ),
        "{bad:?}"
    );
}

#[test]
fn replaying_the_log_rebuilds_the_same_ledger() {
    let specs = vec![budget("weekly", Period::Week, 50_000)];
    let mut live = Ledger::new(specs.clone(), berlin()).unwrap();
    let t0 = utc("2026-03-27T10:00:00Z");
    let mut log = vec![reserve(&mut live, request(1, "r", 1_000, 2_000), t0)];
    for entry in [
        spend(1, 1, 700, t0 + TimeDelta::days(3)),
        release(1, t0 + TimeDelta::days(3)),
    ] {
        live.apply(entry.clone()).unwrap();
        log.push(entry);
    }
    log.push(reserve(
        &mut live,
        request(2, "r", 1_000, 2_000),
        t0 - TimeDelta::days(1),
    ));

    let mut rebuilt = Ledger::new(specs, berlin()).unwrap();
    rebuilt.replay(log.clone()).unwrap();
    assert_eq!(rebuilt, live);
    // Replaying over a live ledger (a restart that found the ledger half-built) changes nothing.
    rebuilt.replay(log).unwrap();
    assert_eq!(rebuilt, live);
}

#[test]
fn budget_specs_are_checked() {
    let twice = vec![
        budget("monthly", Period::Month, 1),
        budget("monthly", Period::Day, 1),
    ];
    assert_eq!(
        Ledger::new(twice, Tz::UTC).unwrap_err(),
        SpecError::DuplicateName {
            name: "monthly".to_owned()
        }
    );
    assert_eq!(
        Ledger::new(vec![budget("", Period::Day, 1)], Tz::UTC).unwrap_err(),
        SpecError::EmptyName
    );
    let mut spec = budget("rolling", Period::Rolling(TimeDelta::hours(24)), 1);
    spec.hard_cap = Some((Period::Rolling(TimeDelta::zero()), Sat(1)));
    let err = Ledger::new(vec![spec], Tz::UTC).unwrap_err();
    assert_eq!(
        err,
        SpecError::NonPositiveRolling {
            name: "rolling".to_owned(),
            scope: Scope::HardCap,
            seconds: 0
        }
    );
    assert!(
        err.to_string().contains("budget `rolling`: hard_cap"),
        "{err}"
    );

    let mut ledger = Ledger::new(vec![budget("monthly", Period::Month, 1)], Tz::UTC).unwrap();
    let before = ledger.clone();
    let bad = vec![budget("x", Period::Rolling(TimeDelta::seconds(-1)), 1)];
    assert!(ledger.reconfigure(bad, berlin()).is_err());
    assert_eq!(ledger, before);
    ledger
        .reconfigure(vec![budget("daily", Period::Day, 7)], berlin())
        .unwrap();
    assert_eq!(
        (ledger.budgets()[0].name.as_str(), ledger.tz()),
        ("daily", berlin())
    );
}

#[test]
fn the_ledger_does_no_io() {
    let sources = [
        include_str!("mod.rs"),
        include_str!("account.rs"),
        include_str!("budget.rs"),
        include_str!("entry.rs"),
        include_str!("period.rs"),
    ];
    for banned in [
        "tokio::",
        "tonic::",
        "sqlx::",
        "std::fs",
        "std::net",
        "SystemTime",
        "Utc::now",
    ] {
        for source in sources {
            assert!(
                !source.contains(banned),
                "the ledger must stay pure, found `{banned}`"
            );
        }
    }
}
