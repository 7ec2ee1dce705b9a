//! The `LightningNode` port: everything sluice asks of its Lightning node, in domain types.
//!
//! The daemon holds an `Arc<dyn LightningNode>`; the lnd gRPC adapter and the simnet's
//! in-process node implement it. Every method documents whether repeating it is safe
//! (idempotent) and which of its errors are worth retrying; all errors carry a
//! [`NodeErrorKind`](super::NodeErrorKind), and `Transient` always means "the same call may
//! succeed later". The swap driver relies on these contracts to resume after a crash.

use async_trait::async_trait;
use bitcoin::{Address, FeeRate, Transaction};
use futures::stream::BoxStream;

use super::error::NodeError;
use super::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoice, HoldInvoiceRequest,
    InvoiceRequest, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    NodeVersion, PaymentRequest, PaymentUpdate, SendFeeEstimate, SendOutputsRequest, SignRequest,
    SpendRequest, SpendUpdate, WalletUtxo,
};
use super::types::{HtlcOutcome, MppRecord, PaymentRoute, RouteRequest};
use crate::domain::{
    BlockHeight, ChanId, Channel, ChannelEdge, ChannelEvent, ForwardingPage, NodeId, NodeInfo,
    Peer, Preimage, Sat, SettlementPage, SwapHash,
};

/// A stream of updates from the node. It ends when the node ends it (a payment reached
/// its outcome); an `Err` item is the last one. Dropping it cancels the subscription.
pub type NodeStream<T> = BoxStream<'static, Result<T, NodeError>>;

/// The result of a port call.
pub type NodeResult<T> = Result<T, NodeError>;

/// The Lightning node as sluice sees it.
///
/// Unless a method says otherwise, read methods are idempotent and their `Transient`
/// errors (node starting, syncing, unreachable) can be retried as they are.
#[async_trait]
pub trait LightningNode: Send + Sync {
    // ----- node and channels -----

    /// The node's identity, chain height and sync state. Idempotent.
    async fn get_info(&self) -> NodeResult<NodeInfo>;

    /// The node build (`verrpc`). Idempotent. `NotFound`/`Permanent` from an lnd built
    /// without the sub-servers sluice needs.
    async fn get_version(&self) -> NodeResult<NodeVersion>;

    /// Every open channel, with the peer's alias looked up. Idempotent.
    async fn list_channels(&self) -> NodeResult<Vec<Channel>>;

    /// A stream of channel changes from now on. Re-subscribing is safe; events between
    /// two subscriptions are not replayed, so re-read `list_channels` after reconnecting.
    async fn subscribe_channel_events(&self) -> NodeResult<NodeStream<ChannelEvent>>;

    /// The peers currently connected. Idempotent.
    async fn list_peers(&self) -> NodeResult<Vec<Peer>>;

    /// The alias a node announces; `Ok(None)` when the graph does not know the node.
    /// Idempotent.
    async fn node_alias(&self, node: NodeId) -> NodeResult<Option<String>>;

    /// The channels the graph shows `node` with that are announced (lnd's `GetNodeInfo` with
    /// `include_channels`, which leaves out unannounced ones): empty for a node the graph
    /// does not know or that has only private channels, which a route hint must never name.
    /// Idempotent.
    async fn announced_channels(&self, node: NodeId) -> NodeResult<Vec<ChannelEdge>>;

    /// One channel from the graph with both ends' policies (lnd's `GetChanInfo`; the node's
    /// own private channels included). `NotFound` for a channel the graph does not hold.
    /// Idempotent.
    async fn channel_edge(&self, chan: ChanId) -> NodeResult<ChannelEdge>;

    /// Forwards that settled between two Unix times (seconds; `end == 0` means now),
    /// starting at `index_offset`, at most `max_events` of them. Idempotent.
    async fn forwarding_history(
        &self,
        start_unix: u64,
        end_unix: u64,
        index_offset: u32,
        max_events: u32,
    ) -> NodeResult<ForwardingPage>;

