//! Loop In end to end on the simnet: the engine against the reference Loop server (which
//! serves Loop In), both on one simulated chain. One swap the server pays and claims; one it
//! never pays, which the node takes back through the timeout leaf at the expiry. In both the
//! node's channels plus wallet move by exactly the costs the swap recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_harness;

use std::time::Duration;

use engine_harness::{Simnet, simnet, simnet_in};
use sluice::domain::{Direction, Sat, SwapHash};
use sluice::loopserver::InBehaviour;
use sluice::loopserver::behaviour_in::PayMode;
use sluice::simnet::world::lock;
use sluice::store::loop_in::LoopInRecord;
use sluice::swap::loop_in::{InvoiceStatus, LoopInSpendPath, LoopInState};
use sluice::swap::{EngineError, LoopInRequest, RouteHints, SwapEngine};

async fn record(net: &Simnet, hash: SwapHash) -> LoopInRecord {
    net.store.load_loop_in(hash).await.unwrap().unwrap()
}

/// Mines whenever the mempool holds a transaction, jumps to the expiry when the swap waits for
/// it, and mines one block per poll once a spend waits for depth; until `done` holds.
async fn drive(net: &Simnet, hash: SwapHash, done: impl Fn(&LoopInRecord) -> bool) -> LoopInRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let r = record(net, hash).await;
        if done(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "loop in stuck in {:?}: {:?}",
            r.progress.state,
            r.progress
        );
        {
            let mut w = lock(&net.world);
            let expiry = r.contract.terms().expiry.0;
            let height = w.height().0;
            let waiting_for_expiry = matches!(
                r.progress.state,
                LoopInState::HtlcConfirmed | LoopInState::IncorrectHtlcAmount
            ) && !net.server.loop_in_paid(hash).unwrap_or(true);
            if !w.chain().mempool_txids().is_empty()
                || r.progress.spend.is_some()
                || r.progress.state == LoopInState::InvoiceSettled
            {
                w.mine(1);
            } else if waiting_for_expiry && height < expiry {
                w.mine(expiry - height);
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn request(amount: u64) -> LoopInRequest {
    LoopInRequest {
        amount: Sat(amount),
        label: "test".to_owned(),
        initiator: "loop_in_engine test".to_owned(),
        ..LoopInRequest::default()
    }
}

/// Mines until the mempool is empty, so the wallet's change is confirmed before counting.
fn settle_mempool(net: &Simnet) {
    let mut w = lock(&net.world);
    while !w.chain().mempool_txids().is_empty() {
        w.mine(1);
    }
}

/// The fee of a confirmed transaction, from the chain itself: inputs − outputs.
fn chain_fee(net: &Simnet, txid: bitcoin::Txid) -> Sat {
    use sluice::simnet::chain::TxStatus;
    let w = lock(&net.world);
    let tx = match w.chain().tx(&txid) {
        Some(TxStatus::Confirmed { tx, .. }) => tx.clone(),
        other => panic!("{other:?}"),
    };
    let inputs: u64 = tx
        .input
        .iter()
        .map(|i| match w.chain().tx(&i.previous_output.txid) {
            Some(TxStatus::Confirmed { tx, .. }) => {
                tx.output[i.previous_output.vout as usize].value.to_sat()
            }
            other => panic!("{other:?}"),
        })
        .sum();
    let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    Sat(inputs - outputs)
}

async fn engine(net: &Simnet) -> SwapEngine {
    net.engine().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_loop_in_succeeds_and_the_node_moves_by_the_recorded_costs() {
    let net = simnet().await;
    let engine = engine(&net).await;
    settle_mempool(&net);
    let before = net.holdings().await;
    let mut updates = engine.subscribe_loop_in();
    let created = engine.loop_in(request(200_000)).await.unwrap();
    assert!(created.htlc_address.starts_with("bcrt1p"), "{created:?}");
    let r = drive(&net, created.hash, |r| r.progress.state.is_terminal()).await;
    // The creation and every state change were published, in order, ending with the stored
    // costs.
    let mut seen = Vec::new();
    while let Ok(u) = updates.try_recv() {
        assert_eq!(u.hash, created.hash);
        seen.push(u.state);
        if u.state == LoopInState::Succeeded {
            assert_eq!(u.costs, r.costs);
        }
    }
    // HtlcConfirmed shows unless the server's payment is reported before the confirmation
    // (both watches run at once).
    let mut expected = vec![LoopInState::Initiated, LoopInState::HtlcPublished];
    if seen.contains(&LoopInState::HtlcConfirmed) {
        expected.push(LoopInState::HtlcConfirmed);
    }
    expected.extend([LoopInState::InvoiceSettled, LoopInState::Succeeded]);
    assert_eq!(seen, expected);
    assert_eq!(r.progress.state, LoopInState::Succeeded, "{:?}", r.progress);
    settle_mempool(&net);
    let t = r.contract.terms();
    // The server paid exactly the invoice (amount − fee), learnt the key, claimed the HTLC.
    assert_eq!(
        r.progress.invoice,
        InvoiceStatus::Settled {
            amount_paid: t.amount - t.swap_fee
        }
    );
    assert!(net.server.loop_in_key_pushed(created.hash).unwrap());
    assert_eq!(
        r.progress.spend.map(|s| s.path),
        Some(LoopInSpendPath::ServerClaim)
    );
    let funding_fee = r.progress.funding.expect("the funding is recorded").fee;
    assert!(funding_fee > Sat::ZERO);
    assert!(funding_fee <= t.limits.max_miner_fee);
    assert_eq!(r.costs.server_sat, i64::try_from(t.swap_fee.0).unwrap());
    assert_eq!(r.costs.onchain, funding_fee);
    assert_eq!(
        funding_fee,
        chain_fee(&net, r.progress.funding.unwrap().txid)
    );
    let after = net.holdings().await;
    let cost = Sat(u64::try_from(r.costs.server_sat).unwrap()) + r.costs.onchain;
    assert_eq!(before - after, cost, "holdings {before} → {after}");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_loop_in_is_swept_back_at_the_expiry_and_costs_only_fees() {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_next_swap(InBehaviour {
        pay: PayMode::Never,
        ..InBehaviour::default()
    });
    let engine = engine(&net).await;
    settle_mempool(&net);
    let before = net.holdings().await;
    let created = engine.loop_in(request(150_000)).await.unwrap();
    let r = drive(&net, created.hash, |r| r.progress.state.is_terminal()).await;
    assert_eq!(
        r.progress.state,
        LoopInState::FailedTimeout,
        "{:?}",
        r.progress
    );
    settle_mempool(&net);
    assert!(
        !net.server.loop_in_key_pushed(created.hash).unwrap(),
        "key never pushed unpaid"
    );
    let t = r.contract.terms();
    let spend = r.progress.spend.expect("the timeout spend");
    let LoopInSpendPath::Timeout { swept_value } = spend.path else {
        panic!("swept back by the server? {spend:?}");
    };
    let funding_fee = r.progress.funding.expect("the funding is recorded").fee;
    assert_eq!(
        funding_fee,
        chain_fee(&net, r.progress.funding.unwrap().txid)
    );
    let sweep_fee = t.amount - swept_value;
    assert!(
        sweep_fee <= t.limits.max_miner_fee,
        "sweep fee {sweep_fee} capped"
    );
    assert_eq!(r.costs.server_sat, 0);
    assert_eq!(r.costs.onchain, funding_fee + sweep_fee);
    let after = net.holdings().await;
    assert_eq!(
        before - after,
        r.costs.onchain,
        "holdings {before} → {after}"
    );
    // The invoice was cancelled, so the server can no longer pay a swap taken back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut states = sluice::lnd::LightningNode::subscribe_single_invoice(&*net.node, created.hash)
        .await
        .unwrap();
    use futures::StreamExt;
    let state = states.next().await.unwrap().unwrap().state;
    assert_eq!(state, sluice::lnd::types::InvoiceState::Canceled);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_in_resumes_after_a_restart_and_is_funded_only_once() {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_next_swap(InBehaviour {
        pay: PayMode::Never,
        ..InBehaviour::default()
    });
    let engine = engine(&net).await;
    settle_mempool(&net);
    let before = net.holdings().await;
    let created = engine.loop_in(request(120_000)).await.unwrap();
    // Stop once the funding is in the mempool, before it confirms.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = record(&net, created.hash).await;
        if r.progress.funding.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", r.progress);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.stop().await;
    let engine = net.engine().await;
    let r = drive(&net, created.hash, |r| r.progress.state.is_terminal()).await;
    assert_eq!(
        r.progress.state,
        LoopInState::FailedTimeout,
        "{:?}",
        r.progress
    );
    settle_mempool(&net);
    // One funding transaction paid the HTLC script, ever.
    let script = r.contract.terms().htlc_pk_script.clone();
    let fundings = {
        let w = lock(&net.world);
        (0..=w.height().0)
            .filter_map(|h| w.chain().block_at(sluice::domain::BlockHeight(h)))
            .flat_map(|b| b.txdata.iter())
            .filter(|tx| tx.output.iter().any(|o| o.script_pubkey == script))
            .count()
    };
    assert_eq!(fundings, 1);
    let after = net.holdings().await;
    assert_eq!(before - after, r.costs.onchain);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_in_whose_row_does_not_decode_is_quarantined_as_a_loop_in() {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_next_swap(InBehaviour {
        pay: PayMode::Never,
        ..InBehaviour::default()
    });
    let engine = engine(&net).await;
    let created = engine.loop_in(request(110_000)).await.unwrap();
    engine.stop().await;
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        net.dir.path().join("sluice.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "UPDATE loop_in_updates SET progress_json = '{\"truncated' WHERE id = \
         (SELECT MAX(id) FROM loop_in_updates WHERE swap_hash = ?)",
    )
    .bind(created.hash.to_string())
    .execute(&db)
    .await
    .unwrap();
    let engine = net.engine().await;
    let quarantined = engine.quarantined();
    let q = quarantined
        .iter()
        .find(|q| q.id == created.hash.to_string())
        .unwrap_or_else(|| panic!("{quarantined:?}"));
    // Its direction is what the metrics count it under (sluice_swaps_quarantined{direction}).
    assert_eq!(q.direction, Direction::In, "{q:?}");
    assert!(q.reason.contains("progress_json"), "{q:?}");
    assert!(!engine.is_running(created.hash));
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorged_timeout_sweep_is_swept_again_and_the_costs_stay_exact() {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_next_swap(InBehaviour {
        pay: PayMode::Never,
        ..InBehaviour::default()
    });
    let engine = engine(&net).await;
    settle_mempool(&net);
    let before = net.holdings().await;
    let created = engine.loop_in(request(130_000)).await.unwrap();
    // Up to the first confirmation of our timeout sweep.
    let r = drive(&net, created.hash, |r| r.progress.spend.is_some()).await;
    assert_eq!(r.progress.state, LoopInState::TimeoutSweeping);
    // The block with the sweep goes away (the sweep goes back to the mempool).
    let sweep = r.progress.spend.unwrap().txid;
    {
        let mut w = lock(&net.world);
        let depth = w.height().0 - r.progress.spend.unwrap().height.0 + 1;
        w.reorg(depth).unwrap();
        assert!(
            !matches!(
                w.chain().tx(&sweep),
                Some(sluice::simnet::chain::TxStatus::Confirmed { .. })
            ),
            "the sweep is still confirmed after the reorg"
        );
    }
    let r = drive(&net, created.hash, |r| r.progress.state.is_terminal()).await;
    assert_eq!(
        r.progress.state,
        LoopInState::FailedTimeout,
        "{:?}",
        r.progress
    );
    settle_mempool(&net);
    let after = net.holdings().await;
    assert_eq!(before - after, r.costs.onchain, "{:?}", r.progress);
    engine.stop().await;
}

/// A node whose channels are all private: its lnd's graph is all a payer has, so a payment finds
/// it only through route hints. A Loop In asked with `private` hints its channels (the peer's
/// own policies) to the server and in both invoices, and the server's payment arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_in_to_a_node_behind_private_channels_is_paid_through_its_hints() {
    use futures::StreamExt;
    use sluice::domain::{ChanId, Msat, NodeId};
    use sluice::lnd::LightningNode;
    use sluice::lnd::types::{PaymentFailure, PaymentRequest, PaymentStatus};
    use sluice::simnet::world::{SimNode, WorldConfig};

    let mut world = WorldConfig::default_topology(11, 2);
    for c in world
        .channels
        .iter_mut()
        .filter(|c| c.initiator == "sluice" || c.peer == "sluice")
    {
        c.private = true;
    }
    let net = simnet_in(world).await;
    let engine = engine(&net).await;
    settle_mempool(&net);
    let channels = net.node.list_channels().await.unwrap();
    assert_eq!(channels.len(), 2);
    let ours: Vec<(ChanId, NodeId)> = channels.iter().map(|c| (c.chan_id, c.peer)).collect();

    // Without hints the server's node finds no route to a node with only private channels.
    let (bare, _) = {
        let mut w = lock(&net.world);
        let sluice = w.node_index("sluice").unwrap();
        w.add_invoice(sluice, Msat(100_000_000), "no hints")
            .unwrap()
    };
    let payer = SimNode::new(net.world.clone(), "loop").unwrap();
    let mut paying = payer
        .pay(&PaymentRequest {
            invoice: bare,
            fee_limit: Msat(1_000_000),
            outgoing_chan_ids: Vec::new(),
            max_parts: 1,
            timeout: Duration::from_secs(60),
            cltv_limit: None,
            last_hop: None,
        })
        .await
        .unwrap();
    let mut last = None;
    while let Some(u) = paying.next().await {
        last = Some(u.unwrap().status);
    }
    assert_eq!(last, Some(PaymentStatus::Failed(PaymentFailure::NoRoute)));

    // The quote names the node's private channels, each with its peer's policy.
    let q = engine
        .loop_in_quote(Sat(200_000), None, &RouteHints::Private, None)
        .await
        .unwrap();
    assert!(!q.route_hints.is_empty());
    for hint in &q.route_hints {
        let [hop] = hint.hops.as_slice() else {
            panic!("one hop per hint: {hint:?}")
        };
        assert!(ours.contains(&(hop.chan_id, hop.node)), "{hop:?}");
        let edge = net.node.channel_edge(hop.chan_id).await.unwrap();
        let policy = edge.policy_of(hop.node).unwrap();
        assert_eq!(
            (hop.fee_base_msat, hop.fee_ppm, hop.cltv_delta),
            (policy.fee_base_msat, policy.fee_ppm, policy.cltv_delta)
        );
    }
    // With a last hop, only that peer's channel.
    let (chan, peer) = ours[0];
    let q = engine
        .loop_in_quote(Sat(200_000), Some(peer.0), &RouteHints::Private, None)
        .await
        .unwrap();
    let hinted: Vec<ChanId> = q.route_hints.iter().map(|r| r.hops[0].chan_id).collect();
    assert_eq!(hinted, [chan]);
    // A last hop with no private channel: nothing to hint, said before anything is created.
    let loop_key = {
        let w = lock(&net.world);
        w.node_id(w.node_index("loop").unwrap()).unwrap()
    };
    let err = engine
        .loop_in(LoopInRequest {
            last_hop: Some(loop_key.0),
            route_hints: RouteHints::Private,
            ..request(200_000)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::LoopInArgument(m) if m.contains("no private, active channel with peer")),
        "{err}"
    );

    // The swap: both invoices carry the hints, and the server's payment arrives through them.
    let created = engine
        .loop_in(LoopInRequest {
            route_hints: RouteHints::Private,
            ..request(200_000)
        })
        .await
        .unwrap();
    let r = drive(&net, created.hash, |r| r.progress.state.is_terminal()).await;
    assert_eq!(r.progress.state, LoopInState::Succeeded, "{:?}", r.progress);
    let decoded = net
        .node
        .decode_invoice(&r.contract.terms().swap_invoice)
        .await
        .unwrap();
    assert!(!decoded.route_hints.is_empty());
    for hint in &decoded.route_hints {
        assert!(
            ours.contains(&(hint.hops[0].chan_id, hint.hops[0].node)),
            "{hint:?}"
        );
    }
}

/// `last_hop` is honoured: the server's payment, and its probe, arrive through the peer the
/// node named, so that channel is the one refilled and the other is left alone. Each peer in
/// turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_arrives_through_the_last_hop_the_node_named() {
    use sluice::lnd::LightningNode;

    let net = simnet().await;
    let engine = engine(&net).await;
    settle_mempool(&net);
    let peers: Vec<_> = net
        .node
        .list_channels()
        .await
        .unwrap()
        .iter()
        .map(|c| c.peer)
        .collect();
    assert_eq!(peers.len(), 2);
    for peer in peers {
        let local = |channels: &[sluice::domain::Channel]| -> Vec<(sluice::domain::NodeId, Sat)> {
            channels.iter().map(|c| (c.peer, c.local_balance)).collect()
        };
        let before = local(&net.node.list_channels().await.unwrap());
        let created = engine
            .loop_in(LoopInRequest {
                last_hop: Some(peer.0),
                ..request(200_000)
            })
            .await
            .unwrap();
        let r = drive(&net, created.hash, |r| r.progress.state.is_terminal()).await;
        assert_eq!(r.progress.state, LoopInState::Succeeded, "{:?}", r.progress);
        let t = r.contract.terms();
        let after = local(&net.node.list_channels().await.unwrap());
        for ((p, was), (_, now)) in before.iter().zip(&after) {
            let expected = if *p == peer {
                *was + (t.amount - t.swap_fee)
            } else {
                *was
            };
            assert_eq!(*now, expected, "the channel with {p} (last hop {peer})");
        }
    }
}
