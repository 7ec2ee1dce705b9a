//! Loop's own client is the referee: loopd v0.34 on a real lnd, pointed at sluice's reference
//! Loop server (`sluice loopserver`, L402 on) on another real lnd. `loop terms`, `loop quote
//! out` and `loop out --amt N --force` end with loopd reporting the swap successful and the
//! L402 token paid by loopd; then the same with a server that refuses to co-sign the sweep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::time::Duration;

use common::poll;
use realnode_harness::{Loopd, Miner, loopserver};

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
