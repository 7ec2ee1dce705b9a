//! `sluice backtest` as the operator runs it: the example policies on a synthetic history,
//! side by side, the trace it exports replayed, and bad inputs refused with nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name)
}

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("backtest")
        .args(args)
        .output()
        .expect("run sluice")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn set_and_forget_against_loop_autoloop_equivalent_on_a_synthetic_history() {
    let a = policy("set-and-forget");
    let b = policy("loop-autoloop-equivalent");
    let args = [
        "--policy",
        a.to_str().unwrap(),
        "--against",
        b.to_str().unwrap(),
        "--synthetic",
        "--channels",
        "10",
        "--days",
        "7",
        "--seed",
        "5",
        "--json",
    ];
    let v = json(&sluice(&args));
    for side in ["a", "b"] {
        let o = &v[side]["outcome"];
        assert_eq!(o["passes"], 7 * 24 * 6 + 1, "{side}");
        assert!(o["swaps"].as_u64().unwrap() > 0, "{side}: {o}");
        let cats: u64 = o["fees_by_category"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(cats, o["fees_total_sat"].as_u64().unwrap());
    }
    assert!(v["cost_ratio"].as_f64().is_some(), "{v}");
    // Same seed, same answer.
    assert_eq!(v, json(&sluice(&args)));
    // The human form shows the ratios.
    let human = sluice(&args[..args.len() - 1]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("cost ratio"), "{text}");
    assert!(text.contains("time-below-band ratio"), "{text}");
}

#[test]
fn an_exported_trace_replays_to_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("node.jsonl");
    let p = policy("loop-autoloop-equivalent");
    let synthetic = json(&sluice(&[
        "--policy",
        p.to_str().unwrap(),
        "--synthetic",
        "--channels",
        "6",
        "--days",
        "3",
        "--export-trace",
        trace.to_str().unwrap(),
        "--json",
    ]));
    let replayed = json(&sluice(&[
        "--policy",
        p.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(synthetic["outcome"], replayed["outcome"]);
    // The last day of it, and a window it does not cover.
    let last = json(&sluice(&[
        "--policy",
        p.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--days",
        "1",
        "--json",
    ]));
    assert_eq!(last["outcome"]["passes"], 24 * 6 + 1);
    let out = sluice(&[
        "--policy",
        p.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--days",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn malformed_inputs_are_refused_with_file_line_and_form_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy("set-and-forget");
    let trace = dir.path().join("bad.jsonl");
    std::fs::write(
        &trace,
        "{\"type\":\"window\",\"start\":\"2026-01-01T00:00:00Z\",\"end\":\"2026-01-02T00:00:00Z\"}\n\
         {\"type\":\"channel\",\"id\":\"800000x1x0\",\"capacity\":1000000,\"local\":500000}\n\
         {\"type\":\"forward\",\"at\":\"yesterday\"}\n",
    )
    .unwrap();
    let export = dir.path().join("out.jsonl");
    let out = sluice(&[
        "--policy",
        p.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--export-trace",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:3:"), "{err}");
    assert!(err.contains("expected one JSON object per line"), "{err}");
    assert!(!export.exists());

    let fees = dir.path().join("fees.csv");
    std::fs::write(
        &fees,
        "timestamp,conf_target,sat_per_vbyte\n2026-01-01T00:00:00Z,6,abc\n",
    )
    .unwrap();
    let out = sluice(&[
        "--policy",
        p.to_str().unwrap(),
        "--synthetic",
        "--fees",
        fees.to_str().unwrap(),
        "--export-trace",
        export.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fees.csv:2: bad fee rate `abc`"), "{err}");
    assert!(err.contains("timestamp,conf_target,sat_per_vbyte"), "{err}");
    assert!(!export.exists());

    // A fee file that starts after the window says which part is missing.
    std::fs::write(&fees, "2026-02-20T00:00:00Z,6,5\n").unwrap();
    let out = sluice(&[
        "--policy",
        p.to_str().unwrap(),
        "--synthetic",
        "--days",
        "30",
        "--fees",
        fees.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing 2026-01-30 00:00:00 UTC .. 2026-02-20 00:00:00 UTC"),
        "{err}"
    );
}

#[test]
fn the_report_is_a_self_contained_page_with_its_plots() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let a = policy("set-and-forget");
    let b = policy("loop-autoloop-equivalent");
    let out = sluice(&[
        "--policy",
        a.to_str().unwrap(),
        "--against",
        b.to_str().unwrap(),
        "--synthetic",
        "--channels",
        "8",
        "--days",
        "3",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "costs.svg",
        "inbound-0.svg",
        "inbound-1.svg",
        "fees-0.svg",
        "fees-1.svg",
    ] {
        let svg = std::fs::read_to_string(report.join(f)).unwrap();
        assert!(svg.starts_with("<svg"), "{f}");
    }
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(html.contains("cost ratio"));
    assert!(
        !html.contains("src=\""),
        "self-contained: nothing loaded from elsewhere"
    );
}
