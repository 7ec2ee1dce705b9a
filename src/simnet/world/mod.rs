//! The simulated world: the simnet chain and every simulated lnd node, behind one mutex.
//!
//! The core is synchronous: [`World`] owns the [`Chain`], the nodes (keys, wallets, invoices,
//! payments, MuSig2 sessions) and the channels between them, and every operation is a plain
//! method that tests call directly. [`SimNode`] is the async face: it implements
//! [`LightningNode`](crate::lnd::LightningNode) over a shared `Arc<Mutex<World>>`, and its
//! streams wake on [`WorldEvent`]s broadcast by the world, re-reading the state under the lock,
//! so a lagging subscriber never misses an outcome.
//!
//! Channels are funded by real 2-of-2 P2WSH outputs mined on the chain, so channel ids are the
//! funding outputs' real `BLOCKxTXxOUT` positions. Payments route over the channel graph by
//! fee, lock HTLCs on every hop and settle or fail them as lnd would; see [`payments`] and
//! [`invoices`].
//!
//! Using it: build with [`World::new`] (or [`WorldConfig::default_topology`]), share it as a
//! [`SharedWorld`], hand out `Arc::new(SimNode::new(world, "sluice")?)` as an
//! `Arc<dyn LightningNode>`, and drive time with [`clock::SimClock`] / [`clock::run`] (blocks on
//! schedule, [`traffic`] in between) or directly with [`World::mine`], [`World::reorg`],
//! [`World::advance_clock`] and [`World::set_fee_trace`]. The swap server's side uses the
//! inherent [`SimNode::send_to_address`] and [`SimNode::add_invoice`] besides the port.
//!
//! Not simulated: commitment transactions and their fees (balances sum to the capacity),
//! channel opening and closing by RPC, gossip delays, on-chain force closes, and lnd's
//! MuSig2 v0.4.0 draft (both versions run BIP-327).

#![warn(missing_docs)]

mod channels;
pub mod clock;
pub mod invoices;
mod keys;
mod musig;
mod node;
mod notify;
pub mod payments;
mod topology;
pub mod traffic;
mod wallet;

use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::{BlockHash, OutPoint, ScriptBuf, Transaction};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::broadcast;

pub use channels::{ChannelState, FeePolicy};
pub use keys::AddressKind;
pub use node::SimNode;
pub use topology::{ChannelSpec, NodeSpec, WorldConfig};

use super::chain::{Chain, ChainError, FaucetError, FeeTrace, ReorgOutcome};
use crate::domain::{BlockHeight, ChanId, Network, NodeId, Sat, SwapHash};
use crate::lnd::{NodeError, NodeErrorKind};
use invoices::Invoice;
use keys::NodeKeys;
use musig::Sessions;
use payments::Payment;

/// The capacity of the world's event channel; a slower subscriber re-reads the state.
const EVENT_CAPACITY: usize = 4096;

/// Identifies a node in its world (its position in [`WorldConfig::nodes`]).
pub type NodeIdx = usize;

/// Something changed in the world. Subscribers re-read what they watch when one arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldEvent {
    /// A block became the tip.
    BlockConnected {
        /// Its height.
        height: BlockHeight,
        /// Its hash.
        hash: BlockHash,
    },
    /// The tip block was disconnected by a reorg.
    BlockDisconnected {
        /// The height it had.
        height: BlockHeight,
        /// Its hash.
        hash: BlockHash,
    },
    /// A channel's balances or HTLCs changed; sent once per endpoint.
    ChannelUpdated {
        /// The node whose view changed.
        node: NodeIdx,
        /// The channel.
        chan_id: ChanId,
    },
    /// An invoice of `node` changed state.
    InvoiceUpdated {
        /// The node holding the invoice.
        node: NodeIdx,
        /// The invoice's payment hash.
        hash: SwapHash,
    },
    /// A payment made by `node` changed state.
    PaymentUpdated {
        /// The paying node.
        node: NodeIdx,
        /// The payment hash.
        hash: SwapHash,
    },
}

/// Why a world operation failed. [`WorldError::into_node`] maps it onto the port's error
/// kinds, the way lnd's answers are classified.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The chain could not be built or its faucet could not pay.
    #[error("the simnet faucet failed: {0}")]
    Faucet(#[from] FaucetError),
    /// A reorg was asked for that the chain cannot do.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Deriving a key failed.
    #[error("key derivation failed: {0}")]
    Keys(String),
    /// The world's configuration is inconsistent.
    #[error("invalid world configuration: {0}")]
    Config(String),
    /// No such node, invoice, payment or session.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already (lnd's wording, so callers classify it alike).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request cannot be served as given.
    #[error("{0}")]
    InvalidArgument(String),
    /// The wallet lacks the coins to pay.
    #[error("insufficient funds available to construct transaction: {0}")]
    InsufficientFunds(String),
    /// Anything else that will fail again if repeated.
    #[error("{0}")]
    Failed(String),
}

