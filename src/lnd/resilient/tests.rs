//! `ResilientNode` over an in-test node whose streams the test can break, with tokio's clock
//! paused so backoff pauses pass instantly and nothing depends on wall time. The node
//! ([`Fake`]) is also used by the daemon's node task tests.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::hashes::Hash as _;
use bitcoin::{Address, BlockHash, FeeRate, ScriptBuf, Transaction};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::*;
use crate::domain::{ChanId, Msat, Sat};
use crate::lnd::types::PaymentStatus;

type Tx<T> = mpsc::UnboundedSender<NodeResult<T>>;

/// The fake node's state; every field is what a test sets up or inspects.
/// The fake node's state.
#[derive(Default)]
pub(crate) struct State {
    /// Blocks by height, starting at [`FIRST`].
    pub(crate) chain: Vec<BlockEpoch>,
    /// While true, every call fails with a transient "connection refused".
    pub(crate) down: bool,
    /// Whether `register_block_epochs_since` replays (from the hint itself, as a duplicate).
    pub(crate) replay: bool,
    /// Whether `block_hash_at` answers (else it says it cannot, as the default does).
    pub(crate) serve_hashes: bool,
    pub(crate) epoch_subs: Vec<Tx<BlockEpoch>>,
    pub(crate) since_hints: Vec<Option<BlockHeight>>,
    pub(crate) conf_requests: Vec<ConfRequest>,
    pub(crate) conf_subs: Vec<Tx<ConfUpdate>>,
    /// Sent to each new confirmation registration.
    pub(crate) conf_on_register: Vec<ConfUpdate>,
    pub(crate) spend_requests: Vec<SpendRequest>,
    pub(crate) spend_subs: Vec<Tx<SpendUpdate>>,
    /// Sent to each new spend registration.
    pub(crate) spend_on_register: Vec<SpendUpdate>,
    pub(crate) channels: Vec<Channel>,
    pub(crate) chan_subs: Vec<Tx<ChannelEvent>>,
    /// Scripted `track_payment` streams, one per call.
    pub(crate) tracks: VecDeque<Vec<NodeResult<PaymentUpdate>>>,
    /// What `get_version` reports; `None` fails the call as unsupported.
    pub(crate) version: Option<NodeVersion>,
    /// Calls per method.
    pub(crate) calls: HashMap<&'static str, u32>,
    /// Transient failures each method returns before succeeding.
    pub(crate) fail_first: HashMap<&'static str, u32>,
}

const FIRST: u32 = 100;

pub(crate) fn block(height: u32, fork: u8) -> BlockEpoch {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&height.to_le_bytes());
    h[4] = fork;
    BlockEpoch {
        hash: BlockHash::from_byte_array(h),
        height: BlockHeight(height),
    }
}

/// A `LightningNode` whose chain, streams and failures the test drives.
#[derive(Clone, Default)]
pub(crate) struct Fake(pub(crate) Arc<Mutex<State>>);

fn refused(method: &'static str) -> NodeError {
    NodeError::new(NodeErrorKind::Transient, method, "connection refused")
}

fn stream<T: Send + 'static>(subs: &mut Vec<Tx<T>>) -> NodeStream<T> {
    let (tx, rx) = mpsc::unbounded_channel();
    subs.push(tx);
    UnboundedReceiverStream::new(rx).boxed()
}

impl Fake {
    pub(crate) fn new(tip: u32) -> Fake {
        let fake = Fake::default();
        fake.0.lock().unwrap().chain = (FIRST..=tip).map(|h| block(h, 0)).collect();
        fake
    }

    pub(crate) fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    /// Counts the call and fails it while the node is down or scripted to fail.
    fn enter(&self, method: &'static str) -> NodeResult<()> {
        let mut s = self.st();
        *s.calls.entry(method).or_default() += 1;
        if s.down {
            return Err(refused(method));
        }
        if let Some(n) = s.fail_first.get_mut(method)
            && *n > 0
        {
            *n -= 1;
            return Err(refused(method));
        }
        Ok(())
    }

    pub(crate) fn calls(&self, method: &'static str) -> u32 {
        self.st().calls.get(method).copied().unwrap_or(0)
    }

    pub(crate) fn tip(&self) -> BlockEpoch {
        *self.st().chain.last().unwrap()
    }