    /// The node's succeeded payments from `index_offset` on (at most `max` payments per page,
    /// oldest first), as the HTLCs that settled: each one's first channel and what left it
    /// (amount plus routing fees), at its resolve time. Idempotent.
    async fn payment_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        let _ = (index_offset, max);
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "list_payments",
            "this node does not list its payments",
        ))
    }

    /// The node's settled invoices from `index_offset` on (at most `max` invoices per page,
    /// oldest first), as the HTLCs that settled: the channel each arrived on and its amount.
    /// Idempotent.
    async fn invoice_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        let _ = (index_offset, max);
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "list_invoices",
            "this node does not list its invoices",
        ))
    }

    /// The wallet's on-chain balance (`WalletBalance`): (confirmed, unconfirmed). Idempotent.
    /// Nodes that cannot tell answer with a `Permanent` error.
    async fn onchain_balance(&self) -> NodeResult<(Sat, Sat)> {
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "wallet_balance",
            "this node does not report its wallet balance",
        ))
    }

    /// What paying `outputs` from the wallet would cost at the rate for `conf_target`, with
    /// the wallet's coin selection over coins of at least `min_confs` confirmations (lnd's
    /// `Lightning.EstimateFee`); nothing is spent. Idempotent. `Permanent` when the wallet
    /// cannot pay them (insufficient funds) or the node has no wallet.
    async fn estimate_send_fee(
        &self,
        outputs: &[bitcoin::TxOut],
        conf_target: u32,
        min_confs: u32,
    ) -> NodeResult<SendFeeEstimate> {
        let _ = (outputs, conf_target, min_confs);
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "estimate_send_fee",
            "this node cannot estimate a wallet payment",
        ))
    }

    /// The wallet's unspent outputs with at least `min_confs` confirmations (0: unconfirmed
    /// ones too; lnd's `ListUnspent`). Idempotent. What a spend of the wallet cost is read
    /// from it: the values of the coins a transaction spent less its outputs. Nodes without a
    /// wallet answer `Permanent`.
    async fn list_unspent(&self, min_confs: u32) -> NodeResult<Vec<WalletUtxo>> {
        let _ = min_confs;
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "list_unspent",
            "this node does not list its wallet's coins",
        ))
    }

    // ----- payments -----

    /// Decodes a BOLT 11 invoice. Idempotent; `InvalidArgument` for a malformed invoice.
    async fn decode_invoice(&self, invoice: &str) -> NodeResult<DecodedInvoice>;

    /// Pays an invoice and streams the payment until its outcome.
    ///
    /// Idempotent by payment hash: if a payment to this invoice's hash is already in
    /// flight or has succeeded, no second payment is made; the returned stream attaches to
    /// the existing payment (as [`track_payment`](Self::track_payment) would). After a
    /// crash the caller may therefore simply call `pay` again. `Transient` errors mean no
    /// payment was started by this call; retrying is safe.
    async fn pay(&self, request: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>>;

    /// Streams the state of a payment started earlier, beginning with its current state.
    /// Idempotent. `NotFound` if the node never started a payment to this hash.
    async fn track_payment(&self, hash: SwapHash) -> NodeResult<NodeStream<PaymentUpdate>>;

    /// Finds a route for one HTLC (lnd's `QueryRoutes`), without paying. Idempotent.
    /// `NotFound` when no route exists. Nodes that cannot route by hand answer `Permanent`.
    async fn query_route(&self, request: &RouteRequest) -> NodeResult<PaymentRoute> {
        let _ = request;
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "query_route",
            "this node does not find routes by hand",
        ))
    }

    /// Sends one HTLC along `route` for `hash` (lnd's `SendToRouteV2`) and returns once the
    /// payee settled or failed it. With an MPP record on the last hop the HTLC is one part of
    /// a set: the payee holds it until the set is complete or its MPP timeout passes. This is
    /// how a payer pays an invoice other than exactly: less (a set that never completes) or
    /// more. Not idempotent: each call sends another HTLC.
    async fn send_to_route(&self, hash: SwapHash, route: &PaymentRoute) -> NodeResult<HtlcOutcome> {
        let _ = (hash, route);
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "send_to_route",
            "this node does not send along a given route",
        ))
    }

    // ----- wallet -----

    /// Derives the next unused key of a key family. Not idempotent: each call returns a
    /// new key, so store the result before using it.
    async fn derive_next_key(&self, family: i32) -> NodeResult<KeyDescriptor>;

    /// Derives the key at a locator. Idempotent: the same locator gives the same key.
    async fn derive_key(&self, locator: KeyLocator) -> NodeResult<KeyDescriptor>;

    /// A fresh taproot address of the wallet, for sweeps. Not idempotent (a new address
    /// each call); store it before using it.
    async fn next_addr(&self) -> NodeResult<Address>;

    /// The fee rate to confirm within `conf_target` blocks. Idempotent.
    async fn estimate_fee(&self, conf_target: u32) -> NodeResult<FeeRate>;

    /// Broadcasts a transaction with a wallet label. Idempotent: publishing a transaction
    /// the node already knows succeeds. `Permanent` when the mempool rejects it
    /// (e.g. insufficient fee, double spend); the message says why.
    async fn publish_transaction(&self, tx: &Transaction, label: &str) -> NodeResult<()>;

    /// Pays every output of the request from the wallet in one transaction (change, if any,
    /// after them), publishes it and returns it (`WalletKit.SendOutputs`).
    ///
    /// **Not idempotent**: each call selects coins and spends anew, and an error does not prove
    /// that nothing was paid (the connection may drop after the node published). Record what
    /// is being paid before calling, and after an error look for the outputs on chain
    /// (`register_confirmations` on their script) before paying again; wrappers never retry
    /// it. `InvalidArgument` for a request the node refuses (no outputs, a label over 500
    /// characters, an address of another network); `Permanent` when the wallet cannot pay
    /// (insufficient funds, the mempool refuses the transaction). Nodes without a wallet
    /// answer `Permanent`.
    async fn send_outputs(&self, request: &SendOutputsRequest) -> NodeResult<Transaction> {
        let _ = request;
        Err(NodeError::new(
            super::NodeErrorKind::Permanent,
            "send_outputs",
            "this node cannot pay outputs from a wallet",
        ))
    }

    // ----- signing -----

    /// Signs inputs with wallet keys (P2WSH or taproot script path). Idempotent; returns
    /// one raw signature per input of the request, in order (64 or 65 bytes for taproot,
    /// DER without sighash byte for segwit v0).
    async fn sign_output_raw(&self, request: &SignRequest) -> NodeResult<Vec<Vec<u8>>>;

    /// Opens a MuSig2 session. Not idempotent: each call makes a new session with new
    /// nonces; never sign two messages in one session.
    async fn musig2_create_session(
        &self,
        request: &MuSig2SessionRequest,
    ) -> NodeResult<MuSig2Session>;

    /// Registers other signers' nonces; returns whether all nonces are now known.
    /// `NotFound` for an unknown (e.g. cleaned-up) session.
    async fn musig2_register_nonces(
        &self,
        session_id: [u8; 32],
        nonces: &[[u8; 66]],
    ) -> NodeResult<bool>;

    /// Our partial signature over a 32-byte digest. Not repeatable: a session signs once;
    /// with `cleanup` the session is removed afterwards.
    async fn musig2_sign(
        &self,
        session_id: [u8; 32],
        digest: [u8; 32],
        cleanup: bool,
    ) -> NodeResult<Vec<u8>>;

    /// Combines the other signers' partial signatures with ours; `Some(final signature)`
    /// once every partial signature is known.
    async fn musig2_combine_sig(
        &self,
        session_id: [u8; 32],
        partial_sigs: &[Vec<u8>],
    ) -> NodeResult<Option<Vec<u8>>>;

    /// Removes a session and its secret nonces. Idempotent in effect; `NotFound` for a
    /// session that is already gone, which callers may ignore.
    async fn musig2_cleanup(&self, session_id: [u8; 32]) -> NodeResult<()>;

    // ----- chain -----

    /// Streams confirmation events for a transaction or script. Registering again is
    /// safe: an already confirmed transaction is reported again.
    async fn register_confirmations(
        &self,
        request: &ConfRequest,
    ) -> NodeResult<NodeStream<ConfUpdate>>;

    /// Streams spend events for an outpoint or script. Registering again is safe.
    async fn register_spend(&self, request: &SpendRequest) -> NodeResult<NodeStream<SpendUpdate>>;

    /// Streams new blocks, starting with the current tip. `Transient` (Unavailable) while
    /// lnd's chain notifier is starting.
    async fn register_block_epochs(&self) -> NodeResult<NodeStream<BlockEpoch>>;

    /// Streams the blocks after `since` (a block the caller has already seen), then new
    /// ones, so a caller resuming after a lost connection misses nothing. lnd's
    /// `RegisterBlockEpochNtfn` does this when given a best block, rewinding to the fork
    /// point if `since` was reorganised away. The default ignores the hint and behaves as
    /// [`register_block_epochs`](Self::register_block_epochs); callers must then expect a
    /// gap and check the first height they receive.
    async fn register_block_epochs_since(
        &self,
        since: BlockEpoch,
    ) -> NodeResult<NodeStream<BlockEpoch>> {
        let _ = since;
        self.register_block_epochs().await
    }

    /// The hash of the main-chain block at `height`; `Ok(None)` when the node has no such
    /// block or cannot say. Idempotent. Used to fill a gap in block epochs when a node does
    /// not replay missed blocks; the default answers `None` (lnd replays instead).
    async fn block_hash_at(&self, height: BlockHeight) -> NodeResult<Option<bitcoin::BlockHash>> {
        let _ = height;
        Ok(None)
    }

    // ----- hold invoices (the simnet's Loop server) -----

    /// Adds a hold invoice. `AlreadyExists` if an invoice with this hash exists; callers
    /// re-creating after a crash should look for it with `subscribe_single_invoice`.
    async fn add_hold_invoice(&self, request: &HoldInvoiceRequest) -> NodeResult<HoldInvoice>;

    /// Adds a normal invoice with the caller's preimage, settled by the node as soon as it is
    /// paid in full (lnd's `AddInvoice` with `r_preimage`; the final CLTV delta is the node's
    /// default). `AlreadyExists` if an invoice with this hash exists: callers re-creating after
    /// a crash look for it with `subscribe_single_invoice`.
    async fn add_invoice(&self, request: &InvoiceRequest) -> NodeResult<HoldInvoice>;

    /// Settles an accepted hold invoice. Idempotent: settling a settled invoice succeeds.
    async fn settle_invoice(&self, preimage: Preimage) -> NodeResult<()>;

    /// Cancels an unsettled invoice. Idempotent on a canceled invoice.
    async fn cancel_invoice(&self, hash: SwapHash) -> NodeResult<()>;

    /// Streams an invoice's states, beginning with the current one. `NotFound` for an
    /// unknown hash.
    async fn subscribe_single_invoice(
        &self,
        hash: SwapHash,
    ) -> NodeResult<NodeStream<InvoiceUpdate>>;

    /// The block height the node is at, from `get_info`. Idempotent.
    async fn block_height(&self) -> NodeResult<BlockHeight> {
        Ok(self.get_info().await?.block_height)
    }
}

