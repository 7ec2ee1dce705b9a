//! The simulated lnd (`sluice::simnet::lnd`) driven by sluice's real lnd client over real TLS
//! on loopback: every answer and request crosses the wire and must come back as the node
//! meant it, credentials are refused as lnd refuses them, and a restarted server is reached
//! again by the same client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node;
mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, TxOut, Txid};
use futures::StreamExt;
use node::{PREIMAGE, TestNode, invoice_for, pubkey, sample_tx};
use sluice::domain::{BlockHeight, ChanId, Msat, Network, Preimage};
use sluice::lnd::types::*;
use sluice::lnd::wire::lnrpc;
use sluice::lnd::wire::lnrpc::lightning_client::LightningClient;
use sluice::lnd::{LightningNode, LndClient, NodeErrorKind, classify};
use sluice::simnet::lnd::SimLndServer;
use sluice::simnet::lnd::auth::{NO_MACAROON, WRONG_MACAROON};
use sluice::tls::{TlsError, generate_self_signed, pinned_channel, pinned_channel_lazy};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Retries `call` while it fails transiently (the server restarting), up to [`TIMEOUT`].
async fn poll_until_up<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sluice::lnd::NodeResult<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                assert!(Instant::now() < deadline, "no reconnection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    node: Arc<TestNode>,
    server: SimLndServer,
    client: LndClient,
}

/// A client configured the way sluiced configures one: address, the cert file, the
/// macaroon file, all read from disk.
fn client_for(server: &SimLndServer, macaroon_hex: &str) -> LndClient {
    let cert = std::fs::read(server.cert_path()).unwrap();
    let channel = pinned_channel_lazy(&server.addr().to_string(), &cert, TIMEOUT).unwrap();
    LndClient::new(channel, macaroon_hex, Network::Regtest).unwrap()
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(TestNode::new());
    let server = SimLndServer::start(node.clone(), dir.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let macaroon = hex::encode(std::fs::read(server.macaroon_path()).unwrap());
    let client = client_for(&server, &macaroon);
    Setup {
        _dir: dir,
        node,
        server,
        client,
    }
}

async fn collect<T>(s: sluice::lnd::NodeStream<T>) -> Vec<T> {
    s.map(|i| i.unwrap()).collect().await
}

#[tokio::test]
async fn node_channel_and_graph_reads_round_trip() {
    let s = setup().await;
    let c = &s.client;
    assert_eq!(c.get_info().await.unwrap(), s.node.info);
    assert_eq!(
        c.get_version().await.unwrap(),
        s.node.get_version().await.unwrap()
    );
    assert_eq!(c.list_channels().await.unwrap(), s.node.channels);
    assert_eq!(
        c.list_peers().await.unwrap(),
        s.node.list_peers().await.unwrap()
    );
    let peer = node::PEER_KEY.parse().unwrap();
    assert_eq!(c.node_alias(peer).await.unwrap().as_deref(), Some("peer"));
    let stranger = pubkey(4).serialize();
    let stranger = sluice::domain::NodeId::try_from(&stranger[..]).unwrap();
    assert_eq!(c.node_alias(stranger).await.unwrap(), None);
    assert_eq!(
        c.forwarding_history(1_700_000_000, 0, 5, 10).await.unwrap(),
        s.node
            .forwarding_history(1_700_000_000, 0, 5, 10)
            .await
            .unwrap()
    );
    let invoice = invoice_for(PREIMAGE, 123_456);
    assert_eq!(
        c.decode_invoice(&invoice).await.unwrap(),
        s.node.decode_invoice(&invoice).await.unwrap()
    );
    let bad = c.decode_invoice("garbage").await.unwrap_err();
    assert_eq!(bad.kind, NodeErrorKind::InvalidArgument, "{bad}");

    let events = collect(c.subscribe_channel_events().await.unwrap()).await;
    let want = collect(s.node.subscribe_channel_events().await.unwrap()).await;
    assert_eq!(events, want);
}

#[tokio::test]
async fn payments_stream_to_their_outcome_and_keep_error_kinds() {
    let s = setup().await;
    let request = PaymentRequest {
        invoice: invoice_for(PREIMAGE, 123_456),
        fee_limit: Msat(5_000),
        outgoing_chan_ids: vec![ChanId(1), ChanId(2)],
        max_parts: 1,
        timeout: Duration::from_secs(60),
        cltv_limit: Some(500),
        last_hop: None,
    };
    let updates = collect(s.client.pay(&request).await.unwrap()).await;
    assert_eq!(s.node.seen_payment.lock().unwrap().as_ref(), Some(&request));
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].status, PaymentStatus::InFlight);
    assert_eq!(updates[0].htlcs_in_flight, 2);
    assert_eq!(
        updates[1].status,
        PaymentStatus::Succeeded {
            preimage: Preimage(PREIMAGE)
        }
    );
    assert_eq!(updates[1].hash, Preimage(PREIMAGE).hash());
    assert_eq!(
        (updates[1].amount, updates[1].fee),
        (Msat(123_456), Msat(1_001))
    );

    let missing = match s.client.track_payment(Preimage([1; 32]).hash()).await {
        Err(e) => e,
        Ok(_) => panic!("an unknown payment must not be tracked"),
    };
    assert_eq!(missing.kind, NodeErrorKind::NotFound);
}

