//! `sluice backtest --from-node` against `sluice simnet serve`, through the simnet's lnd facade
//! as against a real lnd: the node's payments and invoice receipts become the trace's events,
//! and each channel's starting balance is today's less what moved it. Real binaries only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::poll;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn serve(dir: &Path) -> Killed {
    let log = std::fs::File::create(dir.join("serve.stderr")).unwrap();
    let mut child = Command::new(common::sluice_bin())
        .args(["--json", "simnet", "--dir"])
        .arg(dir)
        .args(["serve", "--block-interval", "0s", "--no-traffic"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let config = dir.join("sluice.yaml");
    poll("the simnet to serve", LIMIT, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sluice simnet serve exited with {status}");
        }
        config.exists().then_some(())
    });
    Killed(child)
}

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
