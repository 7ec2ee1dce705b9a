//! The swap engine end to end with the real binaries: `sluiced --simnet` and
//! `sluice out --amt 250000 --force`, through to a confirmed cooperative sweep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Daemon, poll};

/// The embedded simnet mines a block every 10 s; a swap needs a handful of blocks.
const LIMIT: Duration = Duration::from_secs(240);

fn json(out: &std::process::Output) -> Option<serde_json::Value> {
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn sluice_out_completes_a_loop_out_on_the_simnet() {
    let daemon = Daemon::start(&[]);
    poll("lnd to connect", LIMIT, || {
        let info = json(&daemon.cli(&["--json", "getinfo"]))?;
        info["lnd"]["connected"].as_bool().filter(|c| *c)
    });

    let out = daemon.cli(&["--json", "out", "--amt", "250000", "--force"]);
    let created = json(&out)
        .unwrap_or_else(|| panic!("out failed: {}", String::from_utf8_lossy(&out.stderr)));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        created["htlc_address"]
            .as_str()
            .unwrap()
            .starts_with("bcrt1p"),
        "{created}"
    );

    let info = poll("the swap to succeed", LIMIT, || {
        let info = json(&daemon.cli(&["--json", "swap", &id]))?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(
            !state.starts_with("FAILED"),
            "the swap failed: {info}\n{}",
            daemon.stderr()
        );
        (state == "SUCCEEDED").then_some(info)
    });
    let costs = &info["swap"]["costs"];
    assert!(costs["server_sat"].as_i64().unwrap() > 0, "{info}");
    assert!(costs["onchain_sat"].as_u64().unwrap() > 0, "{info}");
    assert_eq!(info["swap"]["amount_sat"], 250_000);

    // The swap is listed, and the daemon stops cleanly afterwards.
    let list = json(&daemon.cli(&["--json", "swaps"])).unwrap();
    assert!(list.to_string().contains(&id), "{list}");
    let out = daemon.cli(&["stop"]);
    assert!(out.status.success());
}

#[test]
fn sluice_in_completes_a_loop_in_on_the_simnet() {
    let daemon = Daemon::start(&[]);
    poll("lnd to connect", LIMIT, || {
        let info = json(&daemon.cli(&["--json", "getinfo"]))?;
        info["lnd"]["connected"].as_bool().filter(|c| *c)
    });
    let terms = json(&daemon.cli(&["--json", "terms"])).unwrap();
    assert!(
        terms["loop_in"]["max_amount_sat"].as_u64().unwrap() >= 200_000,
        "{terms}"
    );
    let quote = json(&daemon.cli(&["--json", "quote", "in", "200k"])).unwrap();
    assert!(quote["swap_fee_sat"].as_u64().unwrap() > 0, "{quote}");

    let out = daemon.cli(&["--json", "in", "--amt", "200000", "--force"]);
    let created =
        json(&out).unwrap_or_else(|| panic!("in failed: {}", String::from_utf8_lossy(&out.stderr)));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        created["htlc_address"]
            .as_str()
            .unwrap()
            .starts_with("bcrt1p"),
        "{created}"
    );

    let info = poll("the loop in to succeed", LIMIT, || {
        let info = json(&daemon.cli(&["--json", "swap", &id]))?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(
            !state.starts_with("FAILED"),
            "the loop in failed: {info}\n{}",
            daemon.stderr()
        );
        (state == "SUCCEEDED").then_some(info)
    });
    assert_eq!(info["swap"]["type"], "LOOP_IN", "{info}");
    let history: Vec<&str> = info["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(history.first(), Some(&"INITIATED"), "{info}");
    assert!(history.contains(&"HTLC_PUBLISHED"), "{info}");
    assert_eq!(history.last(), Some(&"SUCCEEDED"), "{info}");
    assert_eq!(
        info["swap"]["costs"]["server_sat"].as_i64().unwrap(),
        i64::try_from(quote["swap_fee_sat"].as_u64().unwrap()).unwrap(),
        "{info}"
    );
    assert!(
        info["swap"]["costs"]["onchain_sat"].as_u64().unwrap() > 0,
        "{info}"
    );
    let list = json(&daemon.cli(&["--json", "swaps"])).unwrap();
    assert!(list.to_string().contains(&id), "{list}");
    assert!(list.to_string().contains("LOOP_IN"), "{list}");
    let out = daemon.cli(&["stop"]);
    assert!(out.status.success());
}
