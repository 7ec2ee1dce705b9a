//! Channels between simulated nodes: balances in millisatoshis, reserves, fee policies,
//! pending HTLCs, and the route search over the channel graph.
//!
//! An HTLC takes its amount out of the sender's balance when it is locked; settling credits
//! the receiver, failing returns it. So `local_balance` excludes in-flight HTLCs, as lnd's does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use bitcoin::OutPoint;

use super::{NodeIdx, World, WorldError};
use crate::domain::{ChanId, Channel, Msat, NodeId, Ppm, Sat, SwapHash};

/// The most HTLCs one side may have pending on a channel (BOLT 2's limit).
pub const MAX_ACCEPTED_HTLCS: usize = 483;

/// What a node charges to forward over one of its channels, and the CLTV delta it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    /// The fixed fee per forward, msat.
    pub base_msat: u64,
    /// The proportional fee.
    pub ppm: Ppm,
    /// Blocks the node wants between the incoming and outgoing HTLC expiries.
    pub cltv_delta: u32,
}

impl Default for FeePolicy {
    /// lnd's defaults: 1 sat base, 1 ppm, 80 blocks.
    fn default() -> Self {
        FeePolicy {
            base_msat: 1_000,
            ppm: Ppm(1),
            cltv_delta: 80,
        }
    }
}

impl FeePolicy {
    /// The policy as lnd's graph reports it (fields narrowed to the graph's widths).
    pub fn as_peer_policy(&self) -> crate::domain::PeerPolicy {
        crate::domain::PeerPolicy {
            fee_base_msat: u32::try_from(self.base_msat).unwrap_or(u32::MAX),
            fee_ppm: u32::try_from(self.ppm.0).unwrap_or(u32::MAX),
            cltv_delta: u16::try_from(self.cltv_delta).unwrap_or(u16::MAX),
        }
    }

    /// The fee to forward `amount` (msat).
    pub fn fee(&self, amount: u64) -> u64 {
        let prop = (u128::from(amount) * u128::from(self.ppm.0)) / 1_000_000;
        self.base_msat
            .saturating_add(u64::try_from(prop).unwrap_or(u64::MAX))
    }
}

/// An HTLC locked on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingHtlc {
    /// The payment it belongs to.
    pub hash: SwapHash,
    /// Its amount, msat.
    pub amount_msat: u64,
    /// Whether it was offered by end `a` (the initiator).
    pub from_a: bool,
}

/// One channel of the world, seen from both ends (`a` opened it).
#[derive(Debug, Clone)]
pub struct ChannelState {
    /// The short channel id of the funding output.
    pub chan_id: ChanId,
    /// The funding outpoint.
    pub outpoint: OutPoint,
    /// The opener.
    pub a: NodeIdx,
    /// The other end.
    pub b: NodeIdx,
    /// The capacity.
    pub capacity: Sat,
    /// `a`'s balance without pending HTLCs, msat.
    pub balance_a_msat: u64,
    /// `b`'s balance without pending HTLCs, msat.
    pub balance_b_msat: u64,
    /// `a`'s forwarding policy.
    pub policy_a: FeePolicy,
    /// `b`'s forwarding policy.
    pub policy_b: FeePolicy,
    /// Pending HTLCs, both directions.
    pub htlcs: Vec<PendingHtlc>,
    /// Whether both ends are online.
    pub active: bool,
    /// Whether the channel is unannounced.
    pub private: bool,
    /// Lifetime msat sent by `a` and by `b`.
    pub sent_msat: (u64, u64),
}

impl ChannelState {
    pub(crate) fn new(
        chan_id: ChanId,
        outpoint: OutPoint,
        (a, b): (NodeIdx, NodeIdx),
        capacity: Sat,
        balance_a: Sat,
        (policy_a, policy_b): (FeePolicy, FeePolicy),
        private: bool,
    ) -> ChannelState {
        ChannelState {
            chan_id,
            outpoint,
            a,
            b,
            capacity,
            balance_a_msat: balance_a.to_msat().0,
            balance_b_msat: (capacity - balance_a).to_msat().0,
            policy_a,
            policy_b,
            htlcs: Vec::new(),
            active: true,
            private,
            sent_msat: (0, 0),
        }
    }

    /// The reserve each side keeps: 1 % of the capacity, as lnd asks by default.
    pub fn reserve(&self) -> Sat {
        Sat(self.capacity.0 / 100)
    }

    /// Whether `node` is an end of the channel.
    pub fn has(&self, node: NodeIdx) -> bool {
        self.a == node || self.b == node
    }

