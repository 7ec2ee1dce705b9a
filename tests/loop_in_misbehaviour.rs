//! One engine test per Loop In misbehaviour of the protocol's §11 the reference server can act
//! out: a refused swap stores nothing, funds nothing and cancels its invoice; a server that
//! pays late, never claims or refuses the key cannot make the node lose anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_harness;

use std::time::Duration;

use engine_harness::{Simnet, simnet};
use futures::StreamExt;
use sluice::domain::{Sat, SwapHash};
use sluice::lnd::LightningNode;
use sluice::lnd::types::{HtlcFailure, InvoiceState};
use sluice::loopserver::InBehaviour;
use sluice::loopserver::behaviour::SenderKeyTamper;
use sluice::loopserver::behaviour_in::{
    ClaimMode, ExpiryTamper, InQuoteTamper, InternalKeyTamper, OVERPAYMENT, PayMode, ProbeMode,
    PushKeyMode,
};
use sluice::simnet::world::lock;
use sluice::store::loop_in::LoopInRecord;
use sluice::swap::loop_in::{InvoiceStatus, LoopInState};
use sluice::swap::{EngineError, LoopInRequest, SwapEngine};

const AMOUNT: u64 = 150_000;

fn request() -> LoopInRequest {
    LoopInRequest {
        amount: Sat(AMOUNT),
        label: "misbehaviour".to_owned(),
        initiator: "loop_in_misbehaviour test".to_owned(),
        ..LoopInRequest::default()
    }
}

fn settle_mempool(net: &Simnet) {
    let mut w = lock(&net.world);
    while !w.chain().mempool_txids().is_empty() {
        w.mine(1);
    }
}

/// The swap `behaviour` makes the server answer is refused: the error, with nothing stored,
/// nothing funded and no open invoice left for the server to pay.
async fn refused(behaviour: InBehaviour) -> EngineError {
    refused_by(behaviour, None).await.0
}

