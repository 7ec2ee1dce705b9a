//! The swap engine against the simnet: a simulated lnd ("sluice") paying a real Loop server
//! implementation over gRPC, both on one simulated chain (and that server on an lnd client over
//! gRPC, its path on a real lnd). Covers a full loop-out, restarts
//! after the contract is stored and after the reveal, and that an unsaved step never acts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_harness;

use std::time::Duration;

use engine_harness::{assert_costs_match, request, simnet, simnet_over_lnd, succeeded};
use sluice::domain::Sat;
use sluice::lnd::{LightningNode, NodeErrorKind};
use sluice::loopserver::Behaviour;
use sluice::loopserver::behaviour::Publication;
use sluice::simnet::world::lock;
use sluice::swap::{FeeLimits, SwapCosts, SwapState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_out_reaches_succeeded_and_its_costs_match_what_moved() {
    let net = simnet().await;
    let engine = net.engine().await;
    let mut updates = engine.subscribe();
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;

    let hash = engine.loop_out(request(500_000)).await.unwrap();
    let record = net.drive_until(hash, succeeded).await;

    assert!(record.progress.preimage_push_acked || record.progress.swap_payment.is_succeeded());
    assert!(net.server.knows_preimage(hash).unwrap());
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    assert_eq!(
        net.spend_witness_len(&record),
        1,
        "the cooperative key path is used"
    );

    // The history is in order and ends in the terminal state.
    let history = net.store.swap_history(hash).await.unwrap();
    let states: Vec<SwapState> = history.iter().map(|u| u.progress.state).collect();
    assert_eq!(states.first(), Some(&SwapState::Initiated));
    assert_eq!(states.last(), Some(&SwapState::Succeeded));
    assert!(states.contains(&SwapState::PreimageRevealed));
    // The monitor stream saw the same end.
    let mut last = None;
    while let Ok(u) = updates.try_recv() {
        if u.hash == hash {
            last = Some(u.state);
        }
    }
    assert_eq!(last, Some(SwapState::Succeeded));
    engine.stop().await;
}

/// The path the reference server takes on a real lnd: its node is an `LndClient` over gRPC
/// (TLS, macaroon) to a simulated lnd, so hold invoices, chain notifications and the HTLC
/// funding through `WalletKit.SendOutputs` all cross the wire. An honest loop-out succeeds with
/// costs matching what moved; then, switched by name, one funding transaction paying the HTLC
/// twice: the client sweeps the first output and leaves the second alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_out_completes_against_a_server_on_an_lnd_client_over_grpc() {
    let net = simnet_over_lnd().await;
    assert!(net.loop_lnd.is_some(), "the server's node is behind gRPC");
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;

    let hash = engine.loop_out(request(500_000)).await.unwrap();
    let record = net.drive_until(hash, succeeded).await;
    assert!(net.server.knows_preimage(hash).unwrap());
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    assert_eq!(net.spend_witness_len(&record), 1, "cooperative key path");
    let outpoints = net.server.htlc_outpoints(hash).unwrap();
    assert_eq!(outpoints, vec![record.progress.htlc.unwrap().outpoint]);

    let twice = sluice::loopserver::misbehave::find("htlc-two-outputs").unwrap();
    net.server.misbehave(Some(twice)).unwrap();
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    let record = net.drive_until(hash, succeeded).await;
    let outpoints = net.server.htlc_outpoints(hash).unwrap();
    assert_eq!(outpoints.len(), 2);
    assert_eq!(
        outpoints[0].txid, outpoints[1].txid,
        "one funding transaction"
    );
    assert_eq!(record.progress.htlc.unwrap().outpoint, outpoints[0]);
    assert!(
        lock(&net.world).chain().spender(&outpoints[1]).is_none(),
        "the second output is left alone"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_resumes_from_the_store_after_the_contract_was_stored() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    // The daemon stops right after creating the swap.
    engine.stop().await;
    assert_eq!(net.store.load_unfinished().await.unwrap().len(), 1);

    let engine = net.engine().await;
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_resumes_from_the_store_after_the_reveal() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(400_000)).await.unwrap();
    net.drive_until(hash, |r| r.progress.state != SwapState::Initiated)
        .await;
    engine.stop().await;
    let stopped = net.record(hash).await;
    assert!(
        !stopped.progress.state.is_terminal(),
        "{:?}",
        stopped.progress
    );
    assert!(stopped.progress.revealed_at.is_some());

    let engine = net.engine().await;
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_cannot_be_saved_never_acts() {
    let net = simnet().await;
    // A second connection to the same database refuses every progress row after a swap's
    // first one, as a full disk would: the swap is created, but its first step cannot be saved.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        net.dir.path().join("sluice.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON swap_updates \
         WHEN (SELECT COUNT(*) FROM swap_updates WHERE swap_hash = NEW.swap_hash) >= 1 \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(&db)
    .await
    .unwrap();

    let engine = net.engine().await;
    let hash = engine.loop_out(request(200_000)).await.unwrap();
    // The driver keeps retrying the save; give it many attempts, then check it never paid.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = net.node.track_payment(hash).await.err();
        assert_eq!(
            err.map(|e| e.kind),
            Some(NodeErrorKind::NotFound),
            "the swap invoice was paid although the step was never saved"
        );
    }
    assert_eq!(net.store.swap_history(hash).await.unwrap().len(), 1);

    // Once the disk accepts writes again, the same step is saved and acted on.
    sqlx::query("DROP TRIGGER refuse")
        .execute(&db)
        .await
        .unwrap();
    net.drive_until(hash, succeeded).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_never_published_fails_at_the_reveal_deadline() {
    let net = simnet().await;
    net.server.set_behaviour_for_next_swap(Behaviour {
        publication: Publication::Never,
        ..Behaviour::default()
    });
    let engine = net.engine().await;
    let mut req = request(250_000);
    req.conf_target = Some(30);
    let hash = engine.loop_out(req).await.unwrap();
    let record = net
        .drive(hash, true, |r| r.progress.state.is_terminal())
        .await;
    assert_eq!(record.progress.state, SwapState::FailedTimeout);
    let deadline = record.contract.reveal_deadline();
    assert!(record.progress.best_height.unwrap() >= deadline);
    assert!(!net.server.knows_preimage(hash).unwrap());

    // The server still holds both payments. The daemon restarts; the finished swap is resumed
    // only to follow them (never to pay) until their HTLCs time out and fail.
    // (How many blocks pass before the stop is up to the scheduler, so a payment may already
    // have failed; the store must then agree.)
    engine.stop().await;
    let stopped = net.record(hash).await;
    let open =
        !(stopped.progress.swap_payment.is_final() && stopped.progress.prepay_payment.is_final());
    assert_eq!(
        net.store.load_unfinished().await.unwrap().len(),
        usize::from(open)
    );
    let engine = net.engine().await;
    let record = net
        .drive(hash, true, |r| {
            r.progress.swap_payment.is_final() && r.progress.prepay_payment.is_final()
        })
        .await;
    assert_eq!(record.progress.state, SwapState::FailedTimeout);
    assert!(!record.progress.swap_payment.is_succeeded());
    assert!(!record.progress.prepay_payment.is_succeeded());
    assert_eq!(record.costs, SwapCosts::default(), "nothing was paid");
    assert!(net.store.load_unfinished().await.unwrap().is_empty());
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_resumes_from_the_store_while_its_spend_confirms() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(350_000)).await.unwrap();
    net.drive_until(hash, |r| r.progress.state == SwapState::SpendConfirming)
        .await;
    engine.stop().await;
    // Two more blocks while the daemon is down.
    lock(&net.world).mine(2);

    let engine = net.engine().await;
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_fee_cap_below_any_sweep_never_reveals_and_fails_at_the_reveal_deadline() {
    let net = simnet().await;
    let engine = net.engine().await;
    let mut req = request(250_000);
    req.conf_target = Some(30);
    req.limits = Some(FeeLimits {
        max_swap_fee: Sat(20_000),
        max_prepay_amount: Sat(5_000),
        max_swap_routing_fee: Sat(5_000),
        max_prepay_routing_fee: Sat(100),
        // Less than any sweep pays at the 1 sat/vB floor.
        max_miner_fee: Sat(50),
    });
    let hash = engine.loop_out(req).await.unwrap();
    let record = net
        .drive(hash, true, |r| r.progress.state.is_terminal())
        .await;
    // Revealing would leave the preimage with the server and no sweep the swap may pay for:
    // it waits instead, and fails at the reveal deadline with the preimage kept.
    assert_eq!(
        record.progress.state,
        SwapState::FailedTimeout,
        "{:?}",
        record.progress
    );
    assert!(record.progress.htlc.is_some(), "the HTLC confirmed");
    assert_eq!(record.progress.revealed_at, None);
    assert_eq!(record.progress.sweeps_requested, 0);
    assert!(!net.server.knows_preimage(hash).unwrap());
    assert_eq!(record.costs.onchain, Sat::ZERO);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_swap_carries_the_servers_message_and_the_limits_a_quote_derives() {
    let net = simnet().await;
    let engine = net.engine().await;
    let created = engine.create_loop_out(request(250_000)).await.unwrap();
    // The simnet server always says who it is.
    assert_eq!(created.server_message, "reference loop server");
    // With no limits in the request, the swap carries what the one quote rule derives.
    let record = net.record(created.hash).await;
    let terms = record.contract.terms();
    let quote_fee = terms.swap_invoice.amount + terms.prepay_invoice.amount - terms.amount;
    let rate = net.node.estimate_fee(100).await.unwrap();
    let derived = engine_harness::config(&net.world)
        .quote_limits(
            terms.amount,
            quote_fee,
            terms.prepay_invoice.amount,
            sluice::chain::SatPerKw(rate.to_sat_per_kwu()),
        )
        .unwrap();
    assert_eq!(terms.fee_limits, derived.limits);
    engine.stop().await;
}

/// Whether `txid` is in the active chain.
fn confirmed_in_chain(net: &engine_harness::Simnet, txid: &bitcoin::Txid) -> bool {
    matches!(
        lock(&net.world).chain().tx(txid),
        Some(sluice::simnet::chain::TxStatus::Confirmed { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_reorged_out_while_the_daemon_is_down_is_swept_again_not_taken_for_final() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(350_000)).await.unwrap();
    let stopped = net
        .drive_until(hash, |r| r.progress.state == SwapState::SpendConfirming)
        .await;
    engine.stop().await;
    let spend = stopped.progress.spend.unwrap();
    let finality = stopped.contract.terms().sweep_finality_confirmations;

    // While the daemon is down, the sweep's block is reorged out and miners leave the sweep
    // in the mempool; the chain grows far past the stored spend height plus finality.
    {
        let mut w = lock(&net.world);
        let depth = w.chain().height().0 - spend.height.0 + 1;
        w.reorg(depth).unwrap();
        w.hold(spend.txid);
        w.mine(depth + finality + 2);
    }
    assert!(!confirmed_in_chain(&net, &spend.txid));

    // Restarted, the swap must not call the vanished sweep final: it sweeps again.
    let engine = net.engine().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut polls_while_held = 0;
    loop {
        let r = net.record(hash).await;
        if let Some(s) = r.progress.spend {
            assert!(
                r.progress.state != SwapState::Succeeded || confirmed_in_chain(&net, &s.txid),
                "succeeded on a sweep that is not in the chain: {:?}",
                r.progress
            );
        }
        if r.progress.state == SwapState::PreimageRevealed {
            polls_while_held += 1;
        }
        if polls_while_held >= 5 || r.progress.state == SwapState::Succeeded {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", r.progress);
        lock(&net.world).mine(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Miners take the sweep again: the swap ends on a spend the chain holds.
    lock(&net.world).release(&spend.txid);
    let record = net.drive_until(hash, succeeded).await;
    assert!(confirmed_in_chain(
        &net,
        &record.progress.spend.unwrap().txid
    ));
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_undecodable_or_undrivable_swap_is_quarantined_and_every_other_is_driven() {
    let net = simnet().await;
    let engine = net.engine().await;
    let bad_row = engine.loop_out(request(210_000)).await.unwrap();
    let bad_script = engine.loop_out(request(220_000)).await.unwrap();
    let good = engine.loop_out(request(230_000)).await.unwrap();
    // The good swap revealed its preimage: it must be swept whatever happens to the others.
    net.drive_until(good, |r| r.progress.revealed_at.is_some())
        .await;
    engine.stop().await;

    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        net.dir.path().join("sluice.db").display()
    ))
    .await
    .unwrap();
    // One swap's newest progress row no longer decodes; another's HTLC script no longer
    // matches its contract.
    sqlx::query(
        "UPDATE swap_updates SET progress_json = '{\"state_code\": 1, \"truncated' WHERE id = \
         (SELECT MAX(id) FROM swap_updates WHERE swap_hash = ?)",
    )
    .bind(bad_row.to_string())
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("UPDATE swaps SET htlc_pk_script = ? WHERE swap_hash = ?")
        .bind(format!("5120{}", "11".repeat(32)))
        .bind(bad_script.to_string())
        .execute(&db)
        .await
        .unwrap();

    // The daemon starts anyway and drives the good swap to its end.
    let engine = net.engine().await;
    let quarantined = engine.quarantined();
    let ids: Vec<&str> = quarantined.iter().map(|q| q.id.as_str()).collect();
    assert!(
        ids.contains(&bad_row.to_string().as_str()),
        "{quarantined:?}"
    );
    assert!(
        ids.contains(&bad_script.to_string().as_str()),
        "{quarantined:?}"
    );
    assert!(!ids.contains(&good.to_string().as_str()));
    let why = |id: String| {
        quarantined
            .iter()
            .find(|q| q.id == id)
            .map(|q| q.reason.clone())
            .unwrap()
    };
    assert!(
        quarantined
            .iter()
            .all(|q| q.direction == sluice::domain::Direction::Out),
        "{quarantined:?}"
    );
    assert!(why(bad_row.to_string()).contains("progress_json"));
    assert!(why(bad_script.to_string()).contains("htlc_pk_script"));
    assert!(!engine.is_running(bad_script));
    net.drive_until(good, succeeded).await;

    // Listings still work: the readable swaps are listed, the unreadable one named apart.
    let listed = net
        .store
        .list_swaps(sluice::store::SwapFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let unreadable = net.store.list_unreadable().await.unwrap();
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].swap_hash, bad_row.to_string());
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_confirmation_stored_before_a_crash_is_forgotten_at_resume_so_a_reorg_cannot_reveal()
 {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(260_000)).await.unwrap();
    let htlc = net.htlc_tx_in_mempool(hash).await;
    let htlc_txid = htlc.compute_txid();
    lock(&net.world).hold(htlc_txid);
    engine.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The daemon had stored the HTLC as confirmed (two blocks deep by the time it restarts)
    // just before it was killed, and a reorg then took that block away: the HTLC is back in
    // the mempool and the miners leave it there.
    let mut stored = net.record(hash).await;
    let tip = lock(&net.world).chain().height();
    let vout = htlc
        .output
        .iter()
        .position(|o| o.script_pubkey == stored.contract.terms().htlc_pk_script)
        .unwrap();
    stored.progress.htlc = Some(sluice::swap::HtlcOutput {
        outpoint: bitcoin::OutPoint {
            txid: htlc_txid,
            vout: u32::try_from(vout).unwrap(),
        },
        value: Sat(htlc.output[vout].value.to_sat()),
        conf_height: Some(sluice::domain::BlockHeight(tip.0 - 1)),
    });
    stored.progress.best_height = Some(tip);
    net.store
        .save_progress(hash, &stored.progress, stored.progress.costs(), 0)
        .await
        .unwrap();

    // Restarted, blocks come and the stored confirmation would look deep enough: the swap
    // must not reveal on it.
    let engine = net.engine().await;
    for _ in 0..5 {
        lock(&net.world).mine(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = net.record(hash).await;
        assert!(
            r.progress.revealed_at.is_none(),
            "revealed on a confirmation the chain no longer has: {:?}",
            r.progress
        );
        assert!(!net.server.knows_preimage(hash).unwrap());
    }
    // Once the HTLC really confirms, the swap reveals and succeeds.
    lock(&net.world).release(&htlc_txid);
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

/// The engine counts a Loop Out's expiry from lnd's tip, not from the last block epoch it
/// followed: a block can reach lnd and the server before the engine's epoch stream delivers
/// it, and an expiry at the server's minimum counted from the block before falls outside the
/// server's window ("expiry ... is outside"; seen on real lnd and btcd). Here the block is
/// mined and the swap asked for before the engine's task could run (one thread).
#[tokio::test(flavor = "current_thread")]
async fn an_expiry_counts_from_lnds_tip_when_the_followed_epoch_lags() {
    use sluice::provider::SwapProvider;
    let net = simnet().await;
    let engine = net.engine().await;
    let terms = net.client.loop_out_terms().await.unwrap();
    let before = engine.height().unwrap();
    lock(&net.world).mine(1);
    assert_eq!(
        engine.height(),
        Some(before),
        "the epoch has not been followed yet"
    );
    let mut req = request(300_000);
    req.conf_target = Some(terms.min_cltv_delta);
    let hash = engine.loop_out(req).await.unwrap();
    let record = net.record(hash).await;
    assert_eq!(
        record.contract.terms().expiry.0,
        before.0 + 1 + terms.min_cltv_delta
    );
}