    /// The other end from `node`.
    pub fn other(&self, node: NodeIdx) -> NodeIdx {
        if node == self.a { self.b } else { self.a }
    }

    /// What `from` (an end) can send now, msat: its balance above its reserve, if it may
    /// still add an HTLC.
    pub fn sendable_msat(&self, from_a: bool) -> u64 {
        let pending = self.htlcs.iter().filter(|h| h.from_a == from_a).count();
        if pending >= MAX_ACCEPTED_HTLCS || !self.active {
            return 0;
        }
        let balance = if from_a {
            self.balance_a_msat
        } else {
            self.balance_b_msat
        };
        balance.saturating_sub(self.reserve().to_msat().0)
    }

    /// The policy of the end sending in direction `from_a`.
    pub fn policy(&self, from_a: bool) -> FeePolicy {
        if from_a { self.policy_a } else { self.policy_b }
    }

    /// Locks an HTLC from one end to the other.
    pub(crate) fn lock(&mut self, hash: SwapHash, amount_msat: u64, from_a: bool) -> bool {
        if self.sendable_msat(from_a) < amount_msat {
            return false;
        }
        if from_a {
            self.balance_a_msat -= amount_msat;
        } else {
            self.balance_b_msat -= amount_msat;
        }
        self.htlcs.push(PendingHtlc {
            hash,
            amount_msat,
            from_a,
        });
        true
    }

    /// Resolves a pending HTLC: settling credits the receiver, failing refunds the sender.
    pub(crate) fn resolve(&mut self, hash: SwapHash, amount_msat: u64, from_a: bool, settle: bool) {
        let Some(pos) = self
            .htlcs
            .iter()
            .position(|h| h.hash == hash && h.amount_msat == amount_msat && h.from_a == from_a)
        else {
            return;
        };
        self.htlcs.remove(pos);
        let to_a = if settle { !from_a } else { from_a };
        if to_a {
            self.balance_a_msat += amount_msat;
        } else {
            self.balance_b_msat += amount_msat;
        }
        if settle {
            if from_a {
                self.sent_msat.0 += amount_msat;
            } else {
                self.sent_msat.1 += amount_msat;
            }
        }
    }

    /// The channel as lnd's `ListChannels` shows it to `node`.
    pub fn view(&self, node: NodeIdx, peer: NodeId, peer_alias: &str) -> Channel {
        let ours_a = node == self.a;
        let (local, remote) = if ours_a {
            (self.balance_a_msat, self.balance_b_msat)
        } else {
            (self.balance_b_msat, self.balance_a_msat)
        };
        let (sent, received) = if ours_a {
            self.sent_msat
        } else {
            (self.sent_msat.1, self.sent_msat.0)
        };
        let pending: u64 = self.htlcs.iter().map(|h| h.amount_msat).sum();
        Channel {
            chan_id: self.chan_id,
            channel_point: World::channel_point(&self.outpoint),
            peer,
            peer_alias: Some(peer_alias.to_owned()),
            capacity: self.capacity,
            local_balance: Msat(local).to_sat_floor(),
            remote_balance: Msat(remote).to_sat_floor(),
            local_reserve: self.reserve(),
            remote_reserve: self.reserve(),
            commit_fee: Sat::ZERO,
            active: self.active,
            private: self.private,
            initiator: ours_a,
            pending_htlc_count: u32::try_from(self.htlcs.len()).unwrap_or(u32::MAX),
            pending_htlc_amount: Msat(pending).to_sat_floor(),
            total_sent: Msat(sent).to_sat_floor(),
            total_received: Msat(received).to_sat_floor(),
        }
    }
}

/// One hop of a route: the channel, its direction and the amount it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The channel's index in the world.
    pub chan: usize,
    /// Whether the HTLC goes from end `a` to end `b`.
    pub from_a: bool,
    /// The amount the HTLC carries, msat.
    pub amount_msat: u64,
}

/// A route from payer to payee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The hops, payer first.
    pub hops: Vec<Hop>,
    /// What the payee receives, msat.
    pub amount_msat: u64,
    /// The fees the forwarding nodes take, msat.
    pub fee_msat: u64,
    /// The total CLTV delta of the route, the final delta included.
    pub cltv: u32,
}

