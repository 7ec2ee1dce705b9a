//! `ResilientNode`: a [`LightningNode`] that survives lost connections to the node it wraps.
//!
//! lnd restarts, networks blip, and tonic's lazy channel reconnects by itself; what it cannot
//! do is repeat the call that failed or re-open the streams that broke. This wrapper does,
//! so callers (the daemon's node task, the swap driver) see one uninterrupted node:
//!
//! - **Unary calls** that fail with a retryable error (see [`is_retryable`]) are repeated
//!   with capped exponential backoff and jitter ([`RetryPolicy`]). Idempotent calls get
//!   [`RetryPolicy::idempotent_attempts`]; calls whose repetition has an effect get fewer:
//!   `derive_next_key`, `next_addr`, `musig2_create_session` and `add_hold_invoice` get
//!   [`RetryPolicy::non_idempotent_attempts`] (a repeat only wastes a key, an address or a
//!   session, or reports `AlreadyExists`), and `musig2_register_nonces`, `musig2_sign` and
//!   `musig2_combine_sig` are never repeated (a session signs once), nor is `send_outputs`
//!   (a repeat after a lost answer could pay twice).
//! - **Streams** are re-established after a drop, retrying without limit while the error
//!   is retryable (the first subscription is bounded like an idempotent call, so a caller
//!   learns at once that the node is down):
//!   - block epochs resume from the last block delivered (`register_block_epochs_since`),
//!     and the consumer sees every height once and in order: replayed blocks already
//!     delivered are dropped, a block at a delivered height with another hash (a reorg) is
//!     delivered, and when the node did not replay, the missed blocks are fetched with
//!     `block_hash_at` (a gap that cannot be filled is logged);
//!   - confirmation and spend watches are registered again with a height hint: the height
//!     of the event already delivered, else the last tip seen before the drop minus the
//!     blocks the event could hide in (`num_confs`) and [`REORG_SAFETY_BLOCKS`], never below
//!     the caller's own hint; a confirmation delivered before the drop is not delivered
//!     twice, while a spend delivered before it is taken back with a reorg notice and
//!     delivered again only if the new registration finds it (a reorg during the outage may
//!     have removed it, and nothing else would say so);
//!   - payments are re-attached with `track_payment(hash)` until their outcome;
//!   - channel events are subscribed again and followed by a `list_channels` resync that
//!     emits `Opened`, `Closed`, `Updated`, `Active` and `Inactive` for whatever changed
//!     while the stream was down;
//!   - single-invoice subscriptions are re-opened (they start with the current state).
//!
//! Sleeping uses tokio's time, so tests run with a paused clock.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::{Address, FeeRate, Transaction};

use super::error::{NodeError, NodeErrorKind};
use super::port::{LightningNode, NodeResult, NodeStream};
use super::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoice, HoldInvoiceRequest,
    InvoiceRequest, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    NodeVersion, PaymentRequest, PaymentUpdate, SendFeeEstimate, SendOutputsRequest, SignRequest,
    SpendRequest, SpendUpdate, WalletUtxo,
};
use super::types::{HtlcOutcome, PaymentRoute, RouteRequest};
use crate::domain::{
    BlockHeight, Channel, ChannelEvent, ForwardingPage, NodeId, NodeInfo, Peer, Preimage, Sat,
    SettlementPage, SwapHash,
};

/// Blocks subtracted from a re-registration's height hint so a shallow reorg during the
/// outage cannot hide a confirmation or spend below the hint.
pub const REORG_SAFETY_BLOCKS: u32 = 6;

/// How many delivered blocks the epoch stream remembers to recognise replays and reorgs.
const REMEMBERED_BLOCKS: usize = 144;

/// How calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first pause.
    pub initial: Duration,
    /// The longest pause; the doubling stops here.
    pub max: Duration,
    /// Attempts of an idempotent call (and of a stream's first subscription), at least 1.
    pub idempotent_attempts: u32,
    /// Attempts of a call whose repetition wastes something, at least 1.
    pub non_idempotent_attempts: u32,
}