    /// Mines a block and notifies live subscribers.
    pub(crate) fn mine(&self) -> BlockEpoch {
        let mut s = self.st();
        let b = block(s.chain.last().map_or(FIRST, |b| b.height.0 + 1), 0);
        s.chain.push(b);
        s.epoch_subs.retain(|tx| tx.send(Ok(b)).is_ok());
        b
    }

    /// The connection breaks: every stream gets a transport error and the node stays
    /// unreachable until [`Fake::up`].
    pub(crate) fn crash(&self) {
        let mut s = self.st();
        s.down = true;
        let lost = |m| {
            NodeError::new(
                NodeErrorKind::Permanent,
                m,
                "Unknown: h2 protocol error: error reading a body from connection",
            )
        };
        for tx in s.epoch_subs.drain(..) {
            let _ = tx.send(Err(lost("register_block_epochs")));
        }
        for tx in s.conf_subs.drain(..) {
            let _ = tx.send(Err(lost("register_confirmations")));
        }
        for tx in s.spend_subs.drain(..) {
            let _ = tx.send(Err(lost("register_spend")));
        }
        for tx in s.chan_subs.drain(..) {
            let _ = tx.send(Err(lost("subscribe_channel_events")));
        }
    }

    pub(crate) fn up(&self) {
        self.st().down = false;
    }

    /// Brings the node back after `after` of (paused) time.
    pub(crate) fn up_after(&self, after: Duration) {
        let fake = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            fake.up();
        });
    }
}

fn unsupported<T>(method: &'static str) -> NodeResult<T> {
    Err(NodeError::new(
        NodeErrorKind::Permanent,
        method,
        "not in the fake",
    ))
}

