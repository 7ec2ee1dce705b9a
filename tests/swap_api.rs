//! The swap RPCs and commands over the real API server, with a real `SwapEngine` on the
//! simnet: a simulated lnd ("sluice") paying a real Loop server implementation over gRPC, both
//! on one simulated chain. Covers Terms and Quote, `sluice out --force` through `Monitor` to
//! SUCCEEDED with costs equal to what moved, ListSwaps/SwapInfo, and the credential check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::api::swaps::SwapBackend;
use sluice::api::{ApiState, Credentials, auth, serve};
use sluice::cli::client::Target;
use sluice::cli::swaps::{OutCmd, QuoteCmd, QuoteKind, SwapCmd, SwapsCmd};
use sluice::cli::{Args, Command, execute};
use sluice::domain::{Network, NodeStatus, PolicyStatus, Sat};
use sluice::lnd::LightningNode;
use sluice::loopserver::Behaviour;
use sluice::loopserver::behaviour::InvoiceTamper;
use sluice::loopserver::{LoopServer, LoopServerConfig};
use sluice::proto::sluice as pb;
use sluice::provider::l402::{L402Config, NeverPay};
use sluice::provider::{LoopServerClient, ServerTls};
use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig, lock};
use sluice::store::Store;
use sluice::store::swaps::SwapFilter;
use sluice::swap::{EngineConfig, PaymentStatus, SwapEngine, SwapState};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Net {
    world: SharedWorld,
    server: Arc<LoopServer>,
    node: Arc<SimNode>,
    store: Store,
    engine: SwapEngine,
    addr: String,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Net {
    fn target(&self, credential: &str) -> Target {
        Target {
            addr: self.addr.clone(),
            tls_cert: self.dir.path().join("tls.cert"),
            credential: self.dir.path().join(credential),
        }
    }

    fn args(&self, command: Command, json: bool) -> Args {
        Args {
            rpcserver: self.addr.clone(),
            datadir: Some(PathBuf::from(self.dir.path())),
            tlscert: None,
            credential: None,
            json,
            command,
        }
    }

    async fn local_balance(&self) -> Sat {
        self.node
            .list_channels()
            .await
            .unwrap()
            .iter()
            .map(|c| c.local_balance)
            .sum()
    }

    fn wallet_confirmed(&self) -> Sat {
        self.node.wallet_balance().unwrap().0
    }

    /// Mines a block whenever the mempool holds a transaction or a spend waits for its
    /// confirmations, until cancelled.
    fn keep_mining(&self) -> CancellationToken {
        let stop = CancellationToken::new();
        let world = self.world.clone();
        let store = self.store.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            while !token.is_cancelled() {
                let confirming = store
                    .list_swaps(SwapFilter {
                        state: Some(SwapState::SpendConfirming),
                        ..SwapFilter::default()
                    })
                    .await
                    .map(|s| !s.is_empty())
                    .unwrap_or(false);
                {
                    let mut w = lock(&world);
                    if confirming || !w.chain().mempool_txids().is_empty() {
                        w.mine(1);
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        stop
    }
}

async fn net() -> Net {
    let world: SharedWorld = Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(11, 2)).unwrap(),
    ));
    let node = Arc::new(SimNode::new(world.clone(), "sluice").unwrap());
    let loop_node = Arc::new(SimNode::new(world.clone(), "loop").unwrap());
    let server = Arc::new(LoopServer::new(
        LoopServerConfig {
            l402: None,
            ..LoopServerConfig::default()
        },
        loop_node,
    ));
    let loop_addr = server.serve_on_loopback().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Arc::new(
        LoopServerClient::connect(
            &loop_addr.to_string(),
            ServerTls::Insecure,
            Duration::from_secs(10),
            L402Config::new(Network::Regtest, dir.path()),
            Arc::new(NeverPay),
        )
        .unwrap(),
    );
    let store = Store::open(&dir.path().join("sluice.db")).await.unwrap();
    let mut config = EngineConfig::new(Network::Regtest);
    config.clock = sluice::simnet::world::engine_clock(&world);
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    // The simnet's server asks for a delta above Loop's default target of 9.
    config.conf_target = 100;
    let engine = SwapEngine::start(node.clone(), client.clone(), store.clone(), config.clone());
    engine.resume_all().await.unwrap();

    let identity = sluice::tls::load_or_create_identity(
        &dir.path().join("tls.cert"),
        &dir.path().join("tls.key"),
        &[],
    )
    .unwrap();
    let creds = Credentials::load_or_create(dir.path()).unwrap();
    let (_node_tx, node_rx) = tokio::sync::watch::channel(NodeStatus::default());
    let (_policy_tx, policy_rx) = tokio::sync::watch::channel(PolicyStatus::default());
    let state = Arc::new(ApiState {
        version: "test".to_owned(),
        network: Network::Regtest,
        data_dir: dir.path().to_owned(),
        simnet: true,
        started: std::time::Instant::now(),
        stop: CancellationToken::new(),
        node: node_rx,
        policy: policy_rx,
        lnd: sluice::api::state::NodeHandle::default(),
        autoloop: std::sync::OnceLock::new(),
        swaps: Some(Arc::new(SwapBackend {
            engine: engine.clone(),
            provider: client,
            node: node.clone(),
            store: store.clone(),
            config,
        })),
    });
    // The watch senders may drop: handlers only read the last value.
    let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = api_listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move { serve(api_listener, &identity, creds, state, token).await });
    Net {
        world,
        server,
        node,
        store,
        engine,
        addr,
        dir,
        shutdown,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terms_and_quote_answer_with_the_limits_sluice_would_use() {
    let net = net().await;
    let mut client = net.target(auth::READONLY_FILE).connect().await.unwrap();
    let terms = client
        .terms(pb::TermsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(terms.min_amount_sat > 0 && terms.min_amount_sat <= 250_000);
    assert!(terms.max_amount_sat >= 250_000);
    assert!(terms.min_cltv_delta <= terms.max_cltv_delta);

    let q = client
        .quote(pb::QuoteRequest {
            amount_sat: 250_000,
            conf_target: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let height = net.engine.height().unwrap().0;
    assert_eq!(q.amount_sat, 250_000);
    assert_eq!(q.conf_target, 100);
    assert_eq!(
        q.expiry_height,
        height + 100.max(terms.min_cltv_delta),
        "expiry follows the conf target"
    );
    assert_eq!(q.server_node.len(), 66);
    let limits = q.limits.unwrap();
    assert_eq!(limits.max_swap_fee_sat, q.swap_fee_sat);
    assert_eq!(limits.max_prepay_amount_sat, q.prepay_amount_sat);
    // Loop's CLI rule: 10 sat + 2 % of the amount; miner fee 250 × the estimate, under the
    // ceiling of 2 % of the amount (`swap.max_miner_fee_ppm`).
    assert_eq!(limits.max_swap_routing_fee_sat, 10 + 5_000);
    assert_eq!(
        limits.max_miner_fee_sat,
        (q.estimated_sweep_fee_sat * 250).min(5_000)
    );
    assert!(q.estimated_sweep_fee_sat > 0);

    // Out-of-terms amounts are refused naming the field.
    let err = client
        .quote(pb::QuoteRequest {
            amount_sat: terms.max_amount_sat + 1,
            conf_target: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("amount_sat:"),
        "{}",
        err.message()
    );

    // The CLI renders the same answers.
    let text = execute(&net.args(Command::Terms, false)).await.unwrap();
    assert!(text.contains(&format!(
        "{} – {} sat",
        terms.min_amount_sat, terms.max_amount_sat
    )));
    let quote = QuoteCmd {
        kind: QuoteKind::Out {
            amt: "250k".to_owned(),
            conf_target: None,
        },
    };
    let json: serde_json::Value = serde_json::from_str(
        &execute(&net.args(Command::Quote(quote), true))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["swap_fee_sat"], q.swap_fee_sat);
    net.engine.stop().await;
    net.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_credential_cannot_loop_out_and_bad_ids_are_named() {
    let net = net().await;
    let mut readonly = net.target(auth::READONLY_FILE).connect().await.unwrap();
    let err = readonly
        .loop_out(pb::LoopOutRequest {
            amount_sat: 250_000,
            ..pb::LoopOutRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let err = readonly
        .swap_info(pb::SwapInfoRequest { id: "xyz".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("id:"));
    let err = readonly
        .swap_info(pb::SwapInfoRequest {
            id: "ab".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = readonly
        .list_swaps(pb::ListSwapsRequest {
            state: "DONE".into(),
            ..pb::ListSwapsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("SUCCEEDED"), "{}", err.message());
    net.engine.stop().await;
    net.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_force_reaches_succeeded_through_monitor_and_costs_match_what_moved() {
    let net = net().await;
    let mut client = net.target(auth::ADMIN_FILE).connect().await.unwrap();
    let mut monitor = client
        .monitor(pb::MonitorRequest {})
        .await
        .unwrap()
        .into_inner();
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed();
    // The quote shows the limits the swap will be created with.
    let quote = client
        .quote(pb::QuoteRequest {
            amount_sat: 250_000,
            conf_target: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mining = net.keep_mining();

    let out = OutCmd {
        amt: "250000".to_owned(),
        dest: None,
        conf_target: None,
        channels: Vec::new(),
        label: "api test".to_owned(),
        force: true,
    };
    let created: serde_json::Value =
        serde_json::from_str(&execute(&net.args(Command::Out(out), true)).await.unwrap()).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);
    assert!(
        created["htlc_address"]
            .as_str()
            .unwrap()
            .starts_with("bcrt1p")
    );

    // The monitor shows the swap's states in order, through SUCCEEDED.
    let mut states = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while states.last().map(String::as_str) != Some("SUCCEEDED") {
        let next = tokio::time::timeout_at(deadline, monitor.message())
            .await
            .expect("the swap reaches SUCCEEDED before the deadline")
            .unwrap()
            .expect("the stream stays open");
        if next.id == id && states.last() != Some(&next.state) {
            assert_eq!(next.amount_sat, 250_000);
            states.push(next.state);
        }
    }
    mining.cancel();
    assert_eq!(states.first().map(String::as_str), Some("INITIATED"));
    assert!(
        states.iter().any(|s| s == "PREIMAGE_REVEALED"),
        "{states:?}"
    );

    // SwapInfo's costs equal what moved.
    let info = client
        .swap_info(pb::SwapInfoRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    let swap = info.swap.clone().unwrap();
    assert_eq!(swap.state, "SUCCEEDED");
    assert_eq!(swap.label, "api test");
    assert_eq!(swap.initiator, "cli");
    assert_eq!(info.limits, quote.limits, "the swap uses the quoted limits");
    assert_eq!(info.expiry_height, quote.expiry_height);
    let costs = swap.costs.unwrap();
    assert!(!info.htlc_outpoint.is_empty() && !info.sweep_txid.is_empty());
    assert_eq!(info.history.first().unwrap().state, "INITIATED");
    assert_eq!(info.history.last().unwrap().state, "SUCCEEDED");
    let record = net
        .store
        .list_swaps(SwapFilter::default())
        .await
        .unwrap()
        .remove(0);
    let (
        PaymentStatus::Succeeded {
            amount: swap_paid, ..
        },
        PaymentStatus::Succeeded {
            amount: prepay_paid,
            ..
        },
    ) = (record.progress.swap_payment, record.progress.prepay_payment)
    else {
        panic!("both payments succeed: {:?}", record.progress);
    };
    // Off chain: amount + server fee + routing left the channels (routing fees are paid in
    // msat and recorded rounded up: at most one sat per payment above the balance change).
    let left = (local_before - net.local_balance().await).0;
    let recorded = 250_000 + u64::try_from(costs.server_sat).unwrap() + costs.offchain_sat;
    assert_eq!(recorded, (swap_paid + prepay_paid).0 + costs.offchain_sat);
    assert!(
        left <= recorded && recorded - left <= 2,
        "left {left}, recorded {recorded}"
    );
    // On chain: the wallet got the HTLC value minus the sweep's miner fee, exactly.
    let received = (net.wallet_confirmed() - wallet_before).0;
    assert_eq!(received, info.htlc_value_sat - costs.onchain_sat);
    assert!(info.htlc_value_sat >= 250_000);

    // The listing and its filters see it.
    let all = client
        .list_swaps(pb::ListSwapsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.swaps.len(), 1);
    let pending = client
        .list_swaps(pb::ListSwapsRequest {
            pending_only: true,
            ..pb::ListSwapsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pending.swaps.is_empty());
    let other_label = client
        .list_swaps(pb::ListSwapsRequest {
            label: "other".into(),
            ..pb::ListSwapsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other_label.swaps.is_empty());

    // And the commands render them.
    let text = execute(&net.args(Command::Swaps(SwapsCmd { pending: false }), false))
        .await
        .unwrap();
    assert!(text.contains(&id) && text.contains("SUCCEEDED"), "{text}");
    let text = execute(&net.args(Command::Swap(SwapCmd { id: id.clone() }), false))
        .await
        .unwrap();
    assert!(text.contains(&info.sweep_txid), "{text}");
    net.engine.stop().await;
    net.shutdown.cancel();
}

/// What a refused swap must leave behind: nothing stored, nothing paid.
async fn assert_nothing_created_or_paid(net: &Net, local_before: Sat) {
    assert!(
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "a refused swap is not stored"
    );
    // Give a payment that was wrongly started the time to leave the channels.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(net.local_balance().await, local_before, "nothing was paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_binds_the_quoted_fees_and_a_server_that_invoices_above_them_is_refused() {
    let net = net().await;
    // The server quotes the honest 300 sat the first time, then 4,000 sat more in every later
    // quote and in the swap invoice: still under the 2 % ceiling, so only the limits of the
    // quote `out` showed can catch it.
    net.server.set_behaviour_for_amount(
        Sat(250_000),
        Behaviour {
            invoice: InvoiceTamper::AboveFirstQuote(Sat(4_000)),
            ..Behaviour::default()
        },
    );
    let local_before = net.local_balance().await;
    let out = OutCmd {
        amt: "250000".to_owned(),
        dest: None,
        conf_target: None,
        channels: Vec::new(),
        label: "bait".to_owned(),
        force: true,
    };
    let err = execute(&net.args(Command::Out(out), false))
        .await
        .expect_err("the swap invoice asks more than the quote out used");
    let text = err.to_string();
    assert!(
        text.contains("nothing was paid") && text.contains("swap fee"),
        "{text}"
    );
    assert_nothing_created_or_paid(&net, local_before).await;
    net.engine.stop().await;
    net.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_out_without_limits_refuses_a_quote_above_the_ceiling() {
    let net = net().await;
    // Quote 300 sat, then 40,300 sat (16 % of the amount) in the engine's own quote and in
    // the invoice: the derived limits would let it through without the ceiling.
    net.server.set_behaviour_for_amount(
        Sat(250_000),
        Behaviour {
            invoice: InvoiceTamper::AboveFirstQuote(Sat(40_000)),
            ..Behaviour::default()
        },
    );
    let local_before = net.local_balance().await;
    let mut client = net.target(auth::ADMIN_FILE).connect().await.unwrap();
    let shown = client
        .quote(pb::QuoteRequest {
            amount_sat: 250_000,
            conf_target: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.swap_fee_sat, 300, "the first quote is the bait");
    let err = client
        .loop_out(pb::LoopOutRequest {
            amount_sat: 250_000,
            ..pb::LoopOutRequest::default()
        })
        .await
        .expect_err("the engine's quote is above swap.max_swap_fee_ppm");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("swap.max_swap_fee_ppm")
            && err.message().contains("40300")
            && err.message().contains("nothing was stored or paid"),
        "{}",
        err.message()
    );
    // A later Quote shows the same refusal instead of limits that would not hold.
    let err = client
        .quote(pb::QuoteRequest {
            amount_sat: 250_000,
            conf_target: 0,
        })
        .await
        .expect_err("the quote is above the ceiling");
    assert!(
        err.message().contains("swap.max_swap_fee_ppm"),
        "{}",
        err.message()
    );
    // The limits of the quote that was shown still bind an API caller who sends them.
    let err = client
        .loop_out(pb::LoopOutRequest {
            amount_sat: 250_000,
            max_fees: shown.limits,
            ..pb::LoopOutRequest::default()
        })
        .await
        .expect_err("the invoice is above the limits sent");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("nothing was paid"),
        "{}",
        err.message()
    );
    assert_nothing_created_or_paid(&net, local_before).await;
    // A caller who sets the swap-fee limit accepts that fee: the ceiling no longer applies,
    // and the other limits are derived as usual.
    let created = client
        .loop_out(pb::LoopOutRequest {
            amount_sat: 250_000,
            max_fees: Some(pb::FeeLimits {
                max_swap_fee_sat: 45_000,
                ..pb::FeeLimits::default()
            }),
            ..pb::LoopOutRequest::default()
        })
        .await
        .expect("the caller accepted the fee")
        .into_inner();
    let info = client
        .swap_info(pb::SwapInfoRequest { id: created.id })
        .await
        .unwrap()
        .into_inner();
    let limits = info.limits.unwrap();
    assert_eq!(limits.max_swap_fee_sat, 45_000);
    assert!(limits.max_miner_fee_sat <= 5_000, "{limits:?}");
    net.engine.stop().await;
    net.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_swap_is_listed_with_its_reason() {
    let net = net().await;
    let hash = net
        .engine
        .loop_out(sluice::swap::LoopOutRequest {
            amount: Sat(250_000),
            destination: None,
            outgoing_chan_set: Vec::new(),
            label: "doomed".to_owned(),
            initiator: "test".to_owned(),
            conf_target: None,
            limits: None,
            fast: true,
        })
        .await
        .unwrap();
    // Its row is damaged (the driver's later saves do not touch this column); the engine
    // finds it at its next resume.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        net.dir.path().join("sluice.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE swaps SET network = 'moonnet' WHERE swap_hash = ?")
        .bind(hash.to_string())
        .execute(&db)
        .await
        .unwrap();
    net.engine.resume_all().await.unwrap();

    let text = execute(&net.args(Command::Swaps(SwapsCmd { pending: false }), false))
        .await
        .unwrap();
    assert!(
        text.contains(&hash.to_string()) && text.contains("QUARANTINED, not driven"),
        "{text}"
    );
    assert!(text.contains("network"), "{text}");
    let json: serde_json::Value = serde_json::from_str(
        &execute(&net.args(Command::Swaps(SwapsCmd { pending: true }), true))
            .await
            .unwrap(),
    )
    .unwrap();
    let listed = &json["swaps"][0];
    assert_eq!(listed["id"], hash.to_string());
    assert_eq!(listed["state"], "QUARANTINED");
    assert!(
        listed["quarantined"]
            .as_str()
            .unwrap()
            .contains("does not decode")
    );
    net.engine.stop().await;
    net.shutdown.cancel();
}
