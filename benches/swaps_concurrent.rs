//! 1,000 concurrent swaps in one simnet run, Loop Out and Loop In alike: one `SwapEngine`
//! (with its SQLite store) drives every swap against the reference Loop server over gRPC on
//! loopback, both backed by simulated lnd nodes on one simulated chain. All swaps are requested
//! at once; blocks are mined whenever the mempool holds a transaction or a swap waits for
//! confirmations, until every swap is terminal. Every swap must end succeeded.
//!
//! Both directions share everything but the world's liquidity (which side funds the HTLCs,
//! which way the channels lean), the request, and when a swap waits for a block. Each direction
//! runs in a world and tokio runtime of its own, one after the other, so their figures come
//! from the same build on the same machine minutes apart.
//!
//! Reports per direction: wall time (first request to last terminal state), CPU time per swap
//! (the whole process: client engine and store, but also the simulated chain, both simulated
//! lnd nodes and the Loop server, so an upper bound on the client's share) and committed SQLite
//! write transactions per swap.
//!
//! Run: `cargo bench --bench swaps_concurrent` (`SLUICE_BENCH_SWAPS=N` for another count,
//! `SLUICE_BENCH_DIRECTION=out` or `in` for one direction only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use sluice::domain::{Direction, Network, Ppm, Sat, SwapHash};
use sluice::loopserver::{LoopServer, LoopServerConfig};
use sluice::provider::l402::{L402Config, NeverPay};
use sluice::provider::{LoopServerClient, ServerTls};
use sluice::simnet::world::{
    ChannelSpec, FeePolicy, NodeSpec, SharedWorld, SimNode, World, WorldConfig, lock,
};
use sluice::store::{Store, SwapFilter};
use sluice::swap::loop_in::LoopInState;
use sluice::swap::{EngineConfig, LoopInRequest, LoopOutRequest, SwapEngine, SwapState};

/// Each swap's amount. The server's minimum is 10,000 sat, but the default miner-fee ceiling
/// (`swap.max_miner_fee_ppm`, 2 %) must leave room for a sweep at the simnet's fee estimate or
/// a Loop Out never reveals (400 sat at 20,000 sat does not); 1,000 swaps of 100,000 sat still
/// fit the ten 16M-sat channels each way.
const AMOUNT: Sat = Sat(100_000);
/// Routing peers between "sluice" and "loop"; 1,000 held swap HTLCs spread over them stay well
/// under lnd's 483 per channel.
const PEERS: usize = 10;

