//! The real `sluiced`, configured only by the `sluice.yaml` a simnet writes, against the simnet's
//! simulated lnd over TLS with its macaroon: it lists channels, sees a routed payment change them,
//! and refuses a wrong macaroon, a wrong certificate and a network mismatch with a clear message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::poll;
use futures::StreamExt;
use sluice::domain::Msat;
use sluice::lnd::LightningNode;
use sluice::lnd::types::{PaymentRequest, PaymentStatus};
use sluice::simnet::runner::{Simnet, SimnetConfig};
use sluice::simnet::world::SimNode;

const LIMIT: Duration = Duration::from_secs(60);

async fn simnet(dir: &Path) -> Simnet {
    let mut config = SimnetConfig::new(dir);
    config.block_interval = None;
    config.traffic = false;
    Simnet::start(config).await.unwrap()
}

/// A `sluiced` child that is killed if the test ends (or panics) while it still runs.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `sluiced --config FILE` with its own datadir and free ports; extra flags after.
fn sluiced(config: &Path, datadir: &Path, extra: &[&str]) -> Running {
    let stderr = std::fs::File::create(datadir.with_extension("stderr")).unwrap();
    Command::new(common::sluiced_bin())
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
        .args(["--log-level", "info,sluice::daemon::node=debug"])
        .args(extra)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_DATADIR")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map(Running)
        .unwrap()
}

fn stderr_of(datadir: &Path) -> String {
    std::fs::read_to_string(datadir.with_extension("stderr")).unwrap_or_default()
}

/// Waits for a daemon that must refuse to run and returns its stderr.
fn refused(mut child: Running, datadir: &Path) -> String {
    let status = poll("sluiced to refuse", LIMIT, || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(1), "{}", stderr_of(datadir));
    stderr_of(datadir)
}

fn rpc_addr(child: &mut Running, datadir: &Path) -> String {
    poll("sluiced to listen", LIMIT, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sluiced exited with {status}: {}", stderr_of(datadir));
        }
        let text = std::fs::read_to_string(datadir.join("sluiced.lock")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(v["rpc_listen"].as_str()?.to_owned())
    })
}

