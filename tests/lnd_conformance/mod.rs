//! One conformance suite for the `LightningNode` port, run against two backends: the simnet's
//! lnd facade (`tests/simnet_lnd_conformance.rs`) and a real lnd on regtest
//! (`tests/realnode_lnd_conformance.rs`). Both are reached through sluice's real `LndClient`
//! over gRPC, so what passes here passes the way sluiced talks to lnd. Every check states what
//! lnd does; where the simnet once differed, `docs/simnet-fidelity.md` says so.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_trait::async_trait;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness, absolute, transaction,
};
use futures::StreamExt;
use sluice::domain::{BlockHeight, ChannelEvent, Msat, Network, Preimage, SwapHash};
use sluice::lnd::types::{
    ConfRequest, ConfUpdate, HoldInvoiceRequest, HtlcFailure, HtlcOutcome, InvoiceRequest,
    InvoiceState, PaymentFailure, PaymentRequest, PaymentStatus, RouteRequest, SpendRequest,
    SpendUpdate,
};
use sluice::lnd::{LightningNode, LndClient, NodeErrorKind, NodeStream, pay_part};

/// How long any one event may take.
pub const EVENT: Duration = Duration::from_secs(60);

/// The chain behind the two nodes, driven from outside them.
#[async_trait]
pub trait Chain: Send + Sync {
    /// Mines `n` blocks; returns when both nodes have them.
    async fn mine(&self, n: u32);
    /// Replaces the last `depth` blocks with `depth + 1` new ones, their transactions back in
    /// the mempool where still valid; returns when both nodes follow the new branch.
    async fn reorg(&self, depth: u32);
    /// Pays `amount` sat to `script` from outside both wallets, unconfirmed; output 0 pays it.
    async fn pay_to(&self, script: ScriptBuf, amount: u64) -> Transaction;
    /// The best height.
    async fn height(&self) -> u32;
}

/// Two nodes with a route between them, and their chain.
pub struct Backend {
    /// "simnet" or "lnd", for messages.
    pub name: &'static str,
    /// The node sluice runs against.
    pub sluice: LndClient,
    /// A node sluice can pay (the swap server's).
    pub other: LndClient,
    /// The chain.
    pub chain: Box<dyn Chain>,
}

/// The next item of a stream, or a panic naming what was awaited.
pub async fn next<T: std::fmt::Debug>(stream: &mut NodeStream<T>, what: &str) -> T {
    match tokio::time::timeout(EVENT, stream.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(e))) => panic!("{what}: the stream failed: {e}"),
        Ok(None) => panic!("{what}: the stream ended"),
        Err(_) => panic!("{what}: nothing within {EVENT:?}"),
    }
}

/// Awaits a port call that must answer promptly: a subscription returns its stream before its
/// first event (lnd sends no response headers until then, so a client that waits for them
/// hangs here).
pub async fn prompt<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: the call did not return within 10 s"))
}

/// Runs every check in order (they share the backend's world, so one test runs them all).
pub async fn run_all(b: &Backend) {
    eprintln!("{}: identity, version, network", b.name);
    node_identity_version_and_network(b).await;
    eprintln!("{}: fee estimates and keys", b.name);
    fee_estimates_and_keys(b).await;
    eprintln!("{}: block epochs", b.name);
    block_epochs_follow_the_chain(b).await;
    eprintln!("{}: hold invoice, payment, channel events", b.name);
    hold_invoice_lifecycle_payment_and_channel_events(b).await;
    eprintln!("{}: payment failure reasons", b.name);
    payment_failure_reasons(b).await;
    eprintln!("{}: invoice with a chosen preimage", b.name);
    invoice_with_a_chosen_preimage_settles_on_payment(b).await;
    eprintln!(
        "{}: HTLCs by hand: parts, overpayment, amount too low",
        b.name
    );
    htlcs_by_hand_parts_overpayment_and_too_little(b).await;
    eprintln!("{}: confirmations, spends, reorgs", b.name);
    confirmations_spends_and_reorgs(b).await;
    eprintln!("{}: publication errors", b.name);
    publication_errors(b).await;
    eprintln!("{}: wallet balance", b.name);
    wallet_balance(b).await;
    eprintln!("{}: graph edges and route hints", b.name);
    graph_edges_and_route_hints(b).await;
}

