//! The `lnd` task: connects to lnd, checks it, and keeps the daemon's view of it current.
//!
//! Start: the node is asked for its version and identity ([`connect::check`]). While lnd is
//! unreachable or still starting, the check is repeated with capped exponential backoff and
//! `/readyz` reports `lnd: unreachable (...)`; the API and metrics serve meanwhile, so an
//! operator can see why the daemon waits. A problem only the operator can fix (certificate
//! mismatch, rejected macaroon, old lnd, missing build tags, network mismatch) ends the task
//! with its message, which stops the daemon with exit status 1.
//!
//! Running: the checked node is wrapped in a [`ResilientNode`] and published in the API's
//! [`NodeHandle`]. Block epochs keep `NodeStatus.block_height` current; a `get_info` every
//! [`STATUS_REFRESH`] (more often while lnd is unreachable, at once when a stream breaks)
//! keeps the rest current and drives readiness; channel events are logged. Transitions
//! (connected, lost, back) are logged once each. The channel balances and node totals are
//! read from lnd when Prometheus scrapes ([`balances_on_scrape`]), not on a timer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::state::NodeHandle;
use crate::config::LndConfig;
use crate::domain::{ChannelEvent, Network, NodeInfo, NodeStatus};
use crate::lnd::connect::{self, ConnectError};
use crate::lnd::resilient::RetryPolicy;
use crate::lnd::types::{BlockEpoch, NodeVersion};
use crate::lnd::{LightningNode, NodeStream, ResilientNode};
use crate::metrics::{Readiness, TargetBalance};

/// The readiness component this task owns.
pub const READINESS: &str = "lnd";

/// How often lnd's identity and sync state are refreshed while it is reachable. The height
/// follows block epochs, the balances are read when Prometheus scrapes, and a stream that
/// breaks asks for a poll at once, so this only bounds how long a silent outage goes unseen.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The longest a status poll may take before lnd counts as unreachable.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(20);

/// Retries of the daemon's shared node: short for single calls, so an API call against an
/// unreachable lnd answers `UNAVAILABLE` within seconds; streams retry without limit anyway.
pub const DAEMON_RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(30),
    idempotent_attempts: 4,
    non_idempotent_attempts: 2,
};

/// Everything the task needs; built by `daemon::run`.
#[derive(Debug)]
pub struct NodeTask {
    /// Where lnd is and how to authenticate (named in every error message).
    pub config: LndConfig,
    /// The daemon's network, checked against lnd's.
    pub network: Network,
    /// What `GetInfo` shows about lnd.
    pub status: watch::Sender<NodeStatus>,
    /// `/readyz`; this task sets [`READINESS`].
    pub readiness: Readiness,
    /// Where the checked node is published for the API.
    pub handle: NodeHandle,
    /// Where lnd's reachability, channel balances and node totals are exported.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Runs `fut` unless `shutdown` comes first.
async fn until<T>(shutdown: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        () = shutdown.cancelled() => None,
        v = fut => Some(v),
    }
}

/// The readiness reason for a transient failure.
fn not_ready_reason(err: &ConnectError) -> String {
    match err {
        ConnectError::Unreachable { reason, .. } => format!("unreachable ({reason})"),
        ConnectError::Node { source, .. } => format!("not available ({source})"),
        other => other.to_string(),
    }
}

/// One line describing a channel event for the log: ids and balances, never secrets.
fn describe(event: &ChannelEvent) -> String {
    match event {
        ChannelEvent::Opened(c) | ChannelEvent::Updated(c) => format!(
            "{} {} local_sat={} remote_sat={} active={}",
            if matches!(event, ChannelEvent::Opened(_)) {
                "opened"
            } else {
                "updated"
            },
            c.chan_id,
            c.local_balance.0,
            c.remote_balance.0,
            c.active
        ),
        ChannelEvent::Closed { chan_id, .. } => format!("closed {chan_id}"),
        ChannelEvent::Active { channel_point } => format!("active {channel_point}"),
        ChannelEvent::Inactive { channel_point } => format!("inactive {channel_point}"),
        ChannelEvent::PendingOpen { channel_point } => format!("pending open {channel_point}"),
        ChannelEvent::FullyResolved { channel_point } => {
            format!("fully resolved {channel_point}")
        }
        ChannelEvent::FundingTimeout { channel_point } => {
            format!("funding timed out {channel_point}")
        }
    }
}