/// As [`refused`], with the client giving up `NewLoopInSwap` after `patience` if given.
async fn refused_by(behaviour: InBehaviour, patience: Option<Duration>) -> (EngineError, Simnet) {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_next_swap(behaviour);
    let mut config = engine_harness::config(&net.world);
    if let Some(patience) = patience {
        config.new_loop_in_patience = patience;
    }
    let engine = net.engine_with(config).await;
    settle_mempool(&net);
    let before = net.holdings().await;
    let err = engine.loop_in(request()).await.unwrap_err();
    assert!(
        net.store.list_loop_ins(None).await.unwrap().is_empty(),
        "stored although refused: {err}"
    );
    settle_mempool(&net);
    assert_eq!(
        net.holdings().await,
        before,
        "funded although refused: {err}"
    );
    // The server knows the hash; neither the swap invoice nor the probe may be left payable.
    for hash in net.server.loop_in_hashes() {
        for h in [hash, sluice::swap::engine::probe_hash(hash)] {
            let mut s = net.node.subscribe_single_invoice(h).await.unwrap();
            let state = s.next().await.unwrap().unwrap().state;
            assert_eq!(state, InvoiceState::Canceled, "{err}");
        }
    }
    engine.stop().await;
    (err, net)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_above_the_one_shown_is_refused_before_any_invoice() {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_amount(
        Sat(AMOUNT),
        InBehaviour {
            quote: InQuoteTamper::FeeAboveFirstQuote(Sat(5_000)),
            ..InBehaviour::default()
        },
    );
    let engine = net.engine().await;
    // The quote shown (as `sluice in` does), then the swap bound to its fee.
    let shown = engine
        .loop_in_quote(Sat(AMOUNT), None, &sluice::swap::RouteHints::None, None)
        .await
        .unwrap();
    let err = engine
        .loop_in(LoopInRequest {
            max_swap_fee: Some(shown.limits.max_swap_fee),
            max_miner_fee: Some(shown.limits.max_miner_fee),
            ..request()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds max_swap_fee"), "{err}");
    assert!(net.store.list_loop_ins(None).await.unwrap().is_empty());
    assert!(
        net.server.loop_in_hashes().is_empty(),
        "the server never saw a swap"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_server_keys_are_refused() {
    let err = refused(InBehaviour {
        receiver_key: SenderKeyTamper::OffCurve,
        ..InBehaviour::default()
    })
    .await;
    assert!(err.to_string().contains("receiver_key"), "{err}");
    let err = refused(InBehaviour {
        receiver_internal_key: InternalKeyTamper::Missing,
        ..InBehaviour::default()
    })
    .await;
    assert!(
        err.to_string().contains("receiver_internal_pubkey"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_out_of_bounds_are_refused() {
    let err = refused(InBehaviour {
        expiry: ExpiryTamper::TooSoon,
        ..InBehaviour::default()
    })
    .await;
    assert!(err.to_string().contains("ErrExpiryTooSoon"), "{err}");
    let err = refused(InBehaviour {
        expiry: ExpiryTamper::TooFar,
        ..InBehaviour::default()
    })
    .await;
    assert!(err.to_string().contains("ErrExpiryTooFar"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_late_probe_is_refused() {
    for probe in [ProbeMode::Skip, ProbeMode::AfterReply] {
        let err = refused(InBehaviour {
            probe,
            ..InBehaviour::default()
        })
        .await;
        assert!(err.to_string().contains("probe error"), "{probe:?}: {err}");
    }
}

async fn record(net: &Simnet, hash: SwapHash) -> LoopInRecord {
    net.store.load_loop_in(hash).await.unwrap().unwrap()
}

/// Mines while anything waits (a transaction, a spend's depth, a paid swap's expiry) until
/// the swap ends; jumps to the expiry when it waits for it.
async fn drive_to_end(net: &Simnet, hash: SwapHash) -> LoopInRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let r = record(net, hash).await;
        if r.progress.state.is_terminal() {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: {:?}",
            r.progress
        );
        {
            let mut w = lock(&net.world);
            let (height, expiry) = (w.height().0, r.contract.terms().expiry.0);
            if !w.chain().mempool_txids().is_empty() || r.progress.spend.is_some() {
                w.mine(1);
            } else if r.progress.htlc.is_some() && height < expiry {
                w.mine(expiry - height);
            } else {
                w.mine(1);
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn run(behaviour: InBehaviour) -> (Simnet, SwapEngine, LoopInRecord, Sat) {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_next_swap(behaviour);
    let engine = net.engine().await;
    settle_mempool(&net);
    let before = net.holdings().await;
    let created = engine.loop_in(request()).await.unwrap();
    let r = drive_to_end(&net, created.hash).await;
    settle_mempool(&net);
    (net, engine, r, before)
}

fn cost(r: &LoopInRecord) -> Sat {
    Sat(u64::try_from(r.costs.server_sat).unwrap()) + r.costs.onchain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_the_key_still_pays_and_the_node_is_even() {
    let (net, engine, r, before) = run(InBehaviour {
        push_key: PushKeyMode::Error,
        ..InBehaviour::default()
    })
    .await;
    assert_eq!(r.progress.state, LoopInState::Succeeded, "{:?}", r.progress);
    assert!(!r.progress.key_push_acked);
    assert_eq!(before - net.holdings().await, cost(&r));
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_pays_but_never_claims_leaves_the_htlc_alone_and_succeeds_at_the_expiry() {
    let (net, engine, r, before) = run(InBehaviour {
        claim: ClaimMode::Never,
        ..InBehaviour::default()
    })
    .await;
    assert_eq!(r.progress.state, LoopInState::Succeeded, "{:?}", r.progress);
    assert!(
        r.progress.spend.is_none(),
        "swept a paid HTLC: {:?}",
        r.progress
    );
    assert_eq!(r.progress.sweeps_requested, 0);
    assert!(matches!(r.progress.invoice, InvoiceStatus::Settled { .. }));
    assert_eq!(before - net.holdings().await, cost(&r));
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_pays_late_cannot_make_the_node_lose() {
    let (net, engine, r, before) = run(InBehaviour {
        pay: PayMode::Late,
        ..InBehaviour::default()
    })
    .await;
    // Either the server's late payment or our timeout sweep won; both are safe and the node
    // moves by exactly the recorded costs.
    assert!(
        matches!(
            r.progress.state,
            LoopInState::Succeeded | LoopInState::FailedTimeout
        ),
        "{:?}",
        r.progress
    );
    assert_eq!(before - net.holdings().await, cost(&r), "{:?}", r.progress);
    engine.stop().await;
}

/// How the "loop" node's payment for `hash` ended: the HTLC's failure, if it failed.
fn server_htlc_failure(net: &Simnet, hash: SwapHash) -> Option<HtlcFailure> {
    let w = lock(&net.world);
    let server = w.node_index("loop").unwrap();
    w.htlc_failure(server, hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_slower_than_the_clients_patience_is_given_up() {
    // The server probes, then would answer after 100 s; the client waits 3 s here (90 s by
    // default, as Loop) and leaves nothing behind, both invoices cancelled.
    let (err, net) = refused_by(
        InBehaviour {
            probe: ProbeMode::SlowAnswer,
            ..InBehaviour::default()
        },
        Some(Duration::from_secs(3)),
    )
    .await;
    // The server has not registered the swap yet: check the node's own invoice book.
    let w = lock(&net.world);
    let states: Vec<_> = w.invoices(net.node.index()).map(|i| i.state).collect();
    assert_eq!(states, [InvoiceState::Canceled; 2], "{err}");
    assert!(
        err.to_string()
            .contains("did not answer NewLoopInSwap within 3 s"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_of_too_little_is_held_by_the_node_and_refused() {
    let err = refused(InBehaviour {
        probe: ProbeMode::TooLittle,
        ..InBehaviour::default()
    })
    .await;
    assert!(err.to_string().contains("probe error"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_pays_less_cannot_make_the_node_lose() {
    let (net, engine, r, before) = run(InBehaviour {
        pay: PayMode::Less,
        ..InBehaviour::default()
    })
    .await;
    // The half the server sent was held by the node as part of a set that never completed,
    // so the invoice never settled: the node took its HTLC back at the expiry.
    assert_eq!(
        r.progress.state,
        LoopInState::FailedTimeout,
        "{:?}",
        r.progress
    );
    assert!(
        !matches!(r.progress.invoice, InvoiceStatus::Settled { .. }),
        "{:?}",
        r.progress
    );
    assert_eq!(r.costs.server_sat, 0, "{:?}", r.costs);
    assert_eq!(before - net.holdings().await, r.costs.onchain);
    // The part reached the node and was failed back when the node canceled its invoice.
    let hash = r.contract.terms().swap_hash;
    let mut states = net.node.subscribe_single_invoice(hash).await.unwrap();
    let state = states.next().await.unwrap().unwrap().state;
    assert_eq!(state, InvoiceState::Canceled);
    assert_eq!(
        server_htlc_failure(&net, hash),
        Some(HtlcFailure::IncorrectOrUnknownPaymentDetails)
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_pays_more_leaves_the_node_the_surplus() {
    let (net, engine, r, before) = run(InBehaviour {
        pay: PayMode::More,
        ..InBehaviour::default()
    })
    .await;
    assert_eq!(r.progress.state, LoopInState::Succeeded, "{:?}", r.progress);
    let invoice_amount = r.contract.invoice_amount();
    assert_eq!(
        r.progress.invoice,
        InvoiceStatus::Settled {
            amount_paid: invoice_amount + OVERPAYMENT
        },
        "{:?}",
        r.progress
    );
    // The server kept the HTLC (amt) and paid amt − fee + 1,000: its cost is 1,000 lower.
    let swap_fee = Sat(AMOUNT) - invoice_amount;
    assert_eq!(
        r.costs.server_sat,
        i64::try_from(swap_fee.0).unwrap() - i64::try_from(OVERPAYMENT.0).unwrap()
    );
    let moved = i64::try_from(before.0).unwrap() - i64::try_from(net.holdings().await.0).unwrap();
    assert_eq!(
        moved,
        r.costs.server_sat + i64::try_from(r.costs.onchain.0).unwrap(),
        "{:?}",
        r.costs
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoy_output_to_the_htlc_script_is_never_taken_for_the_htlc() {
    let net = simnet().await;
    net.server.set_loop_in_behaviour_for_next_swap(InBehaviour {
        decoy: true,
        ..InBehaviour::default()
    });
    let engine = net.engine().await;
    settle_mempool(&net);
    let before = net.holdings().await;
    let created = engine.loop_in(request()).await.unwrap();
    // The decoy is in the mempool since the server's answer; our funding is kept out of the
    // next block, so the decoy confirms first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let funding = loop {
        if let Some(f) = record(&net, created.hash).await.progress.funding {
            break f.txid;
        }
        assert!(tokio::time::Instant::now() < deadline, "never funded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    lock(&net.world).hold(funding);
    lock(&net.world).mine(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock(&net.world).release(&funding);
    let r = drive_to_end(&net, created.hash).await;
    settle_mempool(&net);
    // The server took its own decoy for the HTLC and never paid; the node followed its own
    // funding transaction and took that HTLC back, losing only the fees it recorded.
    assert_eq!(
        r.progress.state,
        LoopInState::FailedTimeout,
        "{:?}",
        r.progress
    );
    assert_eq!(r.progress.htlc.map(|h| h.outpoint.txid), Some(funding));
    assert_eq!(r.costs.server_sat, 0, "{:?}", r.costs);
    assert_eq!(
        before - net.holdings().await,
        r.costs.onchain,
        "{:?}",
        r.progress
    );
    engine.stop().await;
}
