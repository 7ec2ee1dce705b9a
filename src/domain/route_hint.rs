//! Route hints (BOLT 11's `r` field): how a payer reaches a node over channels the graph does
//! not announce, and which of the node's private channels a Loop In names in its invoices.
//!
//! The choice follows lnd's and Loop's hop-hint selection, so a Loop In asked with `private`
//! hints what Loop's client would: only private, active channels to peers that are public
//! nodes (a hint must not reveal a private peer), first the channels whose peer alone can
//! carry the amount, then others until the hinted inbound covers twice the amount, at most
//! [`MAX_HOP_HINTS`] of them, each a one-hop hint with the peer's own forwarding policy.

use super::{ChanId, NodeId, Sat};

/// The most hints an invoice carries (lnd's and Loop's `DefaultMaxHopHints`).
pub const MAX_HOP_HINTS: usize = 20;

/// One hop of a route hint: the peer's end of a channel into the node, with the peer's fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopHint {
    /// The peer that forwards over the channel.
    pub node: NodeId,
    /// The channel.
    pub chan_id: ChanId,
    /// The peer's fixed fee for the forward, msat.
    pub fee_base_msat: u32,
    /// The peer's proportional fee, parts per million.
    pub fee_ppm: u32,
    /// The CLTV delta the peer asks for.
    pub cltv_delta: u16,
}

/// A route hint: hops from a node the payer can find in the graph to the payee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHint {
    /// The hops, in payment order.
    pub hops: Vec<HopHint>,
}

/// What a peer charges to forward into the node over one channel (its half of lnd's
/// `GetChanInfo` answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Fixed fee, msat.
    pub fee_base_msat: u32,
    /// Proportional fee, parts per million.
    pub fee_ppm: u32,
    /// CLTV delta.
    pub cltv_delta: u16,
}

/// A channel as lnd's graph holds it (`GetChanInfo`): its ends in the graph's order and the
/// forwarding policy each end set, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelEdge {
    /// The channel.
    pub chan_id: ChanId,
    /// The funding outpoint, "txid:index".
    pub chan_point: bitcoin::OutPoint,
    /// The end with the smaller key.
    pub node1: NodeId,
    /// The other end.
    pub node2: NodeId,
    /// The capacity.
    pub capacity: Sat,
    /// `node1`'s policy.
    pub policy1: Option<PeerPolicy>,
    /// `node2`'s policy.
    pub policy2: Option<PeerPolicy>,
}

impl ChannelEdge {
    /// The policy `node` set on its end; `None` when `node` is not an end or has set none.
    pub fn policy_of(&self, node: NodeId) -> Option<PeerPolicy> {
        if node == self.node1 {
            self.policy1
        } else if node == self.node2 {
            self.policy2
        } else {
            None
        }
    }
}

/// One of the node's private, active channels, with what the selection needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintCandidate {
    /// The channel.
    pub chan_id: ChanId,
    /// The peer at its other end.
    pub peer: NodeId,
    /// What the peer can send the node over it.
    pub remote_balance: Sat,
    /// Whether the peer has announced channels (a private peer is never hinted).
    pub peer_public: bool,
    /// The peer's forwarding policy, when lnd knows it.
    pub policy: Option<PeerPolicy>,
}

impl HintCandidate {
    fn hint(&self) -> Option<RouteHint> {
        let p = self.policy.filter(|_| self.peer_public)?;
        Some(RouteHint {
            hops: vec![HopHint {
                node: self.peer,
                chan_id: self.chan_id,
                fee_base_msat: p.fee_base_msat,
                fee_ppm: p.fee_ppm,
                cltv_delta: p.cltv_delta,
            }],
        })
    }
}

