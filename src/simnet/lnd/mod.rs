//! A simulated lnd: lnd's gRPC services, served over real TLS on loopback, in front of any
//! [`LightningNode`].
//!
//! sluice's real lnd client ([`crate::lnd::LndClient`] over a pinned channel) talks to it
//! exactly as to lnd: same services and messages (`proto/lnd/`), a CA-marked self-signed
//! certificate in `<dir>/tls.cert`, a macaroon in `<dir>/admin.macaroon` required on every
//! call and refused with lnd's own words, and errors sent the way lnd sends them, so the
//! client's classification gives back the kind the node meant.
//!
//! - [`auth`]: the credential files and the macaroon check.
//! - [`convert`]: domain → wire answers, wire → domain requests, checked.
//! - [`status`]: `NodeError` → gRPC status.
//! - `lightning`, `payments`, `wallet`, `chain`: the seven service implementations on
//!   [`LndFacade`].
//!
//! [`SimLndServer`] runs the server and can stop and start it again on the same port with
//! the same files, which is how the reconnect behaviour of the daemon is tested.

pub mod auth;
mod chain;
pub mod convert;
mod facade;
mod lightning;
mod payments;
pub mod status;
mod wallet;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};

pub use auth::LndFiles;
pub use facade::{BlockSource, LndFacade, SHUTTING_DOWN};

use crate::daemon::supervisor::bounded_drain;
use crate::lnd::LightningNode;
use crate::lnd::wire::chainrpc::chain_notifier_server::ChainNotifierServer;
use crate::lnd::wire::invoicesrpc::invoices_server::InvoicesServer;
use crate::lnd::wire::lnrpc::lightning_server::LightningServer;
use crate::lnd::wire::routerrpc::router_server::RouterServer;
use crate::lnd::wire::signrpc::signer_server::SignerServer;
use crate::lnd::wire::verrpc::versioner_server::VersionerServer;
use crate::lnd::wire::walletrpc::wallet_kit_server::WalletKitServer;

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long calls in flight may finish once the server is told to stop. Streams end at once
/// (with `UNAVAILABLE`), so this only bounds unary calls.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// The largest message the server sends or accepts, as lnd allows (200 MiB).
const MAX_MESSAGE_SIZE: usize = 200 * 1024 * 1024;

/// Why the simulated lnd could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum SimLndError {
    /// A credential file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The certificate could not be generated.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The listen address could not be bound (in use, not local).
    #[error("cannot listen on {addr}: {source}; choose another address or port (0 = any)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// tonic refused the TLS configuration.
    #[error("cannot configure TLS for the simulated lnd: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A simulated lnd serving one node. Dropping it stops the server.
pub struct SimLndServer {
    node: Arc<dyn LightningNode>,
    blocks: Option<Arc<dyn BlockSource>>,
    files: LndFiles,
    addr: SocketAddr,
    running: Option<Running>,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl std::fmt::Debug for SimLndServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLndServer")
            .field("addr", &self.addr)
            .field("files", &self.files)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl SimLndServer {
    /// Loads or creates the credential files in `dir` and serves `node` on `listen` (port 0
    /// picks a free port; [`addr`](Self::addr) tells which). Block epoch subscriptions start
    /// at the tip; [`start_with_chain`](Self::start_with_chain) also catches clients up.
    pub async fn start(
        node: Arc<dyn LightningNode>,
        dir: &Path,
        listen: SocketAddr,
    ) -> Result<SimLndServer, SimLndError> {
        SimLndServer::start_with_chain(node, None, dir, listen).await
    }

    /// Like [`start`](Self::start), with the chain the node runs on, so a block epoch
    /// subscription naming the last block its client saw gets the blocks it missed.
    pub async fn start_with_chain(
        node: Arc<dyn LightningNode>,
        blocks: Option<Arc<dyn BlockSource>>,
        dir: &Path,
        listen: SocketAddr,
    ) -> Result<SimLndServer, SimLndError> {
        let files = LndFiles::load_or_create(dir)?;
        let mut server = SimLndServer {
            node,
            blocks,
            files,
            addr: listen,
            running: None,
        };
        server.serve().await?;
        Ok(server)
    }

    /// The address the server listens on (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `tls.cert`, the file clients pin.
    pub fn cert_path(&self) -> &Path {
        &self.files.cert_path
    }

    /// `admin.macaroon`, the file clients authenticate with.
    pub fn macaroon_path(&self) -> &Path {
        &self.files.macaroon_path
    }

    /// The certificate clients pin, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.files.identity.cert_pem
    }

    /// The macaroon as clients send it. Secret: never log it.
    pub fn macaroon_hex(&self) -> String {
        self.files.macaroon_hex()
    }

    /// Whether the server is serving.
    pub fn is_running(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.task.is_finished())
    }

    /// Stops serving: open streams end with `UNAVAILABLE`, calls in flight get a moment to
    /// finish, then every connection is closed and the port is free. Stopping a stopped
    /// server does nothing.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.cancel();
            match running.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(addr = %self.addr, error = %e, "simulated lnd ended with an error")
                }
                Err(e) => {
                    tracing::warn!(addr = %self.addr, error = %e, "simulated lnd task failed")
                }
            }
        }
    }

    /// Serves again on the same address with the same certificate and macaroon, as an lnd
    /// restart does; clients reconnect without any change. Restarting a running server
    /// stops it first.
    pub async fn restart(&mut self) -> Result<(), SimLndError> {
        self.stop().await;
        self.serve().await
    }

    async fn serve(&mut self) -> Result<(), SimLndError> {
        // tonic's TLS acceptor uses the process-wide rustls provider; keep it ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| SimLndError::Bind {
                addr: self.addr,
                source,
            })?;
        self.addr = listener.local_addr().map_err(|source| SimLndError::Bind {
            addr: self.addr,
            source,
        })?;
        let stop = CancellationToken::new();
        let facade = LndFacade::new(self.node.clone(), self.blocks.clone(), stop.clone());
        let check = self.files.checker();
        let tls = ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.files.identity.cert_pem,
                &self.files.identity.key_pem,
            ))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        // Every service checks the macaroon before its handler runs, as lnd's interceptor
        // chain does; sizes are lnd's, so a big node's answers fit.
        macro_rules! guarded {
            ($server:ident) => {
                tonic::service::interceptor::InterceptedService::new(
                    $server::new(facade.clone())
                        .max_decoding_message_size(MAX_MESSAGE_SIZE)
                        .max_encoding_message_size(MAX_MESSAGE_SIZE),
                    check.clone(),
                )
            };
        }
        let router = Server::builder()
            .tls_config(tls)?
            .add_service(guarded!(LightningServer))
            .add_service(guarded!(RouterServer))
            .add_service(guarded!(WalletKitServer))
            .add_service(guarded!(SignerServer))
            .add_service(guarded!(ChainNotifierServer))
            .add_service(guarded!(InvoicesServer))
            .add_service(guarded!(VersionerServer));
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let server = router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), token.cancelled());
            bounded_drain(server, &token, SHUTDOWN_DRAIN)
                .await
                .unwrap_or(Ok(()))
        });
        tracing::info!(addr = %self.addr, "simulated lnd serving");
        self.running = Some(Running { stop, task });
        Ok(())
    }
}

impl Drop for SimLndServer {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.stop.cancel();
        }
    }
}