impl NodeTask {
    /// Connects to the configured lnd and runs until `shutdown`. Returns an error only for
    /// problems the operator must fix.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConnectError> {
        let client = connect::open(&self.config, self.network)?;
        self.run_with(Arc::new(client), shutdown).await
    }

    /// Like [`run`](Self::run) over a node that is already built (the embedded simnet's,
    /// or a test's).
    pub async fn run_with(
        self,
        raw: Arc<dyn LightningNode>,
        shutdown: CancellationToken,
    ) -> Result<(), ConnectError> {
        let Some((version, info)) = self.first_check(raw.as_ref(), &shutdown).await? else {
            return Ok(());
        };
        tracing::info!(
            host = %self.config.host,
            alias = %info.alias,
            pubkey = %info.pubkey,
            height = info.block_height.0,
            version = %version.version,
            "connected to lnd"
        );
        self.publish(&info, Some(&version));
        let node = Arc::new(ResilientNode::with_policy(Arc::clone(&raw), DAEMON_RETRY));
        self.handle.set(node.clone());
        self.metrics
            .on_scrape(balances_on_scrape(&node, Arc::downgrade(&self.metrics)));
        self.follow(raw, node, shutdown).await
    }

    /// The start-up check, repeated while it fails transiently. `None` on shutdown.
    async fn first_check(
        &self,
        raw: &dyn LightningNode,
        shutdown: &CancellationToken,
    ) -> Result<Option<(NodeVersion, NodeInfo)>, ConnectError> {
        let mut attempt = 0u32;
        loop {
            let check = tokio::time::timeout(
                POLL_TIMEOUT,
                connect::check(raw, &self.config, self.network),
            );
            let Some(result) = until(shutdown, check).await else {
                return Ok(None);
            };
            let result = result.unwrap_or_else(|_| {
                Err(ConnectError::Unreachable {
                    host: self.config.host.clone(),
                    reason: format!("no answer within {POLL_TIMEOUT:?}"),
                })
            });
            match result {
                Ok(checked) => return Ok(Some((checked.version, checked.info))),
                Err(e) if e.is_transient() => {
                    if attempt == 0 {
                        tracing::warn!(error = %e, "lnd is not available yet; retrying");
                    } else {
                        tracing::debug!(error = %e, attempt, "lnd still not available");
                    }
                    self.lost(&e);
                    let pause = DAEMON_RETRY.delay(attempt, rand::random::<f64>());
                    if until(shutdown, tokio::time::sleep(pause)).await.is_none() {
                        return Ok(None);
                    }
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => {
                    tracing::error!(error = %e, "lnd cannot be used");
                    self.status.send_modify(|s| {
                        s.connected = false;
                        s.error = Some(e.to_string());
                    });
                    self.readiness.set(READINESS, Err(e.to_string()));
                    return Err(e);
                }
            }
        }
    }

    /// Records a transient loss in the status and readiness.
    fn lost(&self, err: &ConnectError) {
        self.metrics.catalog.set_lnd_up(false);
        self.status.send_modify(|s| {
            s.connected = false;
            s.error = Some(err.to_string());
        });
        self.readiness.set(READINESS, Err(not_ready_reason(err)));
    }

    /// Records a successful `get_info`.
    fn publish(&self, info: &NodeInfo, version: Option<&NodeVersion>) {
        self.metrics.catalog.set_lnd_up(true);
        self.status.send_modify(|s| {
            s.connected = true;
            s.error = None;
            s.alias = info.alias.clone();
            s.pubkey = info.pubkey.to_string();
            s.block_height = s.block_height.max(info.block_height.0);
            s.synced_to_chain = info.synced_to_chain;
            if let Some(v) = version {
                s.version = v.version.clone();
            }
        });
        self.readiness.set(READINESS, Ok(()));
    }

    /// The running phase: block epochs, channel events and periodic status, until shutdown.
    async fn follow(
        &self,
        raw: Arc<dyn LightningNode>,
        node: Arc<ResilientNode>,
        shutdown: CancellationToken,
    ) -> Result<(), ConnectError> {
        let mut epochs: Option<NodeStream<BlockEpoch>> = None;
        let mut events: Option<NodeStream<ChannelEvent>> = None;
        let mut connected = true;
        let mut failures = 0u32;
        // A deadline, not a fresh sleep per turn: events must not postpone the poll.
        let mut poll_at = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                item = next_of(&mut epochs) => match item {
                    Some(Ok(epoch)) => {
                        tracing::debug!(height = epoch.height.0, "new block");
                        self.status.send_modify(|s| s.block_height = epoch.height.0);
                        if self.network == Network::Simnet {
                            self.metrics.catalog.set_simnet_height(epoch.height);
                        }
                    }
                    Some(Err(e)) => {
                        self.stream_failed("block epochs", e)?;
                        epochs = None;
                        poll_at = tokio::time::Instant::now();
                    }
                    None => {
                        epochs = None;
                        poll_at = tokio::time::Instant::now();
                    }
                },
                item = next_of(&mut events) => match item {
                    Some(Ok(event)) => {
                        tracing::debug!(event = %describe(&event), "channel event");
                    }
                    Some(Err(e)) => {
                        self.stream_failed("channel events", e)?;
                        events = None;
                        poll_at = tokio::time::Instant::now();
                    }
                    None => {
                        events = None;
                        poll_at = tokio::time::Instant::now();
                    }
                },
                () = tokio::time::sleep_until(poll_at) => {
                    let Some(polled) =
                        until(&shutdown, tokio::time::timeout(POLL_TIMEOUT, raw.get_info())).await
                    else {
                        return Ok(());
                    };
                    let polled = polled.map_err(|_| ConnectError::Unreachable {
                        host: self.config.host.clone(),
                        reason: format!("no answer to GetInfo within {POLL_TIMEOUT:?}"),
                    });
                    match polled.and_then(|r| {
                        r.map_err(|e| connect::classify_failure(&self.config, e))
                    }) {
                        Ok(info) => {
                            connect::check_network(&self.config.host, self.network, &info)?;
                            if !connected {
                                tracing::info!(host = %self.config.host, "lnd reachable again");
                            }
                            connected = true;
                            failures = 0;
                            self.publish(&info, None);
                            poll_at = tokio::time::Instant::now() + STATUS_REFRESH;
                        }
                        Err(e) => {
                            if !e.is_transient() {
                                tracing::error!(error = %e, "lnd cannot be used");
                                return Err(e);
                            }
                            if connected {
                                tracing::warn!(error = %e, "lost lnd; reconnecting");
                            }
                            connected = false;
                            self.lost(&e);
                            poll_at = tokio::time::Instant::now()
                                + DAEMON_RETRY.delay(failures, rand::random::<f64>());
                            failures = failures.saturating_add(1);
                        }
                    }
                    // (Re)open the streams while lnd answers; the resilient node keeps them
                    // alive from then on.
                    if connected && epochs.is_none() {
                        let sub = until(&shutdown, node.register_block_epochs()).await;
                        epochs = opened("block epochs", sub);
                    }
                    if connected && events.is_none() {
                        let sub = until(&shutdown, node.subscribe_channel_events()).await;
                        events = opened("channel events", sub);
                    }
                }
            }
        }
    }

    /// A stream gave up: fatal when the cause is for the operator, else re-opened later.
    fn stream_failed(&self, what: &str, err: crate::lnd::NodeError) -> Result<(), ConnectError> {
        let e = connect::classify_failure(&self.config, err);
        if e.is_transient() {
            tracing::warn!(stream = what, error = %e, "lnd stream failed; re-opening later");
            Ok(())
        } else {
            tracing::error!(stream = what, error = %e, "lnd stream failed");
            Err(e)
        }
    }
}