/// Ten routing peers between "sluice" and "loop", with 16M-sat channels leaning the way the
/// swaps pay: towards "loop" for Loop Out (sluice pays the swap invoices), towards "sluice" for
/// Loop In (the server pays them). The node that funds the HTLCs ("loop" for Loop Out, "sluice"
/// for Loop In) has one wallet coin per swap so every HTLC can be funded at once.
fn world(direction: Direction, swaps: usize) -> WorldConfig {
    let (payer, payee, funder) = match direction {
        Direction::Out => ("sluice", "loop", "loop"),
        Direction::In => ("loop", "sluice", "sluice"),
    };
    let wallet = |alias: &str| {
        if alias == funder {
            vec![Sat(1_000_000); swaps + 10]
        } else {
            vec![Sat(10_000_000)]
        }
    };
    let mut nodes = vec![
        NodeSpec {
            alias: "sluice".to_owned(),
            wallet_utxos: wallet("sluice"),
        },
        NodeSpec {
            alias: "loop".to_owned(),
            wallet_utxos: wallet("loop"),
        },
    ];
    let policy = FeePolicy {
        base_msat: 1_000,
        ppm: Ppm(100),
        cltv_delta: 40,
    };
    // The server's node charges nothing to forward, as in the Loop Out world of before.
    let fees_of = |alias: &str| {
        if alias == "loop" {
            FeePolicy::default()
        } else {
            policy
        }
    };
    let mut channels = Vec::new();
    for i in 1..=PEERS {
        let peer = format!("peer{i}");
        nodes.push(NodeSpec {
            alias: peer.clone(),
            wallet_utxos: vec![Sat(1_000_000)],
        });
        for (from, to) in [(payer, peer.as_str()), (peer.as_str(), payee)] {
            channels.push(ChannelSpec {
                initiator: from.to_owned(),
                peer: to.to_owned(),
                capacity: Sat(16_000_000),
                initiator_balance: Sat(15_800_000),
                initiator_policy: fees_of(from),
                peer_policy: fees_of(to),
                private: false,
            });
        }
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

/// What one direction's run measured.
struct Figures {
    direction: Direction,
    swaps: usize,
    succeeded: usize,
    blocks: u32,
    created_in: Duration,
    wall: Duration,
    cpu: Duration,
    transactions: u64,
}

/// Where the swaps of a run stand: how many are still open, and whether one of them waits for
/// a block (beyond a transaction in the mempool, which always gets one).
struct Standing {
    open: usize,
    /// The open swaps by state, for the progress line.
    open_states: std::collections::BTreeMap<&'static str, usize>,
    waits_for_block: bool,
    /// The swaps that ended other than succeeded, with their state.
    failed: Vec<String>,
    total: usize,
}

/// One engine and its store on a fresh world, against the reference Loop server.
struct Bench {
    world: SharedWorld,
    store: Store,
    engine: SwapEngine,
    /// Held for the run: the server's swaps stop with it.
    _server: Arc<LoopServer>,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(direction: Direction, swaps: usize) -> Bench {
        let world: SharedWorld = Arc::new(Mutex::new(World::new(world(direction, swaps)).unwrap()));
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
        let engine = SwapEngine::start(node, Arc::new(client), store.clone(), config);
        engine.resume_all().await.unwrap();
        Bench {
            world,
            store,
            engine,
            _server: server,
            _dir: dir,
        }
    }

    /// Requests one swap of `direction`.
    async fn create(&self, direction: Direction, i: usize) -> Result<SwapHash, String> {
        let label = format!("bench {i}");
        let initiator = "swaps_concurrent bench".to_owned();
        let created = match direction {
            Direction::Out => {
                self.engine
                    .loop_out(LoopOutRequest {
                        amount: AMOUNT,
                        destination: None,
                        outgoing_chan_set: Vec::new(),
                        label,
                        initiator,
                        conf_target: Some(100),
                        limits: None,
                        fast: true,
                    })
                    .await
            }
            Direction::In => self
                .engine
                .loop_in(LoopInRequest {
                    amount: AMOUNT,
                    label,
                    initiator,
                    ..LoopInRequest::default()
                })
                .await
                .map(|created| created.hash),
        };
        created.map_err(|e| e.to_string())
    }

    /// Where the swaps of `direction` stand, from the store.
    async fn standing(&self, direction: Direction) -> Standing {
        match direction {
            Direction::Out => {
                let records = self.store.list_swaps(SwapFilter::default()).await.unwrap();
                let state = |r: &sluice::store::SwapRecord| r.progress.state;
                Standing {
                    open: records.iter().filter(|r| !state(r).is_terminal()).count(),
                    open_states: by_state(
                        records
                            .iter()
                            .filter(|r| !state(r).is_terminal())
                            .map(|r| state(r).as_str()),
                    ),
                    // A spend waits for its confirmations.
                    waits_for_block: records
                        .iter()
                        .any(|r| state(r) == SwapState::SpendConfirming),
                    failed: records
                        .iter()
                        .filter(|r| state(r).is_terminal() && state(r) != SwapState::Succeeded)
                        .map(|r| format!("{} {:?}", r.contract.terms().swap_hash, state(r)))
                        .collect(),
                    total: records.len(),
                }
            }
            Direction::In => {
                let records = self.store.list_loop_ins(None).await.unwrap();
                let state = |r: &sluice::store::loop_in::LoopInRecord| r.progress.state;
                Standing {
                    open: records.iter().filter(|r| !state(r).is_terminal()).count(),
                    open_states: by_state(
                        records
                            .iter()
                            .filter(|r| !state(r).is_terminal())
                            .map(|r| state(r).as_str()),
                    ),
                    // The server's claim waits for its confirmations; a paid swap waits for
                    // the server's claim (as tests/loop_in_engine.rs drives one).
                    waits_for_block: records.iter().any(|r| {
                        !state(r).is_terminal()
                            && (r.progress.spend.is_some()
                                || state(r) == LoopInState::InvoiceSettled)
                    }),
                    failed: records
                        .iter()
                        .filter(|r| state(r).is_terminal() && state(r) != LoopInState::Succeeded)
                        .map(|r| format!("{} {:?}", r.contract.terms().swap_hash, state(r)))
                        .collect(),
                    total: records.len(),
                }
            }
        }
    }
}

/// How many of `states` are in each state.
fn by_state(
    states: impl Iterator<Item = &'static str>,
) -> std::collections::BTreeMap<&'static str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for state in states {
        *counts.entry(state).or_default() += 1;
    }
    counts
}