fn channels(datadir: &Path, rpc: &str) -> Option<serde_json::Value> {
    let out = Command::new(common::sluice_bin())
        .arg("--datadir")
        .arg(datadir)
        .args(["--rpcserver", rpc, "--json", "channels"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn local_of(list: &serde_json::Value, alias: &str) -> u64 {
    list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer_alias"] == alias)
        .and_then(|c| c["local_balance_sat"].as_u64())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sluiced_uses_the_simnet_lnd_like_a_real_one_and_sees_a_routed_payment() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simnet(&dir.path().join("simnet")).await;
    let datadir = dir.path().join("sluice");
    let mut child = sluiced(&sim.config_path(), &datadir, &[]);
    let rpc = rpc_addr(&mut child, &datadir);
    let before = poll("channels through sluiced", LIMIT, || {
        channels(&datadir, &rpc)
    });
    let peer1_local = local_of(&before, "peer1");
    let peer2_local = local_of(&before, "peer2");
    let peer1_chan: sluice::domain::ChanId = before["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer_alias"] == "peer1")
        .and_then(|c| c["chan_id"].as_str())
        .unwrap()
        .parse()
        .unwrap();

    // The payment's channel event reaches sluiced only once it follows the stream.
    poll("sluiced to follow channel events", LIMIT, || {
        stderr_of(&datadir)
            .lines()
            .any(|l| l.contains("lnd stream open") && l.contains("channel events"))
            .then_some(())
    });

    // peer1 pays peer2 through sluice: sluice's channel to peer1 gains, to peer2 loses.
    let world = sim.world().clone();
    let payee = SimNode::new(world.clone(), "peer2").unwrap();
    let (invoice, _) = payee
        .add_invoice(Msat(50_000_000), "routed through sluice")
        .unwrap();
    let payer: Arc<dyn LightningNode> = Arc::new(SimNode::new(world, "peer1").unwrap());
    let mut updates = payer
        .pay(&PaymentRequest {
            invoice,
            fee_limit: Msat(1_000_000),
            // Peer1's first hop is its channel with sluice, so the payment routes through it.
            outgoing_chan_ids: vec![peer1_chan],
            max_parts: 1,
            timeout: Duration::from_secs(30),
            cltv_limit: None,
            last_hop: None,
        })
        .await
        .unwrap();
    let mut succeeded = false;
    while let Some(update) = updates.next().await {
        if matches!(update.unwrap().status, PaymentStatus::Succeeded { .. }) {
            succeeded = true;
            break;
        }
    }
    assert!(succeeded, "the routed payment did not succeed");

    let after = poll("sluiced to show the new balance", LIMIT, || {
        channels(&datadir, &rpc).filter(|c| local_of(c, "peer1") != peer1_local)
    });
    // sluice received amount + its forwarding fee from peer1 and forwarded the amount to peer2.
    let gained = local_of(&after, "peer1") - peer1_local;
    assert!(
        (50_000..=51_000).contains(&gained),
        "gained {gained}: {after}"
    );
    let peer2_after = poll("the outgoing side too", LIMIT, || {
        channels(&datadir, &rpc).filter(|c| local_of(c, "peer2") != peer2_local)
    });
    assert_eq!(
        local_of(&peer2_after, "peer2"),
        peer2_local - 50_000,
        "{peer2_after}"
    );
    poll("the channel event to reach sluiced", LIMIT, || {
        stderr_of(&datadir).contains("channel event").then_some(())
    });

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = poll("sluiced to stop", LIMIT, || child.try_wait().unwrap());
    assert!(status.success(), "{}", stderr_of(&datadir));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_macaroon_a_wrong_cert_and_a_network_mismatch_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simnet(&dir.path().join("simnet")).await;
    let config = sim.config_path();

    // A macaroon lnd did not issue.
    let bad_macaroon = dir.path().join("other.macaroon");
    std::fs::write(&bad_macaroon, [7u8; 64]).unwrap();
    let datadir = dir.path().join("a");
    let child = sluiced(
        &config,
        &datadir,
        &["--lnd-macaroon", bad_macaroon.to_str().unwrap()],
    );
    let stderr = refused(child, &datadir);
    assert!(
        stderr.contains("macaroon") && stderr.contains("other.macaroon"),
        "{stderr}"
    );

    // A certificate that is not the one lnd presents.
    let other = sluice::tls::generate_self_signed(&["localhost".to_owned()], true).unwrap();
    let bad_cert = dir.path().join("other.cert");
    std::fs::write(&bad_cert, other.cert_pem).unwrap();
    let datadir = dir.path().join("b");
    let child = sluiced(
        &config,
        &datadir,
        &["--lnd-tls-cert", bad_cert.to_str().unwrap()],
    );
    let stderr = refused(child, &datadir);
    assert!(
        stderr.contains("certificate") && stderr.contains("other.cert"),
        "{stderr}"
    );

    // A signet daemon pointed at a regtest lnd.
    let datadir = dir.path().join("c");
    let child = sluiced(&config, &datadir, &["--network", "signet"]);
    let stderr = refused(child, &datadir);
    assert!(
        stderr.contains("regtest") && stderr.contains("signet"),
        "{stderr}"
    );

    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_lnd_keeps_the_daemon_up_and_not_ready_until_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simnet(&dir.path().join("simnet")).await;
    assert!(sim.stop_node("sluice").await);
    let datadir = dir.path().join("sluice");
    let mut child = sluiced(&sim.config_path(), &datadir, &[]);
    rpc_addr(&mut child, &datadir);
    let metrics = poll("the metrics address", LIMIT, || {
        let text = std::fs::read_to_string(datadir.join("sluiced.lock")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(v["metrics_listen"].as_str()?.to_owned())
    });
    let (code, body) = common::http_get(&metrics, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("lnd"), "{body}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "sluiced gave up: {}",
        stderr_of(&datadir)
    );

    sim.start_node("sluice").await.unwrap();
    poll("/readyz to turn 200 once lnd answers", LIMIT, || {
        (common::http_get(&metrics, "/readyz").0 == 200).then_some(())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = poll("sluiced to stop", LIMIT, || child.try_wait().unwrap());
    assert!(status.success(), "{}", stderr_of(&datadir));
    sim.stop().await;
}