impl Default for RetryPolicy {
    /// 250 ms doubling to 30 s; 8 attempts (about a minute and a half) for idempotent calls,
    /// 2 for the others.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            idempotent_attempts: 8,
            non_idempotent_attempts: 2,
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (0-based): `initial × 2^attempt`
    /// capped at `max`, with "equal jitter": half of it fixed, the other half scaled by
    /// `jitter` in `[0, 1]`. Never more than `max`, never less than half the capped value.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        let base = self.initial.saturating_mul(factor).min(self.max);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// [`delay`](Self::delay) with a random jitter.
    fn pause(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

/// Message fragments of errors that mean the connection (not the request) failed: a server
/// going away mid-stream surfaces as a generic status carrying the transport's words.
const CONNECTION_LOSS: &[&str] = &[
    "transport error",
    "h2 protocol error",
    "error reading a body",
    "connection",
    "broken pipe",
    "stream closed",
    "stream no longer needed",
    "shutting down",
    "unexpected end of file",
    "operation was canceled",
    "tcp connect error",
];

/// Whether repeating the failed call later may succeed: a transient error, or a generic one
/// that reports a lost connection.
pub fn is_retryable(err: &NodeError) -> bool {
    match err.kind {
        NodeErrorKind::Transient => true,
        NodeErrorKind::Permanent => {
            let m = err.message.to_ascii_lowercase();
            CONNECTION_LOSS.iter().any(|f| m.contains(f))
        }
        _ => false,
    }
}

/// A [`LightningNode`] that retries and re-establishes streams over another one.
#[derive(Clone)]
pub struct ResilientNode {
    inner: Arc<dyn LightningNode>,
    policy: RetryPolicy,
    /// The best height seen through this node (block epochs and `get_info`); 0 = unknown.
    tip: Arc<AtomicU32>,
}

impl std::fmt::Debug for ResilientNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientNode")
            .field("policy", &self.policy)
            .field("tip", &self.tip.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a stream needs to re-subscribe on its own.
#[derive(Clone)]
struct Ctx {
    node: Arc<dyn LightningNode>,
    policy: RetryPolicy,
    tip: Arc<AtomicU32>,
}

impl Ctx {
    fn see_height(&self, height: BlockHeight) {
        self.tip.fetch_max(height.0, Ordering::Relaxed);
    }

    fn tip(&self) -> BlockHeight {
        BlockHeight(self.tip.load(Ordering::Relaxed))
    }

    /// Calls `f` until it succeeds, fails for good, or `attempts` are spent (`None`: no
    /// limit), pausing with backoff between attempts.
    async fn retry<T, F, Fut>(
        &self,
        method: &'static str,
        attempts: Option<u32>,
        mut f: F,
    ) -> NodeResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = NodeResult<T>>,
    {
        let mut attempt = 0u32;
        loop {
            match f().await {
                Ok(v) => {
                    if attempt > 0 {
                        tracing::info!(method, attempts = attempt + 1, "lnd call succeeded");
                    }
                    return Ok(v);
                }
                Err(e) if is_retryable(&e) && attempts.is_none_or(|max| attempt + 1 < max) => {
                    let pause = self.policy.pause(attempt);
                    tracing::debug!(method, attempt, ?pause, error = %e, "lnd call failed; retrying");
                    tokio::time::sleep(pause).await;
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl ResilientNode {
    /// Wraps `inner` with the default [`RetryPolicy`].
    pub fn new(inner: Arc<dyn LightningNode>) -> ResilientNode {
        ResilientNode::with_policy(inner, RetryPolicy::default())
    }

    /// Wraps `inner` with `policy`.
    pub fn with_policy(inner: Arc<dyn LightningNode>, policy: RetryPolicy) -> ResilientNode {
        ResilientNode {
            inner,
            policy,
            tip: Arc::new(AtomicU32::new(0)),
        }
    }

    /// The best block height seen through this node so far; zero before any.
    pub fn tip(&self) -> BlockHeight {
        self.ctx().tip()
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            node: Arc::clone(&self.inner),
            policy: self.policy,
            tip: Arc::clone(&self.tip),
        }
    }

    fn idempotent(&self) -> Option<u32> {
        Some(self.policy.idempotent_attempts.max(1))
    }

    fn non_idempotent(&self) -> Option<u32> {
        Some(self.policy.non_idempotent_attempts.max(1))
    }
}

mod streams;

pub use streams::{Admit, admit_epoch, conf_resume_hint, diff_channels, spend_resume_hint};
use streams::{ChanEvents, Conf, Epochs, Invoice, Payment, Spend, Watch, by_point, into_stream};

// ----- the port -----

#[async_trait]
impl LightningNode for ResilientNode {
    async fn get_info(&self) -> NodeResult<NodeInfo> {
        let info = self
            .ctx()
            .retry("get_info", self.idempotent(), || self.inner.get_info())
            .await?;
        self.ctx().see_height(info.block_height);
        Ok(info)
    }

    async fn get_version(&self) -> NodeResult<NodeVersion> {
        self.ctx()
            .retry("get_version", self.idempotent(), || {
                self.inner.get_version()
            })
            .await
    }

    async fn list_channels(&self) -> NodeResult<Vec<Channel>> {
        self.ctx()
            .retry("list_channels", self.idempotent(), || {
                self.inner.list_channels()
            })
            .await
    }

    async fn subscribe_channel_events(&self) -> NodeResult<NodeStream<ChannelEvent>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("subscribe_channel_events", self.idempotent(), || {
                self.inner.subscribe_channel_events()
            })
            .await?;
        let list = ctx
            .retry("list_channels", self.idempotent(), || {
                self.inner.list_channels()
            })
            .await?;
        Ok(into_stream(ChanEvents {
            ctx,
            inner: Some(inner),
            cache: by_point(list),
            pending: VecDeque::new(),
            failures: 0,
            done: false,
        }))
    }

    async fn estimate_send_fee(
        &self,
        outputs: &[bitcoin::TxOut],
        conf_target: u32,
        min_confs: u32,
    ) -> NodeResult<SendFeeEstimate> {
        self.ctx()
            .retry("estimate_send_fee", self.idempotent(), || {
                self.inner
                    .estimate_send_fee(outputs, conf_target, min_confs)
            })
            .await
    }

    async fn list_unspent(&self, min_confs: u32) -> NodeResult<Vec<WalletUtxo>> {
        self.ctx()
            .retry("list_unspent", self.idempotent(), || {
                self.inner.list_unspent(min_confs)
            })
            .await
    }

    async fn onchain_balance(&self) -> NodeResult<(Sat, Sat)> {
        self.ctx()
            .retry("wallet_balance", self.idempotent(), || {
                self.inner.onchain_balance()
            })
            .await
    }

    async fn list_peers(&self) -> NodeResult<Vec<Peer>> {
        self.ctx()
            .retry("list_peers", self.idempotent(), || self.inner.list_peers())
            .await
    }

    async fn node_alias(&self, node: NodeId) -> NodeResult<Option<String>> {
        self.ctx()
            .retry("node_alias", self.idempotent(), || {
                self.inner.node_alias(node)
            })
            .await
    }

    async fn announced_channels(
        &self,
        node: NodeId,
    ) -> NodeResult<Vec<crate::domain::ChannelEdge>> {
        self.ctx()
            .retry("announced_channels", self.idempotent(), || {
                self.inner.announced_channels(node)
            })
            .await
    }

    async fn channel_edge(
        &self,
        chan: crate::domain::ChanId,
    ) -> NodeResult<crate::domain::ChannelEdge> {
        self.ctx()
            .retry("channel_edge", self.idempotent(), || {
                self.inner.channel_edge(chan)
            })
            .await
    }

    async fn forwarding_history(
        &self,
        start_unix: u64,
        end_unix: u64,
        index_offset: u32,
        max_events: u32,
    ) -> NodeResult<ForwardingPage> {
        self.ctx()
            .retry("forwarding_history", self.idempotent(), || {
                self.inner
                    .forwarding_history(start_unix, end_unix, index_offset, max_events)
            })
            .await
    }

    async fn payment_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        self.ctx()
            .retry("payment_settlements", self.idempotent(), || {
                self.inner.payment_settlements(index_offset, max)
            })
            .await
    }

    async fn invoice_settlements(&self, index_offset: u64, max: u64) -> NodeResult<SettlementPage> {
        self.ctx()
            .retry("invoice_settlements", self.idempotent(), || {
                self.inner.invoice_settlements(index_offset, max)
            })
            .await
    }

    async fn decode_invoice(&self, invoice: &str) -> NodeResult<DecodedInvoice> {
        self.ctx()
            .retry("decode_invoice", self.idempotent(), || {
                self.inner.decode_invoice(invoice)
            })
            .await
    }

    async fn pay(&self, request: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("pay", self.idempotent(), || self.inner.pay(request))
            .await?;
        let hash = request
            .invoice
            .parse::<lightning_invoice::Bolt11Invoice>()
            .map(|i| SwapHash(*AsRef::<[u8; 32]>::as_ref(i.payment_hash())));
        match hash {
            Ok(hash) => Ok(into_stream(Payment {
                ctx,
                hash,
                inner: Some(inner),
                last: None,
                failures: 0,
                done: false,
            })),
            // The node accepted an invoice sluice cannot parse: follow its stream as it is.
            Err(_) => Ok(inner),
        }
    }

    async fn track_payment(&self, hash: SwapHash) -> NodeResult<NodeStream<PaymentUpdate>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("track_payment", self.idempotent(), || {
                self.inner.track_payment(hash)
            })
            .await?;
        Ok(into_stream(Payment {
            ctx,
            hash,
            inner: Some(inner),
            last: None,
            failures: 0,
            done: false,
        }))
    }

    async fn query_route(&self, request: &RouteRequest) -> NodeResult<PaymentRoute> {
        self.ctx()
            .retry("query_route", self.idempotent(), || {
                self.inner.query_route(request)
            })
            .await
    }

    async fn send_to_route(&self, hash: SwapHash, route: &PaymentRoute) -> NodeResult<HtlcOutcome> {
        self.ctx()
            .retry("send_to_route", self.non_idempotent(), || {
                self.inner.send_to_route(hash, route)
            })
            .await
    }

    async fn derive_next_key(&self, family: i32) -> NodeResult<KeyDescriptor> {
        self.ctx()
            .retry("derive_next_key", self.non_idempotent(), || {
                self.inner.derive_next_key(family)
            })
            .await
    }

    async fn derive_key(&self, locator: KeyLocator) -> NodeResult<KeyDescriptor> {
        self.ctx()
            .retry("derive_key", self.idempotent(), || {
                self.inner.derive_key(locator)
            })
            .await
    }

    async fn next_addr(&self) -> NodeResult<Address> {
        self.ctx()
            .retry("next_addr", self.non_idempotent(), || {
                self.inner.next_addr()
            })
            .await
    }

    async fn estimate_fee(&self, conf_target: u32) -> NodeResult<FeeRate> {
        self.ctx()
            .retry("estimate_fee", self.idempotent(), || {
                self.inner.estimate_fee(conf_target)
            })
            .await
    }

    async fn send_outputs(&self, request: &SendOutputsRequest) -> NodeResult<Transaction> {
        // Never repeated: an error may come after the node paid and published.
        self.inner.send_outputs(request).await
    }

    async fn publish_transaction(&self, tx: &Transaction, label: &str) -> NodeResult<()> {
        self.ctx()
            .retry("publish_transaction", self.idempotent(), || {
                self.inner.publish_transaction(tx, label)
            })
            .await
    }

    async fn sign_output_raw(&self, request: &SignRequest) -> NodeResult<Vec<Vec<u8>>> {
        self.ctx()
            .retry("sign_output_raw", self.idempotent(), || {
                self.inner.sign_output_raw(request)
            })
            .await
    }

    async fn musig2_create_session(
        &self,
        request: &MuSig2SessionRequest,
    ) -> NodeResult<MuSig2Session> {
        self.ctx()
            .retry("musig2_create_session", self.non_idempotent(), || {
                self.inner.musig2_create_session(request)
            })
            .await
    }

    async fn musig2_register_nonces(
        &self,
        session_id: [u8; 32],
        nonces: &[[u8; 66]],
    ) -> NodeResult<bool> {
        self.inner.musig2_register_nonces(session_id, nonces).await
    }

    async fn musig2_sign(
        &self,
        session_id: [u8; 32],
        digest: [u8; 32],
        cleanup: bool,
    ) -> NodeResult<Vec<u8>> {
        self.inner.musig2_sign(session_id, digest, cleanup).await
    }

    async fn musig2_combine_sig(
        &self,
        session_id: [u8; 32],
        partial_sigs: &[Vec<u8>],
    ) -> NodeResult<Option<Vec<u8>>> {
        self.inner
            .musig2_combine_sig(session_id, partial_sigs)
            .await
    }

    async fn musig2_cleanup(&self, session_id: [u8; 32]) -> NodeResult<()> {
        self.ctx()
            .retry("musig2_cleanup", self.idempotent(), || {
                self.inner.musig2_cleanup(session_id)
            })
            .await
    }

    async fn register_confirmations(
        &self,
        request: &ConfRequest,
    ) -> NodeResult<NodeStream<ConfUpdate>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("register_confirmations", self.idempotent(), || {
                self.inner.register_confirmations(request)
            })
            .await?;
        Ok(into_stream(Watch::<Conf> {
            ctx,
            request: request.clone(),
            inner: Some(inner),
            delivered: None,
            revoked_at: None,
            failures: 0,
            done: false,
        }))
    }

    async fn register_spend(&self, request: &SpendRequest) -> NodeResult<NodeStream<SpendUpdate>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("register_spend", self.idempotent(), || {
                self.inner.register_spend(request)
            })
            .await?;
        Ok(into_stream(Watch::<Spend> {
            ctx,
            request: request.clone(),
            inner: Some(inner),
            delivered: None,
            revoked_at: None,
            failures: 0,
            done: false,
        }))
    }

    async fn register_block_epochs(&self) -> NodeResult<NodeStream<BlockEpoch>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("register_block_epochs", self.idempotent(), || {
                self.inner.register_block_epochs()
            })
            .await?;
        Ok(into_stream(Epochs {
            ctx,
            inner: Some(inner),
            delivered: VecDeque::new(),
            pending: VecDeque::new(),
            failures: 0,
            done: false,
        }))
    }

    async fn register_block_epochs_since(
        &self,
        since: BlockEpoch,
    ) -> NodeResult<NodeStream<BlockEpoch>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("register_block_epochs", self.idempotent(), || {
                self.inner.register_block_epochs_since(since)
            })
            .await?;
        Ok(into_stream(Epochs {
            ctx,
            inner: Some(inner),
            delivered: VecDeque::from([since]),
            pending: VecDeque::new(),
            failures: 0,
            done: false,
        }))
    }

