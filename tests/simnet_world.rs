//! The simulated world's Lightning side through the `LightningNode` port: channels, routed
//! payments and forwards, hold invoices, payment limits (outgoing channel, fee, CLTV, parts,
//! timeout) and retries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::Amount;
use futures::StreamExt;
use sluice::domain::{ChanId, Msat, Ppm, Preimage, Sat};
use sluice::lnd::types::{
    HoldInvoiceRequest, HtlcFailure, HtlcOutcome, InvoiceState, PaymentFailure, PaymentRequest,
    PaymentStatus, PaymentUpdate,
};
use sluice::lnd::{LightningNode, NodeStream, pay_part};
use sluice::simnet::world::{
    ChannelSpec, FeePolicy, NodeSpec, SharedWorld, SimNode, World, WorldConfig, lock,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn policy(base_msat: u64, ppm: u64, cltv_delta: u32) -> FeePolicy {
    FeePolicy {
        base_msat,
        ppm: Ppm(ppm),
        cltv_delta,
    }
}

fn channel(a: &str, b: &str, capacity: u64, balance: u64, pa: FeePolicy) -> ChannelSpec {
    ChannelSpec {
        initiator: a.to_owned(),
        peer: b.to_owned(),
        capacity: Sat(capacity),
        initiator_balance: Sat(balance),
        initiator_policy: pa,
        peer_policy: policy(1_000, 1, 40),
        private: false,
    }
}

/// sluice has 1 M (600 k ours) to peer1 and 2 M (1 M ours) to peer2; both peers have 5 M to
/// loop, half each side; peer1 is the cheaper way to loop.
fn world() -> SharedWorld {
    let node = |alias: &str, coins: Vec<u64>| NodeSpec {
        alias: alias.to_owned(),
        wallet_utxos: coins.into_iter().map(Sat).collect(),
    };
    let config = WorldConfig {
        seed: 11,
        network: sluice::domain::Network::Regtest,
        nodes: vec![
            node("sluice", vec![20_000_000, 30_000_000]),
            node("loop", vec![100_000_000, 100_000_000]),
            node("peer1", vec![]),
            node("peer2", vec![]),
        ],
        channels: vec![
            channel(
                "sluice",
                "peer1",
                1_000_000,
                600_000,
                policy(1_000, 500, 80),
            ),
            channel(
                "sluice",
                "peer2",
                2_000_000,
                1_000_000,
                policy(1_000, 500, 80),
            ),
            channel(
                "peer1",
                "loop",
                5_000_000,
                2_500_000,
                policy(1_000, 1_000, 40),
            ),
            channel(
                "peer2",
                "loop",
                5_000_000,
                2_500_000,
                policy(2_000, 2_000, 40),
            ),
        ],
        fee_trace: Default::default(),
        start_unix: 1_700_000_000,
    };
    Arc::new(Mutex::new(World::new(config).unwrap()))
}

fn nodes(world: &SharedWorld) -> (SimNode, SimNode, SimNode) {
    (
        SimNode::new(world.clone(), "sluice").unwrap(),
        SimNode::new(world.clone(), "loop").unwrap(),
        SimNode::new(world.clone(), "peer1").unwrap(),
    )
}

async fn next<T>(s: &mut NodeStream<T>) -> T {
    tokio::time::timeout(DEADLINE, s.next())
        .await
        .expect("no stream item before the deadline")
        .expect("the stream ended")
        .expect("the stream failed")
}

async fn outcome(s: &mut NodeStream<PaymentUpdate>) -> PaymentUpdate {
    loop {
        let u = next(s).await;
        if u.status.is_final() {
            return u;
        }
    }
}

fn request(invoice: &str, fee_limit_sat: u64) -> PaymentRequest {
    PaymentRequest {
        invoice: invoice.to_owned(),
        fee_limit: Sat(fee_limit_sat).to_msat(),
        outgoing_chan_ids: Vec::new(),
        max_parts: 1,
        timeout: Duration::from_secs(60),
        cltv_limit: None,
        last_hop: None,
    }
}

async fn local(node: &SimNode, peer_alias: &str) -> (ChanId, Sat, u32) {
    let ch = node
        .list_channels()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.peer_alias.as_deref() == Some(peer_alias))
        .unwrap();
    (ch.chan_id, ch.local_balance, ch.pending_htlc_count)
}