impl WorldError {
    /// The port error for `method`, with the kind lnd's answer would be classified as.
    pub fn into_node(self, method: &'static str) -> NodeError {
        let kind = match &self {
            WorldError::NotFound(_) => NodeErrorKind::NotFound,
            WorldError::AlreadyExists(_) => NodeErrorKind::AlreadyExists,
            WorldError::InvalidArgument(_) => NodeErrorKind::InvalidArgument,
            _ => NodeErrorKind::Permanent,
        };
        NodeError {
            kind,
            method,
            message: self.to_string(),
            source: Some(Box::new(self)),
        }
    }
}

/// One simulated lnd node's state.
#[derive(Debug)]
pub(crate) struct NodeState {
    pub(crate) alias: String,
    pub(crate) id: NodeId,
    pub(crate) keys: NodeKeys,
    pub(crate) invoices: std::collections::HashMap<SwapHash, Invoice>,
    pub(crate) payments: std::collections::HashMap<SwapHash, Payment>,
    pub(crate) forwards: Vec<crate::domain::ForwardingEvent>,
    /// The settled HTLCs of the node's own payments, oldest first (`ListPayments`).
    pub(crate) sent: Vec<crate::domain::SettledHtlc>,
    /// The settled HTLCs paid to the node's invoices, oldest first (`ListInvoices`).
    pub(crate) received: Vec<crate::domain::SettledHtlc>,
    pub(crate) sessions: Sessions,
    pub(crate) next_add_index: u64,
}

/// The world: chain, nodes and channels. See the module documentation.
pub struct World {
    chain: Chain,
    nodes: Vec<NodeState>,
    channels: Vec<ChannelState>,
    network: Network,
    /// Simulated wall-clock time, nanoseconds since the Unix epoch.
    now_ns: u64,
    rng: StdRng,
    events: broadcast::Sender<WorldEvent>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("chain", &self.chain)
            .field("nodes", &self.nodes.len())
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

/// A world shared between its nodes and the runner that mines and drives traffic.
pub type SharedWorld = Arc<Mutex<World>>;

/// Locks a shared world. A poisoned lock (a panic while holding it) still gives the state:
/// every world method leaves it consistent before it could panic.
pub fn lock(world: &SharedWorld) -> MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The world's simulated time as the swap engine's and the Loop server's clock: invoices and
/// expiries then agree with the world whatever its clock runs at.
pub fn engine_clock(world: &SharedWorld) -> crate::swap::engine::Clock {
    let world = world.clone();
    Arc::new(move || std::time::Duration::from_secs(lock(&world).now_unix()))
}

impl World {
    /// The chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The network the world runs on (regtest parameters).
    pub fn network(&self) -> Network {
        self.network
    }

    /// The tip's height.
    pub fn height(&self) -> BlockHeight {
        self.chain.height()
    }

    /// Simulated time, in seconds since the Unix epoch.
    pub fn now_unix(&self) -> u64 {
        self.now_ns / 1_000_000_000
    }

    /// Moves simulated time forward by `secs` seconds. The chain's clock follows, and open
    /// invoices past their expiry are canceled, as lnd's expiry watcher does.
    pub fn advance_clock(&mut self, secs: f64) {
        let ns = (secs.max(0.0) * 1e9) as u64;
        self.now_ns = self.now_ns.saturating_add(ns);
        self.chain
            .set_clock(u32::try_from(self.now_unix()).unwrap_or(u32::MAX));
        self.expire_open_invoices();
        self.expire_partial_sets();
    }

    /// Subscribes to world events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WorldEvent> {
        self.events.subscribe()
    }

    /// The sender of world events (to subscribe without holding the lock later).
    pub fn event_sender(&self) -> broadcast::Sender<WorldEvent> {
        self.events.clone()
    }

    /// Mines `n` blocks paying the faucet, announces them, and lets hold invoices whose HTLCs
    /// are about to expire be canceled as lnd does.
    pub fn mine(&mut self, n: u32) -> Vec<BlockHash> {
        let script = self.chain.faucet_script().clone();
        let hashes = self.chain.mine(n, &script);
        let first = self.chain.height().0 + 1 - u32::try_from(hashes.len()).unwrap_or(0);
        for (i, hash) in hashes.iter().enumerate() {
            let height = BlockHeight(first + i as u32);
            self.emit(WorldEvent::BlockConnected {
                height,
                hash: *hash,
            });
        }
        self.expire_hold_invoices();
        hashes
    }

