//! Start, run and stop the daemon.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::api;
use crate::config::{Config, LogFormat};
use crate::daemon::lockfile::{DataDirLock, LockError};
use crate::daemon::logging::{self, Format, LoggingError};
use crate::daemon::supervisor::Supervisor;
use crate::domain::{NodeStatus, PolicyStatus};
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

    // 4. Listeners: bind both before serving either, so a taken port fails the start cleanly.
    let rpc_listener = bind("rpc.listen", config.rpc.listen).await?;
    let metrics_listener = bind("metrics.listen", config.metrics.listen).await?;
    let rpc_addr = rpc_listener.local_addr().ok();
    let metrics_addr = metrics_listener.local_addr().ok();
    if let Err(e) = lock.record(rpc_addr, metrics_addr) {
        tracing::warn!(error = %e, "cannot record listen addresses in the lock file");
    }

    // 5. Tasks, all owned by the supervisor.
    let supervisor = Supervisor::new();
    let metrics = Metrics::new(crate::VERSION);
    let readiness = Readiness::new(&["store"]);
    readiness.set("store", store.ping().await.map_err(|e| e.to_string()));

    let (_node_tx, node_rx) = tokio::sync::watch::channel(NodeStatus {
        error: Some(if config.simnet {
            "the embedded simnet is not running in this build".to_owned()
        } else {
            "lnd is not connected yet".to_owned()
        }),
        ..NodeStatus::default()
    });
    let (_policy_tx, policy_rx) = tokio::sync::watch::channel(PolicyStatus {
        directory: config.policies.dir.display().to_string(),
        ..PolicyStatus::default()
    });
    let state = Arc::new(api::ApiState {
        version: crate::VERSION.to_owned(),
        network: config.network,
        data_dir: config.data_dir.clone(),
        simnet: config.simnet,
        started,
        stop: supervisor.token(),
        node: node_rx,
        policy: policy_rx,
        autoloop: std::sync::OnceLock::new(),
    });
    let token = supervisor.token();
    supervisor.spawn("api", async move {
        api::serve(rpc_listener, &identity, credentials, state, token).await
    });
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

    // 6. Run until asked to stop.
    tokio::select! {
        () = termination_signal() => {}
        () = supervisor.cancelled() => tracing::info!("stop requested"),
    }

    // 7. Shutdown: tasks finish their in-progress work, then the store is closed last.
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

/// The address actually bound, or the configured one if the OS would not say.
fn display_addr(bound: Option<SocketAddr>, configured: SocketAddr) -> SocketAddr {
    bound.unwrap_or(configured)
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
