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
