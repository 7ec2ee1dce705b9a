//! What a person runs: `sluice regtest up` starts the world of real processes in the
//! background with the reference Loop server and writes a `sluice.yaml`; `sluiced --config` on
//! it reaches the real lnd; `sluice regtest down` leaves nothing running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, poll, sluice_bin};
use sluice::regtest::process::alive;
use sluice::regtest::world::WorldState;

fn regtest(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(sluice_bin())
        .arg("regtest")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Stops the world even when the test fails (its processes are detached by design).
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = regtest(&self.0, &["down"]);
    }
}

#[test]
fn regtest_up_writes_a_config_sluiced_runs_on_and_down_stops_everything() {
    let Some(programs) = realnode_harness::programs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    let _down = Down(world.clone());
    let up = Command::new(sluice_bin())
        .args(["--json", "regtest", "--dir"])
        .arg(&world)
        .arg("up")
        .arg("--bin-dir")
        .arg(programs.dir())
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let state: WorldState = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(state, WorldState::read(&world).unwrap());
    assert_eq!(state.nodes.len(), 4);
    assert_eq!(state.extra.len(), 1, "the reference Loop server: {state:?}");
    assert!(state.pids().iter().all(|p| alive(*p)), "{state:?}");

    // A second `up` on a running world is refused.
    let again = regtest(
        &world,
        &["up", "--bin-dir", programs.dir().to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let config = world.join("sluice.yaml");
    let daemon = Daemon::start_with_config(&config, &[]);
    poll(
        "sluiced to reach the real lnd",
        Duration::from_secs(60),
        || {
            let out = daemon.cli(&["--json", "getinfo"]);
            let info: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (info["lnd"]["connected"].as_bool() == Some(true)).then_some(())
        },
    );
    let terms = daemon.cli(&["--json", "terms"]);
    assert!(
        terms.status.success(),
        "sluiced reaches the world's Loop server: {}",
        String::from_utf8_lossy(&terms.stderr)
    );
    let mined = regtest(&world, &["mine", "3"]);
    assert!(mined.status.success());
    drop(daemon);

    let down = regtest(&world, &["down"]);
    assert!(down.status.success());
    for pid in state.pids() {
        assert!(!alive(pid), "process {pid} still runs after down");
    }
}
