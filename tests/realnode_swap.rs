//! Loop Out on real nodes: sluiced on a real lnd, the reference Loop server (`sluice
//! loopserver`) on another real lnd, btcd regtest between them. The HTLC confirms, the
//! cooperative MuSig2 key-path sweep is signed through lnd's real `signrpc` and accepted by
//! btcd, and the swap's recorded costs equal what lncli says left sluice's node; with a server
//! that refuses to co-sign, the script-path sweep is accepted instead; and a SIGKILL between the
//! reveal and the sweep's confirmation still ends SUCCEEDED with exact costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::time::Duration;

use common::{Daemon, poll};
use realnode_harness::{Miner, TestWorld, htlc_spend_witness_len, loopserver, sluice_total};

const AMOUNT: u64 = 500_000;
const SWAP_LIMIT: Duration = Duration::from_secs(240);

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `sluice out --amt AMOUNT --force`: the swap's id.
fn loop_out(daemon: &Daemon) -> String {
    let out = json(&daemon.cli(&["--json", "out", "--amt", &AMOUNT.to_string(), "--force"]));
    out["id"].as_str().unwrap().to_owned()
}

/// Waits for the swap to reach `state` (panics on another terminal state).
fn wait_state(daemon: &Daemon, id: &str, state: &str) -> serde_json::Value {
    poll(&format!("swap {id} to reach {state}"), SWAP_LIMIT, || {
        let v = json(&daemon.cli(&["--json", "swap", id]));
        let now = v["swap"]["state"].as_str().unwrap_or_default().to_owned();
        if now == state {
            return Some(v);
        }
        assert!(
            !matches!(now.as_str(), "SUCCEEDED" | "FAILED") && !now.starts_with("FAILED"),
            "swap {id} ended {now}, not {state}: {v}\n{}",
            daemon.stderr()
        );
        None
    })
}

