//! `sluice backtest --from-node` against `sluice simnet serve`, through the simnet's lnd facade
//! as against a real lnd: the node's payments and invoice receipts become the trace's events,
//! and each channel's starting balance is today's less what moved it. Real binaries only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{poll, serve_simnet as serve};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn simnet(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(common::sluice_bin())
        .args(["--json", "simnet", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    serde_json::from_str(&ok(out, &format!("sluice simnet {args:?}"))).unwrap()
}

fn sluice_local_msat(dir: &Path) -> u64 {
    simnet(dir, &["status"])["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "sluice")
        .unwrap()["channel_local_msat"]
        .as_u64()
        .unwrap()
}

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/set-and-forget")
}

fn backtest(dir: &Path, trace: &Path) -> String {
    let out = Command::new(common::sluice_bin())
        .args(["--datadir"])
        .arg(dir.join("cli"))
        .args(["backtest", "--from-node", "--days", "1", "--config"])
        .arg(dir.join("sluice.yaml"))
        .arg("--policy")
        .arg(policy())
        .arg("--export-trace")
        .arg(trace)
        .output()
        .unwrap();
    ok(out, "sluice backtest --from-node")
}

#[test]
fn from_node_rebuilds_start_balances_from_the_nodes_payments_and_invoices() {
    let dir = tempfile::tempdir().unwrap();
    let _serve = serve(dir.path());
    let before = sluice_local_msat(dir.path());

    // An invoice of sluice's paid by peer1, and a payment of sluice's to peer2.
    simnet(dir.path(), &["pay", "--from", "peer1", "100000"]);
    simnet(
        dir.path(),
        &["pay", "--from", "sluice", "--to", "peer2", "30000"],
    );
    let after = sluice_local_msat(dir.path());
    assert_eq!(after, before + 70_000_000);

    let trace = dir.path().join("trace.jsonl");
    let summary = backtest(dir.path(), &trace);
    assert!(
        summary.contains("rebuilt from lnd at")
            && summary.contains("1 payment and 1 invoice HTLCs"),
        "{summary}"
    );

    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut start: BTreeMap<String, u64> = BTreeMap::new();
    let mut moves = Vec::new();
    for l in &lines {
        match l["type"].as_str().unwrap() {
            "channel" => {
                start.insert(
                    l["id"].as_str().unwrap().to_owned(),
                    l["local"].as_u64().unwrap(),
                );
            }
            "window" => {}
            "payment" | "receipt" => moves.push((
                l["type"].as_str().unwrap().to_owned(),
                l["amount"].as_u64().unwrap(),
            )),
            other => panic!("unexpected trace line {other}: {l}"),
        }
    }
    moves.sort();
    assert_eq!(
        moves,
        [
            ("payment".to_owned(), 30_000),
            ("receipt".to_owned(), 100_000)
        ]
    );
    // The window covers both: the starting balances are the ones before them.
    assert_eq!(start.values().sum::<u64>() * 1000, before, "{text}");
}

/// A policy whose decisions depend only on what both sides see the same way: balances, the fee
/// estimate, the server's fee; no fee-rate percentile (the daemon's sampled history is minutes
/// old, the backtest's a day), and `dry_run`, so the backtest's passes move nothing.
const SAME_DECISIONS_POLICY: &str = "\
dry_run: true
defaults:
  band: { inbound_min: 30%, inbound_max: 70%, restore_to: 50% }
  swap: { min: 250k, max: 2M, conf_target: 6 }
  fees: { max_total: 2%, max_prepay: 30k }
rules:
  - name: every-channel
    match: all
budgets:
  - name: monthly
    period: month
    limit: 1M
limits: { in_flight: 5, in_flight_per_target: 1 }
";

#[test]
fn a_backtest_of_the_nodes_own_history_decides_as_the_live_daemon_does() {
    let dir = tempfile::tempdir().unwrap();
    let _serve = serve(dir.path());
    simnet(dir.path(), &["fee", "5"]);

    let datadir = tempfile::tempdir().unwrap();
    let policies = datadir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let policy = policies.join("same.yaml");
    std::fs::write(&policy, SAME_DECISIONS_POLICY).unwrap();
    let config = dir.path().join("sluice.yaml");
    let daemon = common::Daemon::launch(datadir, &["--config", config.to_str().unwrap()], &[]);
    let suggest = || -> Value {
        poll("the daemon to suggest", LIMIT, || {
            let out = daemon.cli(&["--json", "suggest"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            (!v["decisions"].as_array()?.is_empty()).then_some(v)
        })
    };
    // peer1 pays sluice until sluice's channel with it is short of inbound (below the band):
    // those receipts are the history the backtest rebuilds and replays.
    let below = |v: &Value| {
        v["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["reason"] == "dry_run")
    };
    let mut live = suggest();
    for _ in 0..20 {
        if below(&live) {
            break;
        }
        simnet(dir.path(), &["pay", "--from", "peer1", "300000"]);
        live = suggest();
    }

    // The same estimate, from before the window on, for every target.
    let fees = dir.path().join("fees.csv");
    let from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3 * 86_400;
    // A sample holds until the next one, the last one for a day: one a day until tomorrow.
    let csv: String = (0..5u64)
        .flat_map(|day| {
            [2, 6, 36, 144, 1008].map(move |t| format!("{},{t},5\n", from + day * 86_400))
        })
        .collect();
    std::fs::write(&fees, csv).unwrap();
    // The live server's terms, through the daemon (the simnet's server asks 50 sat + 0.1 %
    // for 10k to 5M sat, not the backtest's default amounts).
    let out = Command::new(common::sluice_bin())
        .args(["--json", "--datadir"])
        .arg(daemon.dir())
        .args(["--rpcserver", &daemon.rpc])
        .args([
            "backtest",
            "--from-node",
            "--live-terms",
            "--days",
            "1",
            "--config",
        ])
        .arg(&config)
        .arg("--policy")
        .arg(&policy)
        .arg("--fees")
        .arg(&fees)
        .output()
        .unwrap();
    let replayed: Value = serde_json::from_str(&ok(out, "sluice backtest --from-node")).unwrap();

    let decisions = |v: &Value, reason_key: &str| -> BTreeMap<String, (String, Option<u64>)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["target"].as_str().unwrap().to_owned(),
                    (
                        d[reason_key].as_str().unwrap().to_owned(),
                        d["amount_sat"].as_u64(),
                    ),
                )
            })
            .collect()
    };
    assert_eq!(
        replayed["outcome"]["server"],
        serde_json::json!({
            "min_swap_sat": 10_000,
            "max_swap_sat": 5_000_000,
            "fee_base_sat": 50,
            "fee_ppm": 1_000,
            "prepay_sat": 1_000,
        })
    );
    let live = decisions(&live["decisions"], "reason");
    let replayed = decisions(&replayed["outcome"]["final_pass"], "reason");
    assert_eq!(live, replayed);
    // Not a vacuous match: some channel is below the band and gets a swap of an amount.
    assert!(
        live.values()
            .any(|(r, a)| r == "dry_run" && a.is_some_and(|a| a >= 250_000)),
        "{live:?}"
    );
}

