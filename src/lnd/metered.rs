//! `MeteredNode`: a [`LightningNode`] decorator that reports every call's latency and outcome
//! to an [`RpcObserver`] (the daemon feeds `sluice_lnd_rpc_duration_seconds` and
//! `sluice_lnd_rpc_errors_total` from it). Method labels are lnd's RPC names; for a stream
//! the time until the subscription is established is measured, not the stream's life.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bitcoin::{Address, FeeRate, Transaction};

use super::port::{LightningNode, NodeResult, NodeStream};
use super::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoice, HoldInvoiceRequest,
    InvoiceRequest, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    NodeVersion, PaymentRequest, PaymentUpdate, SendFeeEstimate, SendOutputsRequest, SignRequest,
    SpendRequest, SpendUpdate, WalletUtxo,
};
use super::types::{HtlcOutcome, PaymentRoute, RouteRequest};
use crate::domain::{
    BlockHeight, Channel, ChannelEvent, ForwardingPage, NodeId, NodeInfo, Peer, Preimage,
    RpcObserver, Sat, SettlementPage, SwapHash,
};

/// Wraps a node; every call is timed and reported.
pub struct MeteredNode {
    inner: Arc<dyn LightningNode>,
    observer: RpcObserver,
}

impl MeteredNode {
    /// Reports `inner`'s calls to `observer`.
    pub fn new(inner: Arc<dyn LightningNode>, observer: RpcObserver) -> MeteredNode {
        MeteredNode { inner, observer }
    }

    async fn timed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = NodeResult<T>>,
    ) -> NodeResult<T> {
        let started = Instant::now();
        let result = call.await;
        (self.observer)(
            method,
            started.elapsed(),
            result.as_ref().map(|_| ()).map_err(|e| e.kind.label()),
        );
        result
    }
}

#[async_trait]
impl LightningNode for MeteredNode {
    async fn get_info(&self) -> NodeResult<NodeInfo> {
        self.timed("GetInfo", self.inner.get_info()).await
    }

    async fn get_version(&self) -> NodeResult<NodeVersion> {
        self.timed("GetVersion", self.inner.get_version()).await
    }

    async fn list_channels(&self) -> NodeResult<Vec<Channel>> {
        self.timed("ListChannels", self.inner.list_channels()).await
    }

    async fn subscribe_channel_events(&self) -> NodeResult<NodeStream<ChannelEvent>> {
        let call = self.inner.subscribe_channel_events();
        self.timed("SubscribeChannelEvents", call).await
    }

    async fn estimate_send_fee(
        &self,
        outputs: &[bitcoin::TxOut],
        conf_target: u32,
        min_confs: u32,
    ) -> NodeResult<SendFeeEstimate> {
        self.timed(
            "EstimateFee",
            self.inner
                .estimate_send_fee(outputs, conf_target, min_confs),
        )
        .await
    }

    async fn list_unspent(&self, min_confs: u32) -> NodeResult<Vec<WalletUtxo>> {
        self.timed("ListUnspent", self.inner.list_unspent(min_confs))
            .await
    }

    async fn onchain_balance(&self) -> NodeResult<(Sat, Sat)> {
        self.timed("WalletBalance", self.inner.onchain_balance())
            .await
    }

    async fn list_peers(&self) -> NodeResult<Vec<Peer>> {
        self.timed("ListPeers", self.inner.list_peers()).await
    }

    async fn node_alias(&self, node: NodeId) -> NodeResult<Option<String>> {
        self.timed("GetNodeInfo", self.inner.node_alias(node)).await
    }

    async fn announced_channels(
        &self,
        node: NodeId,
    ) -> NodeResult<Vec<crate::domain::ChannelEdge>> {
        self.timed("GetNodeInfo", self.inner.announced_channels(node))
            .await
    }

    async fn channel_edge(
        &self,
        chan: crate::domain::ChanId,
    ) -> NodeResult<crate::domain::ChannelEdge> {
        self.timed("GetChanInfo", self.inner.channel_edge(chan))
            .await
    }

    async fn forwarding_history(
        &self,
        start_unix: u64,
        end_unix: u64,
        index_offset: u32,
        max_events: u32,
    ) -> NodeResult<ForwardingPage> {
        let call = self
            .inner
            .forwarding_history(start_unix, end_unix, index_offset, max_events);
        self.timed("ForwardingHistory", call).await
    }

