//! Start, run and stop the daemon.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::api;
use crate::config::{Config, LogFormat};
use crate::daemon::lockfile::{DataDirLock, LockError};
use crate::daemon::logging::{self, Format, LoggingError};
use crate::daemon::node;
use crate::daemon::supervisor::Supervisor;
use crate::domain::{NodeStatus, PolicyStatus};
use crate::lnd::LightningNode;
use crate::metrics::{self, Metrics, Readiness};
use crate::store::{Store, StoreError};
use crate::tls;

/// Why the daemon could not start or did not stop cleanly. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Logging could not be set up.
    #[error(transparent)]
    Logging(#[from] LoggingError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds the datadir.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The store refused to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS material could not be loaded or created.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Credentials could not be loaded or created.
    #[error(transparent)]
    Api(#[from] api::ApiError),
    /// The loopd API's certificate or macaroons could not be loaded or created.
    #[error(transparent)]
    LoopdApi(#[from] crate::loopd::LoopdApiError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({key}): {source}; is another program using that port?")]
    Bind {
        /// The config key of the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// lnd's certificate or macaroon could not be read.
    #[error(transparent)]
    Lnd(crate::lnd::connect::ConnectError),
    /// The swap server client could not be set up.
    #[error("cannot set up the swap server client: {0}")]
    SwapServer(String),
    /// The embedded simnet could not start.
    #[error("cannot start the embedded simnet: {0}")]
    Simnet(crate::simnet::runner::SimnetError),
    /// A task failed while running.
    #[error("task `{task}` failed: {error}")]
    Task {
        /// The task's name.
        task: &'static str,
        /// Its error.
        error: String,
    },
    /// Tasks did not stop within `shutdown.timeout`.
    #[error("shutdown timed out waiting for: {0}")]
    ShutdownTimeout(String),
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { key, addr, source })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Resolves on SIGINT or SIGTERM. If the handlers cannot be installed the daemon still stops
/// through `StopDaemon`; that is logged, not fatal.
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot install signal handlers");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the daemon with a validated config until a signal, `StopDaemon` or a task failure.
pub async fn run(config: Config) -> Result<(), RunError> {
    let started = Instant::now();
    let format = match config.log.format {
        LogFormat::Human => Format::Human,
        LogFormat::Json => Format::Json,
    };
    logging::init(&config.log.level, format)?;
    tracing::info!(version = crate::VERSION, network = %config.network, "sluiced starting");

    // 1. Data directory and its lock, before touching anything inside it.
    create_private_dir(&config.data_dir)?;
    let mut lock = DataDirLock::acquire(&config.data_dir)?;

    // 2. Store: migrations are applied, a newer schema is refused.
    let store = Store::open(&config.store.path).await?;
    store.claim_network(config.network).await?;
    match store.previous_run_was_clean().await {
        Ok(Some(false)) => {
            tracing::warn!("the previous run did not stop cleanly; resuming from the store")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the previous run's record"),
    }
    let run_id = store.record_start(crate::VERSION, unix_now()).await?;

    // 3. TLS identity and credentials for the API.
    let identity = tls::load_or_create_identity(
        &config.data_dir.join("tls.cert"),
        &config.data_dir.join("tls.key"),
        &api_hosts(config.rpc.listen),
    )?;
    let credentials = api::Credentials::load_or_create(&config.data_dir)?;
    let loopd_files = if config.loopd_api.enabled {
        Some(crate::loopd::LoopdFiles::load_or_create(
            &config.data_dir,
            config.network,
            &api_hosts(config.loopd_api.listen),
        )?)
    } else {
        None
    };

    // 4. Listeners: bind both before serving either, so a taken port fails the start cleanly.
    let rpc_listener = bind("rpc.listen", config.rpc.listen).await?;
    let metrics_listener = bind("metrics.listen", config.metrics.listen).await?;
    let loopd_listener = match &loopd_files {
        Some(_) => bind_loopd_api(&config.loopd_api).await?,
        None => None,
    };
    let rpc_addr = rpc_listener.local_addr().ok();
    let metrics_addr = metrics_listener.local_addr().ok();
    let loopd_addr = loopd_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Err(e) = lock.record(rpc_addr, metrics_addr, loopd_addr) {
        tracing::warn!(error = %e, "cannot record listen addresses in the lock file");
    }

    // 5. With --simnet, the embedded world: its simulated lnd is then reached exactly like a
    //    real one (gRPC, pinned TLS, macaroon), so everything below runs the production path.
    let mut config = config;
    let simnet = if config.simnet {
        let simnet = start_simnet(&config).await?;
        let lnd = simnet.sluice_lnd();
        config.lnd.host = lnd.addr.to_string();
        config.lnd.tls_cert_path = lnd.cert_path.clone();
        config.lnd.macaroon_path = lnd.macaroon_path.clone();
        config.server.address = simnet.swap_server_addr().to_string();
        config.server.tls = crate::config::ServerTls::Insecure;
        tracing::info!(
            lnd = %lnd.addr, swap_server = %simnet.swap_server_addr(),
            control = %simnet.control_addr(), dir = %config.data_dir.join(SIMNET_DIR).display(),
            "embedded simnet running"
        );
        Some(simnet)
    } else {
        None
    };

    // 6. Tasks, all owned by the supervisor.
    let supervisor = Supervisor::new();
    let metrics = Metrics::with_per_channel(crate::VERSION, config.metrics.per_channel);
    let readiness = Readiness::new(&["store", node::READINESS]);
    readiness.set("store", store.ping().await.map_err(|e| e.to_string()));

    let (node_tx, node_rx) = tokio::sync::watch::channel(NodeStatus {
        error: Some("lnd is not connected yet".to_owned()),
        ..NodeStatus::default()
    });
    let (policy_tx, policy_rx) = tokio::sync::watch::channel(PolicyStatus {
        directory: config.policies.dir.display().to_string(),
        ..PolicyStatus::default()
    });
    let lnd = api::state::NodeHandle::default();

    // One lnd client (one connection) shared by the node task and the swap engine.
    // Every call to lnd is timed into the metrics, once per attempt (below the retries).
    let lnd_client: Arc<dyn LightningNode> =
        Arc::new(crate::lnd::connect::open(&config.lnd, config.network).map_err(RunError::Lnd)?);
    let raw_node: Arc<dyn LightningNode> = Arc::new(crate::lnd::MeteredNode::new(
        lnd_client,
        rpc_observer(&metrics, Remote::Lnd),
    ));
    let engine_node: Arc<dyn LightningNode> =
        Arc::new(crate::lnd::ResilientNode::new(Arc::clone(&raw_node)));
    let swaps = swap_backend(&config, engine_node, store.clone(), &metrics)?;

    let state = Arc::new(api::ApiState {
        version: crate::VERSION.to_owned(),
        network: config.network,
        data_dir: config.data_dir.clone(),
        simnet: config.simnet,
        started,
        stop: supervisor.token(),
        node: node_rx,
        policy: policy_rx,
        swaps: swaps.clone(),
        lnd: lnd.clone(),
        autoloop: std::sync::OnceLock::new(),
    });
    let token = supervisor.token();
    let served_state = Arc::clone(&state);
    supervisor.spawn("api", async move {
        api::serve(rpc_listener, &identity, credentials, served_state, token).await
    });
    if let (Some(listener), Some(files)) = (loopd_listener, loopd_files) {
        let token = supervisor.token();
        let served_state = Arc::clone(&state);
        tracing::info!(
            listen = %display_addr(loopd_addr, config.loopd_api.listen),
            dir = %files.dir.display(),
            "loopd API: point Loop's loop CLI here with --rpcserver and --loopdir"
        );
        supervisor.spawn("loopd-api", async move {
            crate::loopd::serve(listener, files, served_state, token).await
        });
    }
    let task = node::NodeTask {
        config: config.lnd.clone(),
        network: config.network,
        status: node_tx,
        readiness: readiness.clone(),
        handle: lnd,
        metrics: Arc::clone(&metrics),
    };
    supervisor.spawn("lnd", task.run_with(raw_node, supervisor.token()));
    if let Some(backend) = swaps {
        let token = supervisor.token();
        let api_state = Arc::clone(&state);
        let policy_path = config.policies.dir.clone();
        let fresh_simnet = config.simnet && seed_simnet_policy(&policy_path);
        let metrics = Arc::clone(&metrics);
        let l402_dir = config.data_dir.join(L402_DIR);
        let autoloop_settings = config.autoloop.clone();
        supervisor.spawn("swaps", async move {
            // Unfinished swaps resume once the first block is known, before any new one.
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                resumed = backend.engine.resume_all() => match resumed {
                    Ok(n) => tracing::info!(swaps = n, "unfinished swaps resumed"),
                    Err(e) => return Err(SwapsTaskError::Engine(e)),
                },
            }
            let deps = crate::autoloop::AutoloopDeps {
                node: Arc::clone(&backend.node),
                provider: Arc::clone(&backend.provider),
                engine: backend.engine.clone(),
                store: backend.store.clone(),
                config: crate::autoloop::AutoloopConfig {
                    debounce: autoloop_settings.debounce,
                    tick: autoloop_settings.tick,
                    l402_dir: Some(l402_dir.clone()),
                    journal_retention: autoloop_settings.journal_retention,
                    fee_sample_every: autoloop_settings.fee_sample_every,
                    flow_windows_days: autoloop_settings.flow_windows_days.clone(),
                    ..crate::autoloop::AutoloopConfig::new(policy_path.clone())
                },
                clock: crate::swap::engine::system_clock(),
            };
            let autoloop = crate::autoloop::Autoloop::start(deps, token.clone()).await?;
            if fresh_simnet {
                // A first run of the demo world: show autoloop at work.
                autoloop.set_mode(crate::autoloop::Mode::On).await?;
            }
            tracing::info!(mode = %autoloop.mode().as_str(), "autoloop started");
            let _ = api_state.autoloop.set(autoloop.clone());
            let observer = super::observe::Observer {
                metrics,
                store: backend.store.clone(),
                engine: backend.engine.clone(),
                autoloop,
                policy: policy_tx,
                policy_dir: policy_path,
                l402_dir,
            };
            // Returns when the daemon stops.
            observer.run(token.clone()).await;
            backend.engine.stop().await;
            Ok(())
        });
    }
    if let Some(simnet) = simnet {
        let token = supervisor.token();
        supervisor.spawn("simnet", async move {
            token.cancelled().await;
            simnet.stop().await;
            Ok::<(), std::convert::Infallible>(())
        });
    }
    supervisor.spawn(
        "metrics",
        metrics::serve(
            metrics_listener,
            Arc::clone(&metrics),
            readiness,
            supervisor.token(),
        ),
    );
    tracing::info!(
        rpc = %display_addr(rpc_addr, config.rpc.listen),
        metrics = %display_addr(metrics_addr, config.metrics.listen),
        datadir = %config.data_dir.display(),
        "sluiced started"
    );

    // 7. Run until asked to stop.
    tokio::select! {
        () = termination_signal() => {}
        () = supervisor.cancelled() => tracing::info!("stop requested"),
    }

    // 8. Shutdown: tasks finish their in-progress work, then the store is closed last.
    tracing::info!(timeout = ?config.shutdown.timeout, "shutting down");
    let report = supervisor.shutdown(config.shutdown.timeout).await;
    if report.is_clean()
        && let Err(e) = store.record_stop(run_id, unix_now()).await
    {
        tracing::warn!(error = %e, "cannot record the clean stop");
    }
    store.close().await;
    drop(lock);
    tracing::info!(clean = report.is_clean(), "sluiced stopped");

    if let Some(f) = report.failure {
        return Err(RunError::Task {
            task: f.task,
            error: f.error,
        });
    }
    if !report.unfinished.is_empty() {
        return Err(RunError::ShutdownTimeout(report.unfinished.join(", ")));
    }
    Ok(())
}

/// The swap engine and the swap server client, when a swap server is configured.
fn swap_backend(
    config: &Config,
    node: Arc<dyn LightningNode>,
    store: Store,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<api::swaps::SwapBackend>>, RunError> {
    use crate::config::ServerTls;
    use crate::provider::client::{LoopServerClient, ServerTls as ClientTls};
    if config.server.address.is_empty() {
        tracing::warn!("no swap server configured (server.address): swaps are disabled");
        return Ok(None);
    }
    let l402 = crate::provider::l402::L402Config::from_server_config(
        &config.server,
        config.network,
        config.data_dir.join(L402_DIR),
    );
    let payer = Arc::new(crate::provider::node_payer::NodePayer(Arc::clone(&node)));
    let address = &config.server.address;
    let timeout = config.server.timeout;
    let client = match &config.server.tls {
        ServerTls::System => {
            LoopServerClient::connect(address, ClientTls::System, timeout, l402, payer)
        }
        ServerTls::Insecure => {
            LoopServerClient::connect(address, ClientTls::Insecure, timeout, l402, payer)
        }
        ServerTls::Pinned(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                RunError::SwapServer(format!(
                    "cannot read server.tls_cert {}: {e}",
                    path.display()
                ))
            })?;
            let channel = tls::pinned_channel_lazy(address, &pem, timeout)?;
            LoopServerClient::new(channel, timeout, l402, payer)
        }
    }
    .map_err(|e| RunError::SwapServer(e.to_string()))?
    .with_observer(rpc_observer(metrics, Remote::SwapServer));
    let provider: Arc<dyn crate::provider::port::SwapProvider> = Arc::new(client);
    let mut engine_config = crate::swap::engine::EngineConfig::new(config.network);
    engine_config.ceilings = config.swap;
    engine_config.sweep_finality_confirmations = config.sweep_confirmations;
    if config.simnet {
        // The simnet's blocks come every few seconds: a longer CLTV delta gives a person
        // watching a demo swap minutes, not seconds, between publication and the reveal limit.
        engine_config.conf_target = SIMNET_CONF_TARGET;
    }
    let engine = crate::swap::engine::SwapEngine::start(
        Arc::clone(&node),
        Arc::clone(&provider),
        store.clone(),
        engine_config.clone(),
    );
    Ok(Some(Arc::new(api::swaps::SwapBackend {
        engine,
        provider,
        node,
        store,
        config: engine_config,
    })))
}

/// Which remote an [`rpc_observer`] reports for.
#[derive(Clone, Copy)]
enum Remote {
    Lnd,
    SwapServer,
}

/// Times RPCs into the catalog's lnd or swap-server families.
fn rpc_observer(metrics: &Arc<Metrics>, remote: Remote) -> crate::domain::RpcObserver {
    let metrics = Arc::clone(metrics);
    Arc::new(move |method, elapsed, result| match remote {
        Remote::Lnd => metrics.catalog.observe_lnd_rpc(method, elapsed, result),
        Remote::SwapServer => metrics.catalog.observe_server_rpc(method, elapsed, result),
    })
}

/// Why the swap engine or autoloop stopped the daemon.
#[derive(Debug, thiserror::Error)]
enum SwapsTaskError {
    /// Resuming unfinished swaps failed.
    #[error("resuming unfinished swaps failed: {0}")]
    Engine(crate::swap::EngineError),
    /// Autoloop could not start.
    #[error("autoloop could not start: {0}")]
    Autoloop(#[from] crate::autoloop::AutoloopError),
}

/// The example policy a fresh embedded simnet starts with (`policies/set-and-forget`).
const SIMNET_POLICY: &str = include_str!("../../policies/set-and-forget/policy.yaml");

/// On a fresh embedded simnet (no policy directory yet), writes the set-and-forget example
/// there so autoloop has something to do; returns whether it did.
fn seed_simnet_policy(dir: &std::path::Path) -> bool {
    if dir.exists() {
        return false;
    }
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join("set-and-forget.yaml"), SIMNET_POLICY));
    match written {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the simnet's example policy");
            false
        }
    }
}

