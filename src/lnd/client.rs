//! `LndClient`: the `LightningNode` port over lnd's gRPC services.
//!
//! Every service client shares ONE tonic `Channel` (one HTTP/2 connection, multiplexed),
//! and one interceptor adds the hex macaroon to each call's `macaroon` metadata. The
//! connection itself (pinned TLS certificate, timeouts) is made by the caller and handed
//! in, so this adapter never touches certificates or files.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash as _;
use bitcoin::{Address, FeeRate, Transaction};
use futures::{StreamExt, stream};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel as GrpcChannel;
use tonic::{Request, Status};

use super::convert;
use super::error::{NodeError, NodeErrorKind};
use super::port::{LightningNode, NodeResult, NodeStream};
use super::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoice, HoldInvoiceRequest,
    InvoiceRequest, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    NodeVersion, PaymentRequest, PaymentUpdate, SendFeeEstimate, SendOutputsRequest, SignRequest,
    SpendRequest, SpendUpdate, WalletUtxo,
};
use super::types::{HtlcOutcome, PaymentRoute, RouteRequest};
use super::wire::chainrpc::chain_notifier_client::ChainNotifierClient;
use super::wire::invoicesrpc::invoices_client::InvoicesClient;
use super::wire::lnrpc::lightning_client::LightningClient;
use super::wire::routerrpc::router_client::RouterClient;
use super::wire::signrpc::signer_client::SignerClient;
use super::wire::verrpc::versioner_client::VersionerClient;
use super::wire::walletrpc::wallet_kit_client::WalletKitClient;
use super::wire::{chainrpc, invoicesrpc, lnrpc, routerrpc, signrpc, verrpc, walletrpc};
use crate::domain::{
    ChanId, Channel, ChannelEdge, ChannelEvent, ForwardingPage, Network, NodeId, NodeInfo, Peer,
    Preimage, Sat, SettlementPage, SwapHash,
};

/// The largest answer accepted from lnd: a big node's `ListChannels` exceeds gRPC's 4 MiB
/// default, and lnd's own tools allow 200 MiB.
const MAX_DECODING_MESSAGE_SIZE: usize = 200 * 1024 * 1024;

/// Adds the macaroon to every request. Its `Debug` hides the macaroon.
#[derive(Clone)]
pub struct MacaroonInterceptor {
    value: MetadataValue<Ascii>,
}

impl fmt::Debug for MacaroonInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacaroonInterceptor(<redacted>)")
    }
}

impl MacaroonInterceptor {
    /// Checks that `macaroon_hex` is a hex string, the form lnd expects in metadata.
    pub fn new(macaroon_hex: &str) -> Result<Self, NodeError> {
        let bad = || {
            NodeError::invalid_argument(
                "connect",
                "the lnd macaroon must be hex-encoded bytes of the macaroon file \
                 (check the configured macaroon path points at lnd's admin.macaroon)",
            )
        };
        if macaroon_hex.is_empty() || hex::decode(macaroon_hex).is_err() {
            return Err(bad());
        }
        let value = MetadataValue::try_from(macaroon_hex).map_err(|_| bad())?;
        Ok(MacaroonInterceptor { value })
    }
}

impl Interceptor for MacaroonInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("macaroon", self.value.clone());
        Ok(request)
    }
}

type Svc = InterceptedService<GrpcChannel, MacaroonInterceptor>;

/// The lnd adapter of the [`LightningNode`] port. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct LndClient {
    lightning: LightningClient<Svc>,
    router: RouterClient<Svc>,
    wallet: WalletKitClient<Svc>,
    signer: SignerClient<Svc>,
    chain: ChainNotifierClient<Svc>,
    invoices: InvoicesClient<Svc>,
    versioner: VersionerClient<Svc>,
    network: Network,
}

