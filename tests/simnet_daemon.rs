//! `sluiced --simnet` end to end with the real binaries: the daemon reaches the embedded world's
//! simulated lnd over TLS with its macaroon, lists its channels, follows blocks, and after the
//! lnd is killed and restarted reconnects and sees every block it missed exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, poll};

/// Long enough for a cold debug build's first start on a busy CI machine.
const LIMIT: Duration = Duration::from_secs(60);

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `sluice simnet --dir <datadir>/simnet ARGS --json` against the daemon's world.
fn simnet(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let out = Command::new(common::sluice_bin())
        .arg("--json")
        .arg("simnet")
        .arg("--dir")
        .arg(daemon.dir().join("simnet"))
        .args(args)
        .output()
        .unwrap();
    json(&out)
}

fn lnd_height(daemon: &Daemon) -> Option<u64> {
    let info = json(&daemon.cli(&["--json", "getinfo"]));
    info["lnd"]["connected"].as_bool().filter(|c| *c)?;
    info["lnd"]["block_height"].as_u64()
}

#[test]
fn simnet_daemon_lists_channels_follows_blocks_and_reconnects_without_missing_one() {
    let daemon = Daemon::start(&["--log-level", "info,sluice::daemon::node=debug"]);
    let start = poll("sluiced to connect to the simnet lnd", LIMIT, || {
        lnd_height(&daemon)
    });

    // Channels with balances that add up, seen through the API.
    let channels = json(&daemon.cli(&["--json", "channels"]));
    let list = channels["channels"].as_array().unwrap();
    assert!(list.len() >= 3, "{channels}");
    for c in list {
        let capacity = c["capacity_sat"].as_u64().unwrap();
        let local = c["local_balance_sat"].as_u64().unwrap();
        let remote = c["remote_balance_sat"].as_u64().unwrap();
        assert!(
            local + remote <= capacity && local + remote > capacity * 9 / 10,
            "{c}"
        );
        assert_eq!(c["active"], true);
    }

    // Mining moves the daemon's view of the chain.
    simnet(&daemon, &["mine", "2"]);
    let status = simnet(&daemon, &["status"]);
    let tip = status["height"].as_u64().unwrap();
    assert!(tip >= start + 2);
    poll("the daemon to see the mined blocks", LIMIT, || {
        lnd_height(&daemon).filter(|h| *h >= tip)
    });

    // Kill the simulated lnd, mine while it is down, bring it back.
    simnet(&daemon, &["stop-node", "sluice"]);
    simnet(&daemon, &["mine", "3"]);
    simnet(&daemon, &["start-node", "sluice"]);
    let tip = simnet(&daemon, &["status"])["height"].as_u64().unwrap();
    poll("the daemon to catch up after the restart", LIMIT, || {
        lnd_height(&daemon).filter(|h| *h >= tip)
    });

    // Every height from the first block seen to the tip reached the daemon exactly once.
    let log = daemon.stderr();
    let heights: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("new block"))
        .filter_map(|l| l.split("height=").nth(1))
        .filter_map(|h| h.split_whitespace().next()?.parse().ok())
        .collect();
    let first = *heights.first().unwrap();
    let expected: Vec<u64> = (first..=tip).collect();
    let seen: Vec<u64> = heights.iter().copied().filter(|h| *h <= tip).collect();
    assert_eq!(seen, expected, "blocks missed or repeated:\n{log}");
    assert!(
        log.contains("lnd stream lost"),
        "the restart went unnoticed:\n{log}"
    );
}