/// `--fees-from-node` replays the estimates sluiced recorded for its fee gate: with the simnet's
/// every estimate at 7 sat/vB, every pass of the backtest sees 7 sat/vB; without a store it
/// says where it looked.
#[test]
fn fees_from_node_replays_the_estimates_sluiced_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let _serve = serve(dir.path());
    simnet(dir.path(), &["fee", "7"]);
    let trace = dir.path().join("trace.jsonl");
    let policy = policy();
    let run = |datadir: &Path| {
        Command::new(common::sluice_bin())
            .args(["--json", "--datadir"])
            .arg(datadir)
            .args(["backtest", "--fees-from-node", "--trace"])
            .arg(&trace)
            .arg("--policy")
            .arg(&policy)
            .output()
            .unwrap()
    };

    let datadir = tempfile::tempdir().unwrap();
    let policies = datadir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(
        policy.join("policy.yaml"),
        policies.join("set-and-forget.yaml"),
    )
    .unwrap();
    let config = dir.path().join("sluice.yaml");
    let daemon = common::Daemon::launch(
        datadir,
        &["--config", config.to_str().unwrap()],
        &["--autoloop-tick", "1s"],
    );
    let mode = common::when_ready(|| daemon.cli(&["autoloop", "dry-run"]));
    assert!(
        mode.status.success(),
        "{}",
        String::from_utf8_lossy(&mode.stderr)
    );
    // A trace starting once the daemon has sampled: an hour of two quiet channels.
    std::thread::sleep(Duration::from_secs(3));
    let start = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    let end = start + chrono::TimeDelta::hours(1);
    std::fs::write(
        &trace,
        format!(
            "{{\"type\":\"window\",\"start\":\"{}\",\"end\":\"{}\"}}\n\
             {{\"type\":\"channel\",\"id\":\"800000x1x0\",\"capacity\":2000000,\"local\":1000000}}\n\
             {{\"type\":\"channel\",\"id\":\"800000x2x0\",\"capacity\":2000000,\"local\":1900000}}\n",
            start.to_rfc3339(),
            end.to_rfc3339()
        ),
    )
    .unwrap();
    let nowhere = run(&dir.path().join("no-daemon"));
    assert!(!nowhere.status.success());
    let err = String::from_utf8_lossy(&nowhere.stderr);
    assert!(err.contains("no sluiced store at"), "{err}");

    let out = poll("the daemon's fee samples to cover the trace", LIMIT, || {
        let out = run(daemon.dir());
        out.status.success().then_some(out)
    });
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let points = v["outcome"]["series"].as_array().unwrap();
    assert!(!points.is_empty(), "{v}");
    for p in points {
        assert_eq!(p["fee_sat_vb"].as_f64(), Some(7.0), "{p}");
    }
}
