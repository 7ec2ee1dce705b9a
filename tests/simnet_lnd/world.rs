//! The simulated lnd in front of a real simulated world node ("sluice" of the default
//! topology): what the daemon would see over gRPC is what the node itself reports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sluice::domain::{BlockHeight, Msat, Network};
use sluice::lnd::client::MacaroonInterceptor;
use sluice::lnd::types::{PaymentRequest, PaymentStatus};
use sluice::lnd::wire::chainrpc;
use sluice::lnd::wire::chainrpc::chain_notifier_client::ChainNotifierClient;
use sluice::lnd::{LightningNode, LndClient, NodeErrorKind};
use sluice::simnet::lnd::{BlockSource, SimLndServer};
use sluice::simnet::world::{SimNode, World, WorldConfig, lock};
use sluice::tls::pinned_channel_lazy;

use super::TIMEOUT;

struct WorldSetup {
    _dir: tempfile::TempDir,
    world: Arc<Mutex<World>>,
    node: SimNode,
    server: SimLndServer,
    client: LndClient,
}

async fn world_setup() -> WorldSetup {
    let world = Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(7, 3)).unwrap(),
    ));
    let node = SimNode::new(world.clone(), "sluice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain: Arc<dyn BlockSource> = Arc::new(world.clone());
    let server = SimLndServer::start_with_chain(
        Arc::new(node.clone()),
        Some(chain),
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let cert = std::fs::read(server.cert_path()).unwrap();
    let channel = pinned_channel_lazy(&server.addr().to_string(), &cert, TIMEOUT).unwrap();
    let macaroon = hex::encode(std::fs::read(server.macaroon_path()).unwrap());
    let client = LndClient::new(channel, &macaroon, Network::Regtest).unwrap();
    WorldSetup {
        _dir: dir,
        world,
        node,
        server,
        client,
    }
}

#[tokio::test]
async fn a_world_node_reads_the_same_over_grpc() {
    let s = world_setup().await;
    let info = s.client.get_info().await.unwrap();
    assert_eq!(info, s.node.get_info().await.unwrap());
    assert_eq!(info.network, Network::Regtest);
    assert_eq!(info.alias, "sluice");
    let channels = s.client.list_channels().await.unwrap();
    assert_eq!(channels.len(), 3);
    assert_eq!(channels, s.node.list_channels().await.unwrap());
    assert_eq!(
        s.client.list_peers().await.unwrap(),
        s.node.list_peers().await.unwrap()
    );
    let (confirmed, unconfirmed) = s.client.onchain_balance().await.unwrap();
    assert_eq!(
        (confirmed, unconfirmed),
        s.node.onchain_balance().await.unwrap()
    );
    assert!(
        confirmed > sluice::domain::Sat::ZERO,
        "the wallet is funded"
    );
    let addr = s.client.next_addr().await.unwrap();
    assert_eq!(addr.address_type(), Some(bitcoin::AddressType::P2tr));
    assert_ne!(
        addr,
        s.client.next_addr().await.unwrap(),
        "addresses are fresh"
    );
}

#[tokio::test]
async fn a_payment_routed_through_the_world_streams_to_success() {
    let s = world_setup().await;
    let payee = SimNode::new(s.world.clone(), "loop").unwrap();
    let (invoice, hash) = payee.add_invoice(Msat(25_000_000), "test").unwrap();
    let request = PaymentRequest {
        invoice,
        fee_limit: Msat(100_000),
        outgoing_chan_ids: Vec::new(),
        max_parts: 1,
        timeout: Duration::from_secs(60),
        cltv_limit: None,
        last_hop: None,
    };
    let updates = s.client.pay(&request).await.unwrap();
    let last = tokio::time::timeout(TIMEOUT, updates.map(|u| u.unwrap()).collect::<Vec<_>>())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.hash, hash);
    match last.status {
        PaymentStatus::Succeeded { preimage } => assert_eq!(preimage.hash(), hash),
        other => panic!("payment did not succeed: {other:?}"),
    }
    // Paying again attaches to the finished payment instead of paying twice.
    let again = s.client.pay(&request).await.unwrap();
    let statuses: Vec<_> = again.map(|u| u.unwrap().status).collect().await;
    assert!(matches!(
        statuses.last(),
        Some(PaymentStatus::Succeeded { .. })
    ));
}

