//! Loop's own client is the referee: loopd v0.34 on a real lnd, pointed at sluice's reference
//! Loop server (`sluice loopserver`, L402 on) on another real lnd. `loop terms`, `loop quote
//! out` and `loop out --amt N --force` end with loopd reporting the swap successful and the
//! L402 token paid by loopd; then the same with a server that refuses to co-sign the sweep.
//! Loop In too: `loop in --amt N --force` ends with loopd reporting success after the server
//! paid its invoice and claimed the HTLC (by the key path, or by the success leaf when it
//! refuses the key); against a server that never pays, loopd takes its HTLC back through the
//! timeout leaf.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::time::Duration;

use common::poll;
use realnode_harness::{Loopd, Miner, loopserver, move_liquidity_to_the_server};

const AMOUNT: &str = "250000";

fn loop_out_succeeds_with(extra: &[&str]) {
    let Some(w) = realnode_harness::world() else {
        return;
    };
    let cert = w.dir.path().join("loopserver.cert");
    let key = w.dir.path().join("loopserver.key");
    // loopd asks for an expiry of max(its sweep target 9, the server's minimum delta) blocks
    // and reveals only while 20 or more remain: a roomier minimum than the default 30 keeps
    // blocks mined every two seconds from outrunning a machine under load.
    let mut args = vec![
        "--min-cltv-delta",
        "80",
        "--tls",
        "--tls.cert",
        cert.to_str().unwrap(),
        "--tls.key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = loopserver(&w, &args);
    let loopd = Loopd::start(&w, &server.addr, &cert);

    let terms = loopd.ok(&["terms"]);
    assert!(terms.contains("Loop Out"), "{terms}");
    assert!(terms.contains("Amount: 10000 - 5000000"), "{terms}");
    assert!(terms.contains("Cltv delta: 80 - 400"), "{terms}");
    let quote = loopd.ok(&["quote", "out", AMOUNT]);
    assert!(quote.contains("Send off-chain:"), "{quote}");
    assert!(quote.contains(AMOUNT), "{quote}");
    let out = loopd.ok(&["out", "--amt", AMOUNT, "--force"]);
    assert!(out.contains("Swap initiated"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no swap id in: {out}"));

    let swap = {
        let _miner = Miner::start(&w, Duration::from_secs(2));
        poll("loopd to report the swap", Duration::from_secs(240), || {
            let info: serde_json::Value =
                serde_json::from_str(&loopd.ok(&["swapinfo", &id])).unwrap();
            let state = info["state"].as_str().unwrap_or_default().to_owned();
            assert_ne!(state, "FAILED", "loopd failed the swap: {info}");
            (state == "SUCCESS").then_some(info)
        })
    };
    assert_eq!(swap["type"], "LOOP_OUT", "{swap}");
    assert_eq!(swap["amt"], AMOUNT, "{swap}");
    assert!(
        sluice::regtest::lnd::number(&swap["cost_server"]) > 0,
        "{swap}"
    );
    let listed: serde_json::Value = serde_json::from_str(&loopd.ok(&["listswaps"])).unwrap();
    assert!(
        listed["swaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str() && s["state"] == "SUCCESS"),
        "{listed}"
    );
    // loopd bought the server's L402 token, with a real payment through lnd.
    let auth: serde_json::Value = serde_json::from_str(&loopd.ok(&["listauth"])).unwrap();
    let token = &auth.as_array().unwrap()[0];
    assert!(token["amount_paid_msat"].as_u64().unwrap() > 0, "{auth}");
    assert_eq!(token["expired"], false, "{auth}");
    drop(server);
}

#[test]
fn loopd_completes_a_loop_out_against_the_reference_server() {
    loop_out_succeeds_with(&[]);
}

#[test]
fn loopd_completes_a_loop_out_when_the_server_refuses_to_cosign() {
    loop_out_succeeds_with(&["--misbehave", "cosign-error"]);
}

/// Starts the server with `extra` flags and loopd, runs `loop in --amt AMOUNT --force`, mines a
/// block every `block_every` and returns loopd's final `swapinfo` of the swap (within `limit`)
/// with the number of confirmed claims in the server's wallet.
fn loop_in_with(
    extra: &[&str],
    block_every: Duration,
    limit: Duration,
) -> Option<(serde_json::Value, String)> {
    let w = realnode_harness::world()?;
    let cert = w.dir.path().join("loopserver.cert");
    let key = w.dir.path().join("loopserver.key");
    let mut args = vec![
        "--tls",
        "--tls.cert",
        cert.to_str().unwrap(),
        "--tls.key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = loopserver(&w, &args);
    let loopd = Loopd::start(&w, &server.addr, &cert);
    move_liquidity_to_the_server(&w);

    let terms = loopd.ok(&["terms"]);
    assert!(terms.contains("Loop In"), "{terms}");
    let quote = loopd.ok(&["quote", "in", AMOUNT]);
    assert!(quote.contains("Send on-chain:"), "{quote}");
    let out = loopd.ok(&["in", "--amt", AMOUNT, "--force"]);
    assert!(out.contains("Swap initiated"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no swap id in: {out}"));
    let swap = {
        let _miner = Miner::start(&w, block_every);
        poll("loopd to end the loop in", limit, || {
            let info: serde_json::Value =
                serde_json::from_str(&loopd.ok(&["swapinfo", &id])).unwrap();
            let state = info["state"].as_str().unwrap_or_default().to_owned();
            (state == "SUCCESS" || state == "FAILED").then_some(info)
        })
    };
    assert_eq!(swap["type"], "LOOP_IN", "{swap}");
    assert_eq!(swap["amt"], AMOUNT, "{swap}");
    // What the server's wallet recorded: its claim transactions, by label.
    let txns = w.server.cli(&["listchaintxns"]).unwrap();
    let claims = txns["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["label"] == "loop: loop in claim" && number(&t["num_confirmations"]) > 0)
        .count();
    drop(server);
    Some((swap, claims.to_string()))
}

fn number(v: &serde_json::Value) -> u64 {
    sluice::regtest::lnd::number(v)
}

#[test]
fn loopd_completes_a_loop_in_against_the_reference_server() {
    let Some((swap, claims)) = loop_in_with(&[], Duration::from_secs(2), Duration::from_secs(240))
    else {
        return;
    };
    assert_eq!(swap["state"], "SUCCESS", "{swap}");
    // The server kept its fee: loopd's invoice asked amt - swap fee.
    assert!(number(&swap["cost_server"]) > 0, "{swap}");
    assert_eq!(claims, "1", "the server claimed the HTLC once: {swap}");
}

#[test]
fn loopd_times_out_a_loop_in_the_server_never_pays() {
    let Some((swap, claims)) = loop_in_with(
        &[
            "--loop-in-cltv-delta",
            "100",
            "--misbehave",
            "loop-in-never-pays",
        ],
        // Nothing races here (the server never pays): a block a second reaches the expiry
        // sooner.
        Duration::from_secs(1),
        Duration::from_secs(480),
    ) else {
        return;
    };
    assert_eq!(swap["state"], "FAILED", "{swap}");
    assert_eq!(swap["failure_reason"], "FAILURE_REASON_TIMEOUT", "{swap}");
    assert_eq!(number(&swap["cost_server"]), 0, "{swap}");
    assert_eq!(claims, "0", "the server claimed nothing: {swap}");
}

#[test]
fn loopd_completes_a_loop_in_claimed_by_the_success_leaf_when_the_key_push_fails() {
    // PushKey refused: the server claims with the preimage its payment bought (4 witness
    // elements), which btcd's script interpreter checks and loopd reads as the server's claim.
    let Some((swap, claims)) = loop_in_with(
        &["--misbehave", "loop-in-push-key-error"],
        Duration::from_secs(2),
        Duration::from_secs(240),
    ) else {
        return;
    };
    assert_eq!(swap["state"], "SUCCESS", "{swap}");
    assert_eq!(claims, "1", "{swap}");
}
