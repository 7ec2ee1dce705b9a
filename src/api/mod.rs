//! sluice's gRPC API: `proto/sluice.proto` over TLS, with credentials, health and reflection.
//!
//! - [`auth`]: the two credential files and the layer that checks every call.
//! - [`error`]: [`ApiError`] and the one conversion into a gRPC status.
//! - [`state`]: what handlers read ([`ApiState`]).
//! - [`service`]: the `sluice.v1.Sluice` handlers.
//! - [`swaps`]: the swap RPCs' handlers ([`swaps::SwapBackend`]).
//!
//! Only this module (and the CLI, as a client) touches sluice's own wire types.

pub mod auth;
mod autoloop;
pub mod error;
pub mod service;
pub mod state;
pub mod swaps;

use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};

pub use auth::{Access, Credentials, Role};
pub use error::ApiError;
pub use state::ApiState;

use crate::daemon::supervisor::bounded_drain;
use crate::proto::sluice::sluice_server::SluiceServer;
use crate::tls;

/// The default listen address: loopback only, so exposing the API is a deliberate choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:11011";

/// The service name health checks report on.
pub const SERVICE_NAME: &str = "sluice.v1.Sluice";

/// How long a client may take to finish the TLS handshake before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight calls may finish after shutdown begins before connections are closed.
/// Short: every RPC is quick, and streams (`Monitor`) end with the daemon anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Serves the API on `listener` over TLS with `identity` until `shutdown` is cancelled, then
/// lets calls in flight finish. Every `sluice.v1.Sluice` call is checked against `creds`;
/// gRPC health (`sluice.v1.Sluice` and the server as a whole report SERVING while up) and
/// reflection v1 need no credential. Takes a bound listener so callers (and tests) choose the
/// port, including port 0.
pub async fn serve(
    listener: tokio::net::TcpListener,
    identity: &tls::Identity,
    creds: Credentials,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    // tonic's TLS acceptor uses the process-wide rustls provider. Installing ring explicitly
    // keeps that choice deterministic should another dependency ever enable a second provider;
    // an already installed provider is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let tls = ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    let router = Server::builder()
        .tls_config(tls)?
        .layer(auth::AuthLayer::new(creds))
        .add_service(health)
        .add_service(reflection)
        .add_service(SluiceServer::new(service::SluiceService::new(state)));

    let signal = {
        let shutdown = shutdown.clone();
        let reporter = reporter.clone();
        async move {
            shutdown.cancelled().await;
            reporter
                .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::NotServing)
                .await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        }
    };
    let server = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    match bounded_drain(server, &shutdown, SHUTDOWN_DRAIN).await {
        Some(result) => result?,
        None => tracing::info!("API clients still connected after {SHUTDOWN_DRAIN:?}; closed"),
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
