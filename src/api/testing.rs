//! A real API server on 127.0.0.1:0 with a temporary data dir, for the API's and the CLI's tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;

use super::state::NodeHandle;
use super::{ApiError, ApiState, Credentials, auth, serve};
use crate::domain::{Network, NodeStatus, PolicyStatus};
use crate::proto::sluice::sluice_client::SluiceClient;
use crate::tls;

pub(crate) struct Harness {
    pub(crate) addr: String,
    pub(crate) cert_pem: String,
    pub(crate) data_dir: tempfile::TempDir,
    pub(crate) stop: CancellationToken,
    pub(crate) shutdown: CancellationToken,
    pub(crate) node: watch::Sender<NodeStatus>,
    pub(crate) lnd: NodeHandle,
    _policy: watch::Sender<PolicyStatus>,
    pub(crate) server: tokio::task::JoinHandle<Result<(), ApiError>>,
}

pub(crate) async fn start() -> Harness {
    let data_dir = tempfile::tempdir().unwrap();
    let identity = tls::load_or_create_identity(
        &data_dir.path().join("tls.cert"),
        &data_dir.path().join("tls.key"),
        &[],
    )
    .unwrap();
    let creds = Credentials::load_or_create(data_dir.path()).unwrap();
    let (node, node_rx) = watch::channel(NodeStatus {
        connected: true,
        alias: "alice".into(),
        pubkey: "02aa".into(),
        block_height: 812_345,
        synced_to_chain: true,
        version: "0.21.2-beta".into(),
        error: None,
    });
    let (policy, policy_rx) = watch::channel(PolicyStatus {
        directory: "/policies".into(),
        files: vec!["inbound.yaml".into()],
        last_error: None,
    });
    let stop = CancellationToken::new();
    let shutdown = CancellationToken::new();
    let lnd = NodeHandle::default();
    let state = Arc::new(ApiState {
        version: crate::VERSION.to_owned(),
        network: Network::Signet,
        data_dir: data_dir.path().to_owned(),
        simnet: false,
        started: Instant::now(),
        stop: stop.clone(),
        node: node_rx,
        policy: policy_rx,
        swaps: None,
        lnd: lnd.clone(),
        autoloop: std::sync::OnceLock::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn({
        let identity = identity.clone();
        let shutdown = shutdown.clone();
        async move { serve(listener, &identity, creds, state, shutdown).await }
    });
    Harness {
        addr,
        cert_pem: identity.cert_pem,
        data_dir,
        stop,
        shutdown,
        node,
        lnd,
        _policy: policy,
        server,
    }
}

/// A boxed interceptor that adds (or leaves out) the credential.
pub(crate) type Intercept =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

/// A client of the harness' server.
pub(crate) type Client = SluiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Intercept>,
>;

impl Harness {
    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tls::pinned_channel(
            &self.addr,
            self.cert_pem.as_bytes(),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
    }

    /// A client presenting the content of `file` in the data dir, or nothing.
    pub(crate) async fn client(&self, file: Option<&str>) -> Client {
        let header: Option<MetadataValue<_>> = file.map(|f| {
            let token = auth::read_token(&self.data_dir.path().join(f)).unwrap();
            token.bearer().parse().unwrap()
        });
        let interceptor: Intercept = Box::new(move |mut req: tonic::Request<()>| {
            if let Some(h) = &header {
                req.metadata_mut().insert("authorization", h.clone());
            }
            Ok(req)
        });
        SluiceClient::with_interceptor(self.channel().await, interceptor)
    }
}