#[tokio::test]
async fn channels_list_with_balances_reserves_and_real_funding_positions() {
    let w = world();
    let (sluice, _, peer1) = nodes(&w);
    let chans = sluice.list_channels().await.unwrap();
    assert_eq!(chans.len(), 2);
    let c1 = chans
        .iter()
        .find(|c| c.peer_alias.as_deref() == Some("peer1"))
        .unwrap();
    assert_eq!(
        (c1.capacity, c1.local_balance, c1.remote_balance),
        (Sat(1_000_000), Sat(600_000), Sat(400_000))
    );
    assert_eq!(
        (c1.local_reserve, c1.remote_reserve),
        (Sat(10_000), Sat(10_000))
    );
    assert!(c1.initiator && c1.active);
    // The other end sees the mirror image.
    let (_, peer_local, _) = local(&peer1, "sluice").await;
    assert_eq!(peer_local, Sat(400_000));
    // The chan id is the funding output's position on the chain.
    let guard = lock(&w);
    let block = guard
        .chain()
        .block_at(sluice::domain::BlockHeight(c1.chan_id.block()))
        .unwrap();
    let tx = &block.txdata[c1.chan_id.tx_index() as usize];
    assert_eq!(
        c1.channel_point,
        format!("{}:{}", tx.compute_txid(), c1.chan_id.output())
    );
    assert_eq!(
        tx.output[c1.chan_id.output() as usize].value,
        Amount::from_sat(1_000_000)
    );
}

#[tokio::test]
async fn a_routed_payment_moves_both_channels_and_records_the_forward() {
    let w = world();
    let (sluice, lp, peer1) = nodes(&w);
    let mut events = sluice.subscribe_channel_events().await.unwrap();
    let (invoice, hash) = lp.add_invoice(Sat(100_000).to_msat(), "routed").unwrap();
    let decoded = sluice.decode_invoice(&invoice).await.unwrap();
    assert_eq!(decoded.payment_hash, hash);
    assert_eq!(decoded.destination, lp.node_id().unwrap());
    let mut s = sluice.pay(&request(&invoice, 1_000)).await.unwrap();
    let done = outcome(&mut s).await;
    let PaymentStatus::Succeeded { preimage } = done.status else {
        panic!("payment failed: {done:?}");
    };
    assert_eq!(preimage.hash(), hash);
    // peer1 charges 1 sat + 1000 ppm of 100,000 sat = 101 sat.
    assert_eq!(done.fee, Msat(101_000));
    assert_eq!(local(&sluice, "peer1").await.1, Sat(600_000 - 100_101));
    assert_eq!(local(&peer1, "sluice").await.1, Sat(400_000 + 100_101));
    assert_eq!(local(&peer1, "loop").await.1, Sat(2_500_000 - 100_000));
    assert_eq!(local(&lp, "peer1").await.1, Sat(2_500_000 + 100_000));
    let page = peer1.forwarding_history(0, 0, 0, 100).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let fwd = page.events[0];
    assert_eq!(fwd.fee, Msat(101_000));
    assert_eq!(
        (fwd.amount_in, fwd.amount_out),
        (Msat(100_101_000), Msat(100_000_000))
    );
    assert_eq!(page.next_index_offset, 1);
    assert!(
        sluice
            .forwarding_history(0, 0, 0, 100)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    // Balances changed, so the channel stream reported it.
    match next(&mut events).await {
        sluice::domain::ChannelEvent::Updated(ch) => {
            assert_eq!(ch.peer_alias.as_deref(), Some("peer1"))
        }
        other => panic!("unexpected event {other:?}"),
    }
    // Paying again attaches to the succeeded payment instead of paying twice.
    let mut again = sluice.pay(&request(&invoice, 1_000)).await.unwrap();
    assert!(matches!(
        outcome(&mut again).await.status,
        PaymentStatus::Succeeded { .. }
    ));
    assert_eq!(local(&sluice, "peer1").await.1, Sat(600_000 - 100_101));
    let err = sluice
        .send_payment(&request(&invoice, 1_000))
        .err()
        .unwrap();
    assert_eq!(err.kind, sluice::lnd::NodeErrorKind::AlreadyExists);
    assert_eq!(
        sluice::lnd::classify(tonic::Code::Unknown, &err.message),
        sluice::lnd::NodeErrorKind::AlreadyExists
    );
}

async fn hold(lp: &SimNode, preimage: Preimage, amount: u64) -> String {
    lp.add_hold_invoice(&HoldInvoiceRequest {
        hash: preimage.hash(),
        amount: Sat(amount).to_msat(),
        memo: "swap".to_owned(),
        expiry: Duration::from_secs(3600),
        cltv_expiry: 80,
        route_hints: Vec::new(),
        private: false,
    })
    .await
    .unwrap()
    .payment_request
}

#[tokio::test]
async fn a_hold_invoice_keeps_the_payment_in_flight_until_settled() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let preimage = Preimage([5; 32]);
    let invoice = hold(&lp, preimage, 50_000).await;
    let mut inv = lp.subscribe_single_invoice(preimage.hash()).await.unwrap();
    assert_eq!(next(&mut inv).await.state, InvoiceState::Open);
    let mut s = sluice.pay(&request(&invoice, 1_000)).await.unwrap();
    let first = next(&mut s).await;
    assert_eq!(
        (first.status.clone(), first.htlcs_in_flight),
        (PaymentStatus::InFlight, 1)
    );
    assert_eq!(next(&mut inv).await.state, InvoiceState::Accepted);
    assert_eq!(local(&sluice, "peer1").await.2, 1, "the HTLC is pending");
    // Paying again while in flight answers like lnd.
    let err = sluice
        .send_payment(&request(&invoice, 1_000))
        .err()
        .unwrap();
    assert!(err.message.contains("payment is in transition"));
    lp.settle_invoice(preimage).await.unwrap();
    let done = outcome(&mut s).await;
    assert_eq!(done.status, PaymentStatus::Succeeded { preimage });
    let settled = next(&mut inv).await;
    assert_eq!(
        (settled.state, settled.amount_paid),
        (InvoiceState::Settled, Sat(50_000).to_msat())
    );
    assert_eq!(local(&sluice, "peer1").await.2, 0);
    lp.settle_invoice(preimage).await.unwrap();
}

