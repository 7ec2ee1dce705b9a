//! `LndClient` over real gRPC on loopback, against a small lnd stand-in that keeps lnd's
//! observable rules: the macaroon must arrive in the `macaroon` metadata, a second
//! `SendPaymentV2` for a hash already paid answers `AlreadyExists`, and `TrackPaymentV2`
//! for an unknown hash answers `NotFound`. The full simulated lnd lives in `simnet`; this
//! test pins the adapter's own contracts (authentication, attach-on-duplicate, error kinds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use sluice::domain::{Msat, Network, Preimage, SwapHash};
use sluice::lnd::types::{PaymentRequest, PaymentStatus};
use sluice::lnd::wire::lnrpc::{self, lightning_server};
use sluice::lnd::wire::routerrpc::{self, router_server};
use sluice::lnd::{LightningNode, LndClient, NodeErrorKind};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

const MACAROON: &str = "0201036c6e6402f801030a10";
const NODE_KEY: &str = "0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

/// The lnd stand-in: payments by hash, and a count of `SendPaymentV2` calls that started one.
#[derive(Default)]
struct StandIn {
    payments: Mutex<HashMap<Vec<u8>, lnrpc::Payment>>,
    started: Mutex<u32>,
}

/// The stand-in as the generated servers take it (a local type, so the traits can be
/// implemented for it).
#[derive(Clone)]
struct Shared(Arc<StandIn>);

fn authorize<T>(req: &Request<T>) -> Result<(), Status> {
    match req.metadata().get("macaroon").and_then(|v| v.to_str().ok()) {
        Some(m) if m == MACAROON => Ok(()),
        _ => Err(Status::unknown(
            "verification failed: signature mismatch after caveat verification",
        )),
    }
}

type S<T> = BoxStream<'static, Result<T, Status>>;

