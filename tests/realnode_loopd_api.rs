//! Loop's own `loop` CLI drives sluiced on the regtest world of real programs through the
//! loopd API sluiced serves: sluiced on a real lnd, the reference Loop server (`sluice
//! loopserver`) on another, btcd between them. `loop terms`, `loop quote out`, `loop out --amt N
//! --force` run to `SUCCESS` in `loop swapinfo`, `loop listswaps` lists it, and the read-only
//! macaroon is refused for `loop out`. Skipped without the real programs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Daemon, poll};
use realnode_harness::{Miner, loopserver};

const AMOUNT: &str = "500000";

fn loop_cli(bin: &std::path::Path, daemon: &Daemon, rpc: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--loopdir")
        .arg(daemon.dir().join("loopd"))
        .args(["--network", "regtest", "--rpcserver", rpc])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loop {what} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn loops_cli_runs_a_loop_out_through_sluiced_on_real_nodes() {
    let Some(w) = realnode_harness::world() else {
        return;
    };
    let server = loopserver(&w, &[]);
    let config = w.write_sluice_yaml(Some(&server.addr)).unwrap();
    let daemon = Daemon::start_with_config(&config, &["--loopd-api-listen", "127.0.0.1:0"]);
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(daemon.dir().join("sluiced.lock")).unwrap())
            .unwrap();
    let rpc = lock["loopd_listen"].as_str().unwrap().to_owned();
    let bin = w.programs.path("loop");
    let run = |args: &[&str]| loop_cli(&bin, &daemon, &rpc, args);

    let terms = poll("loop terms to answer", Duration::from_secs(120), || {
        let out = run(&["terms"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(terms.contains("Amount: 10000 - 5000000"), "{terms}");
    let quote = ok(run(&["quote", "out", AMOUNT]), "quote out");
    assert!(quote.contains("Send off-chain:"), "{quote}");
    assert!(quote.contains(AMOUNT), "{quote}");

    let readonly = daemon.dir().join("loopd/regtest/readonly.macaroon");
    let refused = run(&[
        "--macaroonpath",
        readonly.to_str().unwrap(),
        "out",
        "--amt",
        AMOUNT,
        "--force",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let out = ok(run(&["out", "--amt", AMOUNT, "--force"]), "out");
    assert!(out.contains("Swap initiated"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no swap id in: {out}"));
    let swap = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        poll("the swap to succeed", Duration::from_secs(240), || {
            let info: serde_json::Value =
                serde_json::from_str(&ok(run(&["swapinfo", &id]), "swapinfo")).unwrap();
            let state = info["state"].as_str().unwrap_or_default().to_owned();
            assert_ne!(
                state,
                "FAILED",
                "the swap failed: {info}\n{}",
                daemon.stderr()
            );
            (state == "SUCCESS").then_some(info)
        })
    };
    assert_eq!(swap["amt"], AMOUNT, "{swap}");
    assert!(
        sluice::regtest::lnd::number(&swap["cost_server"]) > 0,
        "{swap}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(run(&["listswaps"]), "listswaps")).unwrap();
    assert!(
        listed["swaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str() && s["state"] == "SUCCESS"),
        "{listed}"
    );
    drop(server);
}