#[tokio::test]
async fn a_part_of_a_set_that_never_completes_is_failed_at_the_mpp_timeout_and_refunded() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let preimage = Preimage([9; 32]);
    let invoice = hold(&lp, preimage, 50_000).await;
    let before = local(&sluice, "peer1").await.1;
    let part = {
        let sluice = sluice.clone();
        tokio::spawn(async move {
            pay_part(
                &sluice,
                &invoice,
                Sat(20_000).to_msat(),
                Sat(50_000).to_msat(),
                Sat(1_000).to_msat(),
            )
            .await
        })
    };
    // Held: the HTLC is locked and the invoice stays open.
    tokio::time::timeout(DEADLINE, async {
        while local(&sluice, "peer1").await.2 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let mut inv = lp.subscribe_single_invoice(preimage.hash()).await.unwrap();
    assert_eq!(next(&mut inv).await.state, InvoiceState::Open);
    lock(&w).advance_clock(119.0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!part.is_finished(), "failed before the MPP timeout");
    lock(&w).advance_clock(2.0);
    let outcome = tokio::time::timeout(DEADLINE, part)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcome, HtlcOutcome::Failed(HtlcFailure::MppTimeout));
    assert_eq!(local(&sluice, "peer1").await.1, before, "refunded");
    assert_eq!(local(&sluice, "peer1").await.2, 0, "nothing pending");
    let mut inv = lp.subscribe_single_invoice(preimage.hash()).await.unwrap();
    assert_eq!(next(&mut inv).await.state, InvoiceState::Open);
}

#[tokio::test]
async fn a_canceled_hold_invoice_fails_the_payment_and_returns_the_funds() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let preimage = Preimage([6; 32]);
    let invoice = hold(&lp, preimage, 50_000).await;
    let before = local(&sluice, "peer1").await.1;
    let mut s = sluice.pay(&request(&invoice, 1_000)).await.unwrap();
    assert_eq!(next(&mut s).await.status, PaymentStatus::InFlight);
    assert!(local(&sluice, "peer1").await.1 < before);
    lp.cancel_invoice(preimage.hash()).await.unwrap();
    let done = outcome(&mut s).await;
    assert_eq!(
        done.status,
        PaymentStatus::Failed(PaymentFailure::IncorrectPaymentDetails)
    );
    assert_eq!(
        local(&sluice, "peer1").await,
        (local(&sluice, "peer1").await.0, before, 0)
    );
    lp.cancel_invoice(preimage.hash()).await.unwrap();
    let mut t = sluice.track_payment(preimage.hash()).await.unwrap();
    assert!(matches!(
        next(&mut t).await.status,
        PaymentStatus::Failed(_)
    ));
}