/// GetInfo and GetVersion: the network, a synced chain, a version and the build tags sluice
/// requires.
pub async fn node_identity_version_and_network(b: &Backend) {
    let info = b.sluice.get_info().await.unwrap();
    assert!(info.synced_to_chain, "{}: {info:?}", b.name);
    assert_eq!(info.block_height.0, b.chain.height().await, "{}", b.name);
    let version = b.sluice.get_version().await.unwrap();
    sluice::lnd::connect::check_version("lnd", &version)
        .unwrap_or_else(|e| panic!("{}: {e}", b.name));
    assert!(
        sluice::lnd::connect::networks_pair(Network::Regtest, info.network),
        "{}: {info:?}",
        b.name
    );
}

/// Fee estimates never go below the relay floor; the channels are listed active and within
/// their capacity; key family 99 derives fresh keys and the same key again at a locator.
pub async fn fee_estimates_and_keys(b: &Backend) {
    for target in [2, 6, 100] {
        let rate = b.sluice.estimate_fee(target).await.unwrap();
        assert!(
            rate.to_sat_per_kwu() >= 253,
            "{}: the {target}-block estimate {rate:?} is below lnd's floor",
            b.name
        );
    }
    let a = b.sluice.derive_next_key(99).await.unwrap();
    let c = b.sluice.derive_next_key(99).await.unwrap();
    assert_eq!(a.locator.family, 99);
    assert_ne!(a.pubkey, c.pubkey, "{}: two next keys", b.name);
    assert_eq!(c.locator.index, a.locator.index + 1, "{}", b.name);
    let again = b.sluice.derive_key(a.locator).await.unwrap();
    assert_eq!(
        again.pubkey, a.pubkey,
        "{}: derive_key at a locator",
        b.name
    );
    let channels = b.sluice.list_channels().await.unwrap();
    assert!(
        !channels.is_empty(),
        "{}: sluice's node has channels",
        b.name
    );
    for c in &channels {
        assert!(c.active, "{}: {c:?}", b.name);
        assert!(
            c.local_balance + c.remote_balance <= c.capacity,
            "{}: balances within capacity: {c:?}",
            b.name
        );
        assert_ne!(c.chan_id.0, 0, "{}: {c:?}", b.name);
    }
    let addr = b.sluice.next_addr().await.unwrap();
    assert!(
        addr.script_pubkey().is_p2tr(),
        "{}: sweep addresses are taproot: {addr}",
        b.name
    );
}

/// The epoch stream starts with the tip, then follows new blocks.
pub async fn block_epochs_follow_the_chain(b: &Backend) {
    let mut epochs = b.sluice.register_block_epochs().await.unwrap();
    let first = next(&mut epochs, "the first epoch").await;
    let tip = b.chain.height().await;
    assert_eq!(
        first.height.0, tip,
        "{}: the stream starts at the tip",
        b.name
    );
    b.chain.mine(1).await;
    let second = next(&mut epochs, "the next epoch").await;
    assert_eq!(second.height.0, tip + 1, "{}", b.name);
}

