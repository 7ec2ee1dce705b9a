//! Autoloop against the simnet: a simulated lnd, the reference Loop server over gRPC, the
//! real client and swap engine, and `policies/set-and-forget`. A channel drained below its
//! band gets a loop out that completes, the channel returns inside its band, and the budget
//! and the journal show it; `dry-run` journals the same decision and dispatches nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::autoloop::{Autoloop, AutoloopConfig, AutoloopDeps, Mode, PassReport, Wake};
use sluice::domain::{ChanId, Network, Sat, SwapHash};
use sluice::lnd::LightningNode;
use sluice::loopserver::{LoopServer, LoopServerConfig};
use sluice::provider::l402::{L402Config, NeverPay};
use sluice::provider::{LoopServerClient, ServerTls};
use sluice::simnet::world::{SharedWorld, SimNode, World, WorldConfig, lock};
use sluice::store::{JournalFilter, Store, SwapFilter};
use sluice::swap::{EngineConfig, SwapEngine, SwapState};
use tokio_util::sync::CancellationToken;

struct Net {
    world: SharedWorld,
    server: Arc<LoopServer>,
    node: Arc<SimNode>,
    client: Arc<LoopServerClient>,
    store: Store,
    dir: tempfile::TempDir,
    /// The drained channel.
    chan: ChanId,
}

/// One peer; the sluice–peer channel holds 5M with 3.8M on our side: 24 % inbound, below
/// set-and-forget's 30 % band, needing 1.3M to get back to 50 %.
async fn net() -> Net {
    let mut config = WorldConfig::default_topology(11, 1);
    let ch = config
        .channels
        .iter_mut()
        .find(|c| c.initiator == "sluice")
        .unwrap();
    ch.capacity = Sat(5_000_000);
    ch.initiator_balance = Sat(3_800_000);
    let world: SharedWorld = Arc::new(Mutex::new(World::new(config).unwrap()));
    let mut net = net_on(world).await;
    net.chan = net
        .node
        .list_channels()
        .await
        .unwrap()
        .iter()
        .find(|c| c.capacity == Sat(5_000_000))
        .unwrap()
        .chan_id;
    net
}

/// The Loop server, client and store around `world`.
async fn net_on(world: SharedWorld) -> Net {
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
        Duration::from_secs(10),
        L402Config::new(Network::Regtest, dir.path()),
        Arc::new(NeverPay),
    )
    .unwrap();
    let store = Store::open(&dir.path().join("sluice.db")).await.unwrap();
    let chan = ChanId(0);
    Net {
        world,
        server,
        node,
        client: Arc::new(client),
        store,
        dir,
        chan,
    }
}

fn policy_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/set-and-forget")
}

impl Net {
    fn clock(&self) -> sluice::swap::engine::Clock {
        sluice::simnet::world::engine_clock(&self.world)
    }

    async fn engine(&self) -> SwapEngine {
        let mut c = EngineConfig::new(Network::Regtest);
        c.clock = self.clock();
        c.retry_initial = Duration::from_millis(20);
        c.retry_max = Duration::from_millis(200);
        let engine = SwapEngine::start(
            self.node.clone(),
            self.client.clone(),
            self.store.clone(),
            c,
        );
        engine.resume_all().await.unwrap();
        engine
    }

    async fn autoloop(&self, engine: &SwapEngine, cancel: CancellationToken) -> Autoloop {
        let mut config = AutoloopConfig::new(policy_path());
        config.tick = Duration::from_secs(3600);
        config.debounce = Duration::from_millis(50);
        // The client keeps its L402 token in the net's directory.
        config.l402_dir = Some(self.dir.path().to_path_buf());
        Autoloop::start(
            AutoloopDeps {
                node: self.node.clone(),
                provider: self.client.clone(),
                engine: engine.clone(),
                store: self.store.clone(),
                config,
                clock: self.clock(),
            },
            cancel,
        )
        .await
        .unwrap()
    }

