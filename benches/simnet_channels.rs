//! ListChannels of a simnet node with 1,000 and 10,000 channels, through the real lnd client over
//! gRPC with TLS and macaroon, as sluiced calls it. The world is built once per size, outside the
//! measurement. Run: `cargo bench --bench simnet_channels`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sluice::lnd::LightningNode;
use sluice::simnet::lnd::SimLndServer;
use sluice::simnet::world::{SimNode, World, WorldConfig};

fn main() {
    divan::main();
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    client: sluice::lnd::LndClient,
    _server: SimLndServer,
    _dir: tempfile::TempDir,
}

fn fixture(channels: usize) -> Fixture {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = runtime.block_on(async {
        let world = World::new(WorldConfig::default_topology(1, channels)).unwrap();
        let world = Arc::new(std::sync::Mutex::new(world));
        let node = SimNode::new(world, "sluice").unwrap();
        let server =
            SimLndServer::start(Arc::new(node), dir.path(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let cert = std::fs::read(server.cert_path()).unwrap();
        let macaroon = hex::encode(std::fs::read(server.macaroon_path()).unwrap());
        let channel = sluice::tls::pinned_channel_lazy(
            &server.addr().to_string(),
            &cert,
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let client =
            sluice::lnd::LndClient::new(channel, &macaroon, sluice::domain::Network::Regtest)
                .unwrap();
        (server, client)
    });
    Fixture {
        runtime,
        client,
        _server: server,
        _dir: dir,
    }
}

#[divan::bench(args = [1_000, 10_000], sample_count = 10)]
fn list_channels_over_grpc(bencher: divan::Bencher, channels: usize) {
    let f = fixture(channels);
    bencher.bench_local(|| {
        let list = f.runtime.block_on(f.client.list_channels()).unwrap();
        assert_eq!(list.len(), channels);
        list
    });
}
