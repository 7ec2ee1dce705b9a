//! What the API's handlers read: facts fixed at start, and live status published by the daemon.

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::{Network, NodeStatus, PolicyStatus};

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
}