    async fn inbound_ppm(&self) -> u64 {
        let c = self
            .node
            .list_channels()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.chan_id == self.chan)
            .unwrap();
        c.remote_balance.0 * 1_000_000 / c.capacity.0
    }

    /// Mines while something waits to confirm, until the swap reaches a terminal state.
    async fn drive(&self, hash: SwapHash) -> SwapState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let record = self.store.load_swap(hash).await.unwrap().unwrap().record;
            if record.progress.state.is_terminal() {
                return record.progress.state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "swap stuck in {:?}",
                record.progress.state
            );
            {
                let mut w = lock(&self.world);
                if !w.chain().mempool_txids().is_empty()
                    || record.progress.state == SwapState::SpendConfirming
                {
                    w.mine(1);
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// Runs passes until one decides about `target`, returning it.
async fn pass(al: &Autoloop) -> Arc<PassReport> {
    al.run_pass(Wake::Forced)
        .await
        .unwrap()
        .expect("autoloop is not off")
}

async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_channel_gets_a_loop_out_that_completes_and_the_budget_and_journal_show_it() {
    let net = net().await;
    let engine = net.engine().await;
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    assert_eq!(al.mode(), Mode::Off);
    assert!(net.inbound_ppm().await < 300_000);
    let target = net.chan.to_string();

    // Dry-run first: the same decision, journalled as dry_run, nothing dispatched.
    al.set_mode(Mode::DryRun).await.unwrap();
    let report = pass(&al).await;
    // Before any swap, the routing fee expected is the default `policy test` uses too.
    assert_eq!(report.routing_ppm, sluice::policy::DEFAULT_ROUTING_PPM);
    assert!(report.routing_source.contains("default"));
    let d = report
        .decision(&target)
        .expect("the channel has a decision");
    assert_eq!(d.decision.reason.name(), "dry_run", "{}", d.decision.detail);
    let amount = d.decision.proposal.as_ref().unwrap().amount;
    assert!(d.swap.is_none());
    assert!(
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    // On: the swap is dispatched (by this pass or one the mode change woke).
    al.set_mode(Mode::On).await.unwrap();
    let hash = poll("a dispatched swap", async || {
        let _ = al.run_pass(Wake::Forced).await;
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .first()
            .map(|r| r.contract.terms().swap_hash)
    })
    .await;
    let record = net.store.load_swap(hash).await.unwrap().unwrap().record;
    assert_eq!(
        record.contract.terms().amount,
        amount,
        "the dry run's amount is the one swapped"
    );
    assert_eq!(record.contract.terms().outgoing_chan_set, vec![net.chan]);
    assert_eq!(record.contract.terms().initiator, "autoloop");
    // While it runs, budget shows it reserved.
    let reserved = al.budget().await[0].total.reserved_worst;
    assert!(reserved > Sat::ZERO || engine.is_running(hash));

    assert_eq!(net.drive(hash).await, SwapState::Succeeded);
    // Settled: spent equals the swap's costs, nothing reserved.
    let costs = net
        .store
        .load_swap(hash)
        .await
        .unwrap()
        .unwrap()
        .record
        .costs;
    let expected_spent =
        Sat(u64::try_from(costs.server_sat).unwrap()) + costs.offchain + costs.onchain;
    let status = poll("the release", async || {
        let s = al.budget().await;
        (s[0].total.reserved_worst == Sat::ZERO && s[0].total.spent > Sat::ZERO).then_some(s)
    })
    .await;
    assert_eq!(status[0].total.spent, expected_spent);
    assert!(status[0].total.spent <= status[0].total.limit);

    // Back inside the band, and the next pass says so.
    let inbound = net.inbound_ppm().await;
    assert!(
        (300_000..=700_000).contains(&inbound),
        "inbound {inbound} ppm"
    );
    let report = pass(&al).await;
    assert_eq!(
        report.decision(&target).unwrap().decision.reason.name(),
        "ok"
    );
    // From now on the routing fee expected is what this swap paid, rounded up.
    let paid = (u128::from(costs.offchain.0) * 1_000_000).div_ceil(u128::from(amount.0));
    assert_eq!(u128::from(report.routing_ppm.0), paid);
    assert!(report.routing_source.contains("last 1 completed"));
    let suggestion = al.suggest().await.unwrap();
    assert_eq!(suggestion.routing_ppm, report.routing_ppm);

    // The journal holds the dry run, the dispatch and the ok, for this target.
    let journal = al
        .journal(&JournalFilter {
            target: Some(target.clone()),
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(journal[0].reason, "ok");
    assert!(
        journal
            .iter()
            .any(|r| r.reason == "dry_run" && r.swap.is_none())
    );
    assert!(
        journal
            .iter()
            .any(|r| r.reason == "swap" && r.swap == Some(hash))
    );
    cancel.cancel();
    engine.stop().await;
    let _ = &net.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_swaps_are_left_alone_inactive_channels_wait_and_a_restart_keeps_mode_and_ledger() {
    let net = net().await;
    let engine = net.engine().await;
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    al.set_mode(Mode::DryRun).await.unwrap();
    let target = net.chan.to_string();

    // A manual swap through the channel: autoloop skips the channel while it runs.
    let manual = engine
        .loop_out(sluice::swap::LoopOutRequest {
            amount: Sat(100_000),
            destination: None,
            outgoing_chan_set: vec![net.chan],
            label: "by hand".to_owned(),
            initiator: "cli".to_owned(),
            conf_target: Some(100),
            limits: None,
            fast: true,
        })
        .await
        .unwrap();
    let report = pass(&al).await;
    let d = &report.decision(&target).unwrap().decision;
    assert_eq!(d.reason.name(), "in_flight", "{}", d.detail);
    assert_eq!(net.drive(manual).await, SwapState::Succeeded);
    // It finished without touching the ledger.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(al.budget().await[0].total.spent, Sat::ZERO);

    // The peer goes offline: the channel is inactive.
    lock(&net.world).set_channel_active(net.chan, false);
    let report = pass(&al).await;
    assert_eq!(
        report.decision(&target).unwrap().decision.reason.name(),
        "inactive"
    );
    lock(&net.world).set_channel_active(net.chan, true);
    let last = pass(&al).await;
    assert_eq!(
        last.decision(&target).unwrap().decision.reason.name(),
        "dry_run"
    );

    // Restart: mode, journal position and ledger come back from the store.
    let budget_before = al.budget().await;
    cancel.cancel();
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    assert_eq!(al.mode(), Mode::DryRun);
    assert_eq!(al.budget().await, budget_before);
    let next = pass(&al).await;
    // Pass ids go on from the journal (background wakes may have run passes too).
    assert!(next.pass_id > last.pass_id);
    cancel.cancel();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_policy_keeps_the_last_good_one() {
    let net = net().await;
    let engine = net.engine().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::copy(policy_path().join("policy.yaml"), &file).unwrap();
    let mut config = AutoloopConfig::new(dir.path().to_owned());
    config.tick = Duration::from_secs(3600);
    let cancel = CancellationToken::new();
    let al = Autoloop::start(
        AutoloopDeps {
            node: net.node.clone(),
            provider: net.client.clone(),
            engine: engine.clone(),
            store: net.store.clone(),
            config,
            clock: net.clock(),
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    assert!(al.policy_status().borrow().rejected.is_none());
    std::fs::write(&file, "rules: [ { name: broken, band: 12 } ]\n").unwrap();
    assert!(al.reload_policy().await.is_err());
    let status = al.policy_status().borrow().clone();
    assert!(status.rejected.is_some());
    assert_eq!(
        status.rules,
        vec!["routing".to_owned()],
        "the last good policy stays"
    );
    al.set_mode(Mode::DryRun).await.unwrap();
    let report = pass(&al).await;
    assert_eq!(
        report
            .decision(&net.chan.to_string())
            .unwrap()
            .decision
            .rule
            .as_deref(),
        Some("routing")
    );
    cancel.cancel();
    engine.stop().await;
}

/// Three channels: 5M at 24 % inbound (needs 1.3M), 800k at 24 % (needs only 208k, below
/// set-and-forget's 250k minimum) and 2M at 50 % (inside the band).
async fn three_channel_net() -> (Net, [ChanId; 3]) {
    let mut config = WorldConfig::default_topology(11, 3);
    let shapes = [
        ("peer1", 5_000_000, 3_800_000),
        ("peer2", 800_000, 608_000),
        ("peer3", 2_000_000, 1_000_000),
    ];
    for (peer, cap, local) in shapes {
        let ch = config
            .channels
            .iter_mut()
            .find(|c| c.initiator == "sluice" && c.peer == peer)
            .unwrap();
        ch.capacity = Sat(cap);
        ch.initiator_balance = Sat(local);
    }
    let world: SharedWorld = Arc::new(Mutex::new(World::new(config).unwrap()));
    let base = net_on(world).await;
    let chans = base.node.list_channels().await.unwrap();
    let id = |cap: u64| {
        chans
            .iter()
            .find(|c| c.capacity == Sat(cap))
            .unwrap()
            .chan_id
    };
    let ids = [id(5_000_000), id(800_000), id(2_000_000)];
    (base, ids)
}

/// A copy of set-and-forget with `edit` applied to its policy text.
fn edited_policy(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(policy_path().join("policy.yaml")).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), edit(text)).unwrap();
    dir
}

async fn autoloop_with(
    net: &Net,
    engine: &SwapEngine,
    policy: PathBuf,
) -> (Autoloop, CancellationToken) {
    let mut config = AutoloopConfig::new(policy);
    config.tick = Duration::from_secs(3600);
    let cancel = CancellationToken::new();
    let al = Autoloop::start(
        AutoloopDeps {
            node: net.node.clone(),
            provider: net.client.clone(),
            engine: engine.clone(),
            store: net.store.clone(),
            config,
            clock: net.clock(),
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    al.set_mode(Mode::DryRun).await.unwrap();
    (al, cancel)
}

fn reason(report: &PassReport, chan: ChanId) -> String {
    let d = &report.decision(&chan.to_string()).unwrap().decision;
    d.reason.name().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reason_comes_from_a_real_scenario() {
    let (net, [big, small, balanced]) = three_channel_net().await;
    let engine = net.engine().await;

    // set-and-forget as shipped: dry_run, below_min_size, ok.
    let (al, cancel) = autoloop_with(&net, &engine, policy_path()).await;
    let report = pass(&al).await;
    assert_eq!(reason(&report, big), "dry_run");
    assert_eq!(reason(&report, small), "below_min_size");
    assert_eq!(reason(&report, balanced), "ok");
    // suggest agrees and is not journalled (it gets no pass id).
    let suggestion = al.suggest().await.unwrap();
    assert_eq!(reason(&suggestion, big), "dry_run");
    assert_eq!(suggestion.pass_id, 0);

    // Fees above the 20 sat/vB ceiling: the gate closes for the 24 % channel.
    {
        let mut w = lock(&net.world);
        w.set_fee_trace(sluice::simnet::chain::FeeTrace::Flat(7_500));
        w.mine(1);
    }
    let report = pass(&al).await;
    assert_eq!(
        reason(&report, big),
        "fee_gate",
        "{:?}",
        report.decision(&big.to_string())
    );
    {
        let mut w = lock(&net.world);
        w.set_fee_trace(sluice::simnet::chain::FeeTrace::default());
        w.mine(1);
    }
    cancel.cancel();

    // A budget too small for the swap.
    let dir = edited_policy(|t| t.replace("limit: 150k", "limit: 2k"));
    let (al, cancel) = autoloop_with(&net, &engine, dir.path().to_owned()).await;
    let report = pass(&al).await;
    assert_eq!(reason(&report, big), "budget_insufficient");
    cancel.cancel();

    // A schedule that allows only New Year's midnight.
    let dir = edited_policy(|t| {
        t.replace(
            "  backoff: {",
            "  schedule: { when: \"0 0 1 1 *\" }\n  backoff: {",
        )
    });
    let (al, cancel) = autoloop_with(&net, &engine, dir.path().to_owned()).await;
    let report = pass(&al).await;
    assert_eq!(reason(&report, big), "outside_schedule");
    cancel.cancel();

    // earnings-aware vetoes: the channel earned nothing in routing fees.
    let earnings = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/earnings-aware");
    let (al, cancel) = autoloop_with(&net, &engine, earnings).await;
    let report = pass(&al).await;
    assert_eq!(reason(&report, big), "vetoed");
    cancel.cancel();

    // The journal kept every pass's reasons.
    let reasons: std::collections::BTreeSet<String> = net
        .store
        .journal(&JournalFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.reason)
        .collect();
    for r in [
        "dry_run",
        "below_min_size",
        "ok",
        "fee_gate",
        "budget_insufficient",
        "outside_schedule",
        "vetoed",
    ] {
        assert!(reasons.contains(r), "{r} missing from {reasons:?}");
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_swap_releases_its_reservation_and_backs_its_channel_off_across_a_restart() {
    let net = net().await;
    let engine = net.engine().await;
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    let target = net.chan.to_string();
    // The server underpays the HTLC: the client never reveals and the swap fails.
    net.server
        .set_behaviour_for_next_swap(sluice::loopserver::Behaviour {
            htlc: sluice::loopserver::behaviour::HtlcTamper::ValueBelow(Sat(10_000)),
            ..Default::default()
        });
    al.set_mode(Mode::On).await.unwrap();
    let hash = poll("a dispatched swap", async || {
        let _ = al.run_pass(Wake::Forced).await;
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .first()
            .map(|r| r.contract.terms().swap_hash)
    })
    .await;
    // Mine until the swap ends (the server takes its HTLC back after the expiry).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let state = loop {
        let r = net.store.load_swap(hash).await.unwrap().unwrap().record;
        if r.progress.state.is_terminal() {
            break r.progress.state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck in {:?}",
            r.progress.state
        );
        lock(&net.world).mine(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(state, SwapState::Succeeded);
    // Released once its payments have final results: the server gives up the held swap
    // payment only as blocks pass, so keep mining; each pass settles what is due.
    let status = poll("the release", async || {
        lock(&net.world).mine(10);
        let _ = al.run_pass(Wake::Forced).await;
        let s = al.budget().await;
        (s[0].total.reserved_worst == Sat::ZERO).then_some(s)
    })
    .await;
    assert!(status[0].total.spent <= status[0].total.limit);
    assert_eq!(
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .len(),
        1,
        "no second swap while the first one's outcome was pending"
    );
    let backoff = net.store.backoffs().await.unwrap();
    assert_eq!(
        backoff.get(&net.chan).map(|b| b.consecutive_failures),
        Some(1)
    );

    // The channel now waits out its backoff, also after a restart.
    al.set_mode(Mode::DryRun).await.unwrap();
    let report = pass(&al).await;
    assert_eq!(
        report.decision(&target).unwrap().decision.reason.name(),
        "backoff"
    );
    cancel.cancel();
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    assert_eq!(al.mode(), Mode::DryRun);
    assert_eq!(al.budget().await, status);
    let report = pass(&al).await;
    assert_eq!(
        report.decision(&target).unwrap().decision.reason.name(),
        "backoff"
    );
    cancel.cancel();
    engine.stop().await;
}

/// A copy of set-and-forget with `edit` applied, and `script` (if any) beside it as
/// `script.rhai`, referenced by the rule.
fn edited_policy_with_script(
    edit: impl Fn(String) -> String,
    script: Option<&str>,
) -> tempfile::TempDir {
    let dir = edited_policy(edit);
    if let Some(source) = script {
        std::fs::write(dir.path().join("script.rhai"), source).unwrap();
        let path = dir.path().join("policy.yaml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "    match: all\n",
            "    match: all\n    script: script.rhai\n",
        );
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_reasons_come_from_real_scenarios_too() {
    let (net, [big, small, balanced]) = three_channel_net().await;
    let engine = net.engine().await;
    let big_id = big.to_string();

    // Each case: the policy edit, an optional script, the channel and the reason expected.
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Edit, Option<&str>, ChanId, &str)> = vec![
        (
            "a tagged channel is excluded",
            Box::new(move |t: String| t.replace("800003x1x0", &big_id)),
            None,
            big,
            "excluded",
        ),
        (
            "a channel no rule matches",
            Box::new(|t: String| t.replace("match: all", "match: { capacity_min: 3M }")),
            None,
            balanced,
            "no_rule",
        ),
        (
            "a fee cap below the swap's expected cost",
            Box::new(|t: String| t.replace("max_total: 0.6%", "max_total: 0.01%")),
            None,
            big,
            "fee_cap",
        ),
        (
            "a blackout window over now",
            Box::new(|t: String| {
                t.replace(
                    "  backoff: {",
                    "  schedule:\n    blackout:\n      - { from: \"2020-01-01 00:00\", to: \"2099-01-01 00:00\" }\n  backoff: {",
                )
            }),
            None,
            big,
            "blackout",
        ),
        (
            "a script that throws",
            Box::new(|t: String| t),
            Some("fn decide(target, proposal, ctx) { throw \"no idea\"; }"),
            big,
            "script_error",
        ),
        (
            "a script that runs away",
            Box::new(|t: String| t),
            Some("fn decide(target, proposal, ctx) { let n = 0; loop { n += 1; } }"),
            big,
            "script_error",
        ),
        (
            "a script asking more than the channel can pay",
            Box::new(|t: String| t.replace("max: 2M", "max: 5M")),
            Some("fn decide(target, proposal, ctx) { proposal.amount_sat = 4500000; proposal }"),
            big,
            "no_route",
        ),
    ];
    for (what, edit, script, chan, expected) in cases {
        let dir = edited_policy_with_script(edit, script);
        let (al, cancel) = autoloop_with(&net, &engine, dir.path().to_owned()).await;
        assert!(
            al.policy_status().borrow().rejected.is_none(),
            "{what}: the policy was rejected: {:?}",
            al.policy_status().borrow().rejected
        );
        let report = pass(&al).await;
        let d = &report.decision(&chan.to_string()).unwrap().decision;
        assert_eq!(d.reason.name(), expected, "{what}: {}", d.detail);
        assert!(report.dispatched().next().is_none(), "{what}: dispatched");
        cancel.cancel();
    }
    // The other two channels are untouched by the edits above.
    let _ = small;

    // Pending HTLCs: a payment held by the peer on the big channel leaves too little
    // outbound for the swap the band asks for.
    let peer = Arc::new(SimNode::new(net.world.clone(), "peer1").unwrap());
    let hold = peer
        .add_hold_invoice(&sluice::lnd::types::HoldInvoiceRequest {
            hash: SwapHash([0x5a; 32]),
            amount: Sat(1_200_000).to_msat(),
            memo: "held".to_owned(),
            expiry: Duration::from_secs(3_600),
            cltv_expiry: 40,
            route_hints: Vec::new(),
            private: false,
        })
        .await
        .unwrap();
    let paying = net
        .node
        .pay(&sluice::lnd::types::PaymentRequest {
            invoice: hold.payment_request.clone(),
            fee_limit: Sat(1_000).to_msat(),
            outgoing_chan_ids: vec![big],
            max_parts: 1,
            timeout: Duration::from_secs(600),
            cltv_limit: None,
            last_hop: None,
        })
        .await
        .unwrap();
    poll("the payment to be held", async || {
        let chans = net.node.list_channels().await.unwrap();
        chans
            .iter()
            .find(|c| c.chan_id == big)
            .filter(|c| c.pending_htlc_count > 0)
            .map(|_| ())
    })
    .await;
    let (al, cancel) = autoloop_with(&net, &engine, policy_path()).await;
    let report = pass(&al).await;
    let d = &report.decision(&big.to_string()).unwrap().decision;
    assert_eq!(d.reason.name(), "pending_htlcs", "{}", d.detail);
    cancel.cancel();
    drop(paying);
    engine.stop().await;
}

/// `swap`, `in_flight` and `budget_exhausted` need a real swap: with one swap allowed in
/// flight, one of two below-band channels is dispatched and the other waits; once the swap
/// has settled, a budget exactly as large as what it spent leaves nothing for the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_in_flight_holds_the_next_and_a_spent_budget_exhausts_it() {
    let (net, [big, small, _]) = three_channel_net().await;
    let engine = net.engine().await;
    let one_at_a_time = |t: String| {
        // Small swaps pay the server's base fee: allow them 2 %.
        t.replace("min: 250k", "min: 100k")
            .replace("in_flight: 2,", "in_flight: 1,")
            .replace("max_total: 0.6%", "max_total: 2%")
            .replace("max_server: 0.5%", "max_server: 2%")
            .replace("period: day, limit: 20k", "period: day, limit: 100k")
    };
    let dir = edited_policy(one_at_a_time);
    let (al, cancel) = autoloop_with(&net, &engine, dir.path().to_owned()).await;
    al.set_mode(Mode::On).await.unwrap();
    // Dispatched by this pass or one the mode change woke.
    let record = poll("a dispatched swap", async || {
        let _ = al.run_pass(Wake::Forced).await;
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .into_iter()
            .next()
    })
    .await;
    let hash = record.contract.terms().swap_hash;
    let swapped = record.contract.terms().outgoing_chan_set[0];
    let waiting = if swapped == big { small } else { big };
    let journal = al
        .journal(&JournalFilter {
            target: Some(swapped.to_string()),
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    assert!(
        journal
            .iter()
            .any(|r| r.reason == "swap" && r.swap == Some(hash)),
        "{journal:?}"
    );
    let report = pass(&al).await;
    assert_eq!(reason(&report, waiting), "in_flight");
    assert_eq!(
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .len(),
        1,
        "one swap at a time"
    );

    assert_eq!(net.drive(hash).await, SwapState::Succeeded);
    let spent = poll("the swap to settle in the ledger", async || {
        let s = al.budget().await;
        (s[0].total.reserved_worst == Sat::ZERO && s[0].total.spent > Sat::ZERO)
            .then_some(s[0].total.spent)
    })
    .await;
    cancel.cancel();

    // The same policy with a monthly budget of exactly what was spent.
    let dir = edited_policy(move |t| {
        one_at_a_time(t).replace("limit: 150k", &format!("limit: {}", spent.0))
    });
    let (al, cancel) = autoloop_with(&net, &engine, dir.path().to_owned()).await;
    assert!(al.policy_status().borrow().rejected.is_none());
    let report = pass(&al).await;
    assert_eq!(
        reason(&report, waiting),
        "budget_exhausted",
        "{}",
        report
            .decision(&waiting.to_string())
            .unwrap()
            .decision
            .detail
    );
    cancel.cancel();
    engine.stop().await;
}

/// A failed dispatch is journalled as `dispatch_failed` with the engine's error, never as
/// `swap`; a swap server that cannot be reached gives `provider_unavailable` decisions, in
/// the journal and in `suggest`, instead of a failed pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_failures_are_decisions_with_their_own_reasons() {
    let (net, [big, small, balanced]) = three_channel_net().await;
    let engine = net.engine().await;
    let (al, cancel) = autoloop_with(&net, &engine, policy_path()).await;
    // The server forges every swap invoice: the client refuses each swap before storing it
    // (every swap, since the mode change also wakes a pass).
    net.server
        .set_default_behaviour(sluice::loopserver::Behaviour {
            invoice: sluice::loopserver::behaviour::InvoiceTamper::WrongHash,
            ..Default::default()
        });
    al.set_mode(Mode::On).await.unwrap();
    let report = pass(&al).await;
    let d = &report.decision(&big.to_string()).unwrap();
    assert_eq!(d.decision.reason.name(), "dispatch_failed", "{d:?}");
    assert!(d.decision.detail.contains("dispatch failed"), "{d:?}");
    assert!(d.swap.is_none());
    assert_eq!(report.dispatched().count(), 0);
    cancel.cancel();

    // A swap server that does not answer.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let unreachable = LoopServerClient::connect(
        &addr.to_string(),
        ServerTls::Insecure,
        Duration::from_secs(2),
        L402Config::new(Network::Regtest, net.dir.path()),
        Arc::new(NeverPay),
    )
    .unwrap();
    let mut config = AutoloopConfig::new(policy_path());
    config.tick = Duration::from_secs(3600);
    let cancel = CancellationToken::new();
    let al = Autoloop::start(
        AutoloopDeps {
            node: net.node.clone(),
            provider: Arc::new(unreachable),
            engine: engine.clone(),
            store: net.store.clone(),
            config,
            clock: net.clock(),
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    al.set_mode(Mode::DryRun).await.unwrap();
    let report = al
        .run_pass(Wake::Forced)
        .await
        .expect("a server outage is not a failed pass")
        .unwrap();
    assert_eq!(reason(&report, big), "provider_unavailable");
    assert_eq!(reason(&report, small), "provider_unavailable");
    assert_eq!(reason(&report, balanced), "ok");
    let d = &report.decision(&big.to_string()).unwrap().decision;
    assert!(d.detail.contains("swap server"), "{d:?}");
    let suggestion = al.suggest().await.unwrap();
    assert_eq!(reason(&suggestion, big), "provider_unavailable");
    let journal = net.store.journal(&JournalFilter::default()).await.unwrap();
    assert!(
        journal
            .iter()
            .any(|r| r.reason == "provider_unavailable" && r.target == big.to_string())
    );
    assert!(journal.iter().any(|r| r.reason == "dispatch_failed"));
    assert!(!journal.iter().any(|r| r.reason == "swap"));
    cancel.cancel();
    engine.stop().await;
}

/// The percentile gate keeps its hysteresis across a restart: the gate's state is persisted
/// with the fee history, which holds the estimates the gate compares (100 blocks for
/// set-and-forget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fee_gate_keeps_its_hysteresis_across_a_restart() {
    let (net, [big, _, _]) = three_channel_net().await;
    let engine = net.engine().await;
    // Two weeks of 100-block estimates from 100 to 10,000 sat/kw, one every 3 hours:
    // p25 = 2,500 and p35 = 3,500 sat/kw (set-and-forget closes above percentile + 10).
    let now = i64::try_from(net.clock()().as_secs()).unwrap();
    let history: Vec<String> = (1..=100i64)
        .map(|k| format!("{}:100:{}", now - k * 3 * 3600, k * 100))
        .collect();
    net.store
        .set_autoloop_setting("fee_history", &history.join(","))
        .await
        .unwrap();
    let set_fee = |sat_kw: u64| {
        let mut w = lock(&net.world);
        w.set_fee_trace(sluice::simnet::chain::FeeTrace::Flat(sat_kw));
        w.mine(1);
    };
    // 3,000 sat/kw with the gate closed: it stays closed.
    set_fee(3_000);
    let (al, cancel) = autoloop_with(&net, &engine, policy_path()).await;
    assert_eq!(reason(&*pass(&al).await, big), "fee_gate");
    // 2,000 opens it; back at 3,000 it stays open.
    set_fee(2_000);
    assert_eq!(reason(&*pass(&al).await, big), "dry_run");
    set_fee(3_000);
    assert_eq!(reason(&*pass(&al).await, big), "dry_run");
    cancel.cancel();
    // After a restart at 3,000 the gate is still open.
    let (al, cancel) = autoloop_with(&net, &engine, policy_path()).await;
    let report = pass(&al).await;
    assert_eq!(
        reason(&report, big),
        "dry_run",
        "{:?}",
        report.decision(&big.to_string())
    );
    cancel.cancel();
    engine.stop().await;
}

/// With `swap.outgoing: any` the swap is recorded against its target's channels: the next
/// pass finds the target's in-flight slot taken instead of swapping it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_that_may_pay_through_any_channel_still_holds_its_target() {
    let (net, [big, _, _]) = three_channel_net().await;
    let engine = net.engine().await;
    let dir = edited_policy(|t| {
        // A 90% outbound reserve limit, so the swap's pending HTLC leaves enough local balance.
        t.replace("htlc_confs: 1 }", "htlc_confs: 1, outgoing: any }")
            .replace("inbound_max: 70%", "inbound_max: 90%")
            .replace("in_flight: 2,", "in_flight: 5,")
            .replace("limit: 50k }", "limit: 150k }")
    });
    let (al, cancel) = autoloop_with(&net, &engine, dir.path().to_owned()).await;
    al.set_mode(Mode::On).await.unwrap();
    // Dispatched by this pass or by the one the mode change woke.
    let hash = poll("a dispatched swap", async || {
        let _ = al.run_pass(Wake::Forced).await;
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .first()
            .map(|r| r.contract.terms().swap_hash)
    })
    .await;
    assert_eq!(
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    let terms = net.store.load_swap(hash).await.unwrap().unwrap().record;
    assert!(terms.contract.terms().outgoing_chan_set.is_empty());
    assert_eq!(net.store.swap_channels(hash).await.unwrap(), vec![big]);
    let report = pass(&al).await;
    let d = &report.decision(&big.to_string()).unwrap().decision;
    assert_eq!(d.reason.name(), "in_flight", "{d:?}");
    assert!(d.detail.contains("on this target"), "{d:?}");
    cancel.cancel();
    engine.stop().await;
}

/// The journal keeps a decision when it changes or acts, and one summary line per pass: a
/// pass that decides the same as the last one adds no decision line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_keeps_changes_and_a_summary_per_pass() {
    let (net, [big, small, balanced]) = three_channel_net().await;
    let engine = net.engine().await;
    let (al, cancel) = autoloop_with(&net, &engine, policy_path()).await;
    pass(&al).await;
    let first = net.store.journal(&JournalFilter::default()).await.unwrap();
    let last = pass(&al).await;
    let after = net.store.journal(&JournalFilter::default()).await.unwrap();
    assert_eq!(
        first.len(),
        after.len(),
        "an unchanged pass adds no decision: {after:?}"
    );
    assert!(first.len() >= 3);
    let passes = net.store.pass_summaries(10).await.unwrap();
    assert_eq!(passes[0].pass_id, last.pass_id);
    assert_eq!(passes[0].targets, 3);
    assert_eq!(passes[0].counts.get("ok"), Some(&1));
    assert_eq!(passes[0].counts.get("dry_run"), Some(&1));
    assert_eq!(passes[0].counts.get("below_min_size"), Some(&1));
    // A changed decision is journalled: fees above the ceiling close the gate.
    {
        let mut w = lock(&net.world);
        w.set_fee_trace(sluice::simnet::chain::FeeTrace::Flat(7_500));
        w.mine(1);
    }
    pass(&al).await;
    let gated = net
        .store
        .journal(&JournalFilter {
            reason: Some("fee_gate".into()),
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(gated.len(), 1);
    assert_eq!(gated[0].target, big.to_string());
    let _ = (small, balanced);
    cancel.cancel();
    engine.stop().await;
}

/// `sluice policy test` predicts what the live daemon decides: the snapshot of a live
/// dry-run pass on the simnet, written as a test case beside set-and-forget (no `budget:`, so
/// the policy's own budgets apply), gives the same reason and amount for every target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_test_predicts_the_live_pass() {
    let (net, _) = three_channel_net().await;
    let engine = net.engine().await;
    let (al, cancel) = autoloop_with(&net, &engine, policy_path()).await;
    // A new pass whose `now` is a whole minute, so the case's `now` is the pass's.
    let report = pass(&al).await;
    let now = report.at;
    let channels = net.node.list_channels().await.unwrap();
    let sat_kw = |r: u64| format!("{r} sat/kw");
    let estimates: Vec<String> = report
        .fee_estimates
        .iter()
        .map(|(t, r)| format!("{t}: {}", sat_kw(r.0)))
        .collect();
    let gated_rate = report
        .fee_estimates
        .iter()
        .find(|(t, _)| *t == 100)
        .unwrap()
        .1;
    let mut case = format!(
        "description: a live dry-run pass on the simnet\nnow: {}\ndry_run: true\n\
         terms: {{ min: {}, max: {}, swap_fee: {}%, prepay: {} }}\n\
         fees:\n  estimates: {{ {} }}\n  history: {{ every: 10m, conf_target: 100, rates: [\"{}\"] }}\n  routing: {}%\n\
         channels:\n",
        now.format("%Y-%m-%dT%H:%M:%S"),
        report.terms.min.0,
        report.terms.max.0,
        report.terms.swap_fee_ppm.0 as f64 / 10_000.0,
        report.terms.prepay.0,
        estimates.join(", "),
        sat_kw(gated_rate.0),
        report.routing_ppm.0 as f64 / 10_000.0,
    );
    for c in &channels {
        case.push_str(&format!(
            "  - {{ id: {}, capacity: {}, local: {}, remote: {}, active: {}, pending_htlcs: {} }}\n",
            c.chan_id,
            c.capacity.0,
            c.local_balance.0,
            c.remote_balance.0,
            c.active,
            c.pending_htlc_count
        ));
    }
    case.push_str("expect:\n");
    for t in &report.decisions {
        let d = &t.decision;
        case.push_str(&format!(
            "  - {{ target: {}, reason: {}{} }}\n",
            d.target,
            d.reason.name(),
            d.proposal
                .as_ref()
                .map_or(String::new(), |p| format!(", amount: {}", p.amount.0))
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        policy_path().join("policy.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("live.test.yaml"), &case).unwrap();
    let reasons: Vec<&str> = report
        .decisions
        .iter()
        .map(|t| t.decision.reason.name())
        .collect();
    assert!(reasons.contains(&"dry_run"), "{reasons:?}");
    assert_eq!(report.decisions.len(), channels.len());
    let tested = sluice::policy::run_tests(dir.path()).unwrap();
    let failures: Vec<&str> = tested.failures().collect();
    assert!(failures.is_empty(), "{case}\n{failures:#?}");
    assert_eq!(tested.cases[0].checked, channels.len());
    cancel.cancel();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_result_was_never_saved_is_looked_up_before_the_reservation_is_released() {
    let net = net().await;
    let engine = net.engine().await;
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    // The server underpays the HTLC: the swap fails before the reveal, after the prepay
    // settled and once the held swap payment is given up.
    net.server
        .set_behaviour_for_next_swap(sluice::loopserver::Behaviour {
            htlc: sluice::loopserver::behaviour::HtlcTamper::ValueBelow(Sat(10_000)),
            ..Default::default()
        });
    al.set_mode(Mode::On).await.unwrap();
    let hash = poll("a dispatched swap", async || {
        let _ = al.run_pass(Wake::Forced).await;
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .first()
            .map(|r| r.contract.terms().swap_hash)
    })
    .await;
    // Autoloop goes down at once; the engine runs the swap to its end.
    cancel.cancel();
    let record = poll("the swap's end with both payments final", async || {
        lock(&net.world).mine(1);
        let r = net.store.load_swap(hash).await.unwrap().unwrap().record;
        (r.progress.state.is_terminal()
            && r.progress.swap_payment.is_final()
            && r.progress.prepay_payment.is_final())
        .then_some(r)
    })
    .await;
    let prepay = record.contract.terms().prepay_invoice.amount;
    assert!(record.progress.prepay_payment.is_succeeded());
    engine.stop().await;

    // The crash came before the prepay's result was saved: the store's newest row has the
    // prepay as never dispatched, though lnd paid it.
    let mut lost = record.progress.clone();
    lost.prepay_payment = sluice::swap::PaymentStatus::NotDispatched;
    net.store
        .save_progress(hash, &lost, lost.costs(), 0)
        .await
        .unwrap();

    // Restarted: the reservation is released only with the prepay booked.
    let engine = net.engine().await;
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    let status = poll("the release", async || {
        let _ = al.run_pass(Wake::Forced).await;
        let s = al.budget().await;
        (s[0].total.reserved_worst == Sat::ZERO).then_some(s)
    })
    .await;
    assert!(
        status[0].total.spent >= prepay,
        "the prepay of {prepay} was never booked: {:?}",
        status[0].total
    );
    let stored = net.store.load_swap(hash).await.unwrap().unwrap().record;
    assert!(stored.progress.prepay_payment.is_succeeded());
    cancel.cancel();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l402_token_bought_by_a_pass_is_booked_in_the_ledger_once() {
    let mut net = net().await;
    // The server now sits behind an L402 front charging 900 sat; the client pays through
    // the node.
    net.server.set_l402(Some(sluice::loopserver::L402Settings {
        price: Sat(900),
        ..Default::default()
    }));
    let addr = net.server.serve_on_loopback().await.unwrap();
    net.client = Arc::new(
        LoopServerClient::connect(
            &addr.to_string(),
            ServerTls::Insecure,
            Duration::from_secs(10),
            L402Config::new(Network::Regtest, net.dir.path()),
            Arc::new(sluice::provider::node_payer::NodePayer(net.node.clone())),
        )
        .unwrap(),
    );
    let engine = net.engine().await;
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    al.set_mode(Mode::DryRun).await.unwrap();
    // A dry-run pass quotes, and the first quote buys the token.
    pass(&al).await;
    let tokens = sluice::provider::l402::TokenStore::new(net.dir.path());
    let token = tokens.load_paid().unwrap().expect("a paid token");
    let price = Sat((token.amount_paid.0 + token.routing_fee.0).div_ceil(1000));
    assert!(price >= Sat(900));

    let l402_spends = |entries: Vec<sluice::ledger::Entry>| -> Vec<Sat> {
        entries
            .into_iter()
            .filter_map(|e| match e.kind {
                sluice::ledger::EntryKind::Spend {
                    amount,
                    category: sluice::ledger::SpendCategory::L402,
                } => Some(amount),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        l402_spends(net.store.ledger_entries().await.unwrap()),
        vec![price]
    );
    let budget = al.budget().await;
    assert!(budget[0].total.spent >= price, "{:?}", budget[0].total);
    assert_eq!(budget[0].total.reserved_worst, Sat::ZERO);

    // More passes and a restart book it no second time.
    pass(&al).await;
    cancel.cancel();
    let cancel = CancellationToken::new();
    let al = net.autoloop(&engine, cancel.clone()).await;
    pass(&al).await;
    assert_eq!(
        l402_spends(net.store.ledger_entries().await.unwrap()),
        vec![price]
    );
    assert_eq!(al.budget().await, budget);
    cancel.cancel();
    engine.stop().await;
}

/// Autoloop follows blocks through the engine's block-epoch stream (not one of its own): a
/// mined block, with no channel event and the safety tick an hour away, wakes a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_wakes_a_pass() {
    let net = net().await;
    let cancel = CancellationToken::new();
    let engine = net.engine().await;
    let al = net.autoloop(&engine, cancel.clone()).await;
    let mut passes = al.passes();
    al.set_mode(Mode::DryRun).await.unwrap();
    // The pass the mode change woke.
    let first = poll("the pass the mode woke", async || {
        passes.borrow_and_update().as_ref().map(|p| p.pass_id)
    })
    .await;
    lock(&net.world).mine(1);
    let next = poll("a pass after the block", async || {
        passes
            .borrow_and_update()
            .as_ref()
            .map(|p| p.pass_id)
            .filter(|id| *id > first)
    })
    .await;
    assert!(next > first);
    cancel.cancel();
}
