//! loopd's own API, `looprpc.SwapClient` (`proto/loopd/`), served by sluiced so that Loop's
//! `loop` CLI and the tools built on loopd's gRPC API drive sluice unchanged.
//!
//! - [`macaroons`]: `loop.macaroon` and `readonly.macaroon`, and the check of every call
//!   against Loop's permission table.
//! - [`service`]: the handlers, mapped onto the swap engine, the store and autoloop.
//! - [`liquidity`]: `SuggestSwaps` and `GetLiquidityParams` from sluice's policy.
//! - [`convert`]: sluice's swaps in Loop's words.
//!
//! Files live in `<datadir>/loopd/<network>/` (`tls.cert`, `tls.key`, `loop.macaroon`,
//! `readonly.macaroon`, `macaroons.key`), laid out like `~/.loop/<network>/`, so
//! `loop --loopdir <datadir>/loopd` finds them. **API boundary:** the only module that touches
//! Loop's client wire types.

pub mod convert;
pub mod liquidity;
pub mod macaroons;
pub mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};

pub use macaroons::{MacaroonFileError, Macaroons};
pub use service::{LoopdInfo, LoopdService};

use crate::api::ApiState;
use crate::daemon::supervisor::bounded_drain;
use crate::domain::Network;
use crate::proto::loopd::looprpc::swap_client_server::SwapClientServer;
use crate::tls;

/// The directory under the data dir that plays `~/.loop`.
pub const DIR: &str = "loopd";

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long calls in flight may finish after shutdown begins.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Why the loopd API could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum LoopdApiError {
    /// The macaroon files.
    #[error("loopd API macaroons: {0}")]
    Macaroons(#[from] MacaroonFileError),
    /// The TLS identity.
    #[error("loopd API TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The server failed.
    #[error("loopd API server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The loopd API's files for one network: the directory `loop --loopdir` looks in.
#[derive(Debug, Clone)]
pub struct LoopdFiles {
    /// `<datadir>/loopd/<network>/`.
    pub dir: PathBuf,
    /// The certificate and key.
    pub identity: tls::Identity,
    /// The macaroons.
    pub macaroons: Macaroons,
}

impl LoopdFiles {
    /// Where the files for `network` live under `data_dir`.
    pub fn dir_for(data_dir: &Path, network: Network) -> PathBuf {
        data_dir.join(DIR).join(convert::loop_network(network))
    }

    /// Loads or creates the certificate (valid for loopback and `hosts`) and the macaroons.
    pub fn load_or_create(
        data_dir: &Path,
        network: Network,
        hosts: &[String],
    ) -> Result<LoopdFiles, LoopdApiError> {
        let dir = Self::dir_for(data_dir, network);
        let macaroons = Macaroons::load_or_create(&dir)?;
        let identity =
            tls::load_or_create_identity(&dir.join("tls.cert"), &dir.join("tls.key"), hosts)?;
        Ok(LoopdFiles {
            dir,
            identity,
            macaroons,
        })
    }

    /// The certificate clients pin.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("tls.cert")
    }
}

/// Serves `looprpc.SwapClient` on `listener` until `shutdown`; every call is checked against
/// the macaroons first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    files: LoopdFiles,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> Result<(), LoopdApiError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let info = LoopdInfo {
        rpc_listen: addr.map(|a| a.to_string()).unwrap_or_default(),
        macaroon_path: files.macaroons.admin_path().display().to_string(),
        tls_cert_path: files.cert_path().display().to_string(),
    };
    let tls_config = ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            &files.identity.cert_pem,
            &files.identity.key_pem,
        ))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    let router = Server::builder()
        .tls_config(tls_config)?
        .layer(macaroons::MacaroonLayer::new(files.macaroons.clone()))
        .add_service(SwapClientServer::new(LoopdService::new(state, info)));
    let signal = {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    };
    let server = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    match bounded_drain(server, &shutdown, SHUTDOWN_DRAIN).await {
        Some(result) => result?,
        None => {
            tracing::info!("loopd API clients still connected after {SHUTDOWN_DRAIN:?}; closed")
        }
    }
    Ok(())
}
