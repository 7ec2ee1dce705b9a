//! The engine test harness shared by `swap_engine` and `swap_misbehaviour`: a simulated lnd
//! ("sluice") paying the reference Loop server over gRPC, both on one simulated chain (the
//! server on its simulated node in process, or over gRPC to that node's simulated lnd), a store in a
//! temporary directory, and helpers that mine while a swap waits and read what moved on the
//! node.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::domain::{Network, Sat, SwapHash};
use sluice::lnd::LightningNode;
use sluice::loopserver::{LoopServer, LoopServerConfig};
use sluice::provider::l402::{L402Config, NeverPay};
use sluice::provider::{LoopServerClient, ServerTls};
use sluice::simnet::chain::TxStatus;
use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig, lock};
use sluice::store::{Store, SwapRecord};
use sluice::swap::{EngineConfig, LoopOutRequest, PaymentStatus, SwapEngine, SwapState};
use tokio::net::TcpListener;

pub struct Simnet {
    pub world: SharedWorld,
    pub node: Arc<SimNode>,
    pub client: Arc<LoopServerClient>,
    pub server: Arc<LoopServer>,
    pub store: Store,
    pub dir: tempfile::TempDir,
    /// Where the server's gRPC listens; the same address again after a restart.
    pub addr: std::net::SocketAddr,
    serving: Mutex<Option<Serving>>,
    /// The "loop" node's simulated lnd, when the server reaches its node over gRPC.
    pub loop_lnd: Option<sluice::simnet::lnd::SimLndServer>,
}

/// The server's running gRPC front: a shutdown trigger and the task serving it.
struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn serve(server: &Arc<LoopServer>, listener: TcpListener) -> Serving {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server.serve(listener, async move {
        let _ = stopped.await;
    });
    let task = tokio::spawn(async move {
        let _ = serving.await;
    });
    Serving { stop, task }
}

pub async fn simnet() -> Simnet {
    simnet_with(LoopServerConfig {
        l402: None,
        ..LoopServerConfig::default()
    })
    .await
}

/// The same simnet, but the server reaches the "loop" node as it reaches a real lnd: an
/// `LndClient` (wrapped in `ResilientNode`, as `sluice loopserver` does) over gRPC with TLS and
/// a macaroon to the simulated lnd serving that node.
pub async fn simnet_over_lnd() -> Simnet {
    simnet_built(
        LoopServerConfig {
            l402: None,
            ..LoopServerConfig::default()
        },
        true,
        WorldConfig::default_topology(11, 2),
    )
    .await
}

/// A simnet whose Loop server runs with `server_config`.
pub async fn simnet_with(server_config: LoopServerConfig) -> Simnet {
    simnet_built(server_config, false, WorldConfig::default_topology(11, 2)).await
}

/// The simnet over the world `world` builds (nodes "sluice" and "loop" in it).
pub async fn simnet_in(world: WorldConfig) -> Simnet {
    simnet_built(
        LoopServerConfig {
            l402: None,
            ..LoopServerConfig::default()
        },
        false,
        world,
    )
    .await
}