/// Pays `amount` of an invoice in one HTLC whose multi-path record names `set_total`, along
/// the route the node finds (`QueryRoutes`, then `SendToRouteV2`), and returns its outcome.
/// `amount < set_total` is one part of a set (the payee settles only once parts add up to
/// the total); `amount == set_total` above the invoice's amount overpays it. Refused
/// (`InvalidArgument`) when the route's fees exceed `fee_limit` or the invoice has no payment
/// address. Not idempotent.
pub async fn pay_part<N: LightningNode + ?Sized>(
    node: &N,
    invoice: &str,
    amount: crate::domain::Msat,
    set_total: crate::domain::Msat,
    fee_limit: crate::domain::Msat,
) -> NodeResult<HtlcOutcome> {
    let decoded = node.decode_invoice(invoice).await?;
    let invalid =
        |msg: String| NodeError::new(super::NodeErrorKind::InvalidArgument, "pay_part", msg);
    let payment_addr = decoded
        .payment_addr
        .ok_or_else(|| invalid("the invoice has no payment address".to_owned()))?;
    let mut route = node
        .query_route(&RouteRequest {
            destination: decoded.destination,
            amount,
            // QueryRoutes adds no padding; SendPaymentV2 adds three blocks, so a block that
            // arrives while the HTLC travels does not make it expire too soon.
            final_cltv_delta: u32::try_from(decoded.min_final_cltv_delta)
                .unwrap_or(u32::MAX)
                .saturating_add(3),
            route_hints: decoded.route_hints.clone(),
        })
        .await?;
    if route.total_fees > fee_limit {
        return Err(invalid(format!(
            "the route's fees, {} msat, exceed the limit of {} msat",
            route.total_fees.0, fee_limit.0
        )));
    }
    let Some(last) = route.hops.last_mut() else {
        return Err(invalid("the node found a route without hops".to_owned()));
    };
    last.mpp = Some(MppRecord {
        payment_addr,
        total: set_total,
    });
    node.send_to_route(decoded.payment_hash, &route).await
}