/// A hold invoice on the other node: open, paid by sluice (accepted, held), settled with the
/// preimage; sluice's payment succeeds with it, `track_payment` agrees, and sluice's channel
/// events report the balance change.
pub async fn hold_invoice_lifecycle_payment_and_channel_events(b: &Backend) {
    let preimage = Preimage([0x11; 32]);
    let hash = SwapHash(sha256::Hash::hash(&preimage.0).to_byte_array());
    let invoice = b
        .other
        .add_hold_invoice(&hold_request(hash, Msat(50_000_000), "conformance"))
        .await
        .unwrap();
    let mut states = b.other.subscribe_single_invoice(hash).await.unwrap();
    let open = next(&mut states, "the invoice's first state").await;
    assert_eq!(open.state, InvoiceState::Open, "{}", b.name);
    let decoded = b
        .sluice
        .decode_invoice(&invoice.payment_request)
        .await
        .unwrap();
    assert_eq!(decoded.payment_hash, hash);
    assert_eq!(decoded.amount, Msat(50_000_000));
    assert_eq!(decoded.min_final_cltv_delta, 80, "{}", b.name);

    let mut events = prompt(
        "subscribe_channel_events",
        b.sluice.subscribe_channel_events(),
    )
    .await
    .unwrap();
    let mut payment = b
        .sluice
        .pay(&PaymentRequest {
            invoice: invoice.payment_request.clone(),
            fee_limit: Msat(1_000_000),
            outgoing_chan_ids: Vec::new(),
            max_parts: 1,
            timeout: Duration::from_secs(60),
            cltv_limit: None,
            last_hop: None,
        })
        .await
        .unwrap();
    let accepted = loop {
        let u = next(&mut states, "the invoice to be accepted").await;
        if u.state != InvoiceState::Open {
            break u;
        }
    };
    assert_eq!(accepted.state, InvoiceState::Accepted, "{}", b.name);
    assert_eq!(accepted.amount_paid, Msat(50_000_000), "{}", b.name);
    // Held: the payment is in flight until the settle.
    let update = next(&mut payment, "the payment's first update").await;
    assert!(!update.status.is_final(), "{}: {update:?}", b.name);
    b.other.settle_invoice(preimage).await.unwrap();
    // Settling twice is fine.
    b.other.settle_invoice(preimage).await.unwrap();
    let settled = next(&mut states, "the invoice to settle").await;
    assert_eq!(settled.state, InvoiceState::Settled, "{}", b.name);
    let last = loop {
        let u = next(&mut payment, "the payment's outcome").await;
        if u.status.is_final() {
            break u;
        }
    };
    assert_eq!(
        last.status,
        PaymentStatus::Succeeded { preimage },
        "{}",
        b.name
    );
    assert!(last.fee.0 > 0, "{}: two hops cost a fee: {last:?}", b.name);
    let mut tracked = b.sluice.track_payment(hash).await.unwrap();
    let t = next(&mut tracked, "the tracked payment").await;
    assert_eq!(
        t.status,
        PaymentStatus::Succeeded { preimage },
        "{}",
        b.name
    );
    assert_eq!(t.fee, last.fee, "{}", b.name);
    settled_payment_and_invoice_are_listed(b, Msat(50_000_000), last.fee).await;
    // Paying the same invoice again makes no second payment.
    let again = b
        .sluice
        .pay(&PaymentRequest {
            invoice: invoice.payment_request,
            fee_limit: Msat(1_000_000),
            outgoing_chan_ids: Vec::new(),
            max_parts: 1,
            timeout: Duration::from_secs(60),
            cltv_limit: None,
            last_hop: None,
        })
        .await;
    if let Ok(mut s) = again {
        let u = next(&mut s, "a repeated payment").await;
        assert_eq!(
            u.status,
            PaymentStatus::Succeeded { preimage },
            "{}",
            b.name
        );
    }
    // Each commitment change reaches the channel event stream: the HTLC added (pending), then
    // settled into the remote balance.
    let mut saw_pending = false;
    loop {
        if let ChannelEvent::Updated(c) = next(&mut events, "a channel update").await {
            saw_pending |= c.pending_htlc_count > 0;
            if c.pending_htlc_count == 0 && c.remote_balance.0 > 0 {
                break;
            }
        }
    }
    assert!(
        saw_pending,
        "{}: no update showed the HTLC in flight",
        b.name
    );
}

/// AddInvoice with a chosen preimage (the Loop In swap invoice): lnd settles it by itself when
/// paid in full, the payer learns that preimage, a second invoice for the hash is refused, and
/// the invoice decodes with the node's default final CLTV delta (80).
pub async fn invoice_with_a_chosen_preimage_settles_on_payment(b: &Backend) {
    let preimage = Preimage([0x44; 32]);
    let hash = SwapHash(sha256::Hash::hash(&preimage.0).to_byte_array());
    let request = InvoiceRequest {
        preimage,
        amount: Msat(30_000_000),
        memo: "swap".into(),
        expiry: Duration::from_secs(31_536_000),
        route_hints: Vec::new(),
        private: true,
    };
    let invoice = b.other.add_invoice(&request).await.unwrap();
    let decoded = b
        .sluice
        .decode_invoice(&invoice.payment_request)
        .await
        .unwrap();
    assert_eq!(decoded.payment_hash, hash, "{}", b.name);
    assert_eq!(decoded.amount, Msat(30_000_000), "{}", b.name);
    assert_eq!(decoded.min_final_cltv_delta, 80, "{}", b.name);
    let again = b.other.add_invoice(&request).await.unwrap_err();
    assert_eq!(
        again.kind,
        NodeErrorKind::AlreadyExists,
        "{}: {again}",
        b.name
    );
    let mut states = b.other.subscribe_single_invoice(hash).await.unwrap();
    let open = next(&mut states, "the invoice's first state").await;
    assert_eq!(open.state, InvoiceState::Open, "{}", b.name);
    let outcome = pay_to_outcome(b, &invoice.payment_request).await;
    assert_eq!(outcome, PaymentStatus::Succeeded { preimage }, "{}", b.name);
    let settled = loop {
        let u = next(&mut states, "the invoice to settle by itself").await;
        if u.state != InvoiceState::Open && u.state != InvoiceState::Accepted {
            break u;
        }
    };
    assert_eq!(settled.state, InvoiceState::Settled, "{}", b.name);
    assert_eq!(settled.amount_paid, Msat(30_000_000), "{}", b.name);
}