#[tokio::test]
async fn the_outgoing_channel_restriction_is_respected() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let (peer1_chan, _, _) = local(&sluice, "peer1").await;
    let (invoice, _) = lp.add_invoice(Sat(700_000).to_msat(), "big").unwrap();
    let mut restricted = request(&invoice, 5_000);
    restricted.outgoing_chan_ids = vec![peer1_chan];
    let mut s = sluice.pay(&restricted).await.unwrap();
    assert_eq!(
        outcome(&mut s).await.status,
        PaymentStatus::Failed(PaymentFailure::InsufficientBalance)
    );
    // Unrestricted, peer2's channel can carry it.
    let mut s = sluice.pay(&request(&invoice, 5_000)).await.unwrap();
    assert!(matches!(
        outcome(&mut s).await.status,
        PaymentStatus::Succeeded { .. }
    ));
    assert_eq!(local(&sluice, "peer1").await.1, Sat(600_000));
}

#[tokio::test]
async fn a_fee_limit_below_every_route_fails_with_no_route() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let (invoice, _) = lp.add_invoice(Sat(100_000).to_msat(), "cheap").unwrap();
    let mut s = sluice.pay(&request(&invoice, 100)).await.unwrap();
    assert_eq!(
        outcome(&mut s).await.status,
        PaymentStatus::Failed(PaymentFailure::NoRoute)
    );
    assert_eq!(local(&sluice, "peer1").await.1, Sat(600_000));
}

#[tokio::test]
async fn a_payment_larger_than_any_channel_needs_multiple_parts() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let (invoice, _) = lp.add_invoice(Sat(1_200_000).to_msat(), "mpp").unwrap();
    let mut single = request(&invoice, 50_000);
    single.max_parts = 1;
    let mut s = sluice.pay(&single).await.unwrap();
    assert_eq!(
        outcome(&mut s).await.status,
        PaymentStatus::Failed(PaymentFailure::NoRoute)
    );
    let mut multi = request(&invoice, 50_000);
    multi.max_parts = 16;
    let mut s = sluice.pay(&multi).await.unwrap();
    let done = outcome(&mut s).await;
    assert!(
        matches!(done.status, PaymentStatus::Succeeded { .. }),
        "{done:?}"
    );
    let spent = Sat(600_000 - local(&sluice, "peer1").await.1.0)
        + Sat(1_000_000 - local(&sluice, "peer2").await.1.0);
    assert_eq!(spent, Sat(1_200_000) + done.fee.to_sat_floor());
    assert!(local(&sluice, "peer1").await.1 < Sat(600_000));
    assert!(local(&sluice, "peer2").await.1 < Sat(1_000_000));
}

/// Drains peer1's side of its channel to loop to 50,000 sat spendable, which sluice cannot
/// know: its first route fails at the second hop.
async fn drain_peer1_to_loop(peer1: &SimNode, lp: &SimNode) {
    let (invoice, _) = lp.add_invoice(Sat(2_400_000).to_msat(), "drain").unwrap();
    let mut s = peer1.pay(&request(&invoice, 1_000)).await.unwrap();
    assert!(matches!(
        outcome(&mut s).await.status,
        PaymentStatus::Succeeded { .. }
    ));
}

#[tokio::test]
async fn a_failed_hop_is_avoided_on_the_next_attempt() {
    let w = world();
    let (sluice, lp, peer1) = nodes(&w);
    drain_peer1_to_loop(&peer1, &lp).await;
    let (invoice, _) = lp.add_invoice(Sat(100_000).to_msat(), "retry").unwrap();
    let mut s = sluice.pay(&request(&invoice, 1_000)).await.unwrap();
    let done = outcome(&mut s).await;
    assert!(
        matches!(done.status, PaymentStatus::Succeeded { .. }),
        "{done:?}"
    );
    // peer2's fee: 2 sat + 2000 ppm of 100,000 sat.
    assert_eq!(done.fee, Msat(202_000));
    assert_eq!(
        local(&sluice, "peer1").await,
        (local(&sluice, "peer1").await.0, Sat(600_000), 0)
    );
}

