//! Streams over the world: chain notifications (confirmations, spends, block epochs), payment,
//! invoice and channel updates.
//!
//! Every stream is a [`Watcher`]: a small state machine that, woken by a [`WorldEvent`] (or by
//! a lagged receiver, which means "something happened"), re-reads the world under the lock and
//! emits what changed since it last looked. So nothing is missed and nothing is reported twice,
//! however far behind a subscriber is.

use std::collections::VecDeque;

use bitcoin::{BlockHash, OutPoint, Transaction, Txid};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use super::{NodeIdx, SharedWorld, World, WorldEvent, lock};
use crate::domain::{BlockHeight, ChannelEvent};
use crate::lnd::NodeStream;
use crate::lnd::types::{
    BlockEpoch, ConfRequest, ConfUpdate, InvoiceUpdate, PaymentUpdate, SpendRequest, SpendUpdate,
};
use crate::simnet::chain::TxStatus;

/// Why a watcher is polled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wake<'a> {
    /// The stream starts.
    Start,
    /// The receiver lagged: events were lost, so re-read everything.
    Lagged,
    /// An event the watcher wants.
    Event(&'a WorldEvent),
}

/// Something a stream watches.
pub(crate) trait Watcher: Send + 'static {
    /// What the stream yields.
    type Item: Send + 'static;
    /// Whether `event` may concern this watcher (cheap, without the lock).
    fn wants(&self, event: &WorldEvent) -> bool;
    /// Re-reads the world and returns what to emit.
    fn poll(&mut self, world: &World, wake: Wake<'_>) -> Vec<Self::Item>;
    /// Whether the stream has ended.
    fn done(&self) -> bool {
        false
    }
}

/// Turns a watcher into a port stream: subscribe first, then read the current state, so no
/// change falls between the two.
pub(crate) fn stream<W: Watcher>(world: SharedWorld, mut watcher: W) -> NodeStream<W::Item> {
    let (rx, first) = {
        let guard = lock(&world);
        let rx = guard.subscribe();
        let first: VecDeque<W::Item> = watcher.poll(&guard, Wake::Start).into();
        (rx, first)
    };
    futures::stream::unfold(
        (world, rx, watcher, first),
        |(world, mut rx, mut watcher, mut queue)| async move {
            loop {
                if let Some(item) = queue.pop_front() {
                    return Some((Ok(item), (world, rx, watcher, queue)));
                }
                if watcher.done() {
                    return None;
                }
                let event = match rx.recv().await {
                    Ok(event) if watcher.wants(&event) => Some(event),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return None,
                };
                let wake = event.as_ref().map_or(Wake::Lagged, Wake::Event);
                let guard = lock(&world);
                queue.extend(watcher.poll(&guard, wake));
            }
        },
    )
    .boxed()
}

fn is_block(event: &WorldEvent) -> bool {
    matches!(
        event,
        WorldEvent::BlockConnected { .. } | WorldEvent::BlockDisconnected { .. }
    )
}

/// Where a watched transaction confirmed.
struct Conf {
    tx: Transaction,
    block_hash: BlockHash,
    height: BlockHeight,
    index: u32,
}

fn confirmed(world: &World, txid: &Txid) -> Option<Conf> {
    match world.chain().tx(txid)? {
        TxStatus::Confirmed {
            tx,
            location,
            block_hash,
        } => Some(Conf {
            tx: tx.clone(),
            block_hash,
            height: location.height,
            index: location.index,
        }),
        TxStatus::Mempool(_) => None,
    }
}

/// `RegisterConfirmationsNtfn`: Confirmed once the transaction (by txid, or the first paying
/// the script at or above the hint) has enough confirmations; Reorg if its block goes away.
pub(crate) struct ConfWatcher {
    pub(crate) request: ConfRequest,
    pub(crate) reported: Option<BlockHash>,
}

impl ConfWatcher {
    fn find(&self, world: &World) -> Option<Conf> {
        if let Some(txid) = &self.request.txid {
            return confirmed(world, txid);
        }
        let hint = self.request.height_hint;
        world
            .chain()
            .outputs_to_script(&self.request.script)
            .into_iter()
            .filter(|o| o.height >= hint)
            .find_map(|o| confirmed(world, &o.outpoint.txid))
    }
}

impl Watcher for ConfWatcher {
    type Item = ConfUpdate;

    fn wants(&self, event: &WorldEvent) -> bool {
        is_block(event)
    }

    fn poll(&mut self, world: &World, _: Wake<'_>) -> Vec<ConfUpdate> {
        let found = self.find(world);
        let mut out = Vec::new();
        if let Some(hash) = self.reported
            && found.as_ref().map(|c| c.block_hash) != Some(hash)
        {
            self.reported = None;
            out.push(ConfUpdate::Reorg);
        }
        if self.reported.is_none()
            && let Some(c) = found
        {
            let confs = world.height().0.saturating_sub(c.height.0) + 1;
            if confs >= self.request.num_confs.max(1) {
                self.reported = Some(c.block_hash);
                out.push(ConfUpdate::Confirmed {
                    tx: c.tx,
                    block_hash: c.block_hash,
                    block_height: c.height,
                    tx_index: c.index,
                });
            }
        }
        out
    }
}