/// A public hold invoice for `amount` with lnd's usual CLTV delta and an hour to pay it.
fn hold_request(hash: SwapHash, amount: Msat, memo: &str) -> HoldInvoiceRequest {
    HoldInvoiceRequest {
        hash,
        amount,
        memo: memo.into(),
        expiry: Duration::from_secs(3600),
        cltv_expiry: 80,
        route_hints: Vec::new(),
        private: false,
    }
}

/// The next invoice state other than `skip`, or `None` if none comes within `wait`.
async fn state_other_than(
    states: &mut NodeStream<sluice::lnd::types::InvoiceUpdate>,
    skip: InvoiceState,
    wait: Duration,
) -> Option<sluice::lnd::types::InvoiceUpdate> {
    tokio::time::timeout(wait, async {
        loop {
            let u = states.next().await?.ok()?;
            if u.state != skip {
                return Some(u);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// QueryRoutes and SendToRouteV2 with a multi-path record (how the reference server pays less
/// or more than an invoice asks): a part of a set is held and the invoice stays open; the
/// second part completes the set, so the hold invoice is accepted for the total and both
/// parts settle with its preimage; canceling an invoice fails a held part with incorrect
/// payment details; one HTLC above the invoice's amount settles it and is recorded as paid;
/// a set whose total is below the amount fails at once; no route to an unknown node.
pub async fn htlcs_by_hand_parts_overpayment_and_too_little(b: &Backend) {
    let limit = Msat(1_000_000);
    let unknown = b
        .sluice
        .query_route(&RouteRequest {
            destination: "02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .parse()
                .unwrap(),
            amount: Msat(1_000_000),
            final_cltv_delta: 80,
            route_hints: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        unknown.kind,
        NodeErrorKind::NotFound,
        "{}: {unknown}",
        b.name
    );

    // Two parts of one set, to a hold invoice.
    let preimage = Preimage([0x55; 32]);
    let hash = SwapHash(sha256::Hash::hash(&preimage.0).to_byte_array());
    let total = Msat(20_000_000);
    let held = b
        .other
        .add_hold_invoice(&hold_request(hash, total, "two parts"))
        .await
        .unwrap();
    let mut states = b.other.subscribe_single_invoice(hash).await.unwrap();
    let first = {
        let node = b.sluice.clone();
        let invoice = held.payment_request.clone();
        tokio::spawn(async move { pay_part(&node, &invoice, Msat(8_000_000), total, limit).await })
    };
    let early = state_other_than(&mut states, InvoiceState::Open, Duration::from_secs(3)).await;
    assert_eq!(early, None, "{}: a part alone changed the invoice", b.name);
    assert!(!first.is_finished(), "{}: the held part returned", b.name);
    let second = {
        let node = b.sluice.clone();
        let invoice = held.payment_request.clone();
        tokio::spawn(async move { pay_part(&node, &invoice, Msat(12_000_000), total, limit).await })
    };
    let accepted = state_other_than(&mut states, InvoiceState::Open, EVENT)
        .await
        .unwrap_or_else(|| panic!("{}: the complete set was not accepted", b.name));
    assert_eq!(accepted.state, InvoiceState::Accepted, "{}", b.name);
    assert_eq!(accepted.amount_paid, total, "{}", b.name);
    b.other.settle_invoice(preimage).await.unwrap();
    for part in [first, second] {
        let outcome = prompt("a part's outcome", part).await.unwrap().unwrap();
        assert_eq!(outcome, HtlcOutcome::Settled { preimage }, "{}", b.name);
    }

    // A part held when the invoice is canceled fails with incorrect payment details.
    let canceled = SwapHash([0x56; 32]);
    let invoice = b
        .other
        .add_hold_invoice(&hold_request(canceled, total, "canceled part"))
        .await
        .unwrap();
    let part = {
        let node = b.sluice.clone();
        let invoice = invoice.payment_request.clone();
        tokio::spawn(async move { pay_part(&node, &invoice, Msat(5_000_000), total, limit).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!part.is_finished(), "{}: the held part returned", b.name);
    b.other.cancel_invoice(canceled).await.unwrap();
    let outcome = prompt("the canceled part", part).await.unwrap().unwrap();
    assert_eq!(
        outcome,
        HtlcOutcome::Failed(HtlcFailure::IncorrectOrUnknownPaymentDetails),
        "{}",
        b.name
    );

    // One HTLC above the invoice's amount: settled, and paid that much.
    let preimage = Preimage([0x57; 32]);
    let hash = SwapHash(sha256::Hash::hash(&preimage.0).to_byte_array());
    let plain = b
        .other
        .add_invoice(&InvoiceRequest {
            preimage,
            amount: Msat(10_000_000),
            memo: "overpaid".into(),
            expiry: Duration::from_secs(3600),
            route_hints: Vec::new(),
            private: false,
        })
        .await
        .unwrap();
    let mut states = b.other.subscribe_single_invoice(hash).await.unwrap();
    let more = Msat(12_000_000);
    let outcome = prompt(
        "the overpayment",
        pay_part(&b.sluice, &plain.payment_request, more, more, limit),
    )
    .await
    .unwrap();
    assert_eq!(outcome, HtlcOutcome::Settled { preimage }, "{}", b.name);
    let settled = state_other_than(&mut states, InvoiceState::Open, EVENT)
        .await
        .unwrap_or_else(|| panic!("{}: the overpaid invoice did not settle", b.name));
    assert_eq!(settled.state, InvoiceState::Settled, "{}", b.name);
    assert_eq!(settled.amount_paid, more, "{}", b.name);

    // A set whose total is below the invoice's amount fails at once.
    let short = b
        .other
        .add_invoice(&InvoiceRequest {
            preimage: Preimage([0x58; 32]),
            amount: Msat(10_000_000),
            memo: "underpaid".into(),
            expiry: Duration::from_secs(3600),
            route_hints: Vec::new(),
            private: false,
        })
        .await
        .unwrap();
    let less = Msat(6_000_000);
    let outcome = prompt(
        "the underpayment",
        pay_part(&b.sluice, &short.payment_request, less, less, limit),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        HtlcOutcome::Failed(HtlcFailure::IncorrectOrUnknownPaymentDetails),
        "{}",
        b.name
    );
}

/// ListPayments and ListInvoices (what `sluice backtest --from-node` reads): the payer lists
/// the settled HTLC leaving one of its channels with the amount plus the fee, the payee the
/// HTLC arriving on one of its channels with the amount. Pages end.
async fn settled_payment_and_invoice_are_listed(b: &Backend, amount: Msat, fee: Msat) {
    let sent = b.sluice.payment_settlements(0, 1_000).await.unwrap();
    let own: Vec<_> = b
        .sluice
        .list_channels()
        .await
        .unwrap()
        .iter()
        .map(|c| c.chan_id)
        .collect();
    assert!(
        sent.htlcs
            .iter()
            .any(|h| h.amount == Msat(amount.0 + fee.0) && own.contains(&h.chan) && h.at_unix > 0),
        "{}: the payment of {amount:?} + {fee:?} is not listed: {sent:?}",
        b.name
    );
    let after = b
        .sluice
        .payment_settlements(sent.next_index_offset, 1_000)
        .await
        .unwrap();
    assert_eq!(after.items, 0, "{}: a page past the end: {after:?}", b.name);

    let received = b.other.invoice_settlements(0, 1_000).await.unwrap();
    let theirs: Vec<_> = b
        .other
        .list_channels()
        .await
        .unwrap()
        .iter()
        .map(|c| c.chan_id)
        .collect();
    assert!(
        received
            .htlcs
            .iter()
            .any(|h| h.amount == amount && theirs.contains(&h.chan) && h.at_unix > 0),
        "{}: the invoice's {amount:?} is not listed: {received:?}",
        b.name
    );
}

/// lnd's failure reasons: a canceled hold invoice fails with incorrect payment details, and an
/// amount beyond every channel fails for want of a route or balance.
pub async fn payment_failure_reasons(b: &Backend) {
    let preimage = Preimage([0x22; 32]);
    let hash = SwapHash(sha256::Hash::hash(&preimage.0).to_byte_array());
    let invoice = b
        .other
        .add_hold_invoice(&hold_request(hash, Msat(20_000_000), "canceled"))
        .await
        .unwrap();
    b.other.cancel_invoice(hash).await.unwrap();
    let outcome = pay_to_outcome(b, &invoice.payment_request).await;
    assert_eq!(
        outcome,
        PaymentStatus::Failed(PaymentFailure::IncorrectPaymentDetails),
        "{}",
        b.name
    );
    let huge = b
        .other
        .add_hold_invoice(&hold_request(
            SwapHash([0x33; 32]),
            Msat(900_000_000_000),
            "too big",
        ))
        .await
        .unwrap();
    let outcome = pay_to_outcome(b, &huge.payment_request).await;
    assert!(
        matches!(
            outcome,
            PaymentStatus::Failed(PaymentFailure::NoRoute | PaymentFailure::InsufficientBalance)
        ),
        "{}: {outcome:?}",
        b.name
    );
}

async fn pay_to_outcome(b: &Backend, invoice: &str) -> PaymentStatus {
    let request = PaymentRequest {
        invoice: invoice.to_string(),
        fee_limit: Msat(1_000_000),
        outgoing_chan_ids: Vec::new(),
        max_parts: 1,
        timeout: Duration::from_secs(30),
        cltv_limit: None,
        last_hop: None,
    };
    match b.sluice.pay(&request).await {
        Ok(mut s) => loop {
            let u = next(&mut s, "the payment's outcome").await;
            if u.status.is_final() {
                return u.status;
            }
        },
        Err(e) => panic!("{}: pay refused at once: {e}", b.name),
    }
}

/// A P2TR key-path output of a key the test holds.
struct Coin {
    keypair: Keypair,
    script: ScriptBuf,
}

fn coin(seed: u8) -> Coin {
    let secp = Secp256k1::new();
    let keypair = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[seed; 32]).unwrap());
    let (xonly, _) = keypair.x_only_public_key();
    let script = ScriptBuf::new_p2tr(&secp, xonly, None);
    Coin { keypair, script }
}

/// Spends `prev`'s output 0 (a [`coin`]) to `to`, paying `fee`.
fn spend(c: &Coin, prev: &Transaction, to: ScriptBuf, fee: u64) -> Transaction {
    let secp = Secp256k1::new();
    let value = prev.output[0].value;
    let mut tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: prev.compute_txid(),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: value - Amount::from_sat(fee),
            script_pubkey: to,
        }],
    };
    let prevouts = [prev.output[0].clone()];
    let sighash = SighashCache::new(&tx)
        .taproot_key_spend_signature_hash(0, &Prevouts::All(&prevouts), TapSighashType::Default)
        .unwrap();
    let tweaked = c.keypair.tap_tweak(&secp, None);
    let sig = secp.sign_schnorr(
        &Message::from_digest(sighash.to_byte_array()),
        &tweaked.to_keypair(),
    );
    tx.input[0].witness = Witness::from_slice(&[sig.as_ref().to_vec()]);
    tx
}

/// Confirmation and spend notifications, through a reorg of the confirming block.
pub async fn confirmations_spends_and_reorgs(b: &Backend) {
    let c = coin(0x44);
    let start = b.chain.height().await;
    let funding = b.chain.pay_to(c.script.clone(), 200_000).await;
    let txid = funding.compute_txid();
    let conf_request = ConfRequest {
        txid: Some(txid),
        script: c.script.clone(),
        num_confs: 1,
        height_hint: BlockHeight(start),
    };
    let mut confs = prompt(
        "register_confirmations",
        b.sluice.register_confirmations(&conf_request),
    )
    .await
    .unwrap();
    b.chain.mine(1).await;
    match next(&mut confs, "the funding's confirmation").await {
        ConfUpdate::Confirmed {
            tx, block_height, ..
        } => {
            assert_eq!(tx.compute_txid(), txid, "{}", b.name);
            assert_eq!(block_height.0, start + 1, "{}", b.name);
        }
        other => panic!("{}: {other:?}", b.name),
    }
    // The confirming block is reorged away: a Reorg, then a new confirmation on the new
    // branch (the transaction went back to the mempool).
    b.chain.reorg(1).await;
    let mut saw_reorg = false;
    let again = loop {
        match next(&mut confs, "the confirmation after the reorg").await {
            ConfUpdate::Reorg => saw_reorg = true,
            confirmed @ ConfUpdate::Confirmed { .. } => break confirmed,
        }
    };
    assert!(
        saw_reorg,
        "{}: no Reorg before the new confirmation",
        b.name
    );
    let ConfUpdate::Confirmed { block_height, .. } = again else {
        unreachable!()
    };
    assert_eq!(block_height.0, start + 1, "{}", b.name);

    // A spend, seen once confirmed.
    let outpoint = OutPoint { txid, vout: 0 };
    let spend_request = SpendRequest {
        outpoint: Some(outpoint),
        script: c.script.clone(),
        height_hint: BlockHeight(start),
    };
    let mut spends = prompt("register_spend", b.sluice.register_spend(&spend_request))
        .await
        .unwrap();
    let sweep = spend(&c, &funding, coin(0x45).script, 2_000);
    b.sluice
        .publish_transaction(&sweep, "conformance")
        .await
        .unwrap();
    // Publishing the same transaction again succeeds.
    b.sluice.publish_transaction(&sweep, "again").await.unwrap();
    b.chain.mine(1).await;
    let tip = b.chain.height().await;
    loop {
        match next(&mut spends, "the spend").await {
            SpendUpdate::Spent {
                outpoint: o,
                spending_tx,
                input_index,
                height,
            } => {
                assert_eq!(o, outpoint, "{}", b.name);
                assert_eq!(
                    spending_tx.compute_txid(),
                    sweep.compute_txid(),
                    "{}",
                    b.name
                );
                assert_eq!(input_index, 0);
                assert_eq!(height.0, tip, "{}", b.name);
                break;
            }
            SpendUpdate::Reorg => {}
        }
    }
    // Publishing it once confirmed still succeeds (the wallet knows it).
    b.sluice
        .publish_transaction(&sweep, "confirmed")
        .await
        .unwrap();
    // A reorg of the spend's block: Reorg, then the spend again.
    b.chain.reorg(1).await;
    let mut saw_reorg = false;
    loop {
        match next(&mut spends, "the spend after the reorg").await {
            SpendUpdate::Reorg => saw_reorg = true,
            SpendUpdate::Spent { spending_tx, .. } => {
                assert_eq!(spending_tx.compute_txid(), sweep.compute_txid());
                break;
            }
        }
    }
    assert!(saw_reorg, "{}: no Reorg for the spend", b.name);
}

/// PublishTransaction refuses a double spend and a transaction below the relay fee; the
/// message says which.
pub async fn publication_errors(b: &Backend) {
    let c = coin(0x55);
    let funding = b.chain.pay_to(c.script.clone(), 100_000).await;
    b.chain.mine(1).await;
    let first = spend(&c, &funding, coin(0x56).script, 1_000);
    b.sluice.publish_transaction(&first, "first").await.unwrap();
    // Same input, same fee, other output: not a valid replacement.
    let double = spend(&c, &funding, coin(0x57).script, 1_000);
    let err = b
        .sluice
        .publish_transaction(&double, "double")
        .await
        .expect_err("a double spend");
    eprintln!("{}: double spend: {err}", b.name);
    assert_eq!(err.kind, NodeErrorKind::Permanent, "{}: {err}", b.name);
    assert!(
        err.message.contains("output already spent"),
        "{}: lnd says `transaction rejected: output already spent`: {err}",
        b.name
    );
    let c2 = coin(0x58);
    let funding2 = b.chain.pay_to(c2.script.clone(), 100_000).await;
    b.chain.mine(1).await;
    let cheap = spend(&c2, &funding2, coin(0x59).script, 0);
    let err2 = b
        .sluice
        .publish_transaction(&cheap, "no fee")
        .await
        .expect_err("a transaction without a fee");
    eprintln!("{}: no fee: {err2}", b.name);
    assert_eq!(err2.kind, NodeErrorKind::Permanent, "{}: {err2}", b.name);
    assert!(
        err2.message.contains("insufficient fee"),
        "{}: lnd says `insufficient fee`: {err2}",
        b.name
    );
    b.chain.mine(1).await;
}

/// WalletBalance: confirmed coins of the wallet.
pub async fn wallet_balance(b: &Backend) {
    let (confirmed, unconfirmed) = b.sluice.onchain_balance().await.unwrap();
    assert!(confirmed.0 > 0, "{}: {confirmed:?}", b.name);
    // ListUnspent lists exactly the coins the balance counts: all of them with 0 minimum
    // confirmations, the confirmed ones with 1.
    let all = b.sluice.list_unspent(0).await.unwrap();
    let sum = |coins: &[sluice::lnd::types::WalletUtxo]| -> u64 {
        coins.iter().map(|c| c.amount.0).sum()
    };
    assert_eq!(
        sum(&all),
        (confirmed + unconfirmed).0,
        "{}: {all:?}",
        b.name
    );
    let deep = b.sluice.list_unspent(1).await.unwrap();
    assert_eq!(sum(&deep), confirmed.0, "{}: {deep:?}", b.name);
    assert!(deep.iter().all(|c| c.confirmations >= 1), "{}", b.name);
    // EstimateFee: a wallet payment's fee with coin selection, nothing spent; more than the
    // wallet holds is refused for good.
    let p2tr = bitcoin::ScriptBuf::from_bytes([vec![0x51, 0x20], vec![0; 32]].concat());
    let out = |sat: u64| bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(sat),
        script_pubkey: p2tr.clone(),
    };
    let estimate = b
        .sluice
        .estimate_send_fee(&[out(100_000)], 6, 1)
        .await
        .unwrap();
    assert!(
        estimate.fee.0 > 0 && estimate.fee.0 < 100_000,
        "{}: {estimate:?}",
        b.name
    );
    assert!(
        estimate.rate.to_sat_per_kwu() >= 250,
        "{}: {estimate:?}",
        b.name
    );
    assert_eq!(
        b.sluice.onchain_balance().await.unwrap(),
        (confirmed, unconfirmed),
        "{}: estimating spent nothing",
        b.name
    );
    let too_much = b
        .sluice
        .estimate_send_fee(&[out(confirmed.0 + unconfirmed.0 + 1)], 6, 1)
        .await
        .unwrap_err();
    assert!(!too_much.is_transient(), "{}: {too_much}", b.name);
}

/// GetChanInfo, GetNodeInfo and invoice route hints (what `sluice in --private` reads and
/// writes): each of the node's channels is in its graph with both ends and the peer's policy;
/// an announced node lists its announced channels, an unknown one none; an unknown channel is
/// refused; an invoice carries the route hints it was given, as a payer decodes them.
pub async fn graph_edges_and_route_hints(b: &Backend) {
    use sluice::domain::{ChanId, HopHint, RouteHint};
    let me = b.sluice.get_info().await.unwrap().pubkey;
    let other = b.other.get_info().await.unwrap().pubkey;
    let channels = b.sluice.list_channels().await.unwrap();
    assert!(!channels.is_empty(), "{}", b.name);
    for c in &channels {
        let edge = b.sluice.channel_edge(c.chan_id).await.unwrap();
        assert_eq!(edge.chan_id, c.chan_id, "{}", b.name);
        assert_eq!(edge.chan_point.to_string(), c.channel_point, "{}", b.name);
        assert_eq!(edge.capacity, c.capacity, "{}", b.name);
        assert!(
            edge.node1.0 < edge.node2.0,
            "{}: ends in key order: {edge:?}",
            b.name
        );
        let mut ends = [edge.node1, edge.node2];
        let mut expected = [me, c.peer];
        ends.sort_by_key(|n| n.0);
        expected.sort_by_key(|n| n.0);
        assert_eq!(ends, expected, "{}", b.name);
        assert!(edge.policy_of(c.peer).is_some(), "{}: {edge:?}", b.name);
    }
    let announced = b.sluice.announced_channels(other).await.unwrap();
    assert!(
        !announced.is_empty(),
        "{}: the server's node is public",
        b.name
    );
    for e in &announced {
        assert!(e.node1 == other || e.node2 == other, "{}: {e:?}", b.name);
    }
    let nobody: sluice::domain::NodeId = format!("02{}", "11".repeat(32)).parse().unwrap();
    assert_eq!(
        b.sluice.announced_channels(nobody).await.unwrap(),
        Vec::new(),
        "{}",
        b.name
    );
    let missing = b
        .sluice
        .channel_edge(ChanId::from_parts(1, 1, 1))
        .await
        .unwrap_err();
    assert_eq!(
        missing.kind,
        NodeErrorKind::NotFound,
        "{}: {missing}",
        b.name
    );

    let hint = RouteHint {
        hops: vec![HopHint {
            node: me,
            chan_id: channels[0].chan_id,
            fee_base_msat: 1_500,
            fee_ppm: 7,
            cltv_delta: 44,
        }],
    };
    let invoice = b
        .other
        .add_invoice(&InvoiceRequest {
            preimage: Preimage([0x47; 32]),
            amount: Msat(10_000_000),
            memo: "hinted".into(),
            expiry: Duration::from_secs(3_600),
            route_hints: vec![hint.clone()],
            private: false,
        })
        .await
        .unwrap();
    let decoded = b
        .sluice
        .decode_invoice(&invoice.payment_request)
        .await
        .unwrap();
    assert_eq!(decoded.route_hints, vec![hint], "{}", b.name);
    b.other
        .cancel_invoice(SwapHash(sha256::Hash::hash(&[0x47; 32]).to_byte_array()))
        .await
        .unwrap();
}