#[tonic::async_trait]
impl lightning_server::Lightning for Shared {
    async fn get_info(
        &self,
        req: Request<lnrpc::GetInfoRequest>,
    ) -> Result<Response<lnrpc::GetInfoResponse>, Status> {
        authorize(&req)?;
        Ok(Response::new(lnrpc::GetInfoResponse {
            identity_pubkey: NODE_KEY.into(),
            alias: "standin".into(),
            block_height: 321,
            synced_to_chain: true,
            version: "0.21.2-beta".into(),
            chains: vec![lnrpc::Chain {
                network: "regtest".into(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    async fn list_channels(
        &self,
        _: Request<lnrpc::ListChannelsRequest>,
    ) -> Result<Response<lnrpc::ListChannelsResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    type SubscribeChannelEventsStream = S<lnrpc::ChannelEventUpdate>;

    async fn subscribe_channel_events(
        &self,
        _: Request<lnrpc::ChannelEventSubscription>,
    ) -> Result<Response<Self::SubscribeChannelEventsStream>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn list_peers(
        &self,
        _: Request<lnrpc::ListPeersRequest>,
    ) -> Result<Response<lnrpc::ListPeersResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn wallet_balance(
        &self,
        _: Request<lnrpc::WalletBalanceRequest>,
    ) -> Result<Response<lnrpc::WalletBalanceResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn get_node_info(
        &self,
        req: Request<lnrpc::NodeInfoRequest>,
    ) -> Result<Response<lnrpc::NodeInfo>, Status> {
        authorize(&req)?;
        // lnd answers NotFound for a node missing from the graph.
        Err(Status::not_found("unable to find node"))
    }

    async fn get_chan_info(
        &self,
        _: Request<lnrpc::ChanInfoRequest>,
    ) -> Result<Response<lnrpc::ChannelEdge>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn decode_pay_req(
        &self,
        _: Request<lnrpc::PayReqString>,
    ) -> Result<Response<lnrpc::PayReq>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn forwarding_history(
        &self,
        _: Request<lnrpc::ForwardingHistoryRequest>,
    ) -> Result<Response<lnrpc::ForwardingHistoryResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn add_invoice(
        &self,
        _: Request<lnrpc::Invoice>,
    ) -> Result<Response<lnrpc::AddInvoiceResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn estimate_fee(
        &self,
        _: Request<lnrpc::EstimateFeeRequest>,
    ) -> Result<Response<lnrpc::EstimateFeeResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn list_payments(
        &self,
        _: Request<lnrpc::ListPaymentsRequest>,
    ) -> Result<Response<lnrpc::ListPaymentsResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn query_routes(
        &self,
        _: Request<lnrpc::QueryRoutesRequest>,
    ) -> Result<Response<lnrpc::QueryRoutesResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn list_invoices(
        &self,
        _: Request<lnrpc::ListInvoiceRequest>,
    ) -> Result<Response<lnrpc::ListInvoiceResponse>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }
}

fn payment_stream(p: lnrpc::Payment) -> S<lnrpc::Payment> {
    let mut in_flight = p.clone();
    in_flight.status = lnrpc::payment::PaymentStatus::InFlight as i32;
    in_flight.payment_preimage = hex::encode([0u8; 32]);
    stream::iter([Ok(in_flight), Ok(p)]).boxed()
}

#[tonic::async_trait]
impl router_server::Router for Shared {
    type SendPaymentV2Stream = S<lnrpc::Payment>;

    async fn send_payment_v2(
        &self,
        req: Request<routerrpc::SendPaymentRequest>,
    ) -> Result<Response<Self::SendPaymentV2Stream>, Status> {
        authorize(&req)?;
        let invoice: lightning_invoice::Bolt11Invoice = req
            .get_ref()
            .payment_request
            .parse()
            .map_err(|_| Status::invalid_argument("invalid payment request"))?;
        let hash = invoice.payment_hash().to_byte_array().to_vec();
        let mut payments = self.0.payments.lock().unwrap();
        if payments.contains_key(&hash) {
            return Err(Status::already_exists("invoice is already paid"));
        }
        let done = lnrpc::Payment {
            payment_hash: hex::encode(&hash),
            payment_preimage: hex::encode(PREIMAGE),
            value_msat: i64::try_from(invoice.amount_milli_satoshis().unwrap_or(0)).unwrap(),
            fee_msat: 1_000,
            status: lnrpc::payment::PaymentStatus::Succeeded as i32,
            ..Default::default()
        };
        payments.insert(hash, done.clone());
        *self.0.started.lock().unwrap() += 1;
        Ok(Response::new(payment_stream(done)))
    }

    type TrackPaymentV2Stream = S<lnrpc::Payment>;

    async fn send_to_route_v2(
        &self,
        _: Request<routerrpc::SendToRouteRequest>,
    ) -> Result<Response<lnrpc::HtlcAttempt>, Status> {
        Err(Status::unimplemented("not in the stand-in"))
    }

    async fn track_payment_v2(
        &self,
        req: Request<routerrpc::TrackPaymentRequest>,
    ) -> Result<Response<Self::TrackPaymentV2Stream>, Status> {
        authorize(&req)?;
        match self
            .0
            .payments
            .lock()
            .unwrap()
            .get(&req.get_ref().payment_hash)
        {
            Some(p) => Ok(Response::new(payment_stream(p.clone()))),
            None => Err(Status::not_found("payment isn't initiated")),
        }
    }
}

const PREIMAGE: [u8; 32] = [0x5a; 32];

fn invoice_for(preimage: [u8; 32], amount_msat: u64) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x11; 32]).unwrap();
    InvoiceBuilder::new(Currency::Regtest)
        .description("swap".into())
        .payment_hash(sha256::Hash::hash(&preimage))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap(),
        )
        .min_final_cltv_expiry_delta(80)
        .amount_milli_satoshis(amount_msat)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .unwrap()
        .to_string()
}

async fn start() -> (Arc<StandIn>, tonic::transport::Channel) {
    let node = Arc::new(StandIn::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(lightning_server::LightningServer::new(Shared(node.clone())))
        .add_service(router_server::RouterServer::new(Shared(node.clone())))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    (node, channel)
}

fn request(invoice: String) -> PaymentRequest {
    PaymentRequest {
        invoice,
        fee_limit: Msat(10_000),
        outgoing_chan_ids: vec![],
        max_parts: 1,
        timeout: Duration::from_secs(60),
        cltv_limit: None,
        last_hop: None,
    }
}

#[tokio::test]
async fn the_macaroon_authenticates_every_call() {
    let (_node, channel) = start().await;
    let good = LndClient::new(channel.clone(), MACAROON, Network::Regtest).unwrap();
    let info = good.get_info().await.unwrap();
    assert_eq!(info.alias, "standin");
    assert_eq!(info.network, Network::Regtest);
    assert_eq!(info.block_height.0, 321);

    let wrong = LndClient::new(
        channel.clone(),
        "0201036c6e6402f801030a11",
        Network::Regtest,
    )
    .unwrap();
    let err = wrong.get_info().await.unwrap_err();
    assert_eq!(err.kind, NodeErrorKind::PermissionDenied, "{err}");
    assert_eq!(err.method, "get_info");

    let not_hex = LndClient::new(channel, "not hex", Network::Regtest).unwrap_err();
    assert_eq!(not_hex.kind, NodeErrorKind::InvalidArgument);
    assert!(!format!("{good:?}").contains(MACAROON));
}

#[tokio::test]
async fn paying_a_hash_twice_attaches_to_the_first_payment() {
    let (node, channel) = start().await;
    // The daemon holds the port as a trait object.
    let client: Arc<dyn LightningNode> =
        Arc::new(LndClient::new(channel, MACAROON, Network::Regtest).unwrap());
    let invoice = invoice_for(PREIMAGE, 250_000);
    let hash = SwapHash(sha256::Hash::hash(&PREIMAGE).to_byte_array());

    let first: Vec<_> = client
        .pay(&request(invoice.clone()))
        .await
        .unwrap()
        .collect()
        .await;
    let second: Vec<_> = client.pay(&request(invoice)).await.unwrap().collect().await;

    assert_eq!(
        *node.started.lock().unwrap(),
        1,
        "only one payment was started"
    );
    for updates in [first, second] {
        let updates: Vec<_> = updates.into_iter().map(Result::unwrap).collect();
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].status, PaymentStatus::InFlight);
        assert_eq!(updates[0].hash, hash);
        assert_eq!(
            updates[1].status,
            PaymentStatus::Succeeded {
                preimage: Preimage(PREIMAGE)
            }
        );
        assert_eq!(updates[1].amount, Msat(250_000));
        assert_eq!(updates[1].fee, Msat(1_000));
    }
}

#[tokio::test]
async fn unknown_things_are_not_found_and_missing_methods_are_permanent() {
    let (_node, channel) = start().await;
    let client = LndClient::new(channel, MACAROON, Network::Regtest).unwrap();

    let err = client.track_payment(SwapHash([9; 32])).await.err().unwrap();
    assert_eq!(err.kind, NodeErrorKind::NotFound, "{err}");

    let alias = client.node_alias(NODE_KEY.parse().unwrap()).await.unwrap();
    assert_eq!(alias, None, "a node missing from the graph has no alias");

    let err = client.list_peers().await.unwrap_err();
    assert_eq!(err.kind, NodeErrorKind::Permanent, "{err}");

    let err = client
        .pay(&request("lnbcrt-garbage".into()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, NodeErrorKind::InvalidArgument, "{err}");
}
