#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use chrono::{DateTime, Utc};

use super::*;

fn end() -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse().unwrap()
}

fn policy(name: &str) -> crate::policy::Policy {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name);
    crate::policy::load(&dir).unwrap()
}

#[test]
fn a_trace_round_trips() {
    let h = model::synthetic(4, 1, 7, end());
    assert!(!h.events.is_empty());
    let text = write_trace(&h);
    let back = parse_trace("t.jsonl", &text).unwrap();
    assert_eq!(back, h);
}

#[test]
fn a_malformed_trace_line_is_located() {
    let text = "{\"type\":\"window\",\"start\":\"2026-01-01T00:00:00Z\",\"end\":\"2026-01-02T00:00:00Z\"}\n\
                {\"type\":\"channel\",\"id\":\"800000x1x0\",\"capacity\":1000000,\"local\":500000}\n\
                {\"type\":\"forward\",\"at\":\"2026-01-01T01:00:00Z\",\"in\":\"800000x1x0\",\"amount\":5}\n";
    let e = parse_trace("my.jsonl", text).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("my.jsonl", 3));
    assert!(
        e.to_string().contains("expected one JSON object per line"),
        "{e}"
    );
    let unknown = text.replace(
        "\"in\":\"800000x1x0\"",
        "\"in\":\"800000x9x0\",\"out\":\"800000x1x0\"",
    );
    let e = parse_trace("my.jsonl", &unknown).unwrap_err();
    assert!(e.problem.contains("not declared"), "{e}");
}

#[test]
fn a_malformed_fee_line_is_located() {
    let e = parse_fees(
        "f.csv",
        "timestamp,conf_target,sat_per_vbyte\n1700000000,6,5\n1700000600,6\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.to_string().starts_with("f.csv:3: 2 columns"), "{e}");
    let e = parse_fees("f.csv", "2026-01-01T00:00:00Z,6,-1\n").unwrap_err();
    assert!(e.problem.contains("bad fee rate"), "{e}");
    let ok = parse_fees(
        "f.csv",
        "2026-01-01T00:00:00Z,6,5\n2026-01-01T01:00:00Z,6,7.5\n",
    )
    .unwrap();
    let at: DateTime<Utc> = "2026-01-01T00:30:00Z".parse().unwrap();
    assert_eq!(ok.at(at), vec![(6, crate::chain::fees::SatPerKw(1250))]);
}

#[test]
fn coverage_names_the_missing_part() {
    let t = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
    let e = input::coverage(
        "the trace",
        (t("2026-01-10T00:00:00Z"), t("2026-01-31T00:00:00Z")),
        (t("2026-01-01T00:00:00Z"), t("2026-01-31T00:00:00Z")),
    )
    .unwrap_err();
    assert!(
        e.contains("missing 2026-01-01 00:00:00 UTC .. 2026-01-10 00:00:00 UTC"),
        "{e}"
    );
}

#[test]
fn the_replay_swaps_books_costs_and_is_deterministic() {
    let h = model::synthetic(12, 7, 3, end());
    let fees = model::fee_market(h.start, h.end, 3);
    let p = policy("loop-autoloop-equivalent");
    let s = Settings::default();
    let a = run(&p, &h, &fees, &s, &mut |_| true).unwrap();
    let b = run(&p, &h, &fees, &s, &mut |_| true).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.passes, 7 * 24 * 6 + 1);
    assert!(a.swaps > 0, "{a:?}");
    let by_cat: u64 = a.fees_by_category.values().sum();
    assert_eq!(by_cat, a.fees_total_sat);
    assert!(a.fees_by_category.contains_key("server"));
    assert!(a.volume_sat > 0);
}

#[test]
fn failures_back_off_and_cost_nothing() {
    let h = model::synthetic(12, 7, 3, end());
    let fees = model::fee_market(h.start, h.end, 3);
    let p = policy("loop-autoloop-equivalent");
    let s = Settings {
        failure_rate: 1.0,
        ..Settings::default()
    };
    let o = run(&p, &h, &fees, &s, &mut |_| true).unwrap();
    assert!(o.swaps > 0);
    assert_eq!(o.failed_swaps + o.unfinished_swaps, o.swaps);
    assert_eq!(o.fees_total_sat, 0);
    assert!(
        o.reasons.get("backoff").copied().unwrap_or(0) > 0,
        "{:?}",
        o.reasons
    );
}

#[test]
fn stopping_interrupts_the_run() {
    let h = model::synthetic(4, 2, 1, end());
    let fees = model::fee_market(h.start, h.end, 1);
    let p = policy("set-and-forget");
    let mut n = 0;
    let o = run(&p, &h, &fees, &Settings::default(), &mut |_| {
        n += 1;
        n < 5
    })
    .unwrap();
    assert!(o.interrupted);
    assert_eq!(o.passes, 5);
}

#[test]
fn loop_ins_bring_channels_above_their_band_back_and_book_their_costs() {
    let h = model::synthetic(12, 7, 3, end());
    let fees = model::fee_market(h.start, h.end, 3);
    let both = policy("both-directions");
    let s = Settings::default();
    let o = run(&both, &h, &fees, &s, &mut |_| true).unwrap();
    assert!(o.loop_ins > 0, "{o:?}");
    assert!(o.swaps > o.loop_ins, "both directions run: {o:?}");
    let by_cat: u64 = o.fees_by_category.values().sum();
    assert_eq!(by_cat, o.fees_total_sat);
    // The same history without `loop_in` leaves more time above the band.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/both-directions/policy.yaml"),
    )
    .unwrap();
    let out_only = text.replace("  loop_in:\n", "  loop_in:\n    enabled: false\n");
    std::fs::write(dir.path().join("policy.yaml"), out_only).unwrap();
    let one_way = crate::policy::load(dir.path()).unwrap();
    let w = run(&one_way, &h, &fees, &s, &mut |_| true).unwrap();
    assert_eq!(w.loop_ins, 0);
    assert!(
        o.above_band_hours < w.above_band_hours,
        "{} >= {}",
        o.above_band_hours,
        w.above_band_hours
    );
    // A Loop In the server never pays costs its funding and a timeout sweep.
    let failing = Settings {
        failure_rate: 1.0,
        ..Settings::default()
    };
    let f = run(&both, &h, &fees, &failing, &mut |_| true).unwrap();
    assert!(f.loop_ins > 0);
    assert!(
        f.fees_by_category.get("miner").copied().unwrap_or(0) > 0,
        "{f:?}"
    );
    assert_eq!(f.fees_by_category.get("server"), None, "{f:?}");
}