impl fmt::Debug for LndClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LndClient")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl LndClient {
    /// Builds every service client over `channel`, authenticating with the hex macaroon.
    /// `network` is the network sluice is configured for; addresses from lnd are checked
    /// against it.
    pub fn new(channel: GrpcChannel, macaroon_hex: &str, network: Network) -> NodeResult<Self> {
        let auth = MacaroonInterceptor::new(macaroon_hex)?;
        let svc = InterceptedService::new(channel, auth);
        Ok(LndClient {
            lightning: LightningClient::new(svc.clone())
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
            router: RouterClient::new(svc.clone())
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
            wallet: WalletKitClient::new(svc.clone()),
            signer: SignerClient::new(svc.clone()),
            chain: ChainNotifierClient::new(svc.clone())
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
            invoices: InvoicesClient::new(svc.clone()),
            versioner: VersionerClient::new(svc),
            network,
        })
    }
}

/// Maps a server stream's items through a checked conversion.
/// A server stream as it comes off the wire.
type WireStream<W> = futures::stream::BoxStream<'static, Result<W, Status>>;

/// How long a subscription waits for lnd's first answer before it hands back its stream.
const STREAM_HEADERS_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens a server stream without waiting for its first message. lnd (grpc-go) sends a
/// stream's response headers only with its first message, so `SubscribeChannelEvents` or
/// `RegisterSpendNtfn` would otherwise hold the caller until the first event happens. The call
/// is sent at once; an error lnd answers at once (unavailable, unimplemented, a bad request)
/// is returned as the call's error, as before; otherwise the stream goes on waiting and a
/// later failure arrives as its (last) `Err` item.
async fn open_stream<W, F>(method: &'static str, call: F) -> NodeResult<WireStream<W>>
where
    W: Send + 'static,
    F: std::future::Future<Output = Result<tonic::Response<tonic::Streaming<W>>, Status>>
        + Send
        + 'static,
{
    let mut call = Box::pin(call);
    match tokio::time::timeout(STREAM_HEADERS_WAIT, &mut call).await {
        Ok(Ok(response)) => Ok(response.into_inner().boxed()),
        Ok(Err(status)) => Err(NodeError::from_status(method, status)),
        Err(_) => Ok(stream::once(call)
            .flat_map(|answer| match answer {
                Ok(response) => response.into_inner().boxed(),
                Err(status) => stream::once(async move { Err(status) }).boxed(),
            })
            .boxed()),
    }
}

fn map_stream<W, D>(
    method: &'static str,
    s: WireStream<W>,
    f: fn(&W) -> Result<D, NodeError>,
) -> NodeStream<D>
where
    W: Send + 'static,
    D: Send + 'static,
{
    s.map(move |item| match item {
        Ok(w) => f(&w),
        Err(status) => Err(NodeError::from_status(method, status)),
    })
    .boxed()
}

fn st(method: &'static str) -> impl Fn(Status) -> NodeError {
    move |s| NodeError::from_status(method, s)
}

#[async_trait]
impl LightningNode for LndClient {
    async fn get_info(&self) -> NodeResult<NodeInfo> {
        let r = self
            .lightning
            .clone()
            .get_info(lnrpc::GetInfoRequest {})
            .await
            .map_err(st("get_info"))?;
        convert::node_info(r.get_ref())
    }

    async fn get_version(&self) -> NodeResult<NodeVersion> {
        let r = self
            .versioner
            .clone()
            .get_version(verrpc::VersionRequest {})
            .await
            .map_err(st("get_version"))?;
        Ok(convert::node_version(r.get_ref()))
    }

    async fn list_channels(&self) -> NodeResult<Vec<Channel>> {
        let r = self
            .lightning
            .clone()
            .list_channels(lnrpc::ListChannelsRequest {
                peer_alias_lookup: true,
                ..Default::default()
            })
            .await
            .map_err(st("list_channels"))?;
        r.get_ref().channels.iter().map(convert::channel).collect()
    }

    async fn subscribe_channel_events(&self) -> NodeResult<NodeStream<ChannelEvent>> {
        const M: &str = "subscribe_channel_events";
        let mut client = self.lightning.clone();
        let s = open_stream(M, async move {
            client
                .subscribe_channel_events(lnrpc::ChannelEventSubscription {})
                .await
        })
        .await?;
        // Events without content are skipped rather than surfaced.
        Ok(s.filter_map(|item| async move {
            match item {
                Ok(u) => convert::channel_event(&u).transpose(),
                Err(status) => Some(Err(NodeError::from_status(M, status))),
            }
        })
        .boxed())
    }

    async fn onchain_balance(&self) -> NodeResult<(Sat, Sat)> {
        let r = self
            .lightning
            .clone()
            .wallet_balance(lnrpc::WalletBalanceRequest::default())
            .await
            .map_err(st("wallet_balance"))?;
        let r = r.get_ref();
        let sat = |field: &str, v: i64| {
            u64::try_from(v).map(Sat).map_err(|_| {
                NodeError::new(
                    NodeErrorKind::InvalidResponse,
                    "wallet_balance",
                    format!("negative {field} {v}"),
                )
            })
        };
        Ok((
            sat("confirmed_balance", r.confirmed_balance)?,
            sat("unconfirmed_balance", r.unconfirmed_balance)?,
        ))
    }

    async fn list_peers(&self) -> NodeResult<Vec<Peer>> {
        let r = self
            .lightning
            .clone()
            .list_peers(lnrpc::ListPeersRequest::default())
            .await
            .map_err(st("list_peers"))?;
        r.get_ref().peers.iter().map(convert::peer).collect()
    }

    async fn node_alias(&self, node: NodeId) -> NodeResult<Option<String>> {
        let res = self
            .lightning
            .clone()
            .get_node_info(lnrpc::NodeInfoRequest {
                pub_key: node.to_string(),
                include_channels: false,
                include_auth_proof: false,
            })
            .await;
        match res {
            Ok(r) => Ok(r
                .into_inner()
                .node
                .map(|n| n.alias)
                .filter(|a| !a.is_empty())),
            Err(s) => {
                let err = NodeError::from_status("node_alias", s);
                if err.kind == NodeErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn announced_channels(&self, node: NodeId) -> NodeResult<Vec<ChannelEdge>> {
        const M: &str = "announced_channels";
        let res = self
            .lightning
            .clone()
            .get_node_info(lnrpc::NodeInfoRequest {
                pub_key: node.to_string(),
                include_channels: true,
                include_auth_proof: false,
            })
            .await;
        match res {
            Ok(r) => r
                .get_ref()
                .channels
                .iter()
                .map(|e| convert::channel_edge(M, e))
                .collect(),
            Err(s) => {
                let err = NodeError::from_status(M, s);
                if err.kind == NodeErrorKind::NotFound {
                    Ok(Vec::new())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn channel_edge(&self, chan: ChanId) -> NodeResult<ChannelEdge> {
        const M: &str = "channel_edge";
        let edge = self
            .lightning
            .clone()
            .get_chan_info(lnrpc::ChanInfoRequest {
                chan_id: chan.0,
                ..Default::default()
            })
            .await
            .map_err(st(M))?
            .into_inner();
        convert::channel_edge(M, &edge)
    }

    async fn forwarding_history(
        &self,
        start_unix: u64,
        end_unix: u64,
        index_offset: u32,
        max_events: u32,
    ) -> NodeResult<ForwardingPage> {
        let r = self
            .lightning
            .clone()
            .forwarding_history(lnrpc::ForwardingHistoryRequest {
                start_time: start_unix,
                end_time: end_unix,
                index_offset,
                num_max_events: max_events,
                ..Default::default()
            })
            .await
            .map_err(st("forwarding_history"))?;
        Ok(convert::forwarding_page(r.get_ref()))
    }

    async fn payment_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        let r = self
            .lightning
            .clone()
            .list_payments(lnrpc::ListPaymentsRequest {
                index_offset,
                max_payments: max,
                ..Default::default()
            })
            .await
            .map_err(st("list_payments"))?;
        Ok(convert::payment_settlements(r.get_ref()))
    }

    async fn invoice_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        let r = self
            .lightning
            .clone()
            .list_invoices(lnrpc::ListInvoiceRequest {
                index_offset,
                num_max_invoices: max,
                ..Default::default()
            })
            .await
            .map_err(st("list_invoices"))?;
        Ok(convert::invoice_settlements(r.get_ref()))
    }

    async fn decode_invoice(&self, invoice: &str) -> NodeResult<DecodedInvoice> {
        let r = self
            .lightning
            .clone()
            .decode_pay_req(lnrpc::PayReqString {
                pay_req: invoice.to_owned(),
            })
            .await
            .map_err(st("decode_invoice"))?;
        convert::decoded_invoice(r.get_ref())
    }

    async fn pay(&self, request: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>> {
        const M: &str = "pay";
        let parsed = lightning_invoice::Bolt11Invoice::from_str(&request.invoice).map_err(|e| {
            NodeError::invalid_argument(M, format!("the invoice does not parse as BOLT 11: {e}"))
        })?;
        let hash = SwapHash(*parsed.payment_hash().as_ref());
        let wire = convert::send_payment_request(request)?;
        let mut s = match self.router.clone().send_payment_v2(wire).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let err = NodeError::from_status(M, status);
                return if err.kind == NodeErrorKind::AlreadyExists {
                    self.track_payment(hash).await
                } else {
                    Err(err)
                };
            }
        };
        // lnd may also report the duplicate as the stream's first item; attach then too.
        match s.message().await {
            Ok(Some(first)) => {
                let first = convert::payment_update(&first);
                Ok(stream::once(async move { first })
                    .chain(map_stream(M, s.boxed(), convert::payment_update))
                    .boxed())
            }
            Ok(None) => Err(NodeError::invalid_response(
                M,
                "the payment stream ended before reporting a state",
            )),
            Err(status) => {
                let err = NodeError::from_status(M, status);
                if err.kind == NodeErrorKind::AlreadyExists {
                    self.track_payment(hash).await
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn track_payment(&self, hash: SwapHash) -> NodeResult<NodeStream<PaymentUpdate>> {
        const M: &str = "track_payment";
        let s = self
            .router
            .clone()
            .track_payment_v2(routerrpc::TrackPaymentRequest {
                payment_hash: hash.0.to_vec(),
                no_inflight_updates: false,
            })
            .await
            .map_err(st(M))?
            .into_inner()
            .boxed();
        Ok(map_stream(M, s, convert::payment_update))
    }

    async fn query_route(&self, request: &RouteRequest) -> NodeResult<PaymentRoute> {
        const M: &str = "query_route";
        let r = self
            .lightning
            .clone()
            .query_routes(convert::query_routes_request(request)?)
            .await
            .map_err(st(M))?;
        match r.get_ref().routes.first() {
            Some(route) => convert::payment_route(M, route),
            None => Err(NodeError::new(
                NodeErrorKind::NotFound,
                M,
                "lnd answered with no route",
            )),
        }
    }

    async fn send_to_route(&self, hash: SwapHash, route: &PaymentRoute) -> NodeResult<HtlcOutcome> {
        const M: &str = "send_to_route";
        let r = self
            .router
            .clone()
            .send_to_route_v2(routerrpc::SendToRouteRequest {
                payment_hash: hash.0.to_vec(),
                route: Some(convert::wire_route(M, route)?),
                skip_temp_err: false,
                ..Default::default()
            })
            .await
            .map_err(st(M))?;
        convert::htlc_outcome(r.get_ref())
    }

    async fn derive_next_key(&self, family: i32) -> NodeResult<KeyDescriptor> {
        const M: &str = "derive_next_key";
        let r = self
            .wallet
            .clone()
            .derive_next_key(walletrpc::KeyReq {
                key_finger_print: 0,
                key_family: family,
            })
            .await
            .map_err(st(M))?;
        convert::key_descriptor(M, r.get_ref())
    }

    async fn derive_key(&self, locator: KeyLocator) -> NodeResult<KeyDescriptor> {
        const M: &str = "derive_key";
        let r = self
            .wallet
            .clone()
            .derive_key(convert::key_locator(locator))
            .await
            .map_err(st(M))?;
        convert::key_descriptor(M, r.get_ref())
    }

    async fn estimate_send_fee(
        &self,
        outputs: &[bitcoin::TxOut],
        conf_target: u32,
        min_confs: u32,
    ) -> NodeResult<SendFeeEstimate> {
        const M: &str = "estimate_send_fee";
        let mut addr_to_amount = std::collections::HashMap::new();
        for o in outputs {
            let addr = Address::from_script(&o.script_pubkey, self.network.bitcoin())
                .map_err(|e| NodeError::invalid_argument(M, format!("output script: {e}")))?;
            let amount = i64::try_from(o.value.to_sat())
                .map_err(|_| NodeError::invalid_argument(M, "amount too large"))?;
            *addr_to_amount.entry(addr.to_string()).or_insert(0) += amount;
        }
        let r = self
            .lightning
            .clone()
            .estimate_fee(lnrpc::EstimateFeeRequest {
                addr_to_amount,
                target_conf: i32::try_from(conf_target).unwrap_or(i32::MAX),
                min_confs: i32::try_from(min_confs).unwrap_or(i32::MAX),
                spend_unconfirmed: min_confs == 0,
                ..Default::default()
            })
            .await
            .map_err(st(M))?;
        let r = r.get_ref();
        let fee = u64::try_from(r.fee_sat)
            .map_err(|_| NodeError::invalid_response(M, "negative fee_sat"))?;
        Ok(SendFeeEstimate {
            fee: Sat(fee),
            rate: FeeRate::from_sat_per_vb(r.sat_per_vbyte).unwrap_or(FeeRate::MAX),
        })
    }

    async fn list_unspent(&self, min_confs: u32) -> NodeResult<Vec<WalletUtxo>> {
        const M: &str = "list_unspent";
        let r = self
            .wallet
            .clone()
            .list_unspent(walletrpc::ListUnspentRequest {
                min_confs: i32::try_from(min_confs).unwrap_or(i32::MAX),
                max_confs: i32::MAX,
                account: String::new(),
                unconfirmed_only: false,
            })
            .await
            .map_err(st(M))?;
        r.get_ref().utxos.iter().map(convert::utxo).collect()
    }

    async fn next_addr(&self) -> NodeResult<Address> {
        const M: &str = "next_addr";
        let r = self
            .wallet
            .clone()
            .next_addr(walletrpc::AddrRequest {
                account: String::new(),
                r#type: walletrpc::AddressType::TaprootPubkey as i32,
                change: false,
            })
            .await
            .map_err(st(M))?;
        let addr = &r.get_ref().addr;
        Address::from_str(addr)
            .map_err(|e| {
                NodeError::invalid_response(M, format!("{addr:?} is not an address: {e}"))
            })?
            .require_network(self.network.bitcoin())
            .map_err(|_| {
                NodeError::invalid_response(
                    M,
                    format!("{addr:?} is not a {} address", self.network),
                )
            })
    }

    async fn estimate_fee(&self, conf_target: u32) -> NodeResult<FeeRate> {
        const M: &str = "estimate_fee";
        let conf_target = i32::try_from(conf_target)
            .map_err(|_| NodeError::invalid_argument(M, "conf_target is too large"))?;
        let r = self
            .wallet
            .clone()
            .estimate_fee(walletrpc::EstimateFeeRequest { conf_target })
            .await
            .map_err(st(M))?;
        convert::fee_rate(r.get_ref().sat_per_kw)
    }

    async fn send_outputs(&self, request: &SendOutputsRequest) -> NodeResult<Transaction> {
        const M: &str = "send_outputs";
        let wire = convert::send_outputs_request(request)?;
        let r = self
            .wallet
            .clone()
            .send_outputs(wire)
            .await
            .map_err(st(M))?;
        convert::sent_outputs(request, r.get_ref())
    }

    async fn publish_transaction(&self, tx: &Transaction, label: &str) -> NodeResult<()> {
        const M: &str = "publish_transaction";
        let r = self
            .wallet
            .clone()
            .publish_transaction(walletrpc::Transaction {
                tx_hex: serialize(tx),
                label: label.to_owned(),
            })
            .await;
        let publish_error = match r {
            Ok(r) => r.into_inner().publish_error,
            Err(status) => {
                let err = NodeError::from_status(M, status);
                return if err.kind == NodeErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(err)
                };
            }
        };
        if publish_error.is_empty() {
            return Ok(());
        }
        match super::error::classify(tonic::Code::Unknown, &publish_error) {
            NodeErrorKind::AlreadyExists => Ok(()),
            NodeErrorKind::Transient => {
                Err(NodeError::new(NodeErrorKind::Transient, M, publish_error))
            }
            _ => Err(NodeError::new(NodeErrorKind::Permanent, M, publish_error)),
        }
    }

    async fn sign_output_raw(&self, request: &SignRequest) -> NodeResult<Vec<Vec<u8>>> {
        let r = self
            .signer
            .clone()
            .sign_output_raw(convert::sign_request(request)?)
            .await
            .map_err(st("sign_output_raw"))?;
        let sigs = r.into_inner().raw_sigs;
        if sigs.len() != request.inputs.len() {
            return Err(NodeError::invalid_response(
                "sign_output_raw",
                format!(
                    "{} signatures for {} inputs",
                    sigs.len(),
                    request.inputs.len()
                ),
            ));
        }
        Ok(sigs)
    }

    async fn musig2_create_session(
        &self,
        request: &MuSig2SessionRequest,
    ) -> NodeResult<MuSig2Session> {
        let r = self
            .signer
            .clone()
            .mu_sig2_create_session(convert::musig2_session_request(request))
            .await
            .map_err(st("musig2_create_session"))?;
        convert::musig2_session(r.get_ref())
    }

    async fn musig2_register_nonces(
        &self,
        session_id: [u8; 32],
        nonces: &[[u8; 66]],
    ) -> NodeResult<bool> {
        let r = self
            .signer
            .clone()
            .mu_sig2_register_nonces(signrpc::MuSig2RegisterNoncesRequest {
                session_id: session_id.to_vec(),
                other_signer_public_nonces: nonces.iter().map(|n| n.to_vec()).collect(),
            })
            .await
            .map_err(st("musig2_register_nonces"))?;
        Ok(r.into_inner().have_all_nonces)
    }

    async fn musig2_sign(
        &self,
        session_id: [u8; 32],
        digest: [u8; 32],
        cleanup: bool,
    ) -> NodeResult<Vec<u8>> {
        let r = self
            .signer
            .clone()
            .mu_sig2_sign(signrpc::MuSig2SignRequest {
                session_id: session_id.to_vec(),
                message_digest: digest.to_vec(),
                cleanup,
            })
            .await
            .map_err(st("musig2_sign"))?;
        Ok(r.into_inner().local_partial_signature)
    }

    async fn musig2_combine_sig(
        &self,
        session_id: [u8; 32],
        partial_sigs: &[Vec<u8>],
    ) -> NodeResult<Option<Vec<u8>>> {
        let r = self
            .signer
            .clone()
            .mu_sig2_combine_sig(signrpc::MuSig2CombineSigRequest {
                session_id: session_id.to_vec(),
                other_partial_signatures: partial_sigs.to_vec(),
            })
            .await
            .map_err(st("musig2_combine_sig"))?
            .into_inner();
        Ok(r.have_all_signatures.then_some(r.final_signature))
    }

    async fn musig2_cleanup(&self, session_id: [u8; 32]) -> NodeResult<()> {
        self.signer
            .clone()
            .mu_sig2_cleanup(signrpc::MuSig2CleanupRequest {
                session_id: session_id.to_vec(),
            })
            .await
            .map_err(st("musig2_cleanup"))?;
        Ok(())
    }

    async fn register_confirmations(
        &self,
        request: &ConfRequest,
    ) -> NodeResult<NodeStream<ConfUpdate>> {
        const M: &str = "register_confirmations";
        let mut client = self.chain.clone();
        let request = convert::conf_request(request);
        let s = open_stream(M, async move {
            client.register_confirmations_ntfn(request).await
        })
        .await?;
        Ok(map_stream(M, s, convert::conf_update))
    }

    async fn register_spend(&self, request: &SpendRequest) -> NodeResult<NodeStream<SpendUpdate>> {
        const M: &str = "register_spend";
        let mut client = self.chain.clone();
        let request = convert::spend_request(request);
        let s = open_stream(M, async move { client.register_spend_ntfn(request).await }).await?;
        Ok(map_stream(M, s, convert::spend_update))
    }

    async fn register_block_epochs(&self) -> NodeResult<NodeStream<BlockEpoch>> {
        const M: &str = "register_block_epochs";
        let s = self
            .chain
            .clone()
            .register_block_epoch_ntfn(chainrpc::BlockEpoch::default())
            .await
            .map_err(st(M))?
            .into_inner()
            .boxed();
        Ok(map_stream(M, s, convert::block_epoch))
    }

    async fn register_block_epochs_since(
        &self,
        since: BlockEpoch,
    ) -> NodeResult<NodeStream<BlockEpoch>> {
        const M: &str = "register_block_epochs";
        let s = self
            .chain
            .clone()
            .register_block_epoch_ntfn(chainrpc::BlockEpoch {
                hash: since.hash.to_byte_array().to_vec(),
                height: since.height.0,
            })
            .await
            .map_err(st(M))?
            .into_inner()
            .boxed();
        Ok(map_stream(M, s, convert::block_epoch))
    }

    async fn add_hold_invoice(&self, request: &HoldInvoiceRequest) -> NodeResult<HoldInvoice> {
        let r = self
            .invoices
            .clone()
            .add_hold_invoice(convert::hold_invoice_request(request)?)
            .await
            .map_err(st("add_hold_invoice"))?
            .into_inner();
        Ok(HoldInvoice {
            payment_request: r.payment_request,
            add_index: r.add_index,
        })
    }

    async fn add_invoice(&self, request: &InvoiceRequest) -> NodeResult<HoldInvoice> {
        let r = self
            .lightning
            .clone()
            .add_invoice(convert::invoice_request(request)?)
            .await
            .map_err(st("add_invoice"))?
            .into_inner();
        Ok(HoldInvoice {
            payment_request: r.payment_request,
            add_index: r.add_index,
        })
    }

    async fn settle_invoice(&self, preimage: Preimage) -> NodeResult<()> {
        const M: &str = "settle_invoice";
        let r = self
            .invoices
            .clone()
            .settle_invoice(invoicesrpc::SettleInvoiceMsg {
                preimage: preimage.0.to_vec(),
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(s) if s.message().contains("already settled") => Ok(()),
            Err(s) => Err(NodeError::from_status(M, s)),
        }
    }

    async fn cancel_invoice(&self, hash: SwapHash) -> NodeResult<()> {
        const M: &str = "cancel_invoice";
        let r = self
            .invoices
            .clone()
            .cancel_invoice(invoicesrpc::CancelInvoiceMsg {
                payment_hash: hash.0.to_vec(),
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(s) if s.message().contains("already canceled") => Ok(()),
            Err(s) => Err(NodeError::from_status(M, s)),
        }
    }

    async fn subscribe_single_invoice(
        &self,
        hash: SwapHash,
    ) -> NodeResult<NodeStream<InvoiceUpdate>> {
        const M: &str = "subscribe_single_invoice";
        let s = self
            .invoices
            .clone()
            .subscribe_single_invoice(invoicesrpc::SubscribeSingleInvoiceRequest {
                r_hash: hash.0.to_vec(),
            })
            .await
            .map_err(st(M))?
            .into_inner()
            .boxed();
        Ok(map_stream(M, s, convert::invoice_update))
    }
}