#[async_trait]
impl LightningNode for Fake {
    async fn get_info(&self) -> NodeResult<NodeInfo> {
        self.enter("get_info")?;
        Ok(NodeInfo {
            pubkey: NodeId([2; 33]),
            alias: "fake".into(),
            block_height: self.tip().height,
            synced_to_chain: true,
            synced_to_graph: true,
            network: crate::domain::Network::Regtest,
            version: "0.21.2-beta".into(),
        })
    }
    async fn get_version(&self) -> NodeResult<NodeVersion> {
        self.enter("get_version")?;
        match self.st().version.clone() {
            Some(v) => Ok(v),
            None => unsupported("get_version"),
        }
    }
    async fn list_channels(&self) -> NodeResult<Vec<Channel>> {
        self.enter("list_channels")?;
        Ok(self.st().channels.clone())
    }
    async fn subscribe_channel_events(&self) -> NodeResult<NodeStream<ChannelEvent>> {
        self.enter("subscribe_channel_events")?;
        Ok(stream(&mut self.st().chan_subs))
    }
    async fn list_peers(&self) -> NodeResult<Vec<Peer>> {
        unsupported("list_peers")
    }
    async fn node_alias(&self, _: NodeId) -> NodeResult<Option<String>> {
        unsupported("node_alias")
    }
    async fn announced_channels(&self, _: NodeId) -> NodeResult<Vec<crate::domain::ChannelEdge>> {
        unsupported("announced_channels")
    }
    async fn channel_edge(
        &self,
        _: crate::domain::ChanId,
    ) -> NodeResult<crate::domain::ChannelEdge> {
        unsupported("channel_edge")
    }
    async fn forwarding_history(
        &self,
        _: u64,
        _: u64,
        _: u32,
        _: u32,
    ) -> NodeResult<ForwardingPage> {
        unsupported("forwarding_history")
    }
    async fn decode_invoice(&self, _: &str) -> NodeResult<DecodedInvoice> {
        unsupported("decode_invoice")
    }
    async fn pay(&self, _: &PaymentRequest) -> NodeResult<NodeStream<PaymentUpdate>> {
        unsupported("pay")
    }
    async fn track_payment(&self, _: SwapHash) -> NodeResult<NodeStream<PaymentUpdate>> {
        self.enter("track_payment")?;
        let items = self.st().tracks.pop_front().unwrap_or_default();
        Ok(futures::stream::iter(items).boxed())
    }
    async fn derive_next_key(&self, _: i32) -> NodeResult<KeyDescriptor> {
        self.enter("derive_next_key")?;
        unsupported("derive_next_key")
    }
    async fn derive_key(&self, _: KeyLocator) -> NodeResult<KeyDescriptor> {
        unsupported("derive_key")
    }
    async fn next_addr(&self) -> NodeResult<Address> {
        unsupported("next_addr")
    }
    async fn estimate_fee(&self, _: u32) -> NodeResult<FeeRate> {
        self.enter("estimate_fee")?;
        Ok(FeeRate::from_sat_per_kwu(253))
    }
    async fn publish_transaction(&self, _: &Transaction, _: &str) -> NodeResult<()> {
        self.enter("publish_transaction")?;
        Err(NodeError::new(
            NodeErrorKind::Permanent,
            "publish_transaction",
            "insufficient fee",
        ))
    }
    async fn sign_output_raw(&self, _: &SignRequest) -> NodeResult<Vec<Vec<u8>>> {
        unsupported("sign_output_raw")
    }
    async fn musig2_create_session(&self, _: &MuSig2SessionRequest) -> NodeResult<MuSig2Session> {
        unsupported("musig2_create_session")
    }
    async fn musig2_register_nonces(&self, _: [u8; 32], _: &[[u8; 66]]) -> NodeResult<bool> {
        unsupported("musig2_register_nonces")
    }
    async fn musig2_sign(&self, _: [u8; 32], _: [u8; 32], _: bool) -> NodeResult<Vec<u8>> {
        self.enter("musig2_sign")?;
        unsupported("musig2_sign")
    }
    async fn musig2_combine_sig(&self, _: [u8; 32], _: &[Vec<u8>]) -> NodeResult<Option<Vec<u8>>> {
        unsupported("musig2_combine_sig")
    }
    async fn musig2_cleanup(&self, _: [u8; 32]) -> NodeResult<()> {
        unsupported("musig2_cleanup")
    }
    async fn register_confirmations(&self, r: &ConfRequest) -> NodeResult<NodeStream<ConfUpdate>> {
        self.enter("register_confirmations")?;
        let mut s = self.st();
        s.conf_requests.push(r.clone());
        let out = stream(&mut s.conf_subs);
        let initial = s.conf_on_register.clone();
        if let Some(tx) = s.conf_subs.last() {
            for u in initial {
                let _ = tx.send(Ok(u));
            }
        }
        Ok(out)
    }
    async fn register_spend(&self, r: &SpendRequest) -> NodeResult<NodeStream<SpendUpdate>> {
        self.enter("register_spend")?;
        let mut s = self.st();
        s.spend_requests.push(r.clone());
        let out = stream(&mut s.spend_subs);
        let initial = s.spend_on_register.clone();
        if let Some(tx) = s.spend_subs.last() {
            for u in initial {
                let _ = tx.send(Ok(u));
            }
        }
        Ok(out)
    }
    async fn register_block_epochs(&self) -> NodeResult<NodeStream<BlockEpoch>> {
        self.enter("register_block_epochs")?;
        let mut s = self.st();
        s.since_hints.push(None);
        let tip = *s.chain.last().unwrap();
        let out = stream(&mut s.epoch_subs);
        let _ = s.epoch_subs.last().unwrap().send(Ok(tip));
        Ok(out)
    }
    async fn register_block_epochs_since(
        &self,
        since: BlockEpoch,
    ) -> NodeResult<NodeStream<BlockEpoch>> {
        if !self.st().replay {
            return self.register_block_epochs().await;
        }
        self.enter("register_block_epochs")?;
        let mut s = self.st();
        s.since_hints.push(Some(since.height));
        // Like lnd, from the hint on; including the hint itself checks de-duplication.
        let replay: Vec<BlockEpoch> = s
            .chain
            .iter()
            .filter(|b| b.height >= since.height)
            .copied()
            .collect();
        let out = stream(&mut s.epoch_subs);
        let tx = s.epoch_subs.last().unwrap();
        for b in replay {
            let _ = tx.send(Ok(b));
        }
        Ok(out)
    }
    async fn block_hash_at(&self, height: BlockHeight) -> NodeResult<Option<BlockHash>> {
        self.enter("block_hash_at")?;
        let s = self.st();
        if !s.serve_hashes {
            return Ok(None);
        }
        Ok(s.chain.iter().find(|b| b.height == height).map(|b| b.hash))
    }
    async fn add_hold_invoice(&self, _: &HoldInvoiceRequest) -> NodeResult<HoldInvoice> {
        unsupported("add_hold_invoice")
    }

