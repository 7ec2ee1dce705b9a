//! 1,000 concurrent Loop Out swaps in one simnet run: one `SwapEngine` (with its SQLite store)
//! drives every swap against the reference Loop server over gRPC on loopback, both backed by
//! simulated lnd nodes on one simulated chain. All swaps are requested at once; blocks are mined
//! whenever the mempool holds a transaction or a spend waits for its confirmations, until every
//! swap is terminal. Every swap must end `SUCCEEDED`.
//!
//! Reports wall time (first request to last terminal state), CPU time per swap (the whole
//! process: client engine and store, but also the simulated chain, both simulated lnd nodes and
//! the Loop server, so an upper bound on the client's share) and committed SQLite write
//! transactions per swap.
//!
//! Run: `cargo bench --bench swaps_concurrent` (`SLUICE_BENCH_SWAPS=N` for another count).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use sluice::domain::{Network, Ppm, Sat, SwapHash};
use sluice::loopserver::{LoopServer, LoopServerConfig};
use sluice::provider::l402::{L402Config, NeverPay};
use sluice::provider::{LoopServerClient, ServerTls};
use sluice::simnet::world::{
    ChannelSpec, FeePolicy, NodeSpec, SharedWorld, SimNode, World, WorldConfig, lock,
};
use sluice::store::{Store, SwapFilter};
use sluice::swap::{EngineConfig, LoopOutRequest, SwapEngine, SwapState};

/// Each swap's amount: the server's minimum is 10,000 sat.
const AMOUNT: Sat = Sat(20_000);
/// Routing peers between "sluice" and "loop"; 1,000 held swap HTLCs spread over them stay well
/// under lnd's 483 per channel.
const PEERS: usize = 10;

/// "sluice" with a full 16M-sat channel to each peer, each peer with a 16M-sat channel to
/// "loop", and "loop" with one wallet coin per swap so every HTLC can be funded at once.
fn world(swaps: usize) -> WorldConfig {
    let mut nodes = vec![
        NodeSpec {
            alias: "sluice".to_owned(),
            wallet_utxos: vec![Sat(10_000_000)],
        },
        NodeSpec {
            alias: "loop".to_owned(),
            wallet_utxos: vec![Sat(1_000_000); swaps + 10],
        },
    ];
    let policy = FeePolicy {
        base_msat: 1_000,
        ppm: Ppm(100),
        cltv_delta: 40,
    };
    let mut channels = Vec::new();
    for i in 1..=PEERS {
        let peer = format!("peer{i}");
        nodes.push(NodeSpec {
            alias: peer.clone(),
            wallet_utxos: vec![Sat(1_000_000)],
        });
        channels.push(ChannelSpec {
            initiator: "sluice".to_owned(),
            peer: peer.clone(),
            capacity: Sat(16_000_000),
            initiator_balance: Sat(15_800_000),
            initiator_policy: policy,
            peer_policy: policy,
            private: false,
        });
        channels.push(ChannelSpec {
            initiator: peer,
            peer: "loop".to_owned(),
            capacity: Sat(16_000_000),
            initiator_balance: Sat(15_800_000),
            initiator_policy: policy,
            peer_policy: FeePolicy::default(),
            private: false,
        });
    }
    WorldConfig {
        nodes,
        channels,
        ..WorldConfig::default_topology(7, 0)
    }
}

/// User plus system CPU time of this process, from `/proc/self/stat` (clock ticks of 1/100 s).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn main() {
    let swaps: usize = std::env::var("SLUICE_BENCH_SWAPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(swaps));
}

async fn run(swaps: usize) {
    let setup = Instant::now();
    let world: SharedWorld = Arc::new(Mutex::new(World::new(world(swaps)).unwrap()));
    let node = Arc::new(SimNode::new(world.clone(), "sluice").unwrap());
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
    let client = LoopServerClient::connect(
        &addr.to_string(),
        ServerTls::Insecure,
        Duration::from_secs(60),
        L402Config::new(Network::Regtest, dir.path()),
        Arc::new(NeverPay),
    )
    .unwrap();
    let store = Store::open(&dir.path().join("sluice.db")).await.unwrap();
    let mut config = EngineConfig::new(Network::Regtest);
    config.clock = sluice::simnet::world::engine_clock(&world);
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(500);
    let engine = SwapEngine::start(node.clone(), Arc::new(client), store.clone(), config);
    engine.resume_all().await.unwrap();
    let height_start = lock(&world).chain().height();
    eprintln!(
        "setup: {swaps} swaps, world built in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let cpu_before = cpu_time().unwrap_or_default();
    let tx_before = store.committed_transactions();
    let started = Instant::now();
    let requests = (0..swaps).map(|i| {
        let engine = &engine;
        async move {
            engine
                .loop_out(LoopOutRequest {
                    amount: AMOUNT,
                    destination: None,
                    outgoing_chan_set: Vec::new(),
                    label: format!("bench {i}"),
                    initiator: "swaps_concurrent bench".to_owned(),
                    conf_target: Some(100),
                    limits: None,
                    fast: true,
                })
                .await
        }
    });
    let created: Vec<SwapHash> = join_all(requests)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("swap {i} was refused: {e}")))
        .collect();
    let created_in = started.elapsed();
    eprintln!(
        "all {} swaps created in {:.1} s",
        created.len(),
        created_in.as_secs_f64()
    );

    // Mine while anything waits for a block, until every swap is terminal.
    let deadline = Instant::now() + Duration::from_secs(3_600);
    let mut last_report = Instant::now();
    let records = loop {
        let records = store.list_swaps(SwapFilter::default()).await.unwrap();
        let open = records
            .iter()
            .filter(|r| !r.progress.state.is_terminal())
            .count();
        if open == 0 {
            break records;
        }
        assert!(Instant::now() < deadline, "{open} swaps still open");
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("{open} open after {:.0} s", started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        {
            let mut w = lock(&world);
            let confirming = records
                .iter()
                .any(|r| r.progress.state == SwapState::SpendConfirming);
            if !w.chain().mempool_txids().is_empty() || confirming {
                w.mine(1);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed();
    let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    let transactions = store.committed_transactions() - tx_before;
    let blocks = lock(&world).chain().height().0 - height_start.0;

    let failed: Vec<String> = records
        .iter()
        .filter(|r| r.progress.state != SwapState::Succeeded)
        .map(|r| format!("{} {:?}", r.contract.terms().swap_hash, r.progress.state))
        .collect();
    engine.shutdown();
    assert!(
        failed.is_empty(),
        "{} of {swaps} swaps did not succeed: {failed:?}",
        failed.len()
    );
    assert_eq!(records.len(), swaps);

    let n = swaps as f64;
    println!("swaps                      {swaps}");
    println!("succeeded                  {}", records.len());
    println!("blocks mined               {blocks}");
    println!(
        "created (all requests)     {:.1} s",
        created_in.as_secs_f64()
    );
    println!("wall time                  {:.1} s", wall.as_secs_f64());
    println!("CPU time                   {:.1} s", cpu.as_secs_f64());
    println!(
        "CPU per swap               {:.1} ms",
        cpu.as_secs_f64() * 1_000.0 / n
    );
    println!("SQLite transactions/swap   {:.2}", transactions as f64 / n);
}