    async fn payment_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        let call = self.inner.payment_settlements(index_offset, max);
        self.timed("ListPayments", call).await
    }

    async fn invoice_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        let call = self.inner.invoice_settlements(index_offset, max);
        self.timed("ListInvoices", call).await
    }

    async fn decode_invoice(&self, invoice: &str) -> NodeResult<DecodedInvoice> {
        self.timed("DecodePayReq", self.inner.decode_invoice(invoice))
            .await
    }

    async fn pay(&self, request: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>> {
        self.timed("SendPaymentV2", self.inner.pay(request)).await
    }

    async fn track_payment(&self, hash: SwapHash) -> NodeResult<NodeStream<PaymentUpdate>> {
        self.timed("TrackPaymentV2", self.inner.track_payment(hash))
            .await
    }

    async fn query_route(&self, request: &RouteRequest) -> NodeResult<PaymentRoute> {
        self.timed("QueryRoutes", self.inner.query_route(request))
            .await
    }

    async fn send_to_route(&self, hash: SwapHash, route: &PaymentRoute) -> NodeResult<HtlcOutcome> {
        self.timed("SendToRouteV2", self.inner.send_to_route(hash, route))
            .await
    }

    async fn derive_next_key(&self, family: i32) -> NodeResult<KeyDescriptor> {
        self.timed("DeriveNextKey", self.inner.derive_next_key(family))
            .await
    }

    async fn derive_key(&self, locator: KeyLocator) -> NodeResult<KeyDescriptor> {
        self.timed("DeriveKey", self.inner.derive_key(locator))
            .await
    }

    async fn next_addr(&self) -> NodeResult<Address> {
        self.timed("NextAddr", self.inner.next_addr()).await
    }

    async fn estimate_fee(&self, conf_target: u32) -> NodeResult<FeeRate> {
        self.timed("EstimateFee", self.inner.estimate_fee(conf_target))
            .await
    }

    async fn send_outputs(&self, request: &SendOutputsRequest) -> NodeResult<Transaction> {
        self.timed("SendOutputs", self.inner.send_outputs(request))
            .await
    }

    async fn publish_transaction(&self, tx: &Transaction, label: &str) -> NodeResult<()> {
        let call = self.inner.publish_transaction(tx, label);
        self.timed("PublishTransaction", call).await
    }

    async fn sign_output_raw(&self, request: &SignRequest) -> NodeResult<Vec<Vec<u8>>> {
        self.timed("SignOutputRaw", self.inner.sign_output_raw(request))
            .await
    }

    async fn musig2_create_session(
        &self,
        request: &MuSig2SessionRequest,
    ) -> NodeResult<MuSig2Session> {
        let call = self.inner.musig2_create_session(request);
        self.timed("MuSig2CreateSession", call).await
    }

    async fn musig2_register_nonces(
        &self,
        session_id: [u8; 32],
        nonces: &[[u8; 66]],
    ) -> NodeResult<bool> {
        let call = self.inner.musig2_register_nonces(session_id, nonces);
        self.timed("MuSig2RegisterNonces", call).await
    }

    async fn musig2_sign(
        &self,
        session_id: [u8; 32],
        digest: [u8; 32],
        cleanup: bool,
    ) -> NodeResult<Vec<u8>> {
        let call = self.inner.musig2_sign(session_id, digest, cleanup);
        self.timed("MuSig2Sign", call).await
    }

    async fn musig2_combine_sig(
        &self,
        session_id: [u8; 32],
        partial_sigs: &[Vec<u8>],
    ) -> NodeResult<Option<Vec<u8>>> {
        let call = self.inner.musig2_combine_sig(session_id, partial_sigs);
        self.timed("MuSig2CombineSig", call).await
    }

    async fn musig2_cleanup(&self, session_id: [u8; 32]) -> NodeResult<()> {
        let call = self.inner.musig2_cleanup(session_id);
        self.timed("MuSig2Cleanup", call).await
    }

    async fn register_confirmations(
        &self,
        request: &ConfRequest,
    ) -> NodeResult<NodeStream<ConfUpdate>> {
        let call = self.inner.register_confirmations(request);
        self.timed("RegisterConfirmationsNtfn", call).await
    }

    async fn register_spend(&self, request: &SpendRequest) -> NodeResult<NodeStream<SpendUpdate>> {
        let call = self.inner.register_spend(request);
        self.timed("RegisterSpendNtfn", call).await
    }

    async fn register_block_epochs(&self) -> NodeResult<NodeStream<BlockEpoch>> {
        let call = self.inner.register_block_epochs();
        self.timed("RegisterBlockEpochNtfn", call).await
    }

    async fn register_block_epochs_since(
        &self,
        since: BlockEpoch,
    ) -> NodeResult<NodeStream<BlockEpoch>> {
        let call = self.inner.register_block_epochs_since(since);
        self.timed("RegisterBlockEpochNtfn", call).await
    }

    async fn block_hash_at(&self, height: BlockHeight) -> NodeResult<Option<bitcoin::BlockHash>> {
        // Not an lnd RPC of its own: passed through untimed.
        self.inner.block_hash_at(height).await
    }

    async fn add_hold_invoice(&self, request: &HoldInvoiceRequest) -> NodeResult<HoldInvoice> {
        self.timed("AddHoldInvoice", self.inner.add_hold_invoice(request))
            .await
    }

    async fn add_invoice(&self, request: &InvoiceRequest) -> NodeResult<HoldInvoice> {
        self.timed("AddInvoice", self.inner.add_invoice(request))
            .await
    }

    async fn settle_invoice(&self, preimage: Preimage) -> NodeResult<()> {
        self.timed("SettleInvoice", self.inner.settle_invoice(preimage))
            .await
    }

    async fn cancel_invoice(&self, hash: SwapHash) -> NodeResult<()> {
        self.timed("CancelInvoice", self.inner.cancel_invoice(hash))
            .await
    }

    async fn subscribe_single_invoice(
        &self,
        hash: SwapHash,
    ) -> NodeResult<NodeStream<InvoiceUpdate>> {
        let call = self.inner.subscribe_single_invoice(hash);
        self.timed("SubscribeSingleInvoice", call).await
    }

    async fn block_height(&self) -> NodeResult<BlockHeight> {
        self.timed("GetInfo", self.inner.block_height()).await
    }
}