    async fn add_invoice(&self, _: &crate::lnd::types::InvoiceRequest) -> NodeResult<HoldInvoice> {
        unsupported("add_invoice")
    }
    async fn settle_invoice(&self, _: Preimage) -> NodeResult<()> {
        unsupported("settle_invoice")
    }
    async fn cancel_invoice(&self, _: SwapHash) -> NodeResult<()> {
        unsupported("cancel_invoice")
    }
    async fn subscribe_single_invoice(&self, _: SwapHash) -> NodeResult<NodeStream<InvoiceUpdate>> {
        unsupported("subscribe_single_invoice")
    }
}

fn resilient(fake: &Fake) -> ResilientNode {
    ResilientNode::new(Arc::new(fake.clone()))
}

/// The next item; a stream that stays silent fails the test (the clock is paused, so the
/// hour passes at once when nothing else can happen) instead of hanging it.
async fn next<T>(s: &mut NodeStream<T>) -> T {
    tokio::time::timeout(Duration::from_secs(3_600), s.next())
        .await
        .expect("the stream stayed silent")
        .expect("stream ended")
        .expect("stream error")
}

#[test]
fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
    let p = RetryPolicy::default();
    assert_eq!(p.delay(0, 1.0), p.initial);
    assert_eq!(p.delay(0, 0.0), p.initial / 2);
    assert_eq!(p.delay(1, 1.0), p.initial * 2);
    let mut previous = Duration::ZERO;
    for attempt in 0..64 {
        for jitter in [0.0, 0.3, 1.0, 7.0, -1.0] {
            let d = p.delay(attempt, jitter);
            assert!(d <= p.max, "attempt {attempt}: {d:?}");
            assert!(d >= p.delay(attempt, 0.0));
        }
        let d = p.delay(attempt, 1.0);
        assert!(d >= previous, "not monotonic at {attempt}");
        previous = d;
    }
    assert_eq!(p.delay(20, 1.0), p.max);
    assert_eq!(p.delay(u32::MAX, 0.0), p.max / 2);
}

#[test]
fn epochs_are_admitted_once_in_order_and_reorgs_pass() {
    let mut d = VecDeque::new();
    assert_eq!(admit_epoch(&mut d, block(10, 0)), Admit::Next);
    assert_eq!(admit_epoch(&mut d, block(11, 0)), Admit::Next);
    assert_eq!(admit_epoch(&mut d, block(11, 0)), Admit::Duplicate);
    assert_eq!(admit_epoch(&mut d, block(10, 0)), Admit::Duplicate);
    assert_eq!(admit_epoch(&mut d, block(14, 0)), Admit::Gap { missing: 2 });
    // A competing block at 14 replaces the remembered one; its successor follows it.
    assert_eq!(admit_epoch(&mut d, block(14, 1)), Admit::Reorg);
    assert_eq!(d.back(), Some(&block(14, 1)));
    assert_eq!(admit_epoch(&mut d, block(14, 1)), Admit::Duplicate);
    assert_eq!(admit_epoch(&mut d, block(15, 1)), Admit::Next);
    assert_eq!(admit_epoch(&mut d, block(3, 0)), Admit::Duplicate);
    for h in 16..400 {
        admit_epoch(&mut d, block(h, 1));
    }
    assert!(d.len() <= REMEMBERED_BLOCKS);
}

#[test]
fn resume_hints_cover_what_the_outage_could_hide() {
    let h = BlockHeight;
    // Nothing delivered: the tip before the drop less num_confs and the reorg margin.
    assert_eq!(conf_resume_hint(h(150), 3, None, h(200)), h(191));
    // Never below the caller's hint, nor below zero.
    assert_eq!(conf_resume_hint(h(198), 3, None, h(200)), h(198));
    assert_eq!(conf_resume_hint(h(0), 3, None, h(2)), h(0));
    // Delivered: its height, so lnd finds it again.
    assert_eq!(conf_resume_hint(h(150), 3, Some(h(195)), h(200)), h(195));
    assert_eq!(spend_resume_hint(h(150), None, h(200)), h(194));
    assert_eq!(spend_resume_hint(h(197), None, h(200)), h(197));
    assert_eq!(spend_resume_hint(h(150), Some(h(180)), h(200)), h(180));
}