#[tokio::test]
async fn mined_blocks_reach_subscribers_and_a_restarted_server_reports_the_new_tip() {
    let mut s = world_setup().await;
    let tip = lock(&s.world).height();
    let mut blocks = s.client.register_block_epochs().await.unwrap();
    assert_eq!(blocks.next().await.unwrap().unwrap().height, tip);
    lock(&s.world).mine(2);
    for h in [tip.0 + 1, tip.0 + 2] {
        let epoch = tokio::time::timeout(TIMEOUT, blocks.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(epoch.height, BlockHeight(h));
    }

    s.server.stop().await;
    lock(&s.world).mine(3);
    let down = s.client.get_info().await.unwrap_err();
    assert_eq!(down.kind, NodeErrorKind::Transient);
    s.server.restart().await.unwrap();
    let mut blocks = super::poll_until_up(|| s.client.register_block_epochs()).await;
    // The first epoch after resubscribing is the tip, so the gap is visible to the caller.
    assert_eq!(
        blocks.next().await.unwrap().unwrap().height,
        BlockHeight(tip.0 + 5)
    );
}

/// Subscribes to block epochs over the raw wire, naming the last block seen as lnd allows.
async fn epochs_since(
    s: &WorldSetup,
    height: u32,
    hash: Vec<u8>,
) -> tonic::Streaming<chainrpc::BlockEpoch> {
    let cert = std::fs::read(s.server.cert_path()).unwrap();
    let channel = pinned_channel_lazy(&s.server.addr().to_string(), &cert, TIMEOUT).unwrap();
    let auth = MacaroonInterceptor::new(&s.server.macaroon_hex()).unwrap();
    ChainNotifierClient::with_interceptor(channel, auth)
        .register_block_epoch_ntfn(chainrpc::BlockEpoch { hash, height })
        .await
        .unwrap()
        .into_inner()
}

async fn heights(stream: &mut tonic::Streaming<chainrpc::BlockEpoch>, n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for _ in 0..n {
        let epoch = tokio::time::timeout(TIMEOUT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        out.push(epoch.height);
    }
    out
}

#[tokio::test]
async fn a_subscriber_naming_its_last_block_gets_every_block_it_missed() {
    use bitcoin::hashes::Hash;
    let s = world_setup().await;
    let tip = lock(&s.world).height().0;
    let hash_at = |h: u32| {
        lock(&s.world)
            .chain()
            .block_hash(BlockHeight(h))
            .unwrap()
            .to_byte_array()
            .to_vec()
    };

    let mut caught_up = epochs_since(&s, tip - 3, hash_at(tip - 3)).await;
    assert_eq!(
        heights(&mut caught_up, 3).await,
        vec![tip - 2, tip - 1, tip]
    );
    let mut by_height = epochs_since(&s, tip - 2, Vec::new()).await;
    assert_eq!(heights(&mut by_height, 2).await, vec![tip - 1, tip]);
    // A block the chain no longer has is replaced by the one now at its height.
    let mut reorged = epochs_since(&s, tip - 1, vec![0xee; 32]).await;
    assert_eq!(heights(&mut reorged, 2).await, vec![tip - 1, tip]);
    // Up to date: nothing until the next block, which all of them then see.
    let mut current = epochs_since(&s, tip, hash_at(tip)).await;
    lock(&s.world).mine(1);
    assert_eq!(heights(&mut current, 1).await, vec![tip + 1]);
    assert_eq!(heights(&mut caught_up, 1).await, vec![tip + 1]);
}
