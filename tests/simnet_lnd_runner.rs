//! The standalone simnet (`sluice::simnet::runner`): the `sluice.yaml` it writes loads as a
//! regtest configuration whose lnd settings reach the simulated "sluice" node, and the
//! control service mines, sets fees, reorgs and stops/starts a node's lnd, behind its own
//! macaroon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use sluice::config::{Config, DaemonArgs};
use sluice::domain::{BlockHeight, Network};
use sluice::lnd::{LightningNode, LndClient, NodeErrorKind};
use sluice::proto::simnet as wire;
use sluice::simnet::control;
use sluice::simnet::runner::{Simnet, SimnetConfig, SimnetState};
use sluice::tls::pinned_channel_lazy;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn start(dir: &std::path::Path) -> Simnet {
    let mut config = SimnetConfig::new(dir);
    config.block_interval = None;
    config.traffic = false;
    config.channels = 2;
    Simnet::start(config).await.unwrap()
}

/// The lnd client sluiced would build from its configuration.
fn client_from(config: &Config) -> LndClient {
    let cert = std::fs::read(&config.lnd.tls_cert_path).unwrap();
    let macaroon = hex::encode(std::fs::read(&config.lnd.macaroon_path).unwrap());
    let channel = pinned_channel_lazy(&config.lnd.host, &cert, TIMEOUT).unwrap();
    LndClient::new(channel, &macaroon, config.network).unwrap()
}

