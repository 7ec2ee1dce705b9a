//! The stream state machines of [`ResilientNode`](super::ResilientNode): each one owns its
//! inner stream, notices a drop, re-subscribes (with a hint where the node takes one) and
//! passes on only what the consumer has not seen. The pure decisions (`admit_epoch`, the
//! resume hints, `diff_channels`) are public so they can be tested and reused.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use super::{Ctx, REMEMBERED_BLOCKS, REORG_SAFETY_BLOCKS, is_retryable};
use crate::domain::{BlockHeight, Channel, ChannelEvent, SwapHash};
use crate::lnd::error::NodeError;
use crate::lnd::port::{LightningNode, NodeResult, NodeStream};
use crate::lnd::types::{
    BlockEpoch, ConfRequest, ConfUpdate, InvoiceState, InvoiceUpdate, PaymentUpdate, SpendRequest,
    SpendUpdate,
};

/// Turns a stream state machine into a [`NodeStream`].
pub(super) fn into_stream<S: Resumable>(state: S) -> NodeStream<S::Item> {
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next_item().await?;
        Some((item, s))
    })
    .boxed()
}

/// A stream that knows how to continue after its inner stream broke.
#[async_trait]
pub(super) trait Resumable: Send + Sized + 'static {
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

pub(super) struct Epochs {
    pub(super) ctx: Ctx,
    pub(super) inner: Option<NodeStream<BlockEpoch>>,
    pub(super) delivered: VecDeque<BlockEpoch>,
    /// Blocks to deliver before reading on: a fetched gap, then the block after it.
    pub(super) pending: VecDeque<BlockEpoch>,
    pub(super) failures: u32,
    pub(super) done: bool,
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
pub(super) trait WatchKind: Send + 'static {
    type Req: Clone + Send + Sync + 'static;
    type Update: Clone + Send + 'static;
    const NAME: &'static str;
    /// Whether a drop takes back the event delivered before it: the watch first yields
    /// [`WatchKind::revoked`], then registers again and delivers the event anew if the chain
    /// still has it. A spend must be re-confirmed against the chain after a drop (a reorg
    /// during the outage could have removed it, and the new registration would then say
    /// nothing); a confirmation is not revoked.
    const REVOKE_ON_DROP: bool;
    /// The reorg notice a revoked event is taken back with.
    fn revoked() -> Self::Update;
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

pub(super) struct Conf;

impl WatchKind for Conf {
    type Req = ConfRequest;
    type Update = ConfUpdate;
    const NAME: &'static str = "register_confirmations";
    const REVOKE_ON_DROP: bool = false;

    fn revoked() -> ConfUpdate {
        ConfUpdate::Reorg
    }

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

pub(super) struct Spend;

impl WatchKind for Spend {
    type Req = SpendRequest;
    type Update = SpendUpdate;
    const NAME: &'static str = "register_spend";
    const REVOKE_ON_DROP: bool = true;

    fn revoked() -> SpendUpdate {
        SpendUpdate::Reorg
    }

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

pub(super) struct Watch<K: WatchKind> {
    pub(super) ctx: Ctx,
    pub(super) request: K::Req,
    pub(super) inner: Option<NodeStream<K::Update>>,
    /// The event delivered last (identity, height), until a reorg notice clears it.
    pub(super) delivered: Option<([u8; 32], BlockHeight)>,
    /// The height of an event revoked after a drop, kept for the re-registration's hint.
    pub(super) revoked_at: Option<BlockHeight>,
    pub(super) failures: u32,
    pub(super) done: bool,
}

#[async_trait]
impl<K: WatchKind> Resumable for Watch<K> {
    type Item = K::Update;

    async fn next_item(&mut self) -> Option<NodeResult<K::Update>> {
        while !self.done {
            if self.inner.is_none() {
                if K::REVOKE_ON_DROP
                    && let Some((_, height)) = self.delivered.take()
                {
                    self.revoked_at = Some(height);
                    return Some(Ok(K::revoked()));
                }
                let tip = self.ctx.tip();
                let event_at = self.delivered.map(|(_, h)| h).or(self.revoked_at);
                let req = K::resume(&self.request, event_at, tip);
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

pub(super) struct Payment {
    pub(super) ctx: Ctx,
    pub(super) hash: SwapHash,
    pub(super) inner: Option<NodeStream<PaymentUpdate>>,
    pub(super) last: Option<PaymentUpdate>,
    pub(super) failures: u32,
    pub(super) done: bool,
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

pub(super) struct Invoice {
    pub(super) ctx: Ctx,
    pub(super) hash: SwapHash,
    pub(super) inner: Option<NodeStream<InvoiceUpdate>>,
    pub(super) last: Option<InvoiceUpdate>,
    pub(super) failures: u32,
    pub(super) done: bool,
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

pub(super) fn by_point(channels: Vec<Channel>) -> HashMap<String, Channel> {
    channels
        .into_iter()
        .map(|c| (c.channel_point.clone(), c))
        .collect()
}

pub(super) struct ChanEvents {
    pub(super) ctx: Ctx,
    pub(super) inner: Option<NodeStream<ChannelEvent>>,
    pub(super) cache: HashMap<String, Channel>,
    pub(super) pending: VecDeque<ChannelEvent>,
    pub(super) failures: u32,
    pub(super) done: bool,
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