#[tokio::test(start_paused = true)]
async fn every_block_height_reaches_the_consumer_once_across_a_drop() {
    let fake = Fake::new(100);
    fake.st().replay = true;
    let node = resilient(&fake);
    let mut epochs = node.register_block_epochs().await.unwrap();
    let mut seen = vec![next(&mut epochs).await];
    fake.mine();
    fake.mine();
    seen.push(next(&mut epochs).await);
    seen.push(next(&mut epochs).await);

    fake.crash();
    for _ in 0..3 {
        fake.mine();
    }
    fake.up_after(Duration::from_secs(20));
    for _ in 0..3 {
        seen.push(next(&mut epochs).await);
    }
    fake.mine();
    seen.push(next(&mut epochs).await);

    let heights: Vec<u32> = seen.iter().map(|b| b.height.0).collect();
    assert_eq!(heights, (100..=106).collect::<Vec<_>>());
    assert_eq!(seen, (100..=106).map(|h| block(h, 0)).collect::<Vec<_>>());
    // It resumed from the last block it had delivered, after retrying while lnd was down.
    let hints = fake.st().since_hints.clone();
    assert_eq!(hints.first(), Some(&None));
    assert_eq!(hints.last(), Some(&Some(BlockHeight(102))));
    assert!(fake.calls("register_block_epochs") > 2);
    assert_eq!(node.tip(), BlockHeight(106));
}

#[tokio::test(start_paused = true)]
async fn without_replay_missed_blocks_are_fetched_or_the_gap_is_skipped() {
    for serve_hashes in [true, false] {
        let fake = Fake::new(100);
        fake.st().serve_hashes = serve_hashes;
        let node = resilient(&fake);
        let mut epochs = node.register_block_epochs().await.unwrap();
        assert_eq!(next(&mut epochs).await, block(100, 0));
        fake.crash();
        fake.mine();
        fake.mine();
        fake.mine();
        fake.up_after(Duration::from_secs(2));
        let mut seen = vec![next(&mut epochs).await];
        while seen.last().unwrap().height.0 < 103 {
            seen.push(next(&mut epochs).await);
        }
        fake.mine();
        seen.push(next(&mut epochs).await);
        let want: Vec<BlockEpoch> = if serve_hashes {
            (101..=104).map(|h| block(h, 0)).collect()
        } else {
            vec![block(103, 0), block(104, 0)]
        };
        assert_eq!(seen, want, "serve_hashes: {serve_hashes}");
    }
}

fn confirmed(height: u32) -> ConfUpdate {
    ConfUpdate::Confirmed {
        tx: Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![],
            output: vec![],
        },
        block_hash: block(height, 0).hash,
        block_height: BlockHeight(height),
        tx_index: 1,
    }
}

fn conf_request() -> ConfRequest {
    ConfRequest {
        txid: None,
        script: ScriptBuf::new(),
        num_confs: 3,
        height_hint: BlockHeight(150),
    }
}

#[tokio::test(start_paused = true)]
async fn a_conf_watch_is_registered_again_from_the_tip_it_had_seen() {
    let fake = Fake::new(200);
    let node = resilient(&fake);
    // The node learns the tip as any caller would.
    assert_eq!(
        node.get_info().await.unwrap().block_height,
        BlockHeight(200)
    );
    let mut confs = node.register_confirmations(&conf_request()).await.unwrap();
    fake.crash();
    for _ in 0..5 {
        fake.mine();
    }
    fake.st().conf_on_register = vec![confirmed(203)];
    fake.up_after(Duration::from_secs(3));
    assert_eq!(next(&mut confs).await, confirmed(203));
    let requests = fake.st().conf_requests.clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].height_hint, BlockHeight(150));
    assert_eq!(
        requests[1].height_hint,
        BlockHeight(200 - 3 - REORG_SAFETY_BLOCKS)
    );
    assert_eq!(requests[1].num_confs, 3);
}

#[tokio::test(start_paused = true)]
async fn a_delivered_confirmation_is_not_repeated_after_a_drop_but_a_reorg_is_seen() {
    let fake = Fake::new(200);
    fake.st().conf_on_register = vec![confirmed(195)];
    let node = resilient(&fake);
    let mut confs = node.register_confirmations(&conf_request()).await.unwrap();
    assert_eq!(next(&mut confs).await, confirmed(195));
    fake.crash();
    // The re-registration reports the same confirmation again, then a reorg.
    fake.st().conf_on_register = vec![confirmed(195), ConfUpdate::Reorg];
    fake.up();
    assert_eq!(next(&mut confs).await, ConfUpdate::Reorg);
    let requests = fake.st().conf_requests.clone();
    assert_eq!(requests[1].height_hint, BlockHeight(195));
}