/// The hints for an invoice of `amount` over `candidates` (the node's private, active
/// channels, already narrowed to the last hop when one was asked for), at most `max`.
///
/// First every candidate whose peer alone can send the amount, in order; then the others, in
/// order, until the hinted remote balance exceeds twice the amount. Candidates with a private
/// peer or no known policy are never hinted.
pub fn select_hop_hints(amount: Sat, candidates: &[HintCandidate], max: usize) -> Vec<RouteHint> {
    let mut hints = Vec::new();
    let mut bandwidth = Sat::ZERO;
    let mut taken = vec![false; candidates.len()];
    for (i, c) in candidates.iter().enumerate() {
        if hints.len() >= max {
            return hints;
        }
        if c.remote_balance < amount {
            continue;
        }
        if let Some(h) = c.hint() {
            hints.push(h);
            bandwidth += c.remote_balance;
            taken[i] = true;
        }
    }
    let enough = Sat(amount.0.saturating_mul(2));
    for (i, c) in candidates.iter().enumerate() {
        if hints.len() >= max || bandwidth > enough {
            break;
        }
        if taken[i] {
            continue;
        }
        if let Some(h) = c.hint() {
            hints.push(h);
            bandwidth += c.remote_balance;
        }
    }
    hints
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(n: u8) -> NodeId {
        let secp = bitcoin::secp256k1::Secp256k1::signing_only();
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n.max(1); 32]).unwrap();
        NodeId(bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize())
    }

    fn cand(id: u64, remote: u64) -> HintCandidate {
        HintCandidate {
            chan_id: ChanId(id),
            peer: peer(u8::try_from(id % 200).unwrap()),
            remote_balance: Sat(remote),
            peer_public: true,
            policy: Some(PeerPolicy {
                fee_base_msat: 1_000,
                fee_ppm: u32::try_from(id).unwrap(),
                cltv_delta: 40,
            }),
        }
    }

    fn chans(h: &[RouteHint]) -> Vec<u64> {
        h.iter().map(|r| r.hops[0].chan_id.0).collect()
    }

    #[test]
    fn channels_that_carry_the_amount_alone_come_first_then_others_up_to_twice_the_amount() {
        let c = [
            cand(1, 10_000),
            cand(2, 150_000),
            cand(3, 60_000),
            cand(4, 50_000),
            cand(5, 90_000),
        ];
        // 2 carries 100k alone (150k); then 1 (160k), 3 (220k > 200k): done.
        assert_eq!(chans(&select_hop_hints(Sat(100_000), &c, 20)), [2, 1, 3]);
        let h = select_hop_hints(Sat(100_000), &c, 20);
        assert_eq!(
            h[0].hops,
            [HopHint {
                node: c[1].peer,
                chan_id: ChanId(2),
                fee_base_msat: 1_000,
                fee_ppm: 2,
                cltv_delta: 40,
            }]
        );
    }

    #[test]
    fn private_peers_and_unknown_policies_are_never_hinted() {
        let mut private = cand(1, 500_000);
        private.peer_public = false;
        let mut unknown = cand(2, 500_000);
        unknown.policy = None;
        let c = [private, unknown, cand(3, 1_000)];
        assert_eq!(chans(&select_hop_hints(Sat(100_000), &c, 20)), [3]);
    }

    #[test]
    fn the_first_pass_stops_at_the_maximum() {
        let c: Vec<_> = (1..=30).map(|i| cand(i, 1_000_000)).collect();
        assert_eq!(select_hop_hints(Sat(1), &c, MAX_HOP_HINTS).len(), 20);
        assert_eq!(chans(&select_hop_hints(Sat(1), &c, 2)), [1, 2]);
    }

    proptest! {
        #[test]
        fn hints_are_few_eligible_distinct_and_enough(
            amount in 1u64..1_000_000,
            balances in prop::collection::vec((0u64..2_000_000, any::<bool>(), any::<bool>()), 0..40),
            max in 0usize..25,
        ) {
            let c: Vec<_> = balances.iter().enumerate().map(|(i, &(b, public, known))| {
                let mut x = cand(u64::try_from(i).unwrap() + 1, b);
                x.peer_public = public;
                if !known { x.policy = None; }
                x
            }).collect();
            let h = select_hop_hints(Sat(amount), &c, max);
            prop_assert!(h.len() <= max);
            let picked = chans(&h);
            let mut distinct = picked.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), picked.len());
            let eligible: Vec<_> = c.iter().filter(|x| x.peer_public && x.policy.is_some()).collect();
            for id in &picked {
                prop_assert!(eligible.iter().any(|x| x.chan_id.0 == *id));
            }
            // Every eligible channel that alone carries the amount is hinted unless the
            // maximum was reached.
            let strong = eligible.iter().filter(|x| x.remote_balance.0 >= amount).count();
            prop_assert_eq!(picked.len().min(strong), strong.min(max));
            // An eligible channel left out means the maximum, or more than twice the amount.
            let bandwidth: u64 = eligible.iter().filter(|x| picked.contains(&x.chan_id.0))
                .map(|x| x.remote_balance.0).sum();
            if picked.len() < eligible.len() {
                prop_assert!(picked.len() == max || bandwidth > 2 * amount);
            }
        }
    }
}
