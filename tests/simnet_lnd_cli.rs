//! `sluice simnet serve` as an operator runs it: it prints where everything is, writes its
//! files, and the other `sluice simnet` commands drive it; once it is gone they say so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{poll, sluice_bin};

fn simnet(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(sluice_bin())
        .arg("simnet")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn serve_then_drive_it_from_other_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("serve.out");
    let mut serve = Command::new(sluice_bin())
        .args(["--json", "simnet", "--dir"])
        .arg(dir.path())
        .args([
            "serve",
            "--block-interval",
            "0s",
            "--no-traffic",
            "--seed",
            "9",
        ])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let summary: serde_json::Value = poll("the serve summary", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&out_path).ok()?;
        serde_json::from_str(&text).ok()
    });
    let config = summary["config"].as_str().unwrap();
    assert!(std::path::Path::new(config).exists());
    assert_eq!(summary["run"], format!("sluiced --config {config}"));
    assert!(dir.path().join("simnet.json").exists());

    let mined = simnet(dir.path(), &["mine", "2"]);
    assert!(mined.status.success(), "{mined:?}");
    assert!(String::from_utf8_lossy(&mined.stdout).starts_with("mined 2 blocks: "));

    let status = simnet(dir.path(), &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("sluice 3 channels, lnd at "), "{text}");
    assert!(text.contains("network: regtest"), "{text}");

    let bad = simnet(dir.path(), &["reorg", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("depth must be at least 1"),
        "{bad:?}"
    );

    serve.kill().unwrap();
    serve.wait().unwrap();
    let gone = simnet(dir.path(), &["status"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("is `sluice simnet serve` running"),
        "{gone:?}"
    );
}