/// The scrape hook that reads every channel's balances (the per-target series until policies
/// name targets) and the node's totals from lnd. A failure only leaves the previous values.
fn balances_on_scrape(
    node: &Arc<ResilientNode>,
    metrics: std::sync::Weak<crate::metrics::Metrics>,
) -> crate::metrics::ScrapeHook {
    let node = Arc::clone(node);
    Arc::new(move || {
        let node = Arc::clone(&node);
        let metrics = metrics.clone();
        Box::pin(async move {
            if let Some(metrics) = metrics.upgrade() {
                export_balances(&metrics.catalog, node.as_ref()).await;
            }
        })
    })
}

/// Reads the balances from lnd into the catalog.
async fn export_balances(catalog: &crate::metrics::Catalog, node: &dyn LightningNode) {
    let channels = match node.list_channels().await {
        Ok(channels) => channels,
        Err(e) => return tracing::debug!(error = %e, "cannot list channels for metrics"),
    };
    let targets: Vec<TargetBalance> = channels
        .iter()
        .map(|c| TargetBalance {
            target: c.chan_id.to_string(),
            local: c.local_balance,
            remote: c.remote_balance,
            band: None,
        })
        .collect();
    catalog.set_channel_targets(&targets);
    let local = channels.iter().map(|c| c.local_balance).sum();
    let remote = channels.iter().map(|c| c.remote_balance).sum();
    let onchain = match node.onchain_balance().await {
        Ok((confirmed, _)) => confirmed,
        Err(e) => return tracing::debug!(error = %e, "cannot read the wallet balance for metrics"),
    };
    catalog.set_node_totals(local, remote, onchain);
}