async fn simnet_built(
    server_config: LoopServerConfig,
    over_lnd: bool,
    world: WorldConfig,
) -> Simnet {
    let world: SharedWorld = Arc::new(Mutex::new(World::new(world).unwrap()));
    let node = Arc::new(SimNode::new(world.clone(), "sluice").unwrap());
    let loop_node = Arc::new(SimNode::new(world.clone(), "loop").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (server_node, loop_lnd): (Arc<dyn LightningNode>, _) = if over_lnd {
        let blocks: Arc<dyn sluice::simnet::lnd::BlockSource> = Arc::new(world.clone());
        let lnd = sluice::simnet::lnd::SimLndServer::start_with_chain(
            loop_node,
            Some(blocks),
            &dir.path().join("loop-lnd"),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let cert = std::fs::read(lnd.cert_path()).unwrap();
        let macaroon = hex::encode(std::fs::read(lnd.macaroon_path()).unwrap());
        let channel = sluice::tls::pinned_channel_lazy(
            &lnd.addr().to_string(),
            &cert,
            Duration::from_secs(10),
        )
        .unwrap();
        let client = sluice::lnd::LndClient::new(channel, &macaroon, Network::Regtest).unwrap();
        let node: Arc<dyn LightningNode> =
            Arc::new(sluice::lnd::ResilientNode::new(Arc::new(client)));
        (node, Some(lnd))
    } else {
        (loop_node as Arc<dyn LightningNode>, None)
    };
    let server = Arc::new(LoopServer::new(server_config, server_node));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = serve(&server, listener);
    let client = LoopServerClient::connect(
        &addr.to_string(),
        ServerTls::Insecure,
        Duration::from_secs(10),
        L402Config::new(Network::Regtest, dir.path()),
        Arc::new(NeverPay),
    )
    .unwrap();
    let store = Store::open(&dir.path().join("sluice.db")).await.unwrap();
    Simnet {
        world,
        node,
        client: Arc::new(client),
        server,
        store,
        dir,
        addr,
        serving: Mutex::new(Some(serving)),
        loop_lnd,
    }
}

/// Loop's defaults with quick retries, on the world's simulated clock (its invoices are
/// stamped with it).
pub fn config(world: &SharedWorld) -> EngineConfig {
    let mut c = EngineConfig::new(Network::Regtest);
    c.clock = sluice::simnet::world::engine_clock(world);
    c.retry_initial = Duration::from_millis(20);
    c.retry_max = Duration::from_millis(200);
    c
}

impl Simnet {
    /// Stops the server's gRPC front (its swaps carry on, as across a server restart) and
    /// waits until it no longer serves.
    pub async fn stop_server(&self) {
        let serving = self.serving.lock().unwrap().take();
        if let Some(Serving { stop, task }) = serving {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    /// Serves the server's gRPC front again on the same address.
    pub async fn restart_server(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot listen on {} again: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        *self.serving.lock().unwrap() = Some(serve(&self.server, listener));
    }

    pub async fn engine(&self) -> SwapEngine {
        self.engine_with(config(&self.world)).await
    }

    /// An engine with `config` (start from [`config`]), every stored swap resumed.
    pub async fn engine_with(&self, config: EngineConfig) -> SwapEngine {
        let engine = SwapEngine::start(
            self.node.clone(),
            self.client.clone(),
            self.store.clone(),
            config,
        );
        engine.resume_all().await.unwrap();
        engine
    }

    /// Waits (mining nothing) until a mempool transaction pays the swap's HTLC script, and
    /// returns it.
    pub async fn htlc_tx_in_mempool(&self, hash: SwapHash) -> bitcoin::Transaction {
        let script = self
            .record(hash)
            .await
            .contract
            .terms()
            .htlc_pk_script
            .clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            {
                let w = lock(&self.world);
                let chain = w.chain();
                for txid in chain.mempool_txids() {
                    if let Some(e) = chain.mempool_entry(&txid)
                        && e.tx.output.iter().any(|o| o.script_pubkey == script)
                    {
                        return e.tx.clone();
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the HTLC never reached the mempool"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the stored swap (mining nothing) until `done` holds.
    pub async fn wait_until(
        &self,
        hash: SwapHash,
        done: impl Fn(&SwapRecord) -> bool,
    ) -> SwapRecord {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.record(hash).await;
            if done(&r) {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "swap never got there: {:?}",
                r.progress
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn record(&self, hash: SwapHash) -> SwapRecord {
        self.store.load_swap(hash).await.unwrap().unwrap().record
    }

    /// Mines a block whenever the mempool holds a transaction (the server's HTLC, our sweep)
    /// or a spend is waiting for its confirmations, until `done` holds for the stored swap.
    /// Polls with a deadline; never relies on how long a step takes.
    pub async fn drive_until(
        &self,
        hash: SwapHash,
        done: impl Fn(&SwapRecord) -> bool,
    ) -> SwapRecord {
        self.drive(hash, false, done).await
    }

    /// Like [`Simnet::drive_until`]; with `every_poll` a block is mined at every poll, so the
    /// chain moves on even when nothing waits to confirm (to reach a deadline).
    pub async fn drive(
        &self,
        hash: SwapHash,
        every_poll: bool,
        done: impl Fn(&SwapRecord) -> bool,
    ) -> SwapRecord {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let record = self.record(hash).await;
            if done(&record) {
                return record;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "swap stuck in {:?}: {:?}",
                record.progress.state,
                record.progress
            );
            {
                let mut w = lock(&self.world);
                let waiting_for_depth = record.progress.state == SwapState::SpendConfirming;
                if every_poll || !w.chain().mempool_txids().is_empty() || waiting_for_depth {
                    w.mine(1);
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// The number of witness elements of the confirmed spend of the swap's HTLC: 1 for the
    /// cooperative key path, 4 for the success leaf.
    pub fn spend_witness_len(&self, record: &SwapRecord) -> usize {
        let txid = record.progress.spend.expect("a recorded spend").txid;
        let w = lock(&self.world);
        match w.chain().tx(&txid) {
            Some(TxStatus::Confirmed { tx, .. }) => tx.input[0].witness.len(),
            other => panic!("the spend is not confirmed: {other:?}"),
        }
    }

    pub async fn local_balance(&self) -> Sat {
        self.node
            .list_channels()
            .await
            .unwrap()
            .iter()
            .map(|c| c.local_balance)
            .sum()
    }

    pub async fn wallet_confirmed(&self) -> Sat {
        self.node.wallet_balance().unwrap().0
    }

    /// What the node holds: channel local balances plus the confirmed wallet.
    pub async fn holdings(&self) -> Sat {
        self.local_balance().await + self.wallet_confirmed().await
    }
}

pub fn request(amount: u64) -> LoopOutRequest {
    LoopOutRequest {
        amount: Sat(amount),
        destination: None,
        outgoing_chan_set: Vec::new(),
        label: "test".to_owned(),
        initiator: "swap_engine test".to_owned(),
        conf_target: Some(100),
        limits: None,
        fast: true,
    }
}

pub fn succeeded(r: &SwapRecord) -> bool {
    r.progress.state == SwapState::Succeeded
}

/// Checks a finished swap's recorded costs against what moved on the node.
pub async fn assert_costs_match(
    net: &Simnet,
    record: &SwapRecord,
    local_before: Sat,
    wallet_before: Sat,
) {
    let terms = record.contract.terms();
    let (
        PaymentStatus::Succeeded {
            amount: swap_paid,
            routing_fee: swap_fee,
        },
        PaymentStatus::Succeeded {
            amount: prepay_paid,
            routing_fee: prepay_fee,
        },
    ) = (record.progress.swap_payment, record.progress.prepay_payment)
    else {
        panic!("both payments must have succeeded: {:?}", record.progress);
    };
    assert_eq!(swap_paid, terms.swap_invoice.amount);
    assert_eq!(prepay_paid, terms.prepay_invoice.amount);
    let costs = record.costs;
    assert_eq!(costs.offchain, swap_fee + prepay_fee);
    // The server's charge is what we paid it off chain less what it put on chain for us (an
    // HTLC above the amount is money received).
    let htlc_value = record.progress.htlc.unwrap().value;
    assert_eq!(
        costs.server_sat,
        i64::try_from((swap_paid + prepay_paid).0).unwrap() - i64::try_from(htlc_value.0).unwrap()
    );

    // Off chain: what left our channels is both invoices plus routing fees (fees are paid in
    // msat and recorded rounded up, so at most one sat per payment above the balance change).
    let left = local_before - net.local_balance().await;
    let recorded = swap_paid + prepay_paid + costs.offchain;
    assert!(
        left <= recorded && recorded - left <= Sat(2),
        "left {left}, recorded {recorded}"
    );

    // On chain: the wallet received the HTLC minus the sweep's fee, exactly.
    let htlc = record.progress.htlc.unwrap();
    let received = net.wallet_confirmed().await - wallet_before;
    assert_eq!(received, htlc.value - costs.onchain);
    assert!(htlc.value >= terms.amount);
}
