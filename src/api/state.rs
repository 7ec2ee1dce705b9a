//! What the API's handlers read: facts fixed at start, and live status published by the daemon.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::{Network, NodeStatus, PolicyStatus};
use crate::lnd::LightningNode;

/// The daemon's state as the API sees it. The daemon owns the senders of the watch channels
/// and updates them; handlers only borrow the latest value, so a slow client never blocks the
/// daemon.
#[derive(Debug)]
pub struct ApiState {
    /// The daemon's version, as `GetInfo` reports it.
    pub version: String,
    /// The network the daemon runs on.
    pub network: Network,
    /// The data dir, as `GetInfo` reports it.
    pub data_dir: PathBuf,
    /// Whether the daemon runs against the embedded simulated world.
    pub simnet: bool,
    /// When the daemon started, for the uptime.
    pub started: Instant,
    /// Cancelled by `StopDaemon`; the daemon's supervisor shuts everything down on it.
    pub stop: CancellationToken,
    /// The latest known state of lnd.
    pub node: watch::Receiver<NodeStatus>,
    /// The policy in force.
    pub policy: watch::Receiver<PolicyStatus>,
    /// The autoloop scheduler, once the daemon started it; the autoloop RPCs answer
    /// `Unavailable` before that.
    pub autoloop: std::sync::OnceLock<crate::autoloop::Autoloop>,
    /// The swap engine and what the swap RPCs read; `None` when no swap server is configured.
    pub swaps: Option<std::sync::Arc<super::swaps::SwapBackend>>,
    /// The Lightning node, once the daemon has connected to it and checked it.
    pub lnd: NodeHandle,
}

/// The daemon's Lightning node as handlers reach it: empty until the node task has
/// connected and checked lnd, then the shared (retrying) node. Cheap to clone; clones share
/// the slot.
#[derive(Clone, Default)]
pub struct NodeHandle(Arc<RwLock<Option<Arc<dyn LightningNode>>>>);

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeHandle")
            .field(&if self.get().is_some() { "set" } else { "empty" })
            .finish()
    }
}

impl NodeHandle {
    /// Publishes the node handlers should use.
    pub fn set(&self, node: Arc<dyn LightningNode>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(node);
    }

    /// The node, if the daemon has connected to one.
    pub fn get(&self) -> Option<Arc<dyn LightningNode>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
