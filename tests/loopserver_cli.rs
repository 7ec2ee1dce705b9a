//! `sluice loopserver` as a person runs it: the reference Loop server alone, in front of an lnd
//! it reaches over gRPC (here the simnet's "loop" lnd, served by `sluice simnet serve`), over TLS
//! with its L402 front; `sluiced` pinned to its certificate completes a loop-out through it, and
//! SIGTERM stops it cleanly. Bad flags are refused naming the flag. Real binaries only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Killed, poll};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

fn json(out: &Output) -> Option<Value> {
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

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

fn loopserver(args: &[&str]) -> Output {
    Command::new(common::sluice_bin())
        .arg("loopserver")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.macaroon");
    let cert = dir.path().join("tls.cert");
    std::fs::write(&cert, "x").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--network".into(), "mainnet".into()], "mainnet"),
        (vec!["--lnd.host".into(), "localhost".into()], "--lnd.host"),
        (
            vec![
                "--lnd.tls_cert".into(),
                cert.display().to_string(),
                "--lnd.macaroon".into(),
                missing.display().to_string(),
            ],
            "--lnd.macaroon",
        ),
        (
            vec![
                "--min-amount".into(),
                "9".into(),
                "--max-amount".into(),
                "8".into(),
            ],
            "--min-amount",
        ),
        (
            vec![
                "--loop-in-min-amount".into(),
                "9".into(),
                "--loop-in-max-amount".into(),
                "8".into(),
            ],
            "--loop-in-min-amount",
        ),
        (
            vec!["--loop-in-cltv-delta".into(), "99".into()],
            "--loop-in-cltv-delta",
        ),
        (vec!["--htlc-confs".into(), "0".into()], "--htlc-confs"),
        (
            vec![
                "--lnd.tls_cert".into(),
                cert.display().to_string(),
                "--lnd.macaroon".into(),
                cert.display().to_string(),
                "--misbehave".into(),
                "no-such-thing".into(),
            ],
            "--misbehave",
        ),
    ];
    for (args, flag) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = loopserver(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag),
            "{args:?}: the error names {flag}: {err}"
        );
    }
}

