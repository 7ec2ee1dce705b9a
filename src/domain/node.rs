//! What sluice observes of its Lightning node: identity, channels, peers, forwards.
//!
//! These are the domain side of the `LightningNode` port (`crate::lnd`): policies,
//! the scheduler and the API read them without knowing lnd's wire types.

use std::fmt;
use std::str::FromStr;

use super::{BlockHeight, ChanId, Msat, Network, Sat};

/// A Lightning node's identity: its 33-byte compressed public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 33]);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A string that is not a node's public key.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a node public key: expected 66 hex characters (a compressed public key)")]
pub struct ParseNodeIdError(pub String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<NodeId, ParseNodeIdError> {
        let mut out = [0u8; 33];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseNodeIdError(s.to_owned()))?;
        if out[0] != 2 && out[0] != 3 {
            return Err(ParseNodeIdError(s.to_owned()));
        }
        Ok(NodeId(out))
    }
}

impl TryFrom<&[u8]> for NodeId {
    type Error = ParseNodeIdError;
    fn try_from(bytes: &[u8]) -> Result<NodeId, ParseNodeIdError> {
        let arr: [u8; 33] = bytes
            .try_into()
            .map_err(|_| ParseNodeIdError(hex::encode(bytes)))?;
        if arr[0] != 2 && arr[0] != 3 {
            return Err(ParseNodeIdError(hex::encode(bytes)));
        }
        Ok(NodeId(arr))
    }
}

/// A payment preimage. It is a secret until the swap's stored state allows revealing it,
/// so its `Debug` never prints it; read the bytes explicitly where they are needed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Preimage(pub [u8; 32]);

impl Preimage {
    /// The payment hash this preimage unlocks (SHA-256 of the preimage).
    pub fn hash(&self) -> super::SwapHash {
        use sha2::Digest;
        super::SwapHash(sha2::Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(<redacted>)")
    }
}

/// The node's identity and chain view, as `GetInfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's identity key.
    pub pubkey: NodeId,
    /// The alias the node announces.
    pub alias: String,
    /// The node's best block height.
    pub block_height: BlockHeight,
    /// Whether the node's wallet is synced to the chain tip.
    pub synced_to_chain: bool,
    /// Whether the node has synced the channel graph.
    pub synced_to_graph: bool,
    /// The network the node runs on.
    pub network: Network,
    /// The node software's version string, e.g. "0.21.2-beta commit=v0.21.2-beta".
    pub version: String,
}

/// One open channel, with balances in satoshis as lnd accounts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The short channel id (lnd's numeric form inside).
    pub chan_id: ChanId,
    /// The funding outpoint, "txid:index".
    pub channel_point: String,
    /// The peer at the other end.
    pub peer: NodeId,
    /// The peer's alias, when lnd looked it up.
    pub peer_alias: Option<String>,
    /// Total channel capacity.
    pub capacity: Sat,
    /// Our balance, not counting in-flight HTLCs.
    pub local_balance: Sat,
    /// The peer's balance, not counting in-flight HTLCs.
    pub remote_balance: Sat,
    /// The reserve we must keep (unspendable by us).
    pub local_reserve: Sat,
    /// The reserve the peer must keep.
    pub remote_reserve: Sat,
    /// The commitment fee, paid by the initiator.
    pub commit_fee: Sat,
    /// Whether the peer is online and the channel usable.
    pub active: bool,
    /// Whether the channel is unannounced.
    pub private: bool,
    /// Whether we opened the channel.
    pub initiator: bool,
    /// How many HTLCs are pending on the channel.
    pub pending_htlc_count: u32,
    /// The summed amount of the pending HTLCs.
    pub pending_htlc_amount: Sat,
    /// Satoshis we have sent over the channel in its lifetime.
    pub total_sent: Sat,
    /// Satoshis we have received over the channel in its lifetime.
    pub total_received: Sat,
}

impl Channel {
    /// What we could still send: local balance above our reserve.
    pub fn spendable(&self) -> Sat {
        self.local_balance.saturating_sub(self.local_reserve)
    }

    /// What we could still receive: remote balance above the peer's reserve.
    pub fn receivable(&self) -> Sat {
        self.remote_balance.saturating_sub(self.remote_reserve)
    }
}