    async fn block_hash_at(&self, height: BlockHeight) -> NodeResult<Option<bitcoin::BlockHash>> {
        self.ctx()
            .retry("block_hash_at", self.idempotent(), || {
                self.inner.block_hash_at(height)
            })
            .await
    }

    async fn add_hold_invoice(&self, request: &HoldInvoiceRequest) -> NodeResult<HoldInvoice> {
        self.ctx()
            .retry("add_hold_invoice", self.non_idempotent(), || {
                self.inner.add_hold_invoice(request)
            })
            .await
    }

    async fn add_invoice(&self, request: &InvoiceRequest) -> NodeResult<HoldInvoice> {
        self.ctx()
            .retry("add_invoice", self.non_idempotent(), || {
                self.inner.add_invoice(request)
            })
            .await
    }

    async fn settle_invoice(&self, preimage: Preimage) -> NodeResult<()> {
        self.ctx()
            .retry("settle_invoice", self.idempotent(), || {
                self.inner.settle_invoice(preimage)
            })
            .await
    }

    async fn cancel_invoice(&self, hash: SwapHash) -> NodeResult<()> {
        self.ctx()
            .retry("cancel_invoice", self.idempotent(), || {
                self.inner.cancel_invoice(hash)
            })
            .await
    }

    async fn subscribe_single_invoice(
        &self,
        hash: SwapHash,
    ) -> NodeResult<NodeStream<InvoiceUpdate>> {
        let ctx = self.ctx();
        let inner = ctx
            .retry("subscribe_single_invoice", self.idempotent(), || {
                self.inner.subscribe_single_invoice(hash)
            })
            .await?;
        Ok(into_stream(Invoice {
            ctx,
            hash,
            inner: Some(inner),
            last: None,
            failures: 0,
            done: false,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests;