#[tokio::test]
async fn wallet_and_signer_requests_and_answers_round_trip() {
    let s = setup().await;
    let c = &s.client;
    assert_eq!(
        c.derive_next_key(42).await.unwrap(),
        s.node.derive_next_key(42).await.unwrap()
    );
    let loc = KeyLocator {
        family: 42,
        index: 3,
    };
    assert_eq!(
        c.derive_key(loc).await.unwrap(),
        s.node.derive_key(loc).await.unwrap()
    );
    assert_eq!(
        c.next_addr().await.unwrap(),
        s.node.next_addr().await.unwrap()
    );
    assert_eq!(
        c.estimate_fee(6).await.unwrap(),
        s.node.estimate_fee(6).await.unwrap()
    );

    c.publish_transaction(&sample_tx(), "sweep").await.unwrap();
    let rejected = c
        .publish_transaction(&sample_tx(), "rejected")
        .await
        .unwrap_err();
    assert_eq!(rejected.kind, NodeErrorKind::Permanent, "{rejected}");
    assert!(rejected.message.contains("Invalid Schnorr signature"));
    let busy = c
        .publish_transaction(&sample_tx(), "busy")
        .await
        .unwrap_err();
    assert_eq!(busy.kind, NodeErrorKind::Transient, "{busy}");

    let key = |i| KeyDescriptor {
        pubkey: pubkey(i),
        locator: KeyLocator {
            family: 42,
            index: i32::from(i),
        },
    };
    let output = TxOut {
        value: Amount::from_sat(50_000),
        script_pubkey: ScriptBuf::from_bytes(vec![0x00, 0x20, 1, 2, 3]),
    };
    let sign = SignRequest {
        tx: sample_tx(),
        inputs: vec![
            SignInput {
                input_index: 0,
                key: key(2),
                output: output.clone(),
                sighash: 1,
                method: SignMethod::WitnessV0 {
                    witness_script: ScriptBuf::from_bytes(vec![0xac]),
                },
            },
            SignInput {
                input_index: 1,
                key: key(3),
                output: output.clone(),
                sighash: 0,
                method: SignMethod::TaprootScriptSpend {
                    leaf_script: ScriptBuf::from_bytes(vec![0x20, 9, 0xac]),
                },
            },
        ],
        prev_outputs: vec![output.clone(), output],
    };
    let sigs = c.sign_output_raw(&sign).await.unwrap();
    assert_eq!(sigs, vec![vec![0u8; 64], vec![1u8; 64]]);
    assert_eq!(s.node.seen_sign.lock().unwrap().as_ref(), Some(&sign));

    let session_request = MuSig2SessionRequest {
        key: loc,
        signer_pubkeys: vec![vec![2; 32], vec![3; 32]],
        other_nonces: vec![[5; 66]],
        taproot_tweak: Some(TaprootTweak {
            script_root: vec![7; 32],
            key_spend_only: false,
        }),
        version: MuSig2Version::V100Rc2,
    };
    let session = c.musig2_create_session(&session_request).await.unwrap();
    assert_eq!(
        s.node.seen_musig.lock().unwrap().as_ref(),
        Some(&session_request)
    );
    assert_eq!(
        session,
        s.node
            .musig2_create_session(&session_request)
            .await
            .unwrap()
    );
    assert!(
        c.musig2_register_nonces(session.id, &[[6; 66]])
            .await
            .unwrap()
    );
    let unknown = c
        .musig2_register_nonces([0; 32], &[[6; 66]])
        .await
        .unwrap_err();
    assert_eq!(unknown.kind, NodeErrorKind::NotFound);
    assert_eq!(
        c.musig2_sign(session.id, [1; 32], false).await.unwrap(),
        [[8u8; 32], [1u8; 32]].concat()
    );
    assert_eq!(c.musig2_combine_sig(session.id, &[]).await.unwrap(), None);
    assert_eq!(
        c.musig2_combine_sig(session.id, &[vec![1; 32]])
            .await
            .unwrap(),
        Some(vec![6; 64])
    );
    c.musig2_cleanup(session.id).await.unwrap();
}

