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
//!   `musig2_combine_sig` are never repeated (a session signs once).
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
//!     the caller's own hint; an event delivered before the drop is not delivered twice;
//!   - payments are re-attached with `track_payment(hash)` until their outcome;
//!   - channel events are subscribed again and followed by a `list_channels` resync that
//!     emits `Opened`, `Closed`, `Updated`, `Active` and `Inactive` for whatever changed
//!     while the stream was down;
//!   - single-invoice subscriptions are re-opened (they start with the current state).
//!
//! Sleeping uses tokio's time, so tests run with a paused clock.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::{Address, FeeRate, Transaction};
use futures::StreamExt;

use super::error::{NodeError, NodeErrorKind};
use super::port::{LightningNode, NodeResult, NodeStream};
use super::types::{
    BlockEpoch, ConfRequest, ConfUpdate, DecodedInvoice, HoldInvoice, HoldInvoiceRequest,
    InvoiceState, InvoiceUpdate, KeyDescriptor, KeyLocator, MuSig2Session, MuSig2SessionRequest,
    NodeVersion, PaymentRequest, PaymentUpdate, SignRequest, SpendRequest, SpendUpdate,
};
use crate::domain::{
    BlockHeight, Channel, ChannelEvent, ForwardingPage, NodeId, NodeInfo, Peer, Preimage, SwapHash,
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

/// Turns a stream state machine into a [`NodeStream`].
fn into_stream<S: Resumable>(state: S) -> NodeStream<S::Item> {
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next_item().await?;
        Some((item, s))
    })
    .boxed()
}

/// A stream that knows how to continue after its inner stream broke.
#[async_trait]
trait Resumable: Send + Sized + 'static {
    type Item: Send + 'static;
    /// The next item, or `None` when the stream is over.
    async fn next_item(&mut self) -> Option<NodeResult<Self::Item>>;
}

/// What an inner stream did when asked for its next item.
enum Step<T> {
    Item(T),
    /// It broke or ended where it should not have: subscribe again.
    Lost(Option<NodeError>),
    /// It failed for good: report and end.
    Fatal(NodeError),
    /// It ended normally.
    Ended,
}

async fn step<T>(inner: &mut Option<NodeStream<T>>) -> Step<T> {
    let Some(s) = inner.as_mut() else {
        return Step::Lost(None);
    };
    match s.next().await {
        Some(Ok(v)) => Step::Item(v),
        Some(Err(e)) if is_retryable(&e) => {
            *inner = None;
            Step::Lost(Some(e))
        }
        Some(Err(e)) => {
            *inner = None;
            Step::Fatal(e)
        }
        None => {
            *inner = None;
            Step::Ended
        }
    }
}

fn log_lost(what: &'static str, err: Option<&NodeError>) {
    match err {
        Some(e) => tracing::warn!(stream = what, error = %e, "lnd stream lost; re-subscribing"),
        None => tracing::warn!(stream = what, "lnd stream ended; re-subscribing"),
    }
}

// ----- block epochs -----

/// Whether to pass an epoch on, given the blocks already delivered (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A new block on top of the last one.
    Next,
    /// A new block, but heights between the last one and it were never delivered.
    Gap {
        /// How many heights are missing.
        missing: u32,
    },
    /// A block at a delivered height with another hash: the chain reorganised.
    Reorg,
    /// Already delivered (a replay).
    Duplicate,
}

/// Decides what to do with `epoch` and records it in `delivered` when it is passed on. Pure.
pub fn admit_epoch(delivered: &mut VecDeque<BlockEpoch>, epoch: BlockEpoch) -> Admit {
    let verdict = match delivered.back() {
        None => Admit::Next,
        Some(last) if epoch.height.0 == last.height.0.saturating_add(1) => Admit::Next,
        Some(last) if epoch.height > last.height => Admit::Gap {
            missing: epoch.height.0 - last.height.0 - 1,
        },
        Some(_) => match delivered.iter().find(|b| b.height == epoch.height) {
            Some(known) if known.hash == epoch.hash => Admit::Duplicate,
            Some(_) => Admit::Reorg,
            // Older than anything remembered: a replay from far back.
            None => Admit::Duplicate,
        },
    };
    if verdict != Admit::Duplicate {
        delivered.retain(|b| b.height < epoch.height);
        delivered.push_back(epoch);
        while delivered.len() > REMEMBERED_BLOCKS {
            delivered.pop_front();
        }
    }
    verdict
}