/// `RegisterSpendNtfn`: Spent when a confirmed transaction spends the outpoint (or, without
/// one, an output paying the script at or above the hint); Reorg if that spend goes away.
pub(crate) struct SpendWatcher {
    pub(crate) request: SpendRequest,
    /// The block that holds the spend reported last: a spend reconfirmed in another block
    /// (the same transaction after a reorg) is a Reorg and a new Spent, as lnd reports it.
    pub(crate) reported: Option<BlockHash>,
}

impl SpendWatcher {
    fn find(&self, world: &World) -> Option<(SpendUpdate, BlockHash)> {
        let chain = world.chain();
        let outpoints: Vec<OutPoint> = match self.request.outpoint {
            Some(op) => vec![op],
            None => chain
                .outputs_to_script(&self.request.script)
                .into_iter()
                .filter(|o| o.height >= self.request.height_hint)
                .map(|o| o.outpoint)
                .collect(),
        };
        outpoints.into_iter().find_map(|outpoint| {
            let spend = chain.spender(&outpoint)?;
            let height = spend.height?;
            let conf = confirmed(world, &spend.txid)?;
            Some((
                SpendUpdate::Spent {
                    outpoint,
                    spending_tx: conf.tx,
                    input_index: spend.input_index,
                    height,
                },
                conf.block_hash,
            ))
        })
    }
}

impl Watcher for SpendWatcher {
    type Item = SpendUpdate;

    fn wants(&self, event: &WorldEvent) -> bool {
        is_block(event)
    }

    fn poll(&mut self, world: &World, _: Wake<'_>) -> Vec<SpendUpdate> {
        let found = self.find(world);
        let mut out = Vec::new();
        if let Some(hash) = self.reported
            && found.as_ref().map(|(_, h)| *h) != Some(hash)
        {
            self.reported = None;
            out.push(SpendUpdate::Reorg);
        }
        if self.reported.is_none()
            && let Some((update, hash)) = found
        {
            self.reported = Some(hash);
            out.push(update);
        }
        out
    }
}

/// `RegisterBlockEpochNtfn`: the tip first, then every new block; after a reorg, the new tip.
pub(crate) struct EpochWatcher {
    pub(crate) last: Option<BlockEpoch>,
}

impl Watcher for EpochWatcher {
    type Item = BlockEpoch;

    fn wants(&self, event: &WorldEvent) -> bool {
        is_block(event)
    }

    fn poll(&mut self, world: &World, _: Wake<'_>) -> Vec<BlockEpoch> {
        let chain = world.chain();
        let tip = BlockEpoch {
            hash: chain.tip_hash(),
            height: chain.height(),
        };
        let out = match self.last {
            None => vec![tip],
            Some(last) if last == tip => Vec::new(),
            Some(last) if chain.block_hash(last.height) == Some(last.hash) => (last.height.0 + 1
                ..=tip.height.0)
                .filter_map(|h| {
                    chain.block_hash(BlockHeight(h)).map(|hash| BlockEpoch {
                        hash,
                        height: BlockHeight(h),
                    })
                })
                .collect(),
            Some(_) => vec![tip],
        };
        if let Some(e) = out.last() {
            self.last = Some(*e);
        }
        out
    }
}

/// `TrackPaymentV2`: every change of a payment until its outcome.
pub(crate) struct PaymentWatcher {
    pub(crate) node: NodeIdx,
    pub(crate) hash: crate::domain::SwapHash,
    pub(crate) last: Option<PaymentUpdate>,
}

impl Watcher for PaymentWatcher {
    type Item = PaymentUpdate;

    fn wants(&self, event: &WorldEvent) -> bool {
        matches!(event, WorldEvent::PaymentUpdated { node, hash } if *node == self.node && *hash == self.hash)
    }

    fn poll(&mut self, world: &World, _: Wake<'_>) -> Vec<PaymentUpdate> {
        match world.payment_update(self.node, self.hash) {
            Some(update) if self.last.as_ref() != Some(&update) => {
                self.last = Some(update.clone());
                vec![update]
            }
            _ => Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.last.as_ref().is_some_and(|u| u.status.is_final())
    }
}

/// `SubscribeSingleInvoice`: every state of an invoice until it is settled or canceled.
pub(crate) struct InvoiceWatcher {
    pub(crate) node: NodeIdx,
    pub(crate) hash: crate::domain::SwapHash,
    pub(crate) last: Option<InvoiceUpdate>,
}

impl Watcher for InvoiceWatcher {
    type Item = InvoiceUpdate;