/// A change to the node's channels, from the channel event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A channel finished opening.
    Opened(Channel),
    /// A channel's state (balances, HTLCs) changed.
    Updated(Channel),
    /// A channel was closed on chain.
    Closed {
        /// The closed channel.
        chan_id: ChanId,
        /// Its funding outpoint, "txid:index".
        channel_point: String,
    },
    /// A channel became usable (its peer came online).
    Active {
        /// The funding outpoint, "txid:index".
        channel_point: String,
    },
    /// A channel became unusable (its peer went offline).
    Inactive {
        /// The funding outpoint, "txid:index".
        channel_point: String,
    },
    /// A channel's funding transaction was broadcast.
    PendingOpen {
        /// The funding outpoint, "txid:index".
        channel_point: String,
    },
    /// Every output of a closed channel is resolved on chain.
    FullyResolved {
        /// The funding outpoint, "txid:index".
        channel_point: String,
    },
    /// A pending channel's funding never confirmed and lnd gave up on it.
    FundingTimeout {
        /// The funding outpoint, "txid:index".
        channel_point: String,
    },
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's identity.
    pub pubkey: NodeId,
    /// The peer's network address.
    pub address: String,
    /// Whether the peer connected to us.
    pub inbound: bool,
}

/// One HTLC this node forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardingEvent {
    /// When the forward settled, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The channel the HTLC came in on.
    pub chan_in: ChanId,
    /// The channel the HTLC left on.
    pub chan_out: ChanId,
    /// The incoming amount.
    pub amount_in: Msat,
    /// The outgoing amount.
    pub amount_out: Msat,
    /// The fee earned (incoming minus outgoing).
    pub fee: Msat,
}

/// A page of forwarding history and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingPage {
    /// The events of this page, oldest first.
    pub events: Vec<ForwardingEvent>,
    /// The offset to pass to get the next page.
    pub next_index_offset: u32,
}

/// A settled HTLC of the node's own payment (leaving its channel) or of one of its invoices
/// (arriving): what moves a channel's balance besides forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledHtlc {
    /// When it settled, in seconds since the Unix epoch.
    pub at_unix: u64,
    /// The node's channel it moved through.
    pub chan: ChanId,
    /// What left the channel (a payment: amount plus routing fees) or arrived on it.
    pub amount: Msat,
}

/// A page of the node's payments or invoices, as their settled HTLCs, and where the next page
/// starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettlementPage {
    /// The settled HTLCs of the page's payments or invoices (those that settled).
    pub htlcs: Vec<SettledHtlc>,
    /// How many payments or invoices the page held (settled or not); 0 at the end.
    pub items: u64,
    /// The offset to pass to get the next page.
    pub next_index_offset: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KEY: &str = "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619";

    #[test]
    fn node_id_round_trips_and_rejects_non_keys() {
        let id: NodeId = KEY.parse().unwrap();
        assert_eq!(id.to_string(), KEY);
        assert!(KEY[..64].parse::<NodeId>().is_err());
        assert!(format!("04{}", &KEY[2..]).parse::<NodeId>().is_err());
        assert_eq!(NodeId::try_from(&id.0[..]).unwrap(), id);
        assert!(NodeId::try_from(&id.0[..32]).is_err());
    }

    #[test]
    fn preimage_debug_is_redacted_and_hash_is_sha256() {
        let p = Preimage([7u8; 32]);
        assert!(!format!("{p:?}").contains('7'));
        // sha256 of 32 zero bytes.
        assert_eq!(
            Preimage([0u8; 32]).hash().to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn spendable_and_receivable_leave_reserves_out() {
        let ch = Channel {
            chan_id: ChanId(1),
            channel_point: "00:0".into(),
            peer: KEY.parse().unwrap(),
            peer_alias: None,
            capacity: Sat(1_000_000),
            local_balance: Sat(600_000),
            remote_balance: Sat(5_000),
            local_reserve: Sat(10_000),
            remote_reserve: Sat(10_000),
            commit_fee: Sat(0),
            active: true,
            private: false,
            initiator: true,
            pending_htlc_count: 0,
            pending_htlc_amount: Sat(0),
            total_sent: Sat(0),
            total_received: Sat(0),
        };
        assert_eq!(ch.spendable(), Sat(590_000));
        assert_eq!(ch.receivable(), Sat(0));
    }
}
