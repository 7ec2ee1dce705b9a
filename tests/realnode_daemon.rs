//! sluiced against a real lnd on regtest: it starts, reads the node as `lncli` does, exports
//! the same balances, and refuses a wrong macaroon, certificate or network with a message
//! naming the setting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod realnode_harness;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, http_get, parse_prometheus_text, poll};
use sluice::regtest::lnd::number;

const LIMIT: Duration = Duration::from_secs(60);

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (capacity, local, remote) by numeric channel id.
type Balances = BTreeMap<u64, (u64, u64, u64)>;

#[test]
fn sluiced_sees_the_real_lnd_as_lncli_does() {
    let Some(w) = realnode_harness::world() else {
        return;
    };
    // Move some balance so local and remote differ on one channel: peer1 pays sluice... no,
    // sluice pays the server through a peer.
    let invoice = w.server.cli(&["addinvoice", "--amt", "123456"]).unwrap();
    let pay_req = invoice["payment_request"].as_str().unwrap();
    w.sluice
        .cli(&["payinvoice", "--force", "--json", pay_req])
        .unwrap();
    // No swap is made here: the swap server address only has to be well formed.
    let config = w.write_sluice_yaml(Some("127.0.0.1:9")).unwrap();
    let daemon = Daemon::start_with_config(&config, &[]);

    let info = poll("getinfo to show lnd connected", LIMIT, || {
        let info = json(&daemon.cli(&["--json", "getinfo"]));
        (info["lnd"]["connected"].as_bool() == Some(true)).then_some(info)
    });
    let lncli_info = w.sluice.cli(&["getinfo"]).unwrap();
    assert_eq!(info["network"], "regtest", "{info}");
    assert_eq!(
        info["lnd"]["block_height"].as_u64(),
        lncli_info["block_height"].as_u64(),
        "{info}"
    );
    assert!(
        info["lnd"]["version"]
            .as_str()
            .unwrap_or_default()
            .contains("0.21.2"),
        "{info}"
    );

    let from_lncli: Balances = w
        .sluice
        .channels()
        .unwrap()
        .iter()
        .map(|c| {
            (
                // lncli prints the channel id as `scid` (and `scid_str`).
                number(&c["scid"]),
                (
                    number(&c["capacity"]),
                    number(&c["local_balance"]),
                    number(&c["remote_balance"]),
                ),
            )
        })
        .collect();
    let ours = json(&daemon.cli(&["--json", "channels"]));
    let from_sluice: Balances = ours["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["chan_id_numeric"].as_u64().unwrap(),
                (
                    c["capacity_sat"].as_u64().unwrap(),
                    c["local_balance_sat"].as_u64().unwrap(),
                    c["remote_balance_sat"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(from_sluice, from_lncli);
    assert!(
        from_lncli.values().any(|(_, _, remote)| *remote >= 123_456),
        "the payment moved balance: {from_lncli:?}"
    );

    // The node's balance series on /metrics are lncli's figures.
    let local_total: u64 = from_lncli.values().map(|(_, l, _)| l).sum();
    let remote_total: u64 = from_lncli.values().map(|(_, _, r)| r).sum();
    let wallet = w.sluice.cli(&["walletbalance"]).unwrap();
    let samples = poll("the balance metrics", LIMIT, || {
        let (code, body) = http_get(&daemon.metrics, "/metrics");
        let samples = parse_prometheus_text(&body);
        let value = |name: &str| {
            samples
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, _, v)| *v as u64)
        };
        (code == 200 && value("sluice_node_local_balance_sat") == Some(local_total))
            .then_some(samples)
    });
    let value = |name: &str| {
        samples
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v as u64)
    };
    assert_eq!(value("sluice_node_remote_balance_sat"), Some(remote_total));
    if let Some(onchain) = value("sluice_node_onchain_balance_sat") {
        assert_eq!(onchain, number(&wallet["confirmed_balance"]));
    }
    drop(w);
}

#[test]
fn a_wrong_macaroon_a_wrong_certificate_and_a_wrong_network_are_refused_by_name() {
    let Some(w) = realnode_harness::world() else {
        return;
    };
    let config = w.write_sluice_yaml(Some("127.0.0.1:9")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refused = |extra: &[&str], name: &str| -> String {
        let datadir = dir.path().join(name);
        let stderr_path = dir.path().join(format!("{name}.stderr"));
        let mut child = Command::new(common::sluiced_bin())
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
            .args(extra)
            .env_remove("SLUICE_CONFIG")
            .env_remove("SLUICE_DATADIR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let status = poll("sluiced to refuse", LIMIT, || child.try_wait().unwrap());
        let stderr = std::fs::read_to_string(&stderr_path).unwrap();
        assert_eq!(status.code(), Some(1), "{stderr}");
        stderr
    };

    // peer1's macaroon: a real macaroon, but not one sluice's lnd issued.
    let other_macaroon = dir.path().join("other.macaroon");
    std::fs::copy(w.peer1.admin_macaroon(), &other_macaroon).unwrap();
    let stderr = refused(
        &["--lnd-macaroon", other_macaroon.to_str().unwrap()],
        "macaroon",
    );
    assert!(
        stderr.contains("macaroon") && stderr.contains("other.macaroon"),
        "{stderr}"
    );

    // peer1's certificate: a real lnd certificate, but not the one this lnd presents.
    let other_cert = dir.path().join("other.cert");
    std::fs::copy(w.peer1.tls_cert(), &other_cert).unwrap();
    let stderr = refused(&["--lnd-tls-cert", other_cert.to_str().unwrap()], "cert");
    assert!(
        stderr.contains("certificate") && stderr.contains("other.cert"),
        "{stderr}"
    );

    // A signet daemon pointed at a regtest lnd.
    let stderr = refused(&["--network", "signet"], "network");
    assert!(
        stderr.contains("regtest") && stderr.contains("signet"),
        "{stderr}"
    );
}