/// The limits a route search respects.
#[derive(Debug, Clone)]
pub(crate) struct RouteQuery<'a> {
    pub payer: NodeIdx,
    pub payee: NodeIdx,
    pub amount_msat: u64,
    pub fee_budget_msat: u64,
    pub final_cltv: u32,
    pub cltv_limit: u32,
    /// Channels the first hop may use; empty means any.
    pub first_hops: &'a [usize],
    /// Channel directions known to fail at or above an amount (mission control).
    pub failed: &'a HashMap<(usize, bool), u64>,
    /// The node the payee's incoming hop must come from (lnd's `last_hop_pubkey`).
    pub last_hop: Option<NodeIdx>,
    /// Private channels the invoice's route hints name: with the payer's own, the only
    /// private channels a payer's lnd can route over.
    pub hinted: &'a [ChanId],
}

impl World {
    /// The cheapest route by fee (Dijkstra from the payee backwards, as lnd searches), using
    /// the payer's own balances for the first hop and only capacities beyond it, as lnd knows
    /// no remote balances. `None` when no route fits the limits.
    pub(crate) fn find_route(&self, q: &RouteQuery<'_>) -> Option<Route> {
        // best[node] = (amount that must arrive at node, cltv from node, next hop)
        let mut best: HashMap<NodeIdx, (u64, u32, Option<Hop>)> = HashMap::new();
        let mut heap = BinaryHeap::new();
        best.insert(q.payee, (q.amount_msat, q.final_cltv, None));
        heap.push(Reverse((q.amount_msat, q.payee)));
        let mut answer: Option<(u64, usize, u32)> = None;
        while let Some(Reverse((amount, node))) = heap.pop() {
            if best.get(&node).is_some_and(|b| b.0 < amount) {
                continue;
            }
            let cltv = best.get(&node).map_or(q.final_cltv, |b| b.1);
            for (ci, ch) in self.channels.iter().enumerate() {
                if !ch.has(node) || !ch.active {
                    continue;
                }
                let from = ch.other(node);
                let from_a = from == ch.a;
                if ch.private && from != q.payer && !q.hinted.contains(&ch.chan_id) {
                    continue;
                }
                if node == q.payee && q.last_hop.is_some_and(|l| l != from) {
                    continue;
                }
                if q.failed.get(&(ci, from_a)).is_some_and(|&f| amount >= f) {
                    continue;
                }
                if from == q.payer {
                    if (!q.first_hops.is_empty() && !q.first_hops.contains(&ci))
                        || ch.sendable_msat(from_a) < amount
                    {
                        continue;
                    }
                    if answer.is_none_or(|(a, _, _)| amount < a) {
                        answer = Some((amount, ci, cltv));
                    }
                    continue;
                }
                if from == q.payee {
                    continue;
                }
                let capacity_msat = (ch.capacity - ch.reserve()).to_msat().0;
                if capacity_msat < amount {
                    continue;
                }
                let policy = ch.policy(from_a);
                let needed = amount.saturating_add(policy.fee(amount));
                let needed_cltv = cltv.saturating_add(policy.cltv_delta);
                if needed - q.amount_msat > q.fee_budget_msat || needed_cltv > q.cltv_limit {
                    continue;
                }
                if best.get(&from).is_none_or(|b| needed < b.0) {
                    let hop = Hop {
                        chan: ci,
                        from_a,
                        amount_msat: amount,
                    };
                    best.insert(from, (needed, needed_cltv, Some(hop)));
                    heap.push(Reverse((needed, from)));
                }
            }
        }
        let (total, first_chan, cltv) = answer?;
        let first = self.channels.get(first_chan)?;
        let mut hops = vec![Hop {
            chan: first_chan,
            from_a: first.a == q.payer,
            amount_msat: total,
        }];
        let mut node = first.other(q.payer);
        while node != q.payee {
            let hop = best.get(&node)?.2?;
            hops.push(hop);
            node = self.channels.get(hop.chan)?.other(node);
            if hops.len() > 20 {
                return None;
            }
        }
        Some(Route {
            hops,
            amount_msat: q.amount_msat,
            fee_msat: total - q.amount_msat,
            cltv,
        })
    }

    /// Channel `chan` as `viewer`'s graph holds it (`GetChanInfo`): announced channels, and
    /// `viewer`'s own private ones. lnd's "edge not found" otherwise.
    pub fn channel_edge(
        &self,
        viewer: NodeIdx,
        chan: ChanId,
    ) -> Result<crate::domain::ChannelEdge, WorldError> {
        self.channels
            .iter()
            .find(|c| c.chan_id == chan && (!c.private || c.has(viewer)))
            .map(|c| self.edge(c))
            .transpose()?
            .ok_or_else(|| WorldError::NotFound("edge not found".to_owned()))
    }

