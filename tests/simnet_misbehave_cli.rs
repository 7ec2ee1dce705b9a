//! `sluice simnet misbehave` as a person uses it against `sluice simnet serve`: the names are
//! listed with what they do, a tampering server is refused by `sluiced` (nothing stored, nothing
//! paid), and once switched `--off` the same loop-out succeeds; `sluice simnet pay` moves
//! liquidity back to "sluice". Real binaries only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Killed, poll, serve_simnet as serve};
use serde_json::Value;

/// Generous: a debug build on a loaded two-core machine.
const LIMIT: Duration = Duration::from_secs(120);

fn json(out: &Output) -> Option<Value> {
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// `sluice simnet --dir DIR ARGS`.
fn simnet(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::sluice_bin())
        .arg("simnet")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `sluice --json simnet --dir DIR ARGS`, which must succeed.
fn simnet_json(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(common::sluice_bin())
        .args(["--json", "simnet", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    json(&out).unwrap_or_else(|| {
        panic!(
            "sluice simnet {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

struct Sluiced {
    _child: Killed,
    datadir: PathBuf,
    rpc: String,
}

impl Sluiced {
    fn start(datadir: &Path, config: &Path) -> Sluiced {
        let log = datadir.join("sluiced.stderr");
        let mut child = Command::new(common::sluiced_bin())
            .arg("--config")
            .arg(config)
            .arg("--datadir")
            .arg(datadir)
            .args([
                "--rpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .env_remove("SLUICE_CONFIG")
            .env_remove("SLUICE_DATADIR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let lock = datadir.join("sluiced.lock");
        let rpc = poll("sluiced to listen", LIMIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sluiced exited early with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&lock).ok()?).ok()?;
            Some(v["rpc_listen"].as_str()?.to_owned())
        });
        let daemon = Sluiced {
            _child: Killed(child),
            datadir: datadir.to_owned(),
            rpc,
        };
        poll("sluiced to reach lnd", LIMIT, || {
            let info = json(&daemon.cli(&["--json", "getinfo"]))?;
            info["lnd"]["connected"].as_bool().filter(|c| *c)
        });
        daemon
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(common::sluice_bin())
            .arg("--datadir")
            .arg(&self.datadir)
            .args(["--rpcserver", &self.rpc])
            .args(args)
            .env_remove("SLUICE_RPCSERVER")
            .env_remove("SLUICE_CREDENTIAL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn swaps(&self) -> Vec<Value> {
        let out = self.cli(&["--json", "swaps"]);
        let v = json(&out).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        v["swaps"].as_array().cloned().unwrap_or_default()
    }

    fn state(&self, id: &str) -> String {
        let out = self.cli(&["--json", "swap", id]);
        let v = json(&out).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        v["swap"]["state"].as_str().unwrap().to_owned()
    }
}

fn mempool(dir: &Path) -> usize {
    simnet_json(dir, &["status"])["mempool_txids"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn a_tampering_server_is_refused_and_once_switched_off_the_swap_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path().join("simnet");
    std::fs::create_dir_all(&sim_dir).unwrap();
    let _serving = serve(&sim_dir);

    // The list: every name with its description, none switched on.
    let list = simnet_json(&sim_dir, &["misbehave", "--list"]);
    let names: Vec<&str> = list["misbehaviours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"swap-fee-above-max"), "{list}");
    assert!(names.contains(&"htlc-value-below"), "{list}");
    assert!(names.contains(&"l402-price-above-cap"), "{list}");
    assert!(names.contains(&"loop-in-never-pays"), "{list}");
    assert!(list["active"].is_null(), "{list}");
    let human = simnet(&sim_dir, &["misbehave", "--list"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("htlc-two-outputs") && text.contains("the server is honest"),
        "{text}"
    );

    // Bad input: an unknown name, or nothing to do.
    let unknown = simnet(&sim_dir, &["misbehave", "no-such-thing"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no-such-thing") && err.contains("--list"),
        "{err}"
    );
    let nothing = simnet(&sim_dir, &["misbehave"]);
    assert!(!nothing.status.success(), "{nothing:?}");

    // Switched on: the daemon refuses the server's overpriced invoice; nothing is stored.
    let on = simnet_json(&sim_dir, &["misbehave", "swap-fee-above-max"]);
    assert_eq!(on["active"], "swap-fee-above-max", "{on}");
    let listed = simnet_json(&sim_dir, &["misbehave", "--list"]);
    assert_eq!(listed["active"], "swap-fee-above-max", "{listed}");

    let datadir = dir.path().join("sluiced");
    std::fs::create_dir_all(&datadir).unwrap();
    let daemon = Sluiced::start(&datadir, &sim_dir.join("sluice.yaml"));
    let refused = daemon.cli(&["--json", "out", "--amt", "250000", "--force"]);
    assert!(!refused.status.success(), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("fee"), "the refusal says why: {why}");
    assert!(daemon.swaps().is_empty(), "nothing stored");

    // Switched off: the same loop-out goes through to the end.
    let off = simnet_json(&sim_dir, &["misbehave", "--off"]);
    assert!(off["active"].is_null(), "{off}");
    let out = daemon.cli(&["--json", "out", "--amt", "250000", "--force"]);
    let created = json(&out).unwrap_or_else(|| {
        panic!(
            "sluice out failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let id = created["id"].as_str().unwrap().to_owned();
    poll("the honest swap to succeed", LIMIT, || {
        let state = daemon.state(&id);
        assert!(!state.starts_with("FAILED"), "{state}");
        if state == "SUCCEEDED" {
            return Some(());
        }
        if state == "SPEND_CONFIRMING" || mempool(&sim_dir) > 0 {
            simnet_json(&sim_dir, &["mine", "1"]);
        }
        std::thread::sleep(Duration::from_millis(200));
        None
    });
}

/// `sluice simnet pay` moves exactly the amount from a peer to "sluice" over their channel,
/// and refuses, naming the fix, a node that does not exist or a pair without a channel.
#[test]
fn pay_moves_liquidity_to_sluice_over_a_direct_channel() {
    let dir = tempfile::tempdir().unwrap();
    let _serve = serve(dir.path());
    let local = |dir: &Path| {
        simnet_json(dir, &["status"])["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "sluice")
            .unwrap()["channel_local_msat"]
            .as_u64()
            .unwrap()
    };
    let before = local(dir.path());
    let paid = simnet_json(dir.path(), &["pay", "--from", "peer1", "100000"]);
    assert_eq!(paid["amount_sat"], 100_000, "{paid}");
    assert_eq!(local(dir.path()), before + 100_000_000);

    let nobody = simnet(dir.path(), &["pay", "--from", "nobody", "1000"]);
    assert!(!nobody.status.success());
    let err = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        err.contains("no node `nobody`") && err.contains("simnet status"),
        "{err}"
    );
    let no_channel = simnet(
        dir.path(),
        &["pay", "--from", "peer1", "--to", "peer2", "1000"],
    );
    assert!(!no_channel.status.success());
    let err = String::from_utf8_lossy(&no_channel.stderr);
    assert!(err.contains("no active channel"), "{err}");
}