#[test]
fn a_standalone_server_on_an_lnd_over_grpc_serves_a_loop_out_over_tls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path().join("simnet");
    std::fs::create_dir_all(&sim_dir).unwrap();
    let serve_log = std::fs::File::create(dir.path().join("serve.stderr")).unwrap();
    let mut serve = Command::new(common::sluice_bin())
        .args(["--json", "simnet", "--dir"])
        .arg(&sim_dir)
        .args(["serve", "--block-interval", "0s", "--no-traffic"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(serve_log)
        .spawn()
        .unwrap();
    poll("the simnet to serve", LIMIT, || {
        if let Ok(Some(status)) = serve.try_wait() {
            panic!("sluice simnet serve exited with {status}");
        }
        sim_dir.join("sluice.yaml").exists().then_some(())
    });
    let _serve = Killed(serve);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(sim_dir.join("simnet.json")).unwrap())
            .unwrap();
    let loop_lnd = state["lnd"]["loop"].as_str().unwrap().to_owned();
    let loop_dir = sim_dir.join("lnd").join("loop");

    // The standalone server, on the "loop" lnd over gRPC, TLS on, L402 on.
    let log_path = dir.path().join("loopserver.stderr");
    let tls_cert = dir.path().join("server").join("tls.cert");
    let mut server = Command::new(common::sluice_bin())
        .arg("loopserver")
        .args(["--network", "regtest", "--lnd.host", &loop_lnd])
        .arg("--lnd.tls_cert")
        .arg(loop_dir.join("tls.cert"))
        .arg("--lnd.macaroon")
        .arg(loop_dir.join("admin.macaroon"))
        .args(["--listen", "127.0.0.1:0", "--tls", "--l402", "on"])
        .arg("--tls.cert")
        .arg(&tls_cert)
        .arg("--tls.key")
        .arg(dir.path().join("server").join("tls.key"))
        .args(["--seed", "7"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let addr = poll("the server's address in its log", LIMIT, || {
        if let Ok(Some(status)) = server.try_wait() {
            panic!(
                "sluice loopserver exited with {status}: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        let log = std::fs::read_to_string(&log_path).ok()?;
        let line = log.lines().find(|l| l.contains("serving over TLS"))?;
        let at = line.find("addr=")? + "addr=".len();
        Some(
            line[at..]
                .split_whitespace()
                .next()?
                .trim_end_matches(',')
                .to_owned(),
        )
    });

    // sluiced on the "sluice" lnd, pointed at the standalone server with its pinned certificate.
    let written = std::fs::read_to_string(sim_dir.join("sluice.yaml")).unwrap();
    let lnd_part: String = written
        .lines()
        .take_while(|l| !l.starts_with("server:"))
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "{lnd_part}server:\n  address: {addr}\n  tls: pinned\n  tls_cert: {}\n",
            serde_json::Value::from(tls_cert.display().to_string())
        ),
    )
    .unwrap();
    let datadir = dir.path().join("sluiced");
    std::fs::create_dir_all(&datadir).unwrap();
    let daemon_log = datadir.join("sluiced.stderr");
    let mut daemon = Command::new(common::sluiced_bin())
        .arg("--config")
        .arg(&config)
        .arg("--datadir")
        .arg(&datadir)
        .args([
            "--rpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_DATADIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&daemon_log).unwrap())
        .spawn()
        .unwrap();
    let rpc = poll("sluiced to listen", LIMIT, || {
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!(
                "sluiced exited with {status}: {}",
                std::fs::read_to_string(&daemon_log).unwrap_or_default()
            );
        }
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(datadir.join("sluiced.lock")).ok()?)
                .ok()?;
        Some(v["rpc_listen"].as_str()?.to_owned())
    });
    let _daemon = Killed(daemon);
    let cli = |args: &[&str]| {
        Command::new(common::sluice_bin())
            .arg("--datadir")
            .arg(&datadir)
            .args(["--rpcserver", &rpc])
            .args(args)
            .env_remove("SLUICE_RPCSERVER")
            .env_remove("SLUICE_CREDENTIAL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    poll("sluiced to reach lnd", LIMIT, || {
        let info = json(&cli(&["--json", "getinfo"]))?;
        info["lnd"]["connected"].as_bool().filter(|c| *c)
    });
    let out = cli(&["--json", "out", "--amt", "250000", "--force"]);
    let created = json(&out).unwrap_or_else(|| {
        panic!(
            "sluice out failed: {}\nserver: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    });
    assert_eq!(created["server_message"], "reference loop server");
    let id = created["id"].as_str().unwrap().to_owned();
    poll("the loop-out to succeed", LIMIT, || {
        let info = json(&cli(&["--json", "swap", &id]))?;
        let state = info["swap"]["state"].as_str()?.to_owned();
        assert!(!state.starts_with("FAILED"), "{info}");
        if state == "SUCCEEDED" {
            return Some(());
        }
        let status = simnet_json(&sim_dir, &["status"]);
        if state == "SPEND_CONFIRMING" || !status["mempool_txids"].as_array()?.is_empty() {
            simnet_json(&sim_dir, &["mine", "1"]);
        }
        std::thread::sleep(Duration::from_millis(200));
        None
    });

    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = poll("the server to stop", LIMIT, || server.try_wait().unwrap());
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("reference Loop server stopped"), "{log}");
}

#[test]
fn help_lists_the_terms_of_both_directions() {
    let out = loopserver(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--min-amount",
        "--max-amount",
        "--min-cltv-delta",
        "--loop-in-min-amount",
        "--loop-in-max-amount",
        "--loop-in-cltv-delta",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
}
