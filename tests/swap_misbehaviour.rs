//! The swap engine against every misbehaviour of the reference Loop server that the protocol
//! notes (§11) say a client must survive, one test per misbehaviour, each through
//! `SwapEngine` over gRPC on the simnet. Each asserts the documented outcome, whether the
//! preimage reached the server (it must not when the swap fails before the reveal), and what
//! the node lost, from its channel and wallet balances: at most the prepay and fees when the
//! swap fails. `docs/misbehaviour.md` maps each §11 item to its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine_harness::{Simnet, assert_costs_match, config, request, simnet, simnet_with, succeeded};
use sluice::chain::fees::MAX_FEE_SHARE;
use sluice::domain::{BlockHeight, Sat};
use sluice::lnd::LightningNode;
use sluice::lnd::metered::MeteredNode;
use sluice::loopserver::Behaviour;
use sluice::loopserver::behaviour::{
    CoSign, HtlcTamper, InvoiceTamper, Publication, Push, SenderKeyTamper, Settle, StreamMode,
};
use sluice::simnet::chain::{FEE_FLOOR_SAT_KW, FeeTrace, TxStatus};
use sluice::simnet::world::lock;
use sluice::store::{SwapFilter, SwapRecord};
use sluice::swap::{EngineError, FeeLimits, PaymentStatus, SwapEngine, SwapState};

/// What the node holds before a swap, to compute what it lost.
struct Before {
    holdings: Sat,
}

async fn before(net: &Simnet) -> Before {
    Before {
        holdings: net.holdings().await,
    }
}

/// Asserts a failed swap cost the node at most the prepay plus the recorded fees, and that the
/// recorded costs account for what left it (fees are recorded rounded up to the sat).
async fn assert_lost_at_most_prepay_and_fees(net: &Simnet, record: &SwapRecord, before: &Before) {
    let after = net.holdings().await;
    let lost = before.holdings.saturating_sub(after);
    let prepay = match record.progress.prepay_payment {
        PaymentStatus::Succeeded { amount, .. } => amount,
        _ => Sat::ZERO,
    };
    let bound = prepay + record.costs.offchain + record.costs.onchain;
    assert!(
        lost <= bound,
        "lost {lost}, but at most the prepay {prepay} and fees {:?} may be lost",
        record.costs
    );
    assert!(
        !record.progress.swap_payment.is_succeeded(),
        "the swap payment of a failed swap must not have been paid: {:?}",
        record.progress
    );
    assert!(
        record.contract.terms().prepay_invoice.amount >= prepay,
        "paid more than the prepay invoice"
    );
}

/// Asserts nothing of the swap reached the server's hands: no preimage, no sweep.
fn assert_never_revealed(net: &Simnet, record: &SwapRecord) {
    let hash = record.contract.terms().swap_hash;
    assert!(
        !net.server.knows_preimage(hash).unwrap(),
        "the server learnt the preimage"
    );
    assert!(
        record.progress.revealed_at.is_none(),
        "{:?}",
        record.progress
    );
    assert_eq!(record.progress.sweeps_requested, 0);
    assert!(!record.progress.preimage_push_acked);
    assert!(record.progress.spend.is_none());
}

fn terminal(r: &SwapRecord) -> bool {
    r.progress.state.is_terminal()
}

fn payments_final(r: &SwapRecord) -> bool {
    r.progress.swap_payment.is_final() && r.progress.prepay_payment.is_final()
}

/// Runs one loop-out against a server with `behaviour` to its successful end and checks its
/// costs against what moved on the node.
async fn succeeds_despite(behaviour: Behaviour, amount: u64) -> (Simnet, SwapRecord) {
    let net = simnet().await;
    net.server.set_behaviour_for_next_swap(behaviour);
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(amount)).await.unwrap();
    let record = net.drive_until(hash, succeeded).await;
    assert!(net.server.knows_preimage(hash).unwrap());
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
    (net, record)
}

// ---------------------------------------------------------------------------------------------
// Invoice tampering: refused before anything is stored or paid.