fn main() {
    let swaps: usize = std::env::var("SLUICE_BENCH_SWAPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let directions: Vec<Direction> = match std::env::var("SLUICE_BENCH_DIRECTION").as_deref() {
        Ok("out") => vec![Direction::Out],
        Ok("in") => vec![Direction::In],
        Ok("both") | Err(_) => Direction::ALL.to_vec(),
        Ok(other) => panic!("SLUICE_BENCH_DIRECTION is out, in or both, not {other:?}"),
    };
    let mut figures = Vec::new();
    for direction in directions {
        // A runtime per direction: dropping it ends every task of the run before the next
        // one is measured.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        figures.push(runtime.block_on(run(direction, swaps)));
        drop(runtime);
    }
    report(&figures);
}

async fn run(direction: Direction, swaps: usize) -> Figures {
    let setup = Instant::now();
    let bench = Bench::start(direction, swaps).await;
    let height_start = lock(&bench.world).chain().height();
    eprintln!(
        "{direction}: {swaps} swaps, world built in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let cpu_before = cpu_time().unwrap_or_default();
    let tx_before = bench.store.committed_transactions();
    let started = Instant::now();
    let requests = (0..swaps).map(|i| bench.create(direction, i));
    let created: Vec<SwapHash> = join_all(requests)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("{direction} swap {i} was refused: {e}")))
        .collect();
    let created_in = started.elapsed();
    eprintln!(
        "{direction}: all {} swaps created in {:.1} s",
        created.len(),
        created_in.as_secs_f64()
    );

    // Mine while anything waits for a block, until every swap is terminal.
    let deadline = Instant::now() + Duration::from_secs(3_600);
    let mut last_report = Instant::now();
    let standing = loop {
        let standing = bench.standing(direction).await;
        if standing.open == 0 {
            break standing;
        }
        assert!(
            Instant::now() < deadline,
            "{direction}: {} swaps still open",
            standing.open
        );
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "{direction}: {} open after {:.0} s {:?}",
                standing.open,
                started.elapsed().as_secs_f64(),
                standing.open_states
            );
            last_report = Instant::now();
        }
        {
            let mut w = lock(&bench.world);
            if !w.chain().mempool_txids().is_empty() || standing.waits_for_block {
                w.mine(1);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed();
    let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    let transactions = bench.store.committed_transactions() - tx_before;
    let blocks = lock(&bench.world).chain().height().0 - height_start.0;
    bench.engine.shutdown();
    assert!(
        standing.failed.is_empty(),
        "{direction}: {} of {swaps} swaps did not succeed: {:?}",
        standing.failed.len(),
        standing.failed
    );
    assert_eq!(standing.total, swaps);
    Figures {
        direction,
        swaps,
        succeeded: standing.total - standing.failed.len(),
        blocks,
        created_in,
        wall,
        cpu,
        transactions,
    }
}

/// One column per direction run, as docs/benchmarks.md records them.
fn report(figures: &[Figures]) {
    let row = |name: &str, value: &dyn Fn(&Figures) -> String| {
        let cells: Vec<String> = figures
            .iter()
            .map(|f| format!("{:>12}", value(f)))
            .collect();
        println!("{name:<28}{}", cells.join(""));
    };
    row("direction", &|f| match f.direction {
        Direction::Out => "Loop Out".to_owned(),
        Direction::In => "Loop In".to_owned(),
    });
    row("swaps", &|f| f.swaps.to_string());
    row("succeeded", &|f| f.succeeded.to_string());
    row("blocks mined", &|f| f.blocks.to_string());
    row("created (all requests)", &|f| {
        format!("{:.1} s", f.created_in.as_secs_f64())
    });
    row("wall time", &|f| format!("{:.1} s", f.wall.as_secs_f64()));
    row("CPU time", &|f| format!("{:.1} s", f.cpu.as_secs_f64()));
    #[allow(clippy::cast_precision_loss)]
    row("CPU per swap", &|f| {
        format!("{:.1} ms", f.cpu.as_secs_f64() * 1_000.0 / f.swaps as f64)
    });
    #[allow(clippy::cast_precision_loss)]
    row("SQLite transactions/swap", &|f| {
        format!("{:.2}", f.transactions as f64 / f.swaps as f64)
    });
}