#[tokio::test]
async fn no_new_attempt_starts_after_the_timeout() {
    let w = world();
    let (sluice, lp, peer1) = nodes(&w);
    drain_peer1_to_loop(&peer1, &lp).await;
    let (invoice, _) = lp.add_invoice(Sat(100_000).to_msat(), "slow").unwrap();
    let mut req = request(&invoice, 1_000);
    req.timeout = Duration::from_millis(1);
    let mut s = sluice.pay(&req).await.unwrap();
    assert_eq!(
        outcome(&mut s).await.status,
        PaymentStatus::Failed(PaymentFailure::Timeout)
    );
    assert_eq!(local(&sluice, "peer2").await.1, Sat(1_000_000));
    req.timeout = Duration::ZERO;
    let err = sluice.pay(&req).await.err().unwrap();
    assert_eq!(err.kind, sluice::lnd::NodeErrorKind::InvalidArgument);
}

#[tokio::test]
async fn a_cltv_limit_below_the_route_fails_with_no_route() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let (invoice, _) = lp.add_invoice(Sat(10_000).to_msat(), "cltv").unwrap();
    // The final hop needs 40 blocks and peer1 another 40.
    let mut req = request(&invoice, 1_000);
    req.cltv_limit = Some(79);
    let mut s = sluice.pay(&req).await.unwrap();
    assert_eq!(
        outcome(&mut s).await.status,
        PaymentStatus::Failed(PaymentFailure::NoRoute)
    );
    req.cltv_limit = Some(80);
    let mut s = sluice.pay(&req).await.unwrap();
    assert!(matches!(
        outcome(&mut s).await.status,
        PaymentStatus::Succeeded { .. }
    ));
}

#[tokio::test]
async fn an_accepted_hold_invoice_is_canceled_before_its_htlcs_expire() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let preimage = Preimage([8; 32]);
    let invoice = hold(&lp, preimage, 20_000).await;
    let mut s = sluice.pay(&request(&invoice, 1_000)).await.unwrap();
    assert_eq!(next(&mut s).await.status, PaymentStatus::InFlight);
    // The HTLC expires 80 blocks from now; lnd gives up 12 blocks before.
    lock(&w).mine(80 - 12 - 1);
    assert_eq!(
        lp.subscribe_single_invoice(preimage.hash())
            .await
            .unwrap()
            .next()
            .await
            .unwrap()
            .unwrap()
            .state,
        InvoiceState::Accepted
    );
    lock(&w).mine(1);
    assert_eq!(
        outcome(&mut s).await.status,
        PaymentStatus::Failed(PaymentFailure::IncorrectPaymentDetails)
    );
    assert!(lp.settle_invoice(preimage).await.is_err());
}

#[tokio::test]
async fn an_open_invoice_expires_with_simulated_time() {
    let w = world();
    let (sluice, lp, _) = nodes(&w);
    let preimage = Preimage([4; 32]);
    let invoice = hold(&lp, preimage, 10_000).await;
    let mut inv = lp.subscribe_single_invoice(preimage.hash()).await.unwrap();
    assert_eq!(next(&mut inv).await.state, InvoiceState::Open);
    lock(&w).advance_clock(3_599.0);
    lock(&w).advance_clock(2.0);
    assert_eq!(next(&mut inv).await.state, InvoiceState::Canceled);
    let err = sluice.pay(&request(&invoice, 1_000)).await.err().unwrap();
    assert_eq!(err.kind, sluice::lnd::NodeErrorKind::InvalidArgument);
    assert!(err.message.contains("invoice expired"), "{}", err.message);
}

#[tokio::test]
async fn an_offline_peer_takes_its_channels_out_of_routing() {
    let w = world();
    let (sluice, lp, peer1) = nodes(&w);
    let mut events = sluice.subscribe_channel_events().await.unwrap();
    let peer1_idx = peer1.index();
    lock(&w).set_node_online(peer1_idx, false);
    match next(&mut events).await {
        sluice::domain::ChannelEvent::Updated(ch) => {
            assert_eq!(ch.peer_alias.as_deref(), Some("peer1"));
            assert!(!ch.active);
        }
        other => panic!("unexpected event {other:?}"),
    }
    assert_eq!(sluice.list_peers().await.unwrap().len(), 1);
    let (invoice, _) = lp.add_invoice(Sat(100_000).to_msat(), "around").unwrap();
    let mut s = sluice.pay(&request(&invoice, 1_000)).await.unwrap();
    let done = outcome(&mut s).await;
    // Only the dearer way through peer2 is left.
    assert_eq!(done.fee, Msat(202_000), "{done:?}");
    lock(&w).set_node_online(peer1_idx, true);
    assert!(
        sluice
            .list_channels()
            .await
            .unwrap()
            .iter()
            .all(|c| c.active)
    );
}