/// The node lost exactly the recorded costs. lnd pays in msat and lncli reports channel
/// balances in whole sat (floored), while sluice records each payment's routing fee rounded up
/// to the sat: the two may differ by one sat per payment, no more. The routing fees and what
/// the server got are checked to the msat against lnd's own payment records.
fn assert_costs_match(w: &TestWorld, swap: &serde_json::Value, before: u64, after: u64) {
    let c = &swap["swap"]["costs"];
    let recorded = c["server_sat"].as_i64().unwrap()
        + c["onchain_sat"].as_i64().unwrap()
        + c["offchain_sat"].as_i64().unwrap();
    assert!(c["onchain_sat"].as_i64().unwrap() > 0, "{c}");
    assert!(c["server_sat"].as_i64().unwrap() > 0, "{c}");
    // lnd's records of the swap's two payments, by their invoices.
    let payments = w.sluice.cli(&["listpayments"]).unwrap();
    let n = sluice::regtest::lnd::number;
    let invoices = [
        swap["swap_invoice"].as_str().unwrap(),
        swap["prepay_invoice"].as_str().unwrap(),
    ];
    let (ours, others): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = payments["payments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "SUCCEEDED")
        .partition(|p| invoices.contains(&p["payment_request"].as_str().unwrap_or_default()));
    assert_eq!(ours.len(), 2, "both swap payments succeeded: {payments}");
    let fees_sat: u64 = ours.iter().map(|p| n(&p["fee_msat"]).div_ceil(1000)).sum();
    let paid_msat: u64 = ours.iter().map(|p| n(&p["value_msat"])).sum();
    assert_eq!(
        i64::try_from(fees_sat).unwrap(),
        c["offchain_sat"].as_i64().unwrap(),
        "routing fees: {payments}"
    );
    assert_eq!(
        i64::try_from(paid_msat / 1000 - AMOUNT).unwrap(),
        c["server_sat"].as_i64().unwrap(),
        "what the server got: {payments}"
    );
    // Anything else the node paid is the server's L402 token (bought once, before the swap).
    let l402_msat: u64 = others
        .iter()
        .map(|p| n(&p["value_msat"]) + n(&p["fee_msat"]))
        .sum();
    let l402 = i64::try_from(l402_msat.div_ceil(1000)).unwrap();
    let lost = i64::try_from(before).unwrap() - i64::try_from(after).unwrap();
    assert!(
        (lost - l402 - recorded).abs() <= 2,
        "the node lost {lost} sat: the swap recorded {recorded} ({c}) and the L402 token \
         cost {l402}"
    );
}

/// Waits until lncli's figures have settled (the sweep's output confirmed in the wallet).
fn settled_total(w: &TestWorld) -> u64 {
    poll(
        "the sweep in sluice's wallet",
        Duration::from_secs(60),
        || {
            let wallet = w.sluice.cli(&["walletbalance"]).unwrap();
            (sluice::regtest::lnd::number(&wallet["unconfirmed_balance"]) == 0)
                .then(|| sluice_total(w))
        },
    )
}

fn start(extra_server: &[&str]) -> Option<(TestWorld, realnode_harness::LoopServerProc, Daemon)> {
    let w = realnode_harness::world()?;
    let server = loopserver(&w, extra_server);
    let config = w.write_sluice_yaml(Some(&server.addr)).unwrap();
    let daemon = Daemon::start_with_config(&config, &[]);
    poll("sluiced to see lnd", Duration::from_secs(60), || {
        let info = json(&daemon.cli(&["--json", "getinfo"]));
        (info["lnd"]["connected"].as_bool() == Some(true)).then_some(())
    });
    Some((w, server, daemon))
}

#[test]
fn a_loop_out_completes_with_a_cooperative_key_path_sweep_and_exact_costs() {
    let Some((w, _server, daemon)) = start(&[]) else {
        return;
    };
    let before = sluice_total(&w);
    let id = loop_out(&daemon);
    let done = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        wait_state(&daemon, &id, "SUCCEEDED")
    };
    assert_eq!(
        htlc_spend_witness_len(&w, &done),
        1,
        "a key-path sweep: one Schnorr signature made with lnd's MuSig2 session"
    );
    assert_costs_match(&w, &done, before, settled_total(&w));
}

#[test]
fn a_server_that_refuses_to_cosign_gets_a_script_path_sweep_btcd_accepts() {
    let Some((w, _server, daemon)) = start(&["--misbehave", "cosign-error"]) else {
        return;
    };
    let before = sluice_total(&w);
    let id = loop_out(&daemon);
    let done = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        wait_state(&daemon, &id, "SUCCEEDED")
    };
    assert_eq!(
        htlc_spend_witness_len(&w, &done),
        4,
        "the success leaf: signature, preimage, leaf script, control block"
    );
    assert_costs_match(&w, &done, before, settled_total(&w));
}

#[test]
fn sluiced_killed_between_the_reveal_and_the_sweeps_confirmation_still_succeeds() {
    let Some((w, _server, mut daemon)) = start(&[]) else {
        return;
    };
    let before = sluice_total(&w);
    let id = loop_out(&daemon);
    {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        wait_state(&daemon, &id, "PREIMAGE_REVEALED");
    }
    // No block is mined from here until the restart: the sweep cannot confirm.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let datadir = std::mem::replace(&mut daemon.datadir, tempfile::tempdir().unwrap());
    drop(daemon);
    // The killed daemon's lock file still names its old addresses.
    std::fs::remove_file(datadir.path().join("sluiced.lock")).unwrap();
    let config = w.dir().join(sluice::regtest::world::CONFIG_FILE);
    let daemon = Daemon::launch(datadir, &["--config", config.to_str().unwrap()], &[]);
    let done = {
        let _miner = Miner::start(&w, Duration::from_millis(1500));
        wait_state(&daemon, &id, "SUCCEEDED")
    };
    assert_costs_match(&w, &done, before, settled_total(&w));
}