/// Where L402 tokens for the swap server are kept inside the datadir.
const L402_DIR: &str = "l402";

/// The HTLC CLTV delta the embedded simnet's swaps ask for.
const SIMNET_CONF_TARGET: u32 = 100;

/// The embedded simnet's directory inside the datadir.
const SIMNET_DIR: &str = "simnet";

/// How often the embedded simnet mines a block: fast enough that a swap completes in minutes
/// when someone tries sluice, slow enough to watch.
const SIMNET_BLOCK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the embedded simnet in `<datadir>/simnet` with traffic on.
async fn start_simnet(config: &Config) -> Result<crate::simnet::runner::Simnet, RunError> {
    let mut simnet = crate::simnet::runner::SimnetConfig::new(config.data_dir.join(SIMNET_DIR));
    simnet.block_interval = Some(SIMNET_BLOCK_INTERVAL);
    simnet.traffic = true;
    // The demo: a channel below the seeded policy's band, so autoloop swaps from the start.
    simnet.depleted_first_channel = true;
    crate::simnet::runner::Simnet::start(simnet)
        .await
        .map_err(RunError::Simnet)
}

/// The address actually bound, or the configured one if the OS would not say.
fn display_addr(bound: Option<SocketAddr>, configured: SocketAddr) -> SocketAddr {
    bound.unwrap_or(configured)
}

