//! Reaction time: from a channel event to a dispatched swap. A simnet world where the "sluice"
//! node's channel sits just inside set-and-forget's band (32 % inbound); the peer pays sluice
//! 200,000 sat over that channel, which takes it below the band. Timed from the moment the
//! payment settles (lnd's channel event fires) until the swap engine reports the autoloop
//! swap created and stored, i.e. the debounce, a full pass (snapshot through the ports, server
//! terms and quote, policy evaluation, budget admission) and the swap's creation with the
//! server. Each run builds a fresh world; the default 2 s debounce and a 50 ms one are both
//! measured, so the share that is not the debounce shows.
//!
//! Run: `cargo bench --bench autoloop_reaction` (`SLUICE_BENCH_RUNS=N`, default 5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sluice::autoloop::{Autoloop, AutoloopConfig, AutoloopDeps, Mode};
use sluice::domain::{Network, Preimage, Sat};
use sluice::lnd::LightningNode;
use sluice::lnd::types::{HoldInvoiceRequest, PaymentRequest};
use sluice::loopserver::{LoopServer, LoopServerConfig};
use sluice::provider::l402::{L402Config, NeverPay};
use sluice::provider::{LoopServerClient, ServerTls};
use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig};
use sluice::store::Store;
use sluice::swap::{EngineConfig, SwapEngine};
use tokio_util::sync::CancellationToken;

/// One run: returns the time from the settled payment to the created swap.
async fn run(debounce: Duration, seed: u64) -> Duration {
    let mut config = WorldConfig::default_topology(seed, 1);
    let ch = config
        .channels
        .iter_mut()
        .find(|c| c.initiator == "sluice")
        .unwrap();
    ch.capacity = Sat(5_000_000);
    ch.initiator_balance = Sat(3_400_000);
    let world: SharedWorld = Arc::new(Mutex::new(World::new(config).unwrap()));
    let clock = sluice::simnet::world::engine_clock(&world);
    let node = Arc::new(SimNode::new(world.clone(), "sluice").unwrap());
    let peer = Arc::new(SimNode::new(world.clone(), "peer1").unwrap());
    let loop_node = Arc::new(SimNode::new(world.clone(), "loop").unwrap());
    let server = Arc::new(LoopServer::new(
        LoopServerConfig {
            l402: None,
            ..LoopServerConfig::default()
        },
        loop_node,
    ));
    let addr = server.serve_on_loopback().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Arc::new(
        LoopServerClient::connect(
            &addr.to_string(),
            ServerTls::Insecure,
            Duration::from_secs(10),
            L402Config::new(Network::Regtest, dir.path()),
            Arc::new(NeverPay),
        )
        .unwrap(),
    );
    let store = Store::open(&dir.path().join("sluice.db")).await.unwrap();
    let mut engine_config = EngineConfig::new(Network::Regtest);
    engine_config.clock = clock.clone();
    let engine = SwapEngine::start(node.clone(), client.clone(), store.clone(), engine_config);
    engine.resume_all().await.unwrap();
    let mut updates = engine.subscribe();

    let mut al_config = AutoloopConfig::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/set-and-forget"),
    );
    al_config.debounce = debounce;
    al_config.tick = Duration::from_secs(3_600);
    let cancel = CancellationToken::new();
    let autoloop = Autoloop::start(
        AutoloopDeps {
            node: node.clone(),
            provider: client,
            engine: engine.clone(),
            store,
            config: al_config,
            clock,
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    autoloop.set_mode(Mode::On).await.unwrap();
    // Let the pass the mode change woke find the channel inside its band.
    tokio::time::sleep(debounce + Duration::from_millis(500)).await;
    assert!(
        updates.try_recv().is_err(),
        "a swap before the channel moved"
    );

    // The peer pays sluice over the channel; the payment is held, then settled.
    let preimage = Preimage([0x42; 32]);
    let hash = preimage.hash();
    let invoice = node
        .add_hold_invoice(&HoldInvoiceRequest {
            hash,
            amount: Sat(200_000).to_msat(),
            memo: "reaction".to_owned(),
            expiry: Duration::from_secs(3_600),
            cltv_expiry: 40,
            route_hints: Vec::new(),
            private: false,
        })
        .await
        .unwrap();
    let mut paying = peer
        .pay(&PaymentRequest {
            invoice: invoice.payment_request,
            fee_limit: Sat(1_000).to_msat(),
            outgoing_chan_ids: Vec::new(),
            max_parts: 1,
            timeout: Duration::from_secs(600),
            cltv_limit: None,
            last_hop: None,
        })
        .await
        .unwrap();
    loop {
        let chans = node.list_channels().await.unwrap();
        if chans.iter().any(|c| c.pending_htlc_count > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let settled = Instant::now();
    node.settle_invoice(preimage).await.unwrap();
    let reacted = loop {
        let update = tokio::time::timeout(Duration::from_secs(60), updates.recv())
            .await
            .expect("no swap within 60 s")
            .unwrap();
        if update.created {
            break settled.elapsed();
        }
    };
    while paying.next().await.is_some() {}
    cancel.cancel();
    engine.shutdown();
    reacted
}

fn main() {
    let runs: u64 = std::env::var("SLUICE_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for debounce in [Duration::from_secs(2), Duration::from_millis(50)] {
        let mut times: Vec<Duration> = (0..runs)
            .map(|seed| runtime.block_on(run(debounce, seed + 1)))
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        let beyond = median.saturating_sub(debounce);
        println!(
            "debounce {:>6.3} s: median {:>7.1} ms (of which not the debounce {:>6.1} ms), \
             fastest {:>7.1} ms, slowest {:>7.1} ms, {} runs",
            debounce.as_secs_f64(),
            median.as_secs_f64() * 1e3,
            beyond.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            times.len()
        );
    }
}