/// The stream if it opened; a failure is logged and the stream re-tried at the next poll.
fn opened<T>(
    what: &str,
    result: Option<Result<NodeStream<T>, crate::lnd::NodeError>>,
) -> Option<NodeStream<T>> {
    match result? {
        Ok(s) => {
            tracing::debug!(stream = what, "lnd stream open");
            Some(s)
        }
        Err(e) => {
            tracing::warn!(stream = what, error = %e, "cannot open an lnd stream; retrying later");
            None
        }
    }
}

/// The next item of an optional stream; pending forever when there is none.
async fn next_of<T>(
    stream: &mut Option<NodeStream<T>>,
) -> Option<Result<T, crate::lnd::NodeError>> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::lnd::resilient::tests::Fake;

    fn version(text: &str) -> NodeVersion {
        let (major, minor, patch) = connect::parse_version(text).unwrap();
        NodeVersion {
            version: text.into(),
            major,
            minor,
            patch,
            commit_hash: String::new(),
            build_tags: ["signrpc", "walletrpc", "chainrpc", "invoicesrpc"]
                .map(String::from)
                .to_vec(),
        }
    }

    struct Running {
        status: watch::Receiver<NodeStatus>,
        readiness: Readiness,
        handle: NodeHandle,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), ConnectError>>,
    }

    fn start(fake: &Fake, network: Network) -> Running {
        let (tx, status) = watch::channel(NodeStatus::default());
        let readiness = Readiness::new(&[READINESS]);
        let handle = NodeHandle::default();
        let task = NodeTask {
            config: LndConfig {
                host: "127.0.0.1:10009".into(),
                tls_cert_path: "/lnd/tls.cert".into(),
                macaroon_path: "/lnd/admin.macaroon".into(),
            },
            network,
            status: tx,
            readiness: readiness.clone(),
            handle: handle.clone(),
            metrics: crate::metrics::Metrics::new("test"),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(task.run_with(Arc::new(fake.clone()), stop.clone()));
        Running {
            status,
            readiness,
            handle,
            stop,
            task,
        }
    }

    /// Waits (in paused time) until `f` holds; panics after an hour of simulated time.
    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..36_000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_and_status_follow_lnd_through_an_outage() {
        let fake = Fake::new(100);
        fake.st().replay = true;
        fake.st().version = Some(version("0.21.2-beta"));
        fake.st().down = true;
        let r = start(&fake, Network::Simnet);

        // Down at start: the task waits, not ready, saying why.
        eventually("not ready with a reason", || {
            r.readiness
                .check()
                .is_err_and(|v| v.iter().any(|(_, why)| why.contains("connection refused")))
        })
        .await;
        assert!(r.handle.get().is_none());
        assert!(!r.status.borrow().connected);

        fake.up();
        eventually("connected", || r.status.borrow().connected).await;
        assert!(r.readiness.check().is_ok());
        assert!(r.handle.get().is_some());
        assert_eq!(r.status.borrow().alias, "fake");
        assert_eq!(r.status.borrow().version, "0.21.2-beta");
        fake.mine();
        eventually("height 101", || r.status.borrow().block_height == 101).await;

        // An outage is noticed by the next poll; blocks mined meanwhile arrive after it.
        fake.crash();
        eventually("readiness lost", || r.readiness.check().is_err()).await;
        assert!(!r.status.borrow().connected);
        fake.mine();
        fake.mine();
        fake.up();
        eventually("ready again", || r.readiness.check().is_ok()).await;
        eventually("height 103", || r.status.borrow().block_height == 103).await;

        r.stop.cancel();
        assert!(r.task.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_lnd_or_another_network_ends_the_task_with_the_reason() {
        let fake = Fake::new(100);
        fake.st().version = Some(version("0.17.5-beta"));
        let r = start(&fake, Network::Regtest);
        let err = r.task.await.unwrap().unwrap_err();
        assert!(matches!(err, ConnectError::VersionTooOld { .. }), "{err}");
        assert!(r.readiness.check().is_err());
        assert!(
            r.status
                .borrow()
                .error
                .as_deref()
                .unwrap()
                .contains("0.17.5-beta")
        );

        fake.st().version = Some(version("0.21.2-beta"));
        let r = start(&fake, Network::Mainnet);
        let err = r.task.await.unwrap().unwrap_err();
        assert!(matches!(err, ConnectError::NetworkMismatch { .. }), "{err}");
    }
}