/// Binds the loopd API. The default address taken (a loopd runs on this machine) leaves the
/// loopd API off with a warning rather than failing the start; an address the operator chose
/// must bind.
async fn bind_loopd_api(
    config: &crate::config::LoopdApiConfig,
) -> Result<Option<tokio::net::TcpListener>, RunError> {
    match bind("loopd_api.listen", config.listen).await {
        Ok(listener) => Ok(Some(listener)),
        Err(RunError::Bind { source, .. })
            if config.listen_defaulted && source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            tracing::warn!(
                addr = %config.listen,
                "loopd API off: its default address is taken (is loopd running here?); set \
                 loopd_api.listen to another address, or loopd_api.enabled: false"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Names the API certificate is valid for: loopback always, plus the listen IP when specific.
fn api_hosts(listen: SocketAddr) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        hosts.push(ip.to_string());
    }
    hosts
}

/// Creates the datadir with owner-only permissions (it holds credentials and keys).
fn create_private_dir(path: &std::path::Path) -> Result<(), RunError> {
    let err = |source| RunError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(err)?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_default_loopd_address_leaves_it_off_and_a_chosen_one_fails_the_start() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let defaulted = crate::config::LoopdApiConfig {
            enabled: true,
            listen: addr,
            listen_defaulted: true,
        };
        assert!(bind_loopd_api(&defaulted).await.unwrap().is_none());
        let chosen = crate::config::LoopdApiConfig {
            listen_defaulted: false,
            ..defaulted
        };
        let err = bind_loopd_api(&chosen).await.unwrap_err();
        assert!(err.to_string().contains("loopd_api.listen"), "{err}");
        drop(taken);
        assert!(bind_loopd_api(&chosen).await.unwrap().is_some());
    }
}