#[tokio::test(start_paused = true)]
async fn a_spend_watch_is_registered_again_and_its_spend_not_repeated() {
    let fake = Fake::new(300);
    let node = resilient(&fake);
    node.get_info().await.unwrap();
    let request = SpendRequest {
        outpoint: None,
        script: ScriptBuf::new(),
        height_hint: BlockHeight(250),
    };
    let mut spends = node.register_spend(&request).await.unwrap();
    fake.crash();
    let spent = SpendUpdate::Spent {
        outpoint: bitcoin::OutPoint::null(),
        spending_tx: Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::from_consensus(302),
            input: vec![],
            output: vec![],
        },
        input_index: 0,
        height: BlockHeight(302),
    };
    fake.st().spend_on_register = vec![spent.clone()];
    fake.up_after(Duration::from_secs(1));
    assert_eq!(next(&mut spends).await, spent);
    assert_eq!(
        fake.st().spend_requests[1].height_hint,
        BlockHeight(300 - REORG_SAFETY_BLOCKS)
    );
    // Another drop: the spend is taken back (a reorg during the outage could have removed
    // it), the watch is registered from the spend's height, and the spend is delivered again
    // because the chain still has it.
    fake.crash();
    fake.st().spend_on_register = vec![spent.clone()];
    fake.up();
    assert_eq!(next(&mut spends).await, SpendUpdate::Reorg);
    assert_eq!(next(&mut spends).await, spent);
    assert_eq!(fake.st().spend_requests[2].height_hint, BlockHeight(302));
    // A drop after which the chain no longer has the spend: taken back, never delivered again.
    fake.crash();
    fake.st().spend_on_register = Vec::new();
    fake.up();
    assert_eq!(next(&mut spends).await, SpendUpdate::Reorg);
    let quiet = tokio::time::timeout(Duration::from_secs(30), spends.next()).await;
    assert!(quiet.is_err(), "the vanished spend came back");
    assert_eq!(fake.st().spend_requests[3].height_hint, BlockHeight(302));
}

fn channel(point: &str, local: u64, active: bool) -> Channel {
    Channel {
        chan_id: ChanId(u64::from(point.as_bytes()[0])),
        channel_point: point.to_owned(),
        peer: NodeId([3; 33]),
        peer_alias: None,
        capacity: Sat(1_000_000),
        local_balance: Sat(local),
        remote_balance: Sat(1_000_000 - local),
        local_reserve: Sat(10_000),
        remote_reserve: Sat(10_000),
        commit_fee: Sat(0),
        active,
        private: false,
        initiator: true,
        pending_htlc_count: 0,
        pending_htlc_amount: Sat(0),
        total_sent: Sat(0),
        total_received: Sat(0),
    }
}

#[test]
fn the_channel_diff_names_every_change() {
    let old = by_point(vec![channel("a:0", 500_000, true), channel("b:0", 1, true)]);
    let new = vec![
        channel("a:0", 400_000, false),
        channel("c:0", 7, true),
        channel("d:0", 7, true),
    ];
    let events = diff_channels(&old, &new);
    assert_eq!(
        events,
        vec![
            ChannelEvent::Updated(channel("a:0", 400_000, false)),
            ChannelEvent::Inactive {
                channel_point: "a:0".into()
            },
            ChannelEvent::Closed {
                chan_id: ChanId(u64::from(b'b')),
                channel_point: "b:0".into()
            },
            ChannelEvent::Opened(channel("c:0", 7, true)),
            ChannelEvent::Opened(channel("d:0", 7, true)),
        ]
    );
    assert!(diff_channels(&by_point(new.clone()), &new).is_empty());
}