    /// Pays `amount` to `script` from the chain's faucet, outside every node's wallet, into
    /// the mempool; returns the transaction, whose output 0 pays `script`.
    pub fn pay_to(&mut self, script: ScriptBuf, amount: Sat) -> Result<Transaction, WorldError> {
        let outpoint = self.chain.faucet(script, amount)?;
        match self.chain.tx(&outpoint.txid) {
            Some(super::chain::TxStatus::Mempool(entry)) => Ok(entry.tx.clone()),
            Some(super::chain::TxStatus::Confirmed { tx, .. }) => Ok(tx.clone()),
            None => Err(WorldError::Failed(
                "the faucet's transaction is not in the chain".into(),
            )),
        }
    }

    /// Leaves a mempool transaction (and its descendants) out of the blocks mined from now on,
    /// until [`World::release`]: the test's say over which mempool transactions a block takes.
    pub fn hold(&mut self, txid: bitcoin::Txid) {
        self.chain.hold(txid);
    }

    /// Lets a held transaction be mined again.
    pub fn release(&mut self, txid: &bitcoin::Txid) {
        self.chain.release(txid);
    }

    /// Leaves every spender of `outpoint` (any version) out of the blocks mined until
    /// [`World::release_spends`].
    pub fn hold_spends(&mut self, outpoint: bitcoin::OutPoint) {
        self.chain.hold_spends(outpoint);
    }

    /// Lets spenders of a held outpoint be mined again.
    pub fn release_spends(&mut self, outpoint: &bitcoin::OutPoint) {
        self.chain.release_spends(outpoint);
    }

    /// Puts `tx` in the mempool over any conflicting transaction (see
    /// [`Chain::force_into_mempool`]): a test's way to make an older version confirm.
    pub fn force_into_mempool(
        &mut self,
        tx: bitcoin::Transaction,
    ) -> Result<bitcoin::Txid, crate::simnet::chain::RejectReason> {
        self.chain.force_into_mempool(tx)
    }

    /// Disconnects the top `depth` blocks; their transactions return to the mempool. Mine
    /// afterwards to build the new branch.
    pub fn reorg(&mut self, depth: u32) -> Result<ReorgOutcome, WorldError> {
        let tip = self.chain.height();
        let outcome = self.chain.reorg(depth)?;
        for (i, hash) in outcome.disconnected.iter().enumerate() {
            self.emit(WorldEvent::BlockDisconnected {
                height: BlockHeight(tip.0 - i as u32),
                hash: *hash,
            });
        }
        Ok(outcome)
    }

    /// Replaces the fee trace the chain's estimates follow.
    pub fn set_fee_trace(&mut self, trace: FeeTrace) {
        self.chain.set_fee_trace(trace);
    }

    /// Every node's index and alias.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeIdx, &str)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.alias.as_str()))
    }

    /// The index of the node called `alias`.
    pub fn node_index(&self, alias: &str) -> Option<NodeIdx> {
        self.nodes.iter().position(|n| n.alias == alias)
    }

    /// The index of the node with identity `id`.
    pub fn node_by_id(&self, id: &NodeId) -> Option<NodeIdx> {
        self.nodes.iter().position(|n| n.id == *id)
    }

    /// A node's identity key.
    pub fn node_id(&self, node: NodeIdx) -> Result<NodeId, WorldError> {
        Ok(self.node(node)?.id)
    }

    /// A node's alias.
    pub fn alias(&self, node: NodeIdx) -> Result<&str, WorldError> {
        Ok(self.node(node)?.alias.as_str())
    }

    /// The forwards `node` has settled, oldest first (empty for an unknown node).
    pub fn forwards(&self, node: NodeIdx) -> &[crate::domain::ForwardingEvent] {
        self.nodes.get(node).map_or(&[], |n| n.forwards.as_slice())
    }

    /// Every channel in the world.
    pub fn channels(&self) -> &[ChannelState] {
        &self.channels
    }

    pub(crate) fn node(&self, node: NodeIdx) -> Result<&NodeState, WorldError> {
        self.nodes
            .get(node)
            .ok_or_else(|| WorldError::NotFound(format!("node {node} is not in the world")))
    }

    pub(crate) fn node_mut(&mut self, node: NodeIdx) -> Result<&mut NodeState, WorldError> {
        self.nodes
            .get_mut(node)
            .ok_or_else(|| WorldError::NotFound(format!("node {node} is not in the world")))
    }

    pub(crate) fn emit(&self, event: WorldEvent) {
        // No subscriber is not an error: nobody is watching yet.
        let _ = self.events.send(event);
    }

    pub(crate) fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn empty(seed: u64, chain: Chain, network: Network, now_unix: u64) -> World {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        World {
            chain,
            nodes: Vec::new(),
            channels: Vec::new(),
            network,
            now_ns: now_unix.saturating_mul(1_000_000_000),
            rng: StdRng::seed_from_u64(seed),
            events,
        }
    }

    /// The funding outpoint of a channel, as `txid:index`.
    pub(crate) fn channel_point(outpoint: &OutPoint) -> String {
        format!("{}:{}", outpoint.txid, outpoint.vout)
    }
}