/// The most missed blocks fetched one by one to fill a gap; a longer outage is reported.
const MAX_GAP_FILL: u32 = 2016;

struct Epochs {
    ctx: Ctx,
    inner: Option<NodeStream<BlockEpoch>>,
    delivered: VecDeque<BlockEpoch>,
    /// Blocks to deliver before reading on: a fetched gap, then the block after it.
    pending: VecDeque<BlockEpoch>,
    failures: u32,
    done: bool,
}

#[async_trait]
impl Resumable for Epochs {
    type Item = BlockEpoch;

    async fn next_item(&mut self) -> Option<NodeResult<BlockEpoch>> {
        while !self.done {
            if let Some(epoch) = self.pending.pop_front() {
                if let Some(e) = self.admit(epoch) {
                    return Some(Ok(e));
                }
                continue;
            }
            if self.inner.is_none() {
                let since = self.delivered.back().copied();
                let node = Arc::clone(&self.ctx.node);
                let sub = self
                    .ctx
                    .retry("register_block_epochs", None, || async {
                        match since {
                            Some(b) => node.register_block_epochs_since(b).await,
                            None => node.register_block_epochs().await,
                        }
                    })
                    .await;
                match sub {
                    Ok(s) => {
                        tracing::info!(since = ?since.map(|b| b.height.0), "block epochs re-subscribed");
                        self.inner = Some(s);
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            match step(&mut self.inner).await {
                Step::Item(epoch) => {
                    self.failures = 0;
                    self.fill_gap_before(epoch).await;
                    self.pending.push_back(epoch);
                }
                Step::Lost(e) => self.lost(e).await,
                // lnd never ends a block stream; an end means the connection went away.
                Step::Ended => self.lost(None).await,
                Step::Fatal(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Epochs {
    /// Records `epoch` and says whether to pass it on.
    fn admit(&mut self, epoch: BlockEpoch) -> Option<BlockEpoch> {
        match admit_epoch(&mut self.delivered, epoch) {
            Admit::Duplicate => return None,
            Admit::Gap { missing } => tracing::warn!(
                height = epoch.height.0,
                missing,
                "blocks missed while disconnected could not be recovered"
            ),
            Admit::Reorg => tracing::info!(height = epoch.height.0, "block epoch after a reorg"),
            Admit::Next => {}
        }
        self.ctx.see_height(epoch.height);
        Some(epoch)
    }

    /// When `epoch` skips heights (the node did not replay), asks the node for the missing
    /// blocks' hashes and queues them; stops at the first it cannot get.
    async fn fill_gap_before(&mut self, epoch: BlockEpoch) {
        let Some(last) = self.delivered.back().map(|b| b.height.0) else {
            return;
        };
        let first = last.saturating_add(1);
        if epoch.height.0 <= first || epoch.height.0 - first > MAX_GAP_FILL {
            return;
        }
        for h in first..epoch.height.0 {
            let height = BlockHeight(h);
            let node = Arc::clone(&self.ctx.node);
            let idempotent = Some(self.ctx.policy.idempotent_attempts.max(1));
            match self
                .ctx
                .retry("block_hash_at", idempotent, || node.block_hash_at(height))
                .await
            {
                Ok(Some(hash)) => self.pending.push_back(BlockEpoch { hash, height }),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(height = h, error = %e, "cannot fetch a missed block");
                    return;
                }
            }
        }
    }

    async fn lost(&mut self, err: Option<NodeError>) {
        log_lost("block epochs", err.as_ref());
        tokio::time::sleep(self.ctx.policy.pause(self.failures)).await;
        self.failures = self.failures.saturating_add(1);
    }
}

// ----- confirmation and spend watches -----

/// The height hint to re-register a confirmation watch with after a drop: the height of the
/// confirmation already delivered (so lnd finds it again and can report a reorg), else the
/// tip seen before the drop less the blocks the confirmation could hide in, never below the
/// caller's own hint. Pure.
pub fn conf_resume_hint(
    original: BlockHeight,
    num_confs: u32,
    confirmed_at: Option<BlockHeight>,
    tip_at_drop: BlockHeight,
) -> BlockHeight {
    match confirmed_at {
        Some(h) => h,
        None => original.max(BlockHeight(
            tip_at_drop
                .0
                .saturating_sub(num_confs.saturating_add(REORG_SAFETY_BLOCKS)),
        )),
    }
}

/// The height hint to re-register a spend watch with after a drop: the spend's height if
/// one was delivered, else the tip seen before the drop less [`REORG_SAFETY_BLOCKS`], never
/// below the caller's own hint. Pure.
pub fn spend_resume_hint(
    original: BlockHeight,
    spent_at: Option<BlockHeight>,
    tip_at_drop: BlockHeight,
) -> BlockHeight {
    match spent_at {
        Some(h) => h,
        None => original.max(BlockHeight(
            tip_at_drop.0.saturating_sub(REORG_SAFETY_BLOCKS),
        )),
    }
}

/// What differs between confirmation and spend watches.
trait WatchKind: Send + 'static {
    type Req: Clone + Send + Sync + 'static;
    type Update: Clone + Send + 'static;
    const NAME: &'static str;
    /// The request with the hint for resuming.
    fn resume(
        req: &Self::Req,
        event_at: Option<BlockHeight>,
        tip_at_drop: BlockHeight,
    ) -> Self::Req;
    /// The event's identity and height, or `None` for a reorg notice.
    fn event(update: &Self::Update) -> Option<([u8; 32], BlockHeight)>;
    fn subscribe(
        node: Arc<dyn LightningNode>,
        req: Self::Req,
    ) -> futures::future::BoxFuture<'static, NodeResult<NodeStream<Self::Update>>>;
}

struct Conf;

impl WatchKind for Conf {
    type Req = ConfRequest;
    type Update = ConfUpdate;
    const NAME: &'static str = "register_confirmations";

    fn resume(req: &ConfRequest, event_at: Option<BlockHeight>, tip: BlockHeight) -> ConfRequest {
        ConfRequest {
            height_hint: conf_resume_hint(req.height_hint, req.num_confs, event_at, tip),
            ..req.clone()
        }
    }

    fn event(update: &ConfUpdate) -> Option<([u8; 32], BlockHeight)> {
        use bitcoin::hashes::Hash as _;
        match update {
            ConfUpdate::Confirmed {
                block_hash,
                block_height,
                ..
            } => Some((block_hash.to_byte_array(), *block_height)),
            ConfUpdate::Reorg => None,
        }
    }

    fn subscribe(
        node: Arc<dyn LightningNode>,
        req: ConfRequest,
    ) -> futures::future::BoxFuture<'static, NodeResult<NodeStream<ConfUpdate>>> {
        Box::pin(async move { node.register_confirmations(&req).await })
    }
}

struct Spend;

impl WatchKind for Spend {
    type Req = SpendRequest;
    type Update = SpendUpdate;
    const NAME: &'static str = "register_spend";

    fn resume(req: &SpendRequest, event_at: Option<BlockHeight>, tip: BlockHeight) -> SpendRequest {
        SpendRequest {
            height_hint: spend_resume_hint(req.height_hint, event_at, tip),
            ..req.clone()
        }
    }

    fn event(update: &SpendUpdate) -> Option<([u8; 32], BlockHeight)> {
        use bitcoin::hashes::Hash as _;
        match update {
            SpendUpdate::Spent {
                spending_tx,
                height,
                ..
            } => Some((spending_tx.compute_txid().to_byte_array(), *height)),
            SpendUpdate::Reorg => None,
        }
    }

    fn subscribe(
        node: Arc<dyn LightningNode>,
        req: SpendRequest,
    ) -> futures::future::BoxFuture<'static, NodeResult<NodeStream<SpendUpdate>>> {
        Box::pin(async move { node.register_spend(&req).await })
    }
}

struct Watch<K: WatchKind> {
    ctx: Ctx,
    request: K::Req,
    inner: Option<NodeStream<K::Update>>,
    /// The event delivered last (identity, height), until a reorg notice clears it.
    delivered: Option<([u8; 32], BlockHeight)>,
    failures: u32,
    done: bool,
}

#[async_trait]
impl<K: WatchKind> Resumable for Watch<K> {
    type Item = K::Update;

    async fn next_item(&mut self) -> Option<NodeResult<K::Update>> {
        while !self.done {
            if self.inner.is_none() {
                let tip = self.ctx.tip();
                let req = K::resume(&self.request, self.delivered.map(|(_, h)| h), tip);
                let node = Arc::clone(&self.ctx.node);
                let sub = self
                    .ctx
                    .retry(K::NAME, None, || {
                        K::subscribe(Arc::clone(&node), req.clone())
                    })
                    .await;
                match sub {
                    Ok(s) => {
                        tracing::info!(watch = K::NAME, "chain watch re-registered");
                        self.inner = Some(s);
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            match step(&mut self.inner).await {
                Step::Item(update) => {
                    self.failures = 0;
                    match K::event(&update) {
                        Some(ev) if self.delivered.is_some_and(|d| d.0 == ev.0) => continue,
                        Some(ev) => self.delivered = Some(ev),
                        None => self.delivered = None,
                    }
                    return Some(Ok(update));
                }
                Step::Lost(e) => self.lost(e).await,
                Step::Ended if self.delivered.is_some() => self.done = true,
                Step::Ended => self.lost(None).await,
                Step::Fatal(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl<K: WatchKind> Watch<K> {
    async fn lost(&mut self, err: Option<NodeError>) {
        log_lost(K::NAME, err.as_ref());
        tokio::time::sleep(self.ctx.policy.pause(self.failures)).await;
        self.failures = self.failures.saturating_add(1);
    }
}

// ----- payments and invoices -----

struct Payment {
    ctx: Ctx,
    hash: SwapHash,
    inner: Option<NodeStream<PaymentUpdate>>,
    last: Option<PaymentUpdate>,
    failures: u32,
    done: bool,
}

#[async_trait]
impl Resumable for Payment {
    type Item = PaymentUpdate;

    async fn next_item(&mut self) -> Option<NodeResult<PaymentUpdate>> {
        while !self.done {
            if self.inner.is_none() {
                let node = Arc::clone(&self.ctx.node);
                let hash = self.hash;
                let sub = self
                    .ctx
                    .retry("track_payment", None, || node.track_payment(hash))
                    .await;
                match sub {
                    Ok(s) => {
                        tracing::info!(hash = %self.hash, "payment tracking re-attached");
                        self.inner = Some(s);
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            match step(&mut self.inner).await {
                Step::Item(update) => {
                    self.failures = 0;
                    if self.last.as_ref() == Some(&update) {
                        continue;
                    }
                    self.last = Some(update.clone());
                    return Some(Ok(update));
                }
                Step::Ended if self.last.as_ref().is_some_and(|u| u.status.is_final()) => {
                    self.done = true;
                }
                Step::Lost(e) => self.lost(e).await,
                Step::Ended => self.lost(None).await,
                Step::Fatal(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Payment {
    async fn lost(&mut self, err: Option<NodeError>) {
        log_lost("payment", err.as_ref());
        tokio::time::sleep(self.ctx.policy.pause(self.failures)).await;
        self.failures = self.failures.saturating_add(1);
    }
}

struct Invoice {
    ctx: Ctx,
    hash: SwapHash,
    inner: Option<NodeStream<InvoiceUpdate>>,
    last: Option<InvoiceUpdate>,
    failures: u32,
    done: bool,
}

fn invoice_final(u: &InvoiceUpdate) -> bool {
    matches!(u.state, InvoiceState::Settled | InvoiceState::Canceled)
}

#[async_trait]
impl Resumable for Invoice {
    type Item = InvoiceUpdate;

    async fn next_item(&mut self) -> Option<NodeResult<InvoiceUpdate>> {
        while !self.done {
            if self.inner.is_none() {
                let node = Arc::clone(&self.ctx.node);
                let hash = self.hash;
                let sub = self
                    .ctx
                    .retry("subscribe_single_invoice", None, || {
                        node.subscribe_single_invoice(hash)
                    })
                    .await;
                match sub {
                    Ok(s) => self.inner = Some(s),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            match step(&mut self.inner).await {
                Step::Item(update) => {
                    self.failures = 0;
                    if self.last == Some(update) {
                        continue;
                    }
                    self.last = Some(update);
                    return Some(Ok(update));
                }
                Step::Ended if self.last.as_ref().is_some_and(invoice_final) => self.done = true,
                Step::Lost(e) => self.lost(e).await,
                Step::Ended => self.lost(None).await,
                Step::Fatal(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Invoice {
    async fn lost(&mut self, err: Option<NodeError>) {
        log_lost("invoice", err.as_ref());
        tokio::time::sleep(self.ctx.policy.pause(self.failures)).await;
        self.failures = self.failures.saturating_add(1);
    }
}

// ----- channel events -----

/// The events that turn the channel set `old` (by channel point) into `new`, in channel
/// point order: `Opened` for a new channel, `Closed` for a vanished one, `Updated` for a
/// changed one, followed by `Active`/`Inactive` when its active flag flipped. Pure.
pub fn diff_channels(old: &HashMap<String, Channel>, new: &[Channel]) -> Vec<ChannelEvent> {
    let mut events: Vec<(String, ChannelEvent)> = Vec::new();
    for c in new {
        let point = c.channel_point.clone();
        match old.get(&c.channel_point) {
            None => events.push((point, ChannelEvent::Opened(c.clone()))),
            Some(before) if before != c => {
                events.push((point.clone(), ChannelEvent::Updated(c.clone())));
                if before.active != c.active {
                    let channel_point = point.clone();
                    events.push((
                        point,
                        if c.active {
                            ChannelEvent::Active { channel_point }
                        } else {
                            ChannelEvent::Inactive { channel_point }
                        },
                    ));
                }
            }
            Some(_) => {}
        }
    }
    for (point, before) in old {
        if !new.iter().any(|c| &c.channel_point == point) {
            events.push((
                point.clone(),
                ChannelEvent::Closed {
                    chan_id: before.chan_id,
                    channel_point: point.clone(),
                },
            ));
        }
    }
    // Stable: events of one channel keep their order.
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events.into_iter().map(|(_, e)| e).collect()
}

/// Applies an event to the channel set.
fn apply_event(cache: &mut HashMap<String, Channel>, event: &ChannelEvent) {
    match event {
        ChannelEvent::Opened(c) | ChannelEvent::Updated(c) => {
            cache.insert(c.channel_point.clone(), c.clone());
        }
        ChannelEvent::Closed { channel_point, .. } => {
            cache.remove(channel_point);
        }
        ChannelEvent::Active { channel_point } => {
            if let Some(c) = cache.get_mut(channel_point) {
                c.active = true;
            }
        }
        ChannelEvent::Inactive { channel_point } => {
            if let Some(c) = cache.get_mut(channel_point) {
                c.active = false;
            }
        }
        ChannelEvent::PendingOpen { .. }
        | ChannelEvent::FullyResolved { .. }
        | ChannelEvent::FundingTimeout { .. } => {}
    }
}

fn by_point(channels: Vec<Channel>) -> HashMap<String, Channel> {
    channels
        .into_iter()
        .map(|c| (c.channel_point.clone(), c))
        .collect()
}

struct ChanEvents {
    ctx: Ctx,
    inner: Option<NodeStream<ChannelEvent>>,
    cache: HashMap<String, Channel>,
    pending: VecDeque<ChannelEvent>,
    failures: u32,
    done: bool,
}

#[async_trait]
impl Resumable for ChanEvents {
    type Item = ChannelEvent;

    async fn next_item(&mut self) -> Option<NodeResult<ChannelEvent>> {
        while !self.done {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.inner.is_none() {
                let node = Arc::clone(&self.ctx.node);
                let resynced = async {
                    // Subscribe first, then read: a change between the two is seen twice
                    // (as an event and in the list) rather than not at all.
                    let s = self
                        .ctx
                        .retry("subscribe_channel_events", None, || {
                            node.subscribe_channel_events()
                        })
                        .await?;
                    let list = self
                        .ctx
                        .retry("list_channels", None, || node.list_channels())
                        .await?;
                    Ok::<_, NodeError>((s, list))
                }
                .await;
                match resynced {
                    Ok((s, list)) => {
                        let events = diff_channels(&self.cache, &list);
                        tracing::info!(
                            changes = events.len(),
                            "channel events re-subscribed and resynced"
                        );
                        self.cache = by_point(list);
                        self.pending.extend(events);
                        self.inner = Some(s);
                        continue;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            match step(&mut self.inner).await {
                Step::Item(event) => {
                    self.failures = 0;
                    apply_event(&mut self.cache, &event);
                    return Some(Ok(event));
                }
                Step::Lost(e) => self.lost(e).await,
                Step::Ended => self.lost(None).await,
                Step::Fatal(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl ChanEvents {
    async fn lost(&mut self, err: Option<NodeError>) {
        log_lost("channel events", err.as_ref());
        tokio::time::sleep(self.ctx.policy.pause(self.failures)).await;
        self.failures = self.failures.saturating_add(1);
    }
}

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
mod tests;