#[tokio::test(start_paused = true)]
async fn channel_events_resync_what_changed_while_down() {
    let fake = Fake::new(100);
    fake.st().channels = vec![channel("a:0", 500_000, true), channel("b:0", 1, true)];
    let node = resilient(&fake);
    let mut events = node.subscribe_channel_events().await.unwrap();
    // A live event passes through.
    let live = ChannelEvent::Updated(channel("a:0", 450_000, true));
    fake.st().chan_subs[0].send(Ok(live.clone())).unwrap();
    assert_eq!(next(&mut events).await, live);

    fake.crash();
    fake.st().channels = vec![channel("a:0", 300_000, true), channel("c:0", 5, true)];
    fake.up_after(Duration::from_secs(1));
    let got = vec![
        next(&mut events).await,
        next(&mut events).await,
        next(&mut events).await,
    ];
    assert_eq!(
        got,
        vec![
            ChannelEvent::Updated(channel("a:0", 300_000, true)),
            ChannelEvent::Closed {
                chan_id: ChanId(u64::from(b'b')),
                channel_point: "b:0".into()
            },
            ChannelEvent::Opened(channel("c:0", 5, true)),
        ]
    );
    // And it follows the new subscription afterwards.
    let later = ChannelEvent::Inactive {
        channel_point: "c:0".into(),
    };
    fake.st().chan_subs[0].send(Ok(later.clone())).unwrap();
    assert_eq!(next(&mut events).await, later);
}

fn payment(status: PaymentStatus) -> PaymentUpdate {
    PaymentUpdate {
        hash: SwapHash([9; 32]),
        status,
        amount: Msat(1_000_000),
        fee: Msat(10),
        htlcs_in_flight: 1,
    }
}

#[tokio::test(start_paused = true)]
async fn payment_tracking_reattaches_until_the_outcome() {
    let fake = Fake::new(100);
    let lost = NodeError::new(
        NodeErrorKind::Transient,
        "track_payment",
        "transport is closing",
    );
    let done = payment(PaymentStatus::Succeeded {
        preimage: Preimage([1; 32]),
    });
    fake.st().tracks = VecDeque::from([
        vec![Ok(payment(PaymentStatus::InFlight)), Err(lost)],
        // The re-attached stream starts with the current state, which was already seen.
        vec![Ok(payment(PaymentStatus::InFlight)), Ok(done.clone())],
    ]);
    let node = resilient(&fake);
    let updates: Vec<PaymentUpdate> = node
        .track_payment(SwapHash([9; 32]))
        .await
        .unwrap()
        .map(|u| u.unwrap())
        .collect()
        .await;
    assert_eq!(updates, vec![payment(PaymentStatus::InFlight), done]);
    assert_eq!(fake.calls("track_payment"), 2);
}

#[tokio::test(start_paused = true)]
async fn unary_calls_retry_transient_errors_within_their_bounds() {
    let fake = Fake::new(100);
    fake.st().fail_first = HashMap::from([
        ("estimate_fee", 3),
        ("derive_next_key", 5),
        ("musig2_sign", 5),
        ("get_info", 100),
    ]);
    let node = resilient(&fake);
    assert!(node.estimate_fee(6).await.is_ok());
    assert_eq!(fake.calls("estimate_fee"), 4);

    // Not idempotent: bounded tighter. Never repeated: one call.
    let err = node.derive_next_key(42).await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(fake.calls("derive_next_key"), 2);
    assert!(node.musig2_sign([0; 32], [0; 32], false).await.is_err());
    assert_eq!(fake.calls("musig2_sign"), 1);

    // A permanent error is returned at once.
    assert!(
        node.publish_transaction(
            &Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![],
                output: vec![],
            },
            "x"
        )
        .await
        .is_err()
    );
    assert_eq!(fake.calls("publish_transaction"), 1);

    // Idempotent calls give up after the policy's attempts.
    assert!(node.get_info().await.unwrap_err().is_transient());
    assert_eq!(
        fake.calls("get_info"),
        RetryPolicy::default().idempotent_attempts
    );
}

#[test]
fn connection_loss_is_retryable_but_content_errors_are_not() {
    let e = |kind, msg: &str| NodeError::new(kind, "m", msg.to_owned());
    assert!(is_retryable(&e(NodeErrorKind::Transient, "anything")));
    assert!(is_retryable(&e(
        NodeErrorKind::Permanent,
        "Unknown: h2 protocol error: error reading a body from connection"
    )));
    assert!(!is_retryable(&e(
        NodeErrorKind::Permanent,
        "insufficient fee"
    )));
    assert!(!is_retryable(&e(
        NodeErrorKind::PermissionDenied,
        "connection verification failed"
    )));
    assert!(!is_retryable(&e(
        NodeErrorKind::NotFound,
        "payment isn't initiated"
    )));
}
