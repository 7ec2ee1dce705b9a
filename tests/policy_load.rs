//! Loading policy directories: files combine, conflicts are located, test-case files are
//! checked like policies, and the policy module stays pure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use chrono::{TimeZone, Utc};
use sluice::domain::{ChanId, Sat};
use sluice::policy::{self, Channel, Reason, Snapshot, Target};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn chan(n: u32, capacity: u64, local: u64) -> Channel {
    Channel {
        id: ChanId::from_parts(800_000 + n, 1, 0),
        peer: format!("02{n:064x}"),
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

#[test]
fn a_directory_concatenates_rules_in_file_order_and_ignores_test_cases() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "00-base.yaml",
        "defaults: { band: { inbound_min: 30% } }\nrules:\n  - { name: small, match: { capacity_max: 1M } }\n",
    );
    write(
        dir.path(),
        "10-rest.yaml",
        "rules:\n  - { name: rest, match: all }\ntags: { t: 800001x1x0 }\n",
    );
    write(dir.path(), "x.test.yaml", "this is not a policy: [");
    let p = policy::load(dir.path()).unwrap();
    let names: Vec<&str> = p.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["small", "rest"]);
    assert!(p.tags.contains_key("t"));
    assert_eq!(p.files.len(), 2);
}

#[test]
fn a_top_level_key_set_in_two_files_is_located_at_the_second() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "defaults: { band: { inbound_min: 30% } }\n",
    );
    write(
        dir.path(),
        "b.yaml",
        "rules: []\ndefaults: { band: { inbound_min: 40% } }\n",
    );
    let e = policy::load(dir.path()).unwrap_err();
    assert_eq!(e.file, dir.path().join("b.yaml"));
    assert_eq!((e.line, e.column, e.key.as_str()), (2, 1, "defaults"));
    assert!(e.message.contains("already set in"), "{e}");
    assert!(e.message.contains("a.yaml:1"), "{e}");
}

#[test]
fn a_directory_without_policy_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "only.test.yaml",
        "now: 2026-03-01 00:00\nchannels: []\nexpect: []\n",
    );
    let e = policy::load(dir.path()).unwrap_err();
    assert!(e.message.contains("no policy file"), "{e}");
}

#[test]
fn bad_test_cases_are_located_too() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        "defaults: { band: { inbound_min: 30% } }\nrules: [ { name: r, match: all } ]\n",
    );
    write(
        dir.path(),
        "bad.test.yaml",
        "now: 2026-03-01 00:00\nchannels:\n  - { id: 800001x1x0, capacity: 1M, local: 2M }\nexpect: []\n",
    );
    let e = policy::run_tests(dir.path()).unwrap_err();
    assert_eq!(e.file, dir.path().join("bad.test.yaml"));
    assert_eq!((e.line, e.key.as_str()), (3, "channels[0]"));
    assert!(e.message.contains("exceed capacity"), "{e}");
    write(
        dir.path(),
        "bad.test.yaml",
        "now: 2026-03-01 00:00\nchannels: []\nexpect:\n  - { target: 800001x1x0, reason: swapp }\n",
    );
    let e = policy::run_tests(dir.path()).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (4, "expect[0].reason"));
}

/// The schedule matches the wall-clock minute in its zone: on the spring-forward day in
/// Berlin, 02:00–02:59 does not exist, so a 02:30 window never opens that night, while
/// 03:30 local (01:30 UTC) matches a 03:30 window.
#[test]
fn schedules_follow_the_wall_clock_across_dst() {
    let p = |when: &str| {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(
            &f,
            format!("tz: Europe/Berlin\ndefaults:\n  band: {{ inbound_min: 30% }}\n  schedule: {{ when: \"{when}\" }}\nrules: [ {{ name: r, match: all }} ]\n"),
        )
        .unwrap();
        policy::load(&f).unwrap()
    };
    let decide = |policy: &policy::Policy, h: u32, m: u32| {
        let mut s = Snapshot::empty(Utc.with_ymd_and_hms(2026, 3, 29, h, m, 0).unwrap());
        s.channels = vec![chan(1, 5_000_000, 4_500_000)];
        s.fees.estimates = vec![(100, sluice::chain::fees::SatPerKw::from_sat_per_vbyte(8))];
        policy::evaluate(policy, &s).decisions[0].reason.clone()
    };
    let half_past_two = p("30 2 * * *");
    // 00:30 UTC = 01:30 CET, 01:30 UTC = 03:30 CEST: 02:30 local never happens.
    assert_eq!(decide(&half_past_two, 0, 30), Reason::OutsideSchedule);
    assert_eq!(decide(&half_past_two, 1, 30), Reason::OutsideSchedule);
    let half_past_three = p("30 3 * * *");
    assert_eq!(decide(&half_past_three, 1, 30), Reason::Swap);
    let plan_target = Target::Channel(ChanId::from_parts(800_001, 1, 0));
    assert_eq!(plan_target.to_string(), "800001x1x0");
}

/// Policies are pure: no async runtime, RPC or database crate in `src/policy/`.
#[test]
fn the_policy_module_does_no_io_through_runtime_crates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in ["tokio", "tonic", "sqlx"] {
            assert!(
                !text.contains(&format!("{banned}::")) && !text.contains(&format!("use {banned}")),
                "{} uses {banned}",
                path.display()
            );
        }
    }
}
