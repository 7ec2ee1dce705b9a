//! The foundation end to end: the real `sluiced` and `sluice` binaries, TLS, credentials,
//! metrics, the datadir lock and a clean SIGTERM shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Daemon, http_get, parse_prometheus_text};
use sluice::proto::sluice::{GetInfoRequest, StopDaemonRequest, sluice_client::SluiceClient};
use tonic::metadata::MetadataValue;

/// How long a SIGTERM may take before it counts as a hang (the default `shutdown.timeout` is
/// 10 s; this leaves room for a slow CI machine without hiding a real hang).
const SHUTDOWN_BOUND: Duration = Duration::from_secs(20);

async fn client(daemon: &Daemon) -> SluiceClient<tonic::transport::Channel> {
    let cert = std::fs::read(daemon.dir().join("tls.cert")).unwrap();
    let channel = sluice::tls::pinned_channel(&daemon.rpc, &cert, Duration::from_secs(10))
        .await
        .unwrap();
    SluiceClient::new(channel)
}

fn with_token<T>(msg: T, token_file: Option<&std::path::Path>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(path) = token_file {
        let token = std::fs::read_to_string(path).unwrap();
        let value: MetadataValue<_> = format!("Bearer {}", token.trim()).parse().unwrap();
        req.metadata_mut().insert("authorization", value);
    }
    req
}

#[tokio::test]
async fn daemon_serves_getinfo_checks_credentials_exports_metrics_and_stops_on_sigterm() {
    let mut daemon = Daemon::start(&[]);

    // GetInfo through the real CLI with the admin credential found in the datadir.
    let out = daemon.cli(&["--json", "getinfo"]);
    assert!(
        out.status.success(),
        "getinfo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["version"], sluice::VERSION);
    assert_eq!(info["network"], "simnet");
    assert_eq!(
        std::path::Path::new(info["data_dir"].as_str().unwrap()),
        daemon.dir(),
        "{info}"
    );

    // Credentials are owner-only.
    for name in ["admin.credential", "readonly.credential"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(daemon.dir().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {mode:o}");
    }

    // No credential: refused. Readonly: may read, may not stop the daemon.
    let mut rpc = client(&daemon).await;
    let err = rpc
        .get_info(with_token(GetInfoRequest {}, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let readonly = daemon.dir().join("readonly.credential");
    rpc.get_info(with_token(GetInfoRequest {}, Some(&readonly)))
        .await
        .unwrap();
    let err = rpc
        .stop_daemon(with_token(StopDaemonRequest {}, Some(&readonly)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let readonly_arg = readonly.to_str().unwrap();
    let out = daemon.cli(&["--credential", readonly_arg, "stop"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("read-only") && stderr.contains("readonly.credential"),
        "{stderr}"
    );

    // Metrics parse as Prometheus text and carry the build info.
    let (code, body) = http_get(&daemon.metrics, "/metrics");
    assert_eq!(code, 200);
    let samples = parse_prometheus_text(&body);
    assert!(
        samples
            .iter()
            .any(|(name, labels, v)| name == "sluice_build_info"
                && labels.contains(&("version".to_owned(), sluice::VERSION.to_owned()))
                && *v == 1.0),
        "{body}"
    );
    assert!(
        samples
            .iter()
            .any(|(name, _, v)| name == "process_resident_memory_bytes" && *v > 0.0)
    );
    assert_eq!(http_get(&daemon.metrics, "/healthz").0, 200);
    // Ready once the store is open and the embedded simnet's lnd answers.
    common::poll("/readyz to turn 200", Duration::from_secs(60), || {
        (http_get(&daemon.metrics, "/readyz").0 == 200).then_some(())
    });

    // SIGTERM: a clean exit within the bound, the lock released.
    let status = daemon.terminate(SHUTDOWN_BOUND);
    assert!(status.success(), "exit {status}: {}", daemon.stderr());
    assert!(
        daemon.stderr().contains("sluiced stopped"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test]
async fn stop_daemon_rpc_stops_it_cleanly() {
    let mut daemon = Daemon::start(&[]);
    let out = daemon.cli(&["stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child = &mut daemon.child;
    let status = common::poll("exit after StopDaemon", SHUTDOWN_BOUND, || {
        child.try_wait().unwrap()
    });
    assert!(status.success());
}

#[test]
fn a_second_daemon_on_the_same_datadir_is_refused() {
    let first = Daemon::start(&[]);
    let out = std::process::Command::new(common::sluiced_bin())
        .args(["--simnet", "--datadir"])
        .arg(first.dir())
        .args([
            "--rpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
}

#[test]
fn cli_without_a_daemon_says_so_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = std::process::Command::new(common::sluice_bin())
        .arg("--datadir")
        .arg(dir.path())
        .args(["--rpcserver", &addr, "getinfo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach sluiced at {addr}: is it running?")),
        "{stderr}"
    );
}

#[test]
fn a_config_error_exits_64_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(&config, "network: simnet\nrpc:\n  listn: 127.0.0.1:1\n").unwrap();
    let out = std::process::Command::new(common::sluiced_bin())
        .arg("--datadir")
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(stderr.contains(":3:"), "no line number: {stderr}");
    assert!(stderr.contains("listn"), "{stderr}");
    // Nothing was created: validation happens before the datadir is touched.
    assert!(!dir.path().join("sluice.db").exists());
}

/// `GetInfo` shows the policy autoloop runs with: the example a fresh simnet seeds, then a
/// rejected edit (with its located error) while the last good policy stays in force, as the
/// metrics also say.
#[test]
fn getinfo_shows_the_policy_in_force_and_a_rejected_edit() {
    let daemon = Daemon::start(&[]);
    let json = |args: &[&str]| {
        let out = daemon.cli(args);
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
    };
    let limit = Duration::from_secs(120);
    let info = common::poll("the seeded policy to load", limit, || {
        let info = json(&["--json", "getinfo"])?;
        (info["policy"]["state"] == "loaded").then_some(info)
    });
    let files = info["policy"]["files"].to_string();
    assert!(files.contains("set-and-forget.yaml"), "{info}");

    // A broken edit is rejected on reload, located, and the loaded files stay.
    let broken = daemon.dir().join("policies").join("broken.yaml");
    std::fs::write(
        &broken,
        "rules:\n  - name: x\n    match: all\n    bnad: {}\n",
    )
    .unwrap();
    let dir = daemon.dir().join("policies");
    let check = daemon.cli(&["policy", "check", dir.to_str().unwrap()]);
    assert_eq!(
        check.status.code(),
        Some(1),
        "policy check exits 1 on a bad policy"
    );
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("broken.yaml:4:5"), "{stderr}");
    let out = daemon.cli(&["policy", "reload"]);
    assert_eq!(out.status.code(), Some(1), "a rejected reload exits 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("last good one stays"), "{stderr}");
    let info = common::poll("GetInfo to show the rejection", limit, || {
        let info = json(&["--json", "getinfo"])?;
        (info["policy"]["state"] == "rejected").then_some(info)
    });
    let error = info["policy"]["last_error"].as_str().unwrap();
    assert!(error.contains("broken.yaml"), "{error}");
    assert_eq!(
        info["policy"]["files"].to_string(),
        files,
        "the last good policy stays"
    );
    common::poll("sluice_policy_rejected to be 1", limit, || {
        let (_, text) = common::http_get(&daemon.metrics, "/metrics");
        text.lines()
            .any(|l| l == "sluice_policy_rejected 1")
            .then_some(())
    });
}
