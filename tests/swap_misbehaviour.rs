//! The swap engine against every misbehaviour of the reference Loop server that the protocol
//! notes (§11) say a client must survive, one test per misbehaviour, each through
//! `SwapEngine` over gRPC on the simnet. Each asserts the documented outcome, whether the
//! preimage reached the server (it must not when the swap fails before the reveal), and what
//! the node lost, from its channel and wallet balances: at most the prepay and fees when the
//! swap fails. `docs/misbehaviour.md` maps each §11 item to its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_harness;

use std::time::Duration;

use engine_harness::{Simnet, assert_costs_match, request, simnet, succeeded};
use sluice::chain::fees::MAX_FEE_SHARE;
use sluice::domain::{BlockHeight, Sat};
use sluice::lnd::LightningNode;
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
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
    engine.shutdown();
}