    /// The announced channels of the node with key `node` (`GetNodeInfo` lists no others);
    /// empty for a node the world does not hold.
    pub fn announced_edges(
        &self,
        node: &NodeId,
    ) -> Result<Vec<crate::domain::ChannelEdge>, WorldError> {
        let Some(idx) = self.node_by_id(node) else {
            return Ok(Vec::new());
        };
        self.channels
            .iter()
            .filter(|c| c.has(idx) && !c.private)
            .map(|c| self.edge(c))
            .collect()
    }

    /// A channel in lnd's graph form: ends ordered by key, as BOLT 7 orders them.
    fn edge(&self, c: &ChannelState) -> Result<crate::domain::ChannelEdge, WorldError> {
        let (a, b) = (self.node_id(c.a)?, self.node_id(c.b)?);
        let (node1, policy1, node2, policy2) = if a.0 <= b.0 {
            (a, c.policy_a, b, c.policy_b)
        } else {
            (b, c.policy_b, a, c.policy_a)
        };
        Ok(crate::domain::ChannelEdge {
            chan_id: c.chan_id,
            chan_point: c.outpoint,
            node1,
            node2,
            capacity: c.capacity,
            policy1: Some(policy1.as_peer_policy()),
            policy2: Some(policy2.as_peer_policy()),
        })
    }

    /// The route hints an invoice of `node` for `amount` carries, as lnd builds them: the
    /// caller's, then, with `private`, lnd's own choice among the node's other private
    /// channels (the selection Loop copied from lnd), up to twenty in all.
    pub(crate) fn invoice_hints(
        &self,
        node: NodeIdx,
        amount: Msat,
        given: &[crate::domain::RouteHint],
        private: bool,
    ) -> Result<Vec<crate::domain::RouteHint>, WorldError> {
        let mut hints = given.to_vec();
        if !private {
            return Ok(hints);
        }
        let hinted: Vec<ChanId> = given
            .iter()
            .flat_map(|r| r.hops.iter().map(|h| h.chan_id))
            .collect();
        let mut candidates = Vec::new();
        for c in self
            .channels
            .iter()
            .filter(|c| c.has(node) && c.private && c.active && !hinted.contains(&c.chan_id))
        {
            let peer = c.other(node);
            let peer_is_a = c.a == peer;
            let remote = if peer_is_a {
                c.balance_a_msat
            } else {
                c.balance_b_msat
            };
            candidates.push(crate::domain::HintCandidate {
                chan_id: c.chan_id,
                peer: self.node_id(peer)?,
                remote_balance: Msat(remote).to_sat_floor(),
                peer_public: self.channels.iter().any(|o| o.has(peer) && !o.private),
                policy: Some(c.policy(peer_is_a).as_peer_policy()),
            });
        }
        let room = crate::domain::MAX_HOP_HINTS.saturating_sub(hints.len());
        hints.extend(crate::domain::select_hop_hints(
            amount.to_sat_floor(),
            &candidates,
            room,
        ));
        Ok(hints)
    }

    /// A node's channels as `ListChannels` shows them.
    pub fn list_channels(&self, node: NodeIdx) -> Vec<Channel> {
        self.channels
            .iter()
            .filter(|c| c.has(node))
            .filter_map(|c| self.channel_view(node, c))
            .collect()
    }

    pub(crate) fn channel_view(&self, node: NodeIdx, c: &ChannelState) -> Option<Channel> {
        let peer = self.nodes.get(c.other(node))?;
        Some(c.view(node, peer.id, &peer.alias))
    }

    /// Takes a channel's peer offline (inactive) or back online.
    pub fn set_channel_active(&mut self, chan_id: ChanId, active: bool) {
        let mut ends = None;
        if let Some(c) = self.channels.iter_mut().find(|c| c.chan_id == chan_id) {
            c.active = active;
            ends = Some((c.a, c.b));
        }
        if let Some((a, b)) = ends {
            self.channel_changed(a, b, chan_id);
        }
    }

    /// Takes a node offline (every channel it has becomes inactive, so no route uses it and
    /// its peers see it gone) or back online.
    pub fn set_node_online(&mut self, node: NodeIdx, online: bool) {
        let ids: Vec<ChanId> = self
            .channels
            .iter()
            .filter(|c| c.has(node))
            .map(|c| c.chan_id)
            .collect();
        for id in ids {
            self.set_channel_active(id, online);
        }
    }

    pub(crate) fn channel_changed(&self, a: NodeIdx, b: NodeIdx, chan_id: ChanId) {
        for node in [a, b] {
            self.emit(super::WorldEvent::ChannelUpdated { node, chan_id });
        }
    }
}