async fn refused(behaviour: Behaviour) {
    let net = simnet().await;
    let engine = net.engine().await;
    let before = before(&net).await;
    net.server.set_behaviour_for_next_swap(behaviour);
    let err = engine.loop_out(request(250_000)).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Validation(_)),
        "{behaviour:?}: {err}"
    );
    assert!(
        net.store
            .list_swaps(SwapFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );
    assert_eq!(net.holdings().await, before.holdings, "nothing was paid");
    // Nothing is paid later either: a few blocks pass, the node still holds the same.
    lock(&net.world).mine(3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(net.holdings().await, before.holdings, "nothing was paid");
    engine.stop().await;
}

fn invoice(tamper: InvoiceTamper) -> Behaviour {
    Behaviour {
        invoice: tamper,
        ..Behaviour::default()
    }
}

fn key(tamper: SenderKeyTamper) -> Behaviour {
    Behaviour {
        sender_key: tamper,
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_fee_over_the_maximum_is_refused() {
    refused(invoice(InvoiceTamper::SwapFeeAbove(Sat(5_000)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepay_over_the_maximum_with_the_same_total_is_refused() {
    refused(invoice(InvoiceTamper::PrepayAboveSameTotal(Sat(5_000)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_invoice_for_another_hash_is_refused() {
    refused(invoice(InvoiceTamper::WrongHash)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_amount_swap_invoice_is_refused() {
    refused(invoice(InvoiceTamper::ZeroAmount)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_invoice_for_another_network_is_refused() {
    refused(invoice(InvoiceTamper::OtherNetwork)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_invoice_without_payment_secret_is_refused() {
    refused(invoice(InvoiceTamper::NoPaymentSecret)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_byte_sender_key_is_refused() {
    refused(key(SenderKeyTamper::Short)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_34_byte_sender_key_is_refused() {
    refused(key(SenderKeyTamper::Long)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_off_curve_sender_key_is_refused() {
    refused(key(SenderKeyTamper::OffCurve)).await;
}

// ---------------------------------------------------------------------------------------------
// On-chain tampering.

/// Starts a swap against `behaviour` and drives it (mining at every poll when `every_poll`)
/// until it is terminal and both payments have final results, with the engine running
/// throughout: the results of payments that end after the swap must reach the store without a
/// restart.
async fn fails_with(
    behaviour: Behaviour,
    conf_target: u32,
    every_poll: bool,
) -> (Simnet, SwapEngine, SwapRecord, Before) {
    let net = simnet().await;
    net.server.set_behaviour_for_next_swap(behaviour);
    let engine = net.engine().await;
    let before = before(&net).await;
    let mut req = request(250_000);
    req.conf_target = Some(conf_target);
    let hash = engine.loop_out(req).await.unwrap();
    net.drive(hash, every_poll, terminal).await;
    let record = net.drive(hash, true, payments_final).await;
    (net, engine, record, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_below_the_amount_fails_without_reveal_and_costs_at_most_the_prepay() {
    let (net, engine, record, before) = fails_with(
        Behaviour {
            htlc: HtlcTamper::ValueBelow(Sat(1_000)),
            ..Behaviour::default()
        },
        30,
        false,
    )
    .await;
    assert_eq!(record.progress.state, SwapState::FailedInsufficientValue);
    assert_never_revealed(&net, &record);
    // The server published (so it took the prepay) and, once told, gave up the held swap
    // payment: the running engine followed it to its end after the swap had failed.
    assert!(record.progress.prepay_payment.is_succeeded());
    assert!(matches!(
        record.progress.swap_payment,
        PaymentStatus::Failed { .. }
    ));
    assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
    assert!(net.store.load_unfinished().await.unwrap().is_empty());
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_ends_after_its_swap_failed_is_recorded_by_the_running_engine() {
    // The server never publishes: the swap fails at the reveal deadline while both payments
    // are still held; they fail only later, when the server's node cancels them near their
    // CLTV. The engine that ran the swap keeps following them, with no restart.
    let (net, engine, record, before) = fails_with(
        Behaviour {
            publication: Publication::Never,
            ..Behaviour::default()
        },
        30,
        true,
    )
    .await;
    assert_eq!(record.progress.state, SwapState::FailedTimeout);
    assert_never_revealed(&net, &record);
    assert!(matches!(
        record.progress.swap_payment,
        PaymentStatus::Failed { .. }
    ));
    assert!(matches!(
        record.progress.prepay_payment,
        PaymentStatus::Failed { .. }
    ));
    let history = net
        .store
        .swap_history(record.contract.terms().swap_hash)
        .await
        .unwrap();
    let failed_at = history
        .iter()
        .position(|u| u.progress.state == SwapState::FailedTimeout)
        .unwrap();
    let at_failure = &history[failed_at].progress;
    assert!(
        !(at_failure.swap_payment.is_final() && at_failure.prepay_payment.is_final()),
        "the payments were still held when the swap failed: {at_failure:?}"
    );
    assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
    assert_eq!(net.holdings().await, before.holdings, "nothing was lost");
    assert!(net.store.load_unfinished().await.unwrap().is_empty());
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_to_a_wrong_script_is_never_seen_and_the_swap_fails_at_the_deadline() {
    let (net, engine, record, before) = fails_with(
        Behaviour {
            htlc: HtlcTamper::WrongScript,
            ..Behaviour::default()
        },
        30,
        true,
    )
    .await;
    assert_eq!(record.progress.state, SwapState::FailedTimeout);
    assert!(record.progress.htlc.is_none(), "the client never saw it");
    assert_never_revealed(&net, &record);
    assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_published_after_the_reveal_limit_fails_and_its_payments_fail() {
    let (net, engine, record, before) = fails_with(
        Behaviour {
            publication: Publication::AfterRevealLimit,
            ..Behaviour::default()
        },
        30,
        true,
    )
    .await;
    assert_eq!(record.progress.state, SwapState::FailedTimeout);
    assert_never_revealed(&net, &record);
    assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_above_the_amount_is_accepted() {
    let (_net, record) = succeeds_despite(
        Behaviour {
            htlc: HtlcTamper::ValueAbove(Sat(777)),
            ..Behaviour::default()
        },
        250_000,
    )
    .await;
    let terms = record.contract.terms();
    assert_eq!(record.progress.htlc.unwrap().value, terms.amount + Sat(777));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_htlc_outputs_only_the_first_is_used() {
    let (net, record) = succeeds_despite(
        Behaviour {
            htlc: HtlcTamper::TwoOutputs,
            ..Behaviour::default()
        },
        250_000,
    )
    .await;
    let htlc = record.progress.htlc.unwrap();
    assert_eq!(htlc.outpoint.vout, 0, "the first output");
    assert_eq!(htlc.value, record.contract.terms().amount);
    let w = lock(&net.world);
    let second = bitcoin::OutPoint {
        txid: htlc.outpoint.txid,
        vout: 1,
    };
    assert!(
        w.chain().spender(&second).is_none(),
        "the second output was left alone"
    );
}

// ---------------------------------------------------------------------------------------------
// Reorgs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_confirmation_reorged_out_before_the_reveal_never_leads_to_one() {
    let net = simnet().await;
    // Two confirmations before the reveal, so a one-block confirmation can be taken back
    // before the client acts on it.
    let mut config = engine_harness::config(&net.world);
    config.htlc_confirmations = 2;
    let engine = SwapEngine::start(
        net.node.clone(),
        net.client.clone(),
        net.store.clone(),
        config,
    );
    engine.resume_all().await.unwrap();
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    // Wait for the server's HTLC in the mempool, confirm it once, and take that block back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while lock(&net.world).chain().mempool_txids().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no HTLC published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reorged_height = {
        let mut w = lock(&net.world);
        w.mine(1);
        let height = w.chain().height();
        let outcome = w.reorg(1).unwrap();
        assert!(
            !outcome.returned.is_empty(),
            "the HTLC is unconfirmed again"
        );
        height
    };
    let record = net.record(hash).await;
    assert!(record.progress.revealed_at.is_none());
    assert!(!net.server.knows_preimage(hash).unwrap());
    // On the new branch it confirms again, and the reveal waits for two confirmations there
    // (a block at every poll: the second confirmation has nothing in the mempool to wait for).
    let record = net.drive(hash, true, succeeded).await;
    let htlc = record.progress.htlc.unwrap();
    let revealed_at = record.progress.revealed_at.unwrap();
    assert!(
        revealed_at.0 > htlc.conf_height.unwrap().0,
        "revealed at {revealed_at} for an HTLC confirmed at {:?}",
        htlc.conf_height
    );
    let history = net.store.swap_history(hash).await.unwrap();
    assert!(
        history.iter().all(|u| u.progress.revealed_at.is_none()
            || u.progress.revealed_at.unwrap().0 > reorged_height.0),
        "no reveal on the reorged confirmation"
    );
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_reorged_out_after_the_reveal_is_swept_once_it_confirms_again() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    let revealed = net
        .drive_until(hash, |r| r.progress.revealed_at.is_some())
        .await;
    {
        let mut w = lock(&net.world);
        let conf = revealed.progress.htlc.unwrap().conf_height.unwrap();
        let depth = w.chain().height().0 + 1 - conf.0;
        let outcome = w.reorg(depth).unwrap();
        assert!(
            outcome
                .returned
                .contains(&revealed.progress.htlc.unwrap().outpoint.txid),
            "the HTLC is unconfirmed again"
        );
    }
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_reorged_out_after_its_first_confirmation_is_published_until_final() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    let confirming = net
        .drive_until(hash, |r| r.progress.state == SwapState::SpendConfirming)
        .await;
    let first = confirming.progress.spend.unwrap();
    {
        let mut w = lock(&net.world);
        let depth = w.chain().height().0 + 1 - first.height.0;
        w.reorg(depth).unwrap();
    }
    let record = net.drive_until(hash, succeeded).await;
    let spend = record.progress.spend.unwrap();
    assert!(
        spend.confirmations >= record.contract.terms().sweep_finality_confirmations,
        "{:?}",
        record.progress
    );
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Co-signing misbehaviour: the success leaf in the same block.

async fn cosign_falls_back(cosign: CoSign) {
    let (net, record) = succeeds_despite(
        Behaviour {
            cosign,
            ..Behaviour::default()
        },
        250_000,
    )
    .await;
    assert_eq!(
        net.spend_witness_len(&record),
        4,
        "{cosign:?}: the success leaf is used"
    );
    // Blocks are mined only while something waits in the mempool, so the first block after
    // the reveal confirmed the fallback sweep published for the reveal's block.
    let spend = record.progress.spend.unwrap();
    assert_eq!(
        Some(spend.height.0),
        record.progress.revealed_at.map(|h| h.0 + 1),
        "{cosign:?}: {:?}",
        record.progress
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosigning_error_falls_back_to_the_success_leaf_in_the_same_block() {
    cosign_falls_back(CoSign::Error).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_nonce_falls_back_to_the_success_leaf_in_the_same_block() {
    cosign_falls_back(CoSign::ShortNonce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_partial_signature_falls_back_to_the_success_leaf_in_the_same_block() {
    cosign_falls_back(CoSign::ShortPartialSig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_partial_signature_falls_back_to_the_success_leaf_in_the_same_block() {
    cosign_falls_back(CoSign::InvalidPartialSig).await;
}

// ---------------------------------------------------------------------------------------------
// Settlement misbehaviour.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_errors_still_ends_in_a_swept_htlc() {
    let (net, record) = succeeds_despite(
        Behaviour {
            push: Push::Error,
            ..Behaviour::default()
        },
        250_000,
    )
    .await;
    assert!(!record.progress.preimage_push_acked);
    assert_eq!(
        net.spend_witness_len(&record),
        4,
        "without a push the server does not co-sign: the success leaf is used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_settles_loses_the_htlc_and_the_held_payment_fails() {
    let net = simnet().await;
    net.server.set_behaviour_for_next_swap(Behaviour {
        settle: Settle::Never,
        ..Behaviour::default()
    });
    let engine = net.engine().await;
    let before = before(&net).await;
    let mut req = request(250_000);
    req.conf_target = Some(30);
    let hash = engine.loop_out(req).await.unwrap();
    // The client sweeps at once; the swap ends once the held payment fails at its CLTV.
    let record = net
        .drive(hash, true, |r| terminal(r) && payments_final(r))
        .await;
    assert_eq!(record.progress.state, SwapState::Succeeded);
    assert!(record.progress.spend.is_some(), "the client swept");
    assert!(matches!(
        record.progress.swap_payment,
        PaymentStatus::Failed { .. }
    ));
    assert!(record.progress.prepay_payment.is_succeeded());
    // The node holds the HTLC's value and paid only the prepay and fees.
    let terms = record.contract.terms();
    let after = net.holdings().await;
    let spent = terms.prepay_invoice.amount + record.costs.offchain + record.costs.onchain;
    assert!(
        after + spent >= before.holdings + terms.amount,
        "before {}, after {after}, spent {spent}",
        before.holdings
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_payment_failed_after_the_htlc_confirmed_never_costs_more_than_the_prepay() {
    let net = simnet().await;
    net.server.set_behaviour_for_next_swap(Behaviour {
        fail_swap_payment_after_confirm: true,
        ..Behaviour::default()
    });
    let engine = net.engine().await;
    let before = before(&net).await;
    let mut req = request(250_000);
    req.conf_target = Some(30);
    let hash = engine.loop_out(req).await.unwrap();
    let record = net
        .drive(hash, true, |r| terminal(r) && payments_final(r))
        .await;
    assert!(matches!(
        record.progress.swap_payment,
        PaymentStatus::Failed { .. }
    ));
    match record.progress.state {
        // The failure arrived before the reveal: nothing revealed, the prepay lost at most.
        SwapState::FailedOffchain => {
            assert_never_revealed(&net, &record);
            assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
        }
        // The client had already revealed (the reveal is due in the HTLC's confirmation
        // block): it swept the HTLC without paying for it.
        SwapState::Succeeded => {
            assert!(record.progress.revealed_at.is_some());
            let terms = record.contract.terms();
            let after = net.holdings().await;
            let spent = terms.prepay_invoice.amount + record.costs.offchain + record.costs.onchain;
            assert!(after + spent >= before.holdings + terms.amount);
        }
        other => panic!("unexpected outcome {other:?}: {:?}", record.progress),
    }
    engine.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Liveness.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarting_mid_swap_does_not_stop_the_swap() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    // The server goes down with both payments in flight; its swaps carry on meanwhile, so the
    // HTLC is published and the client reveals while it cannot be reached: no push, no
    // co-signature, the success leaf.
    net.stop_server().await;
    net.drive_until(hash, |r| r.progress.revealed_at.is_some())
        .await;
    net.restart_server().await;
    let record = net.drive_until(hash, succeeded).await;
    assert!(net.server.knows_preimage(hash).unwrap());
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_stream_closed_early_does_not_matter() {
    succeeds_despite(
        Behaviour {
            stream: StreamMode::CloseAfterFirst,
            ..Behaviour::default()
        },
        250_000,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Fees.

/// A swap whose HTLC confirms into a fee spike that lasts past its expiry: the heaviest sweep
/// at the needed rate would cost more than the swap may pay, so the preimage never leaves.
async fn held_by_a_spike(limits: Option<FeeLimits>, spike_sat_kw: u64) {
    let net = simnet().await;
    let engine = net.engine().await;
    let before = before(&net).await;
    let mut req = request(250_000);
    req.conf_target = Some(30);
    req.limits = limits;
    let hash = engine.loop_out(req).await.unwrap();
    let height = lock(&net.world).chain().height();
    lock(&net.world).set_fee_trace(FeeTrace::Spike {
        base_sat_kw: 2_500,
        at_height: BlockHeight(height.0 + 1),
        rate_sat_kw: spike_sat_kw,
        duration_blocks: 1_000,
    });
    let record = net.drive(hash, true, terminal).await;
    assert_eq!(
        record.progress.state,
        SwapState::FailedTimeout,
        "{:?}",
        record.progress
    );
    assert!(record.progress.htlc.is_some(), "the HTLC confirmed");
    assert_never_revealed(&net, &record);
    let record = net.drive(hash, true, payments_final).await;
    assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_spike_above_max_miner_fee_holds_the_preimage_and_fails_at_the_deadline() {
    // Derived limits: max_miner_fee is at most 2 % of the amount (5,000 sat); the heaviest
    // sweep at 20,000 sat/kw costs about 12,800 sat.
    held_by_a_spike(None, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_spike_beyond_a_fifth_of_the_htlc_holds_the_preimage() {
    // max_miner_fee would cover it, but the sweep would be clamped to a fifth of the HTLC
    // (50,000 sat) and pay less than the needed rate: no reveal either.
    held_by_a_spike(
        Some(FeeLimits {
            max_swap_fee: Sat(20_000),
            max_prepay_amount: Sat(5_000),
            max_swap_routing_fee: Sat(5_000),
            max_prepay_routing_fee: Sat(100),
            max_miner_fee: Sat(70_000),
        }),
        90_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_spike_within_max_miner_fee_is_paid_and_never_more() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let spike = 7_000;
    lock(&net.world).set_fee_trace(FeeTrace::Flat(spike));
    let hash = engine.loop_out(request(250_000)).await.unwrap();
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    let tx = match lock(&net.world)
        .chain()
        .tx(&record.progress.spend.unwrap().txid)
    {
        Some(TxStatus::Confirmed { tx, .. }) => tx.clone(),
        other => panic!("the sweep is not confirmed: {other:?}"),
    };
    let fee = record.costs.onchain;
    assert!(
        u128::from(fee.0) * 1000 >= u128::from(tx.weight().to_wu()) * u128::from(spike),
        "fee {fee} is below the estimate"
    );
    assert!(fee <= record.contract.terms().fee_limits.max_miner_fee);
    assert!(fee < record.progress.htlc.unwrap().value.mul_ppm(MAX_FEE_SHARE));
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_estimate_at_the_floor_still_sweeps() {
    let net = simnet().await;
    // The chain's estimates bottom out at the relay floor (253 sat/kw).
    lock(&net.world).set_fee_trace(FeeTrace::Flat(1));
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(250_000)).await.unwrap();
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    let txid = record.progress.spend.unwrap().txid;
    let weight = match lock(&net.world).chain().tx(&txid) {
        Some(TxStatus::Confirmed { tx, .. }) => tx.weight().to_wu(),
        other => panic!("the sweep is not confirmed: {other:?}"),
    };
    assert!(
        u128::from(record.costs.onchain.0) * 1000
            >= u128::from(weight) * u128::from(FEE_FLOOR_SAT_KW),
        "the sweep pays less than the relay floor"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_estimate_below_the_relay_floor_still_sweeps_above_it() {
    let net = simnet().await;
    // lnd answers 50 sat/kw, a fifth of the relay fee: a sweep at that rate never relays.
    lock(&net.world).set_fee_trace(FeeTrace::BelowFloor(50));
    assert_eq!(net.node.estimate_fee(6).await.unwrap().to_sat_per_kwu(), 50);
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(250_000)).await.unwrap();
    let record = net.drive_until(hash, succeeded).await;
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    let txid = record.progress.spend.unwrap().txid;
    let weight = match lock(&net.world).chain().tx(&txid) {
        Some(TxStatus::Confirmed { tx, .. }) => tx.weight().to_wu(),
        other => panic!("the sweep is not confirmed: {other:?}"),
    };
    assert!(
        u128::from(record.costs.onchain.0) * 1000
            >= u128::from(weight) * u128::from(FEE_FLOOR_SAT_KW),
        "the sweep pays less than the relay floor"
    );
    // The first sweep already relayed: it confirmed in the block after the reveal.
    assert_eq!(
        record.progress.spend.unwrap().height.0,
        record.progress.revealed_at.unwrap().0 + 1,
        "{:?}",
        record.progress
    );
    engine.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Tests that take control of what the simnet's blocks contain.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_htlc_outputs_the_first_decides_even_when_it_is_the_smaller() {
    let (net, engine, record, before) = fails_with(
        Behaviour {
            htlc: HtlcTamper::TwoOutputsSmallerFirst(Sat(1_000)),
            ..Behaviour::default()
        },
        30,
        false,
    )
    .await;
    // Loop takes the first output paying the script: it is under the amount, so no reveal,
    // although the second one pays the amount in full.
    assert_eq!(record.progress.state, SwapState::FailedInsufficientValue);
    assert_never_revealed(&net, &record);
    assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
    engine.stop().await;
}

/// Runs a swap whose HTLC the miners hold back until it can confirm in block `deadline + at`
/// (`at` relative to the reveal deadline, `expiry − margin`), and returns the record once
/// the swap is terminal with both payments final.
async fn htlc_confirming_at_deadline_plus(at: i64) -> (Simnet, SwapEngine, SwapRecord, Before) {
    let net = simnet().await;
    let engine = net.engine().await;
    let before = before(&net).await;
    // A short expiry, so the held swap payment outlives the reveal deadline.
    let mut req = request(250_000);
    req.conf_target = Some(30);
    let hash = engine.loop_out(req).await.unwrap();
    let htlc = net.htlc_tx_in_mempool(hash).await;
    // From the terms, not from the contract's own rule, which is what is under test.
    let terms = net.record(hash).await.contract.terms().clone();
    let deadline = terms.expiry.0 - terms.reveal_margin_blocks;
    let conf_height = u32::try_from(i64::from(deadline) + at).unwrap();
    lock(&net.world).hold(htlc.compute_txid());
    loop {
        let tip = lock(&net.world).chain().height().0;
        if tip + 1 >= conf_height {
            break;
        }
        lock(&net.world).mine(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let mut w = lock(&net.world);
        w.release(&htlc.compute_txid());
        w.mine(1);
        assert!(matches!(
            w.chain().tx(&htlc.compute_txid()),
            Some(TxStatus::Confirmed { location, .. }) if location.height.0 == conf_height
        ));
    }
    let record = if at < 0 {
        // Before the deadline the reveal belongs to this very block: no further block is mined
        // until it happens (the fee estimate it asks for first takes a round trip).
        net.wait_until(hash, |r| {
            (terminal(r) && payments_final(r)) || r.progress.revealed_at.is_some()
        })
        .await
    } else {
        net.drive(hash, true, |r| {
            (terminal(r) && payments_final(r)) || r.progress.revealed_at.is_some()
        })
        .await
    };
    (net, engine, record, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_confirming_exactly_at_the_reveal_deadline_or_after_it_is_never_revealed() {
    for at in [0, 1] {
        let (net, engine, record, before) = htlc_confirming_at_deadline_plus(at).await;
        assert_eq!(
            record.progress.state,
            SwapState::FailedTimeout,
            "HTLC at deadline + {at}: {:?}",
            record.progress
        );
        assert_never_revealed(&net, &record);
        assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
        engine.stop().await;
    }
    // One block earlier the reveal is still safe, and happens.
    let (net, engine, record, _) = htlc_confirming_at_deadline_plus(-1).await;
    assert!(
        record.progress.revealed_at.is_some(),
        "{:?}",
        record.progress
    );
    net.drive_until(record.contract.terms().swap_hash, succeeded)
        .await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_payment_failed_after_the_htlc_confirmed_but_before_the_reveal_fails_offchain() {
    // The client wants two confirmations, the server cancels the held swap payment at the
    // first: the failure always comes before the reveal.
    let net = simnet().await;
    net.server.set_behaviour_for_next_swap(Behaviour {
        fail_swap_payment_after_confirm: true,
        ..Behaviour::default()
    });
    let mut c = config(&net.world);
    c.htlc_confirmations = 2;
    let engine = net.engine_with(c).await;
    let before = before(&net).await;
    let hash = engine.loop_out(request(250_000)).await.unwrap();
    net.htlc_tx_in_mempool(hash).await;
    lock(&net.world).mine(1);
    let record = net
        .wait_until(hash, |r| terminal(r) && payments_final(r))
        .await;
    assert_eq!(record.progress.state, SwapState::FailedOffchain);
    // More blocks change nothing: the preimage stays secret.
    lock(&net.world).mine(3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let record = net.record(hash).await;
    assert_eq!(record.progress.state, SwapState::FailedOffchain);
    assert_never_revealed(&net, &record);
    assert_lost_at_most_prepay_and_fees(&net, &record, &before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_payment_failed_after_the_reveal_still_gets_the_htlc_swept() {
    // The server wants two confirmations before it cancels, the client reveals at the first;
    // the server never learns the preimage (push and co-signing fail) and miners hold the
    // sweep until the cancel is recorded: the failure always comes after the reveal.
    let net = simnet_with(sluice::loopserver::LoopServerConfig {
        l402: None,
        htlc_confirmations: 2,
        ..sluice::loopserver::LoopServerConfig::default()
    })
    .await;
    net.server.set_behaviour_for_next_swap(Behaviour {
        fail_swap_payment_after_confirm: true,
        push: Push::Error,
        cosign: CoSign::Error,
        ..Behaviour::default()
    });
    let engine = net.engine().await;
    let before = before(&net).await;
    let hash = engine.loop_out(request(250_000)).await.unwrap();
    let htlc = net.htlc_tx_in_mempool(hash).await;
    let outpoint = bitcoin::OutPoint {
        txid: htlc.compute_txid(),
        vout: 0,
    };
    lock(&net.world).hold_spends(outpoint);
    lock(&net.world).mine(1);
    net.wait_until(hash, |r| r.progress.revealed_at.is_some())
        .await;
    lock(&net.world).mine(1);
    let record = net
        .wait_until(hash, |r| r.progress.swap_payment.is_final())
        .await;
    assert!(
        matches!(record.progress.swap_payment, PaymentStatus::Failed { .. }),
        "{:?}",
        record.progress
    );
    assert_eq!(record.progress.state, SwapState::PreimageRevealed);
    // The swap never gives up after the reveal: once miners take the sweep, it succeeds, and
    // the HTLC was swept without paying the swap invoice.
    lock(&net.world).release_spends(&outpoint);
    let record = net.drive_until(hash, succeeded).await;
    let terms = record.contract.terms();
    let after = net.holdings().await;
    let spent = terms.prepay_invoice.amount + record.costs.offchain + record.costs.onchain;
    assert!(after + spent >= before.holdings + terms.amount);
    assert!(record.costs.server_sat < 0, "{:?}", record.costs);
    engine.stop().await;
}

/// The mempool transaction spending `outpoint`, if any.
fn mempool_spender(net: &Simnet, outpoint: bitcoin::OutPoint) -> Option<bitcoin::Transaction> {
    let w = lock(&net.world);
    let chain = w.chain();
    chain.mempool_txids().into_iter().find_map(|txid| {
        chain
            .mempool_entry(&txid)
            .filter(|e| e.tx.input.iter().any(|i| i.previous_output == outpoint))
            .map(|e| e.tx.clone())
    })
}

/// Holds every spend of the swap's HTLC out of blocks, confirms the HTLC, and returns its
/// outpoint with the first sweep once that is in the mempool.
async fn first_sweep_held_out_of_blocks(
    net: &Simnet,
    hash: sluice::domain::SwapHash,
) -> (bitcoin::OutPoint, bitcoin::Transaction) {
    let htlc = net.htlc_tx_in_mempool(hash).await;
    let outpoint = bitcoin::OutPoint {
        txid: htlc.compute_txid(),
        vout: 0,
    };
    lock(&net.world).hold_spends(outpoint);
    lock(&net.world).mine(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(tx) = mempool_spender(net, outpoint) {
            return (outpoint, tx);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sweep reached the mempool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While the sweep waits in the mempool and a new one would be offered at its rate, each block
/// publishes it again as signed: one MuSig2 round with lnd and the server, not one a block
/// (which would pay the same fee under a new lock time, a replacement the mempool refuses).
/// When the rate rises, a new sweep is signed and replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_sweep_is_published_again_as_signed_until_its_rate_rises() {
    let net = simnet().await;
    let calls: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let observer: sluice::domain::RpcObserver = {
        let calls = Arc::clone(&calls);
        Arc::new(move |method, _, _| calls.lock().unwrap().push(method))
    };
    let count = |method: &str| {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|m| **m == method)
            .count()
    };
    let node: Arc<dyn LightningNode> = Arc::new(MeteredNode::new(net.node.clone(), observer));
    let engine = SwapEngine::start(
        node,
        net.client.clone(),
        net.store.clone(),
        config(&net.world),
    );
    lock(&net.world).set_fee_trace(FeeTrace::Flat(5_000));
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(350_000)).await.unwrap();
    let (outpoint, first) = first_sweep_held_out_of_blocks(&net, hash).await;
    assert_eq!(count("MuSig2CreateSession"), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);

    for _ in 0..3 {
        let published = count("PublishTransaction");
        lock(&net.world).mine(1);
        while count("PublishTransaction") == published {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no sweep after a block"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let waiting = mempool_spender(&net, outpoint).unwrap();
        assert_eq!(waiting.compute_txid(), first.compute_txid());
    }
    assert_eq!(
        count("MuSig2CreateSession"),
        1,
        "a sweep at an unchanged rate was signed again"
    );
    assert_eq!(net.record(hash).await.progress.sweep_failures, 0);

    // Fees rise: a sweep paying more is signed and replaces the waiting one.
    {
        let mut w = lock(&net.world);
        w.set_fee_trace(FeeTrace::Flat(10_000));
        w.mine(1);
    }
    let replacement = loop {
        if let Some(tx) = mempool_spender(&net, outpoint)
            && tx.compute_txid() != first.compute_txid()
        {
            break tx;
        }
        assert!(tokio::time::Instant::now() < deadline, "no replacement");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(count("MuSig2CreateSession"), 2);
    lock(&net.world).release_spends(&outpoint);
    let record = net.drive_until(hash, succeeded).await;
    assert_eq!(
        record.progress.spend.unwrap().txid,
        replacement.compute_txid()
    );
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_rbf_version_of_the_sweep_confirming_ends_in_success_with_its_own_costs() {
    let net = simnet().await;
    let engine = net.engine().await;
    let local_before = net.local_balance().await;
    let wallet_before = net.wallet_confirmed().await;
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    let (outpoint, first) = first_sweep_held_out_of_blocks(&net, hash).await;
    // Fees rise: the client replaces its sweep with one paying more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut rate = 5_000;
    loop {
        if mempool_spender(&net, outpoint)
            .is_some_and(|tx| tx.compute_txid() != first.compute_txid())
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no replacement");
        {
            let mut w = lock(&net.world);
            w.set_fee_trace(FeeTrace::Flat(rate));
            w.mine(1);
        }
        rate += 2_500;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A miner who saw the first version confirms it.
    {
        let mut w = lock(&net.world);
        w.release_spends(&outpoint);
        w.force_into_mempool(first.clone()).unwrap();
        w.mine(1);
    }
    let record = net.drive_until(hash, succeeded).await;
    assert_eq!(record.progress.spend.unwrap().txid, first.compute_txid());
    assert_costs_match(&net, &record, local_before, wallet_before).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_timeout_claim_while_the_sweep_is_pending_ends_in_a_recorded_loss() {
    let net = simnet().await;
    net.server.set_behaviour_for_next_swap(Behaviour {
        timeout_claim: sluice::loopserver::behaviour::TimeoutClaim::Eager,
        ..Behaviour::default()
    });
    let engine = net.engine().await;
    let hash = engine.loop_out(request(300_000)).await.unwrap();
    let htlc = net.htlc_tx_in_mempool(hash).await;
    let outpoint = bitcoin::OutPoint {
        txid: htlc.compute_txid(),
        vout: 0,
    };
    // Miners leave every spend of the HTLC out until the server's timeout claim is the one
    // waiting in the mempool.
    lock(&net.world).hold_spends(outpoint);
    lock(&net.world).mine(1);
    net.wait_until(hash, |r| r.progress.revealed_at.is_some())
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let claim = mempool_spender(&net, outpoint)
            .is_some_and(|tx| tx.input.iter().any(|i| i.witness.len() == 3));
        if claim {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no timeout claim");
        lock(&net.world).mine(1);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    {
        let mut w = lock(&net.world);
        w.release_spends(&outpoint);
        w.mine(1);
    }
    let record = net
        .drive(hash, true, |r| terminal(r) && payments_final(r))
        .await;
    assert_eq!(
        record.progress.state,
        SwapState::FailedSweepTimeout,
        "{:?}",
        record.progress
    );
    let terms = record.contract.terms();
    // The server kept what it was paid and the HTLC: the loss is in the costs.
    if record.progress.swap_payment.is_succeeded() {
        assert_eq!(
            record.costs.server_sat,
            i64::try_from((terms.swap_invoice.amount + terms.prepay_invoice.amount).0).unwrap()
        );
    }
    assert_eq!(record.costs.onchain, Sat::ZERO);
    engine.stop().await;
}