async fn until_up(client: &LndClient) -> sluice::domain::NodeInfo {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match client.get_info().await {
            Ok(info) => return info,
            Err(e) => {
                assert!(e.is_transient() && Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn the_written_config_connects_sluiced_settings_to_the_simulated_lnd() {
    let dir = tempfile::tempdir().unwrap();
    let simnet = start(dir.path()).await;
    let path = simnet.config_path();
    let datadir = dir.path().join("sluiced");
    let args = DaemonArgs::try_parse_from([
        "sluiced".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
        "--datadir".as_ref(),
        datadir.as_os_str(),
    ])
    .unwrap();
    let config = Config::load_with_env(&args, &|_| None).unwrap();
    assert_eq!(config.network, Network::Regtest);
    assert!(!config.simnet);
    assert_eq!(config.lnd.host, simnet.sluice_lnd().addr.to_string());

    let client = client_from(&config);
    let info = client.get_info().await.unwrap();
    assert_eq!(info.alias, "sluice");
    assert_eq!(info.network, Network::Regtest, "the network check passes");
    assert_eq!(client.list_channels().await.unwrap().len(), 2);
    simnet.stop().await;
}

#[tokio::test]
async fn the_control_service_drives_the_world_and_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let simnet = start(dir.path()).await;
    let state = SimnetState::read(dir.path()).unwrap();
    assert_eq!(state.control, simnet.control_addr().to_string());
    let mut ctl = control::connect(&state).await.unwrap();
    let lnd = simnet.sluice_lnd().connect().unwrap();
    let loop_lnd = simnet.loop_lnd().connect().unwrap();
    assert_eq!(loop_lnd.get_info().await.unwrap().alias, "loop");
    let start_height = lnd.get_info().await.unwrap().block_height;

    let mined = ctl
        .mine(wire::MineRequest { blocks: 3 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        mined.heights,
        (start_height.0 + 1..=start_height.0 + 3).collect::<Vec<_>>()
    );
    assert_eq!(mined.hashes.len(), 3);
    assert_eq!(
        lnd.get_info().await.unwrap().block_height,
        BlockHeight(start_height.0 + 3)
    );
    let zero = ctl.mine(wire::MineRequest { blocks: 0 }).await.unwrap_err();
    assert_eq!(zero.code(), tonic::Code::InvalidArgument);

    let fee = ctl
        .set_fee(wire::SetFeeRequest { sat_per_vbyte: 20 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fee.sat_per_kw, 5_000);
    assert_eq!(lnd.estimate_fee(1).await.unwrap().to_sat_per_kwu(), 5_000);

    let reorged = ctl
        .reorg(wire::ReorgRequest { depth: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reorged.height, start_height.0 + 1);

    let status = ctl
        .status(wire::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.height, start_height.0 + 1);
    assert_eq!(status.network, "regtest");
    assert_eq!(status.fee_sat_per_kw, 5_000);
    let sluice = status.nodes.iter().find(|n| n.name == "sluice").unwrap();
    assert!(sluice.lnd_running);
    assert_eq!(sluice.lnd_address, simnet.sluice_lnd().addr.to_string());
    assert_eq!(sluice.channels, 2);
    assert!(
        status
            .nodes
            .iter()
            .any(|n| n.name == "loop" && n.lnd_running)
    );
    assert!(
        status
            .nodes
            .iter()
            .any(|n| n.name == "peer1" && n.lnd_address.is_empty())
    );

    let stopped = ctl
        .stop_node(wire::NodeRequest {
            name: "sluice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!stopped.node.unwrap().lnd_running);
    let down = lnd.get_info().await.unwrap_err();
    assert_eq!(down.kind, NodeErrorKind::Transient, "{down}");
    ctl.start_node(wire::NodeRequest {
        name: "sluice".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        until_up(&lnd).await.block_height,
        BlockHeight(start_height.0 + 1)
    );

    let unknown = ctl
        .stop_node(wire::NodeRequest {
            name: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown.message().contains("sluice"),
        "{}",
        unknown.message()
    );
    simnet.stop().await;
}

#[tokio::test]
async fn the_control_service_refuses_a_foreign_macaroon() {
    let dir = tempfile::tempdir().unwrap();
    let simnet = start(dir.path()).await;
    let mut state = SimnetState::read(dir.path()).unwrap();
    let foreign = dir.path().join("foreign.macaroon");
    std::fs::write(&foreign, [1u8; 64]).unwrap();
    state.control_macaroon = foreign;
    let mut ctl = control::connect(&state).await.unwrap();
    let err = ctl.status(wire::StatusRequest {}).await.unwrap_err();
    assert!(err.message().contains("verification failed"), "{err:?}");
    simnet.stop().await;
}

/// `WalletKit.SendOutputs` through the real client and the simulated lnd: one transaction pays
/// every output (two to the same script included) and is in the mempool; what lnd refuses is
/// refused with its kind.
#[tokio::test]
async fn send_outputs_pays_every_output_in_one_published_transaction() {
    use bitcoin::{Amount, FeeRate, TxOut};
    use sluice::lnd::types::{CoinSelection, SendOutputsRequest};
    let dir = tempfile::tempdir().unwrap();
    let simnet = start(dir.path()).await;
    let client = simnet.loop_lnd().connect().unwrap();
    until_up(&client).await;
    let script = client.next_addr().await.unwrap().script_pubkey();
    let out = |sat| TxOut {
        value: Amount::from_sat(sat),
        script_pubkey: script.clone(),
    };
    let request = SendOutputsRequest {
        outputs: vec![out(40_000), out(40_000), out(25_000)],
        fee_rate: FeeRate::from_sat_per_kwu(2_500),
        label: "two htlcs".into(),
        min_confs: 1,
        coin_selection: CoinSelection::NodeDefault,
    };
    let tx = client.send_outputs(&request).await.unwrap();
    assert_eq!(
        &tx.output[..3],
        &request.outputs[..],
        "the outputs first, in order"
    );
    let published = simnet
        .world()
        .lock()
        .unwrap()
        .chain()
        .mempool_txids()
        .contains(&tx.compute_txid());
    assert!(published, "published");

    let none = SendOutputsRequest {
        outputs: vec![],
        ..request.clone()
    };
    let err = client.send_outputs(&none).await.unwrap_err();
    assert_eq!(err.kind, NodeErrorKind::InvalidArgument, "{err}");
    let too_much = SendOutputsRequest {
        outputs: vec![out(21_000_000 * 100_000_000)],
        ..request
    };
    let err = client.send_outputs(&too_much).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.message.contains("sat are needed"), "{err}");
    simnet.stop().await;
}
