use clap::{CommandFactory, Parser};

use super::*;
use crate::api::testing::start;

fn args(addr: &str, datadir: &std::path::Path, command: Command) -> Args {
    Args {
        rpcserver: addr.to_owned(),
        datadir: Some(datadir.to_owned()),
        tlscert: None,
        credential: None,
        json: false,
        command,
    }
}

#[test]
fn command_line_is_consistent_and_flags_are_global() {
    Args::command().debug_assert();
    let a = Args::try_parse_from(["sluice", "getinfo", "--json", "--datadir", "/d"]).unwrap();
    assert!(a.json);
    assert!(matches!(a.command, Command::Getinfo));
    assert_eq!(a.datadir, Some(PathBuf::from("/d")));
    assert!(Args::try_parse_from(["sluice", "--rpcserver", "h:1", "stop"]).is_ok());
}

#[test]
fn paths_default_under_the_datadir_and_flags_win() {
    let mut a = Args::try_parse_from(["sluice", "getinfo"]).unwrap();
    a.datadir = None;
    a.tlscert = None;
    a.credential = None;
    let t = client::Target::resolve(&a, Some("/home/op".into())).unwrap();
    assert_eq!(t.tls_cert, PathBuf::from("/home/op/.sluice/tls.cert"));
    assert_eq!(
        t.credential,
        PathBuf::from("/home/op/.sluice/admin.credential")
    );
    assert!(matches!(
        client::Target::resolve(&a, None),
        Err(CliError::NoHome)
    ));

    a.datadir = Some("~/node".into());
    a.credential = Some("/etc/ro.credential".into());
    let t = client::Target::resolve(&a, Some("/home/op".into())).unwrap();
    assert_eq!(t.tls_cert, PathBuf::from("/home/op/node/tls.cert"));
    assert_eq!(t.credential, PathBuf::from("/etc/ro.credential"));

    // Nothing under HOME is needed when every path is given.
    a.datadir = None;
    a.tlscert = Some("/x/tls.cert".into());
    assert!(client::Target::resolve(&a, None).is_ok());
}

#[test]
fn human_output_shows_every_field() {
    let info = daemon::Info::from(crate::proto::sluice::GetInfoResponse {
        version: "1.2.3".into(),
        network: "mainnet".into(),
        lnd: Some(crate::proto::sluice::LndInfo {
            connected: false,
            error: "connection refused".to_owned(),
            ..Default::default()
        }),
        uptime_seconds: 90_061,
        data_dir: "/d".into(),
        policy: None,
        simnet: false,
    });
    let text = output::render(&info, output::Format::Human).unwrap();
    for needle in [
        "1.2.3",
        "mainnet",
        "1d 1h 1m 1s",
        "/d",
        "not connected: connection refused",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert_eq!(output::duration(0), "0s");
    assert_eq!(output::duration(3_600), "1h 0m 0s");
}

#[tokio::test]
async fn getinfo_and_stop_through_the_real_server() {
    let h = start().await;
    let dir = h.data_dir.path();

    let text = execute(&args(&h.addr, dir, Command::Getinfo))
        .await
        .unwrap();
    assert!(text.contains("signet"), "{text}");
    assert!(
        text.contains("alice 02aa at height 812345, synced"),
        "{text}"
    );
    assert!(
        text.contains("loaded (inbound.yaml) from /policies"),
        "{text}"
    );

    let mut json = args(&h.addr, dir, Command::Getinfo);
    json.json = true;
    let text = execute(&json).await.unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["version"], crate::VERSION);
    assert_eq!(value["lnd"]["block_height"], 812_345);
    assert_eq!(value["policy"]["state"], "loaded");
    assert!(value["lnd"].as_object().unwrap()["error"].is_null());

    let mut readonly = args(&h.addr, dir, Command::Stop);
    readonly.credential = Some(dir.join(crate::api::auth::READONLY_FILE));
    let err = execute(&readonly).await.unwrap_err();
    assert!(matches!(err, CliError::PermissionDenied { .. }), "{err:?}");
    assert!(
        err.to_string().contains("readonly.credential is read-only"),
        "{err}"
    );
    assert!(!h.stop.is_cancelled());

    let bogus = dir.join("bogus.credential");
    std::fs::write(&bogus, format!("{}\n", "ab".repeat(32))).unwrap();
    let mut unknown = args(&h.addr, dir, Command::Getinfo);
    unknown.credential = Some(bogus);
    let err = execute(&unknown).await.unwrap_err();
    assert!(matches!(err, CliError::Unauthenticated { .. }), "{err:?}");
    assert!(err.to_string().contains("bogus.credential"), "{err}");

    let mut missing = args(&h.addr, dir, Command::Getinfo);
    missing.credential = Some(dir.join("nope.credential"));
    let err = execute(&missing).await.unwrap_err();
    assert!(err.to_string().contains("nope.credential"), "{err}");
    assert!(err.to_string().contains("--credential"), "{err}");

    let mut stop = args(&h.addr, dir, Command::Stop);
    stop.json = true;
    let text = execute(&stop).await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        serde_json::json!({"stopping": true})
    );
    assert!(h.stop.is_cancelled());
    h.shutdown.cancel();
    h.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_daemon_that_is_not_running_is_reported_plainly() {
    let h = start().await;
    let dir = h.data_dir.path().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);

    let err = execute(&args(&closed, &dir, Command::Getinfo))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach sluiced at {closed}: is it running?")
    );
    assert_eq!(err.exit_code(), 1);

    let empty = tempfile::tempdir().unwrap();
    let err = execute(&args(&closed, empty.path(), Command::Getinfo))
        .await
        .unwrap_err();
    let text = err.to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("cannot reach sluiced at {closed}: is it running?").as_str())
    );
    assert!(
        lines.next().unwrap().contains("no TLS certificate at"),
        "{text}"
    );

    // A running daemon whose autoloop has not started says so, in its own words: it is not
    // reported as unreachable.
    let err = execute(&args(&h.addr, &dir, Command::Autoloop { mode: None }))
        .await
        .unwrap_err();
    assert!(matches!(err, CliError::NotReady { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("autoloop is unavailable: the daemon has not started it yet"),
        "{text}"
    );
    assert!(!text.contains("is it running"), "{text}");

    // A daemon with a different certificate is named as such, not as unreachable.
    let other = tempfile::tempdir().unwrap();
    let cert = crate::tls::generate_self_signed(&[], false).unwrap();
    std::fs::write(other.path().join("tls.cert"), cert.cert_pem).unwrap();
    let mut wrong = args(&h.addr, other.path(), Command::Getinfo);
    wrong.credential = Some(dir.join(crate::api::auth::ADMIN_FILE));
    let err = execute(&wrong).await.unwrap_err();
    assert!(matches!(err, CliError::CertMismatch { .. }), "{err:?}");
    h.shutdown.cancel();
}