#[tokio::test]
async fn chain_notifications_and_hold_invoices_round_trip() {
    let s = setup().await;
    let c = &s.client;
    let conf = ConfRequest {
        txid: Some(sample_tx().compute_txid()),
        script: ScriptBuf::from_bytes(vec![0x51, 0x20, 7, 7]),
        num_confs: 3,
        height_hint: BlockHeight(300),
    };
    let confs = collect(c.register_confirmations(&conf).await.unwrap()).await;
    assert_eq!(s.node.seen_conf.lock().unwrap().as_ref(), Some(&conf));
    assert_eq!(
        confs,
        collect(s.node.register_confirmations(&conf).await.unwrap()).await
    );

    let spend = SpendRequest {
        outpoint: Some(OutPoint {
            txid: Txid::from_byte_array([3; 32]),
            vout: 1,
        }),
        script: ScriptBuf::from_bytes(vec![0x00, 0x14, 1]),
        height_hint: BlockHeight(301),
    };
    let spends = collect(c.register_spend(&spend).await.unwrap()).await;
    assert_eq!(s.node.seen_spend.lock().unwrap().as_ref(), Some(&spend));
    assert_eq!(
        spends,
        collect(s.node.register_spend(&spend).await.unwrap()).await
    );

    let mut blocks = c.register_block_epochs().await.unwrap();
    assert_eq!(
        blocks.next().await.unwrap().unwrap().height,
        BlockHeight(321)
    );
    for h in [322, 323] {
        let epoch = BlockEpoch {
            hash: BlockHash::from_byte_array([h as u8; 32]),
            height: BlockHeight(h),
        };
        s.node.blocks.send(epoch).unwrap();
        assert_eq!(blocks.next().await.unwrap().unwrap(), epoch);
    }

    let hold = HoldInvoiceRequest {
        hash: Preimage(PREIMAGE).hash(),
        amount: Msat(50_000_000),
        memo: "swap".into(),
        expiry: Duration::from_secs(600),
        cltv_expiry: 144,
        route_hints: Vec::new(),
        private: true,
    };
    let added = c.add_hold_invoice(&hold).await.unwrap();
    assert_eq!(s.node.seen_hold.lock().unwrap().as_ref(), Some(&hold));
    assert_eq!(added.add_index, 12);
    let again = HoldInvoiceRequest {
        memo: "again".into(),
        ..hold.clone()
    };
    let dup = c.add_hold_invoice(&again).await.unwrap_err();
    assert_eq!(dup.kind, NodeErrorKind::AlreadyExists);
    c.settle_invoice(Preimage(PREIMAGE)).await.unwrap();
    let wrong = c.settle_invoice(Preimage([1; 32])).await.unwrap_err();
    assert_eq!(wrong.kind, NodeErrorKind::NotFound);
    c.cancel_invoice(hold.hash).await.unwrap();
    let states: Vec<_> = collect(c.subscribe_single_invoice(hold.hash).await.unwrap())
        .await
        .into_iter()
        .map(|u| (u.state, u.amount_paid))
        .collect();
    assert_eq!(
        states,
        vec![
            (InvoiceState::Open, Msat(0)),
            (InvoiceState::Accepted, Msat(50_000_000))
        ]
    );
}

#[tokio::test]
async fn missing_or_wrong_macaroon_is_refused_like_lnd() {
    let s = setup().await;
    let cert = std::fs::read(s.server.cert_path()).unwrap();
    let channel = pinned_channel(&s.server.addr().to_string(), &cert, TIMEOUT)
        .await
        .unwrap();
    let status = LightningClient::new(channel)
        .get_info(lnrpc::GetInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.message(), NO_MACAROON);
    assert_eq!(
        classify(status.code(), status.message()),
        NodeErrorKind::PermissionDenied
    );

    let stranger = client_for(&s.server, &"ab".repeat(64));
    let err = stranger.get_info().await.unwrap_err();
    assert_eq!(err.kind, NodeErrorKind::PermissionDenied, "{err}");
    assert!(err.message.contains(WRONG_MACAROON), "{err}");
    // Every service is guarded, not only Lightning.
    let err = stranger.estimate_fee(6).await.unwrap_err();
    assert_eq!(err.kind, NodeErrorKind::PermissionDenied, "{err}");
    assert!(stranger.register_block_epochs().await.is_err());
}

#[tokio::test]
async fn a_client_pinning_another_certificate_is_refused() {
    let s = setup().await;
    let other = generate_self_signed(&[], true).unwrap();
    let err = pinned_channel(
        &s.server.addr().to_string(),
        other.cert_pem.as_bytes(),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TlsError::CertMismatch { .. }), "{err}");
}

#[tokio::test]
async fn after_stop_and_restart_on_the_same_port_the_same_client_gets_through() {
    let mut s = setup().await;
    let addr = s.server.addr();
    let mut blocks = s.client.register_block_epochs().await.unwrap();
    assert_eq!(
        blocks.next().await.unwrap().unwrap().height,
        BlockHeight(321)
    );

    s.server.stop().await;
    assert!(!s.server.is_running());
    // The open subscription ends with a retryable error rather than hanging.
    let ended = tokio::time::timeout(TIMEOUT, blocks.next()).await.unwrap();
    if let Some(item) = ended {
        assert_eq!(item.unwrap_err().kind, NodeErrorKind::Transient);
    }
    let down = s.client.get_info().await.unwrap_err();
    assert_eq!(down.kind, NodeErrorKind::Transient, "{down}");

    s.server.restart().await.unwrap();
    assert_eq!(s.server.addr(), addr);
    let info = poll_until_up(|| s.client.get_info()).await;
    assert_eq!(info, s.node.info);
    let mut blocks = s.client.register_block_epochs().await.unwrap();
    assert_eq!(
        blocks.next().await.unwrap().unwrap().height,
        BlockHeight(321)
    );
}