    fn wants(&self, event: &WorldEvent) -> bool {
        matches!(event, WorldEvent::InvoiceUpdated { node, hash } if *node == self.node && *hash == self.hash)
    }

    fn poll(&mut self, world: &World, _: Wake<'_>) -> Vec<InvoiceUpdate> {
        match world.invoice_update(self.node, self.hash) {
            Some(update) if self.last != Some(update) => {
                self.last = Some(update);
                vec![update]
            }
            _ => Vec::new(),
        }
    }

    fn done(&self) -> bool {
        use crate::lnd::types::InvoiceState;
        self.last
            .is_some_and(|u| matches!(u.state, InvoiceState::Settled | InvoiceState::Canceled))
    }
}

/// `SubscribeChannelEvents`: an `Updated` event whenever a channel of the node changes
/// (balances, HTLCs, activity). Starts with nothing, as lnd's stream does.
pub(crate) struct ChannelWatcher {
    pub(crate) node: NodeIdx,
}

impl Watcher for ChannelWatcher {
    type Item = ChannelEvent;

    fn wants(&self, event: &WorldEvent) -> bool {
        matches!(event, WorldEvent::ChannelUpdated { node, .. } if *node == self.node)
    }

    fn poll(&mut self, world: &World, wake: Wake<'_>) -> Vec<ChannelEvent> {
        let only = match wake {
            // lnd's stream starts with nothing; callers read `list_channels` first.
            Wake::Start => return Vec::new(),
            Wake::Event(WorldEvent::ChannelUpdated { chan_id, .. }) => Some(*chan_id),
            Wake::Event(_) => return Vec::new(),
            // Events were lost: report the current state of every channel instead.
            Wake::Lagged => None,
        };
        world
            .channels()
            .iter()
            .filter(|c| c.has(self.node) && only.is_none_or(|id| c.chan_id == id))
            .filter_map(|c| world.channel_view(self.node, c))
            .map(ChannelEvent::Updated)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bitcoin::FeeRate;

    use super::*;
    use crate::domain::Sat;
    use crate::simnet::world::{AddressKind, WorldConfig};

    fn funded() -> (World, Transaction, bitcoin::ScriptBuf, BlockHeight) {
        let mut world = World::new(WorldConfig::default_topology(2, 1)).unwrap();
        let sluice = world.node_index("sluice").unwrap();
        let lp = world.node_index("loop").unwrap();
        let addr = world.new_address(sluice, AddressKind::P2wpkh).unwrap();
        let hint = world.height();
        let tx = world
            .send_to_address(lp, &addr, Sat(10_000), FeeRate::from_sat_per_kwu(1_000))
            .unwrap();
        (world, tx, addr.script_pubkey(), hint)
    }

    #[test]
    fn confirmations_wait_for_the_depth_and_reorg_only_when_the_block_goes() {
        let (mut world, tx, script, hint) = funded();
        let mut w = ConfWatcher {
            request: ConfRequest {
                txid: None,
                script,
                num_confs: 3,
                height_hint: hint,
            },
            reported: None,
        };
        assert!(w.poll(&world, Wake::Start).is_empty());
        world.mine(2);
        assert!(w.poll(&world, Wake::Start).is_empty());
        world.mine(1);
        let got = w.poll(&world, Wake::Start);
        assert!(
            matches!(&got[..], [ConfUpdate::Confirmed { tx: t, block_height, .. }]
                if *t == tx && block_height.0 == hint.0 + 1),
            "{got:?}"
        );
        assert!(w.poll(&world, Wake::Start).is_empty(), "reported once");
        // Losing a later block keeps the transaction's block: no reorg.
        world.reorg(1).unwrap();
        assert!(w.poll(&world, Wake::Start).is_empty());
        world.reorg(2).unwrap();
        assert_eq!(w.poll(&world, Wake::Start), vec![ConfUpdate::Reorg]);
    }

    #[test]
    fn a_spend_is_found_by_script_alone() {
        let (mut world, tx, _, hint) = funded();
        world.mine(1);
        let spent = tx.input[0].previous_output;
        let prev_script = world
            .chain()
            .tx(&spent.txid)
            .and_then(|s| match s {
                TxStatus::Confirmed { tx, .. } => {
                    Some(tx.output[spent.vout as usize].script_pubkey.clone())
                }
                TxStatus::Mempool(_) => None,
            })
            .unwrap();
        let mut w = SpendWatcher {
            request: SpendRequest {
                outpoint: None,
                script: prev_script,
                height_hint: BlockHeight(0),
            },
            reported: None,
        };
        let got = w.poll(&world, Wake::Start);
        assert!(
            matches!(&got[..], [SpendUpdate::Spent { outpoint, spending_tx, height, .. }]
                if *outpoint == spent && *spending_tx == tx && height.0 == hint.0 + 1),
            "{got:?}"
        );
    }
}
