//! Finding the daemon and calling it: address, certificate and credential from flags, env or
//! the default data dir; a pinned TLS channel; statuses turned into operator messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{Args, CliError};
use crate::api::auth;
use crate::proto::sluice::sluice_client::SluiceClient;
use crate::tls::{self, TlsError};

/// How long TCP connect plus TLS handshake may take before the daemon counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The data dir's name under the home directory, as `sluiced` uses it.
const DEFAULT_DATADIR: &str = ".sluice";

/// The certificate's file name in the data dir.
pub const TLS_CERT_FILE: &str = "tls.cert";

/// A client of the `sluice.v1.Sluice` service presenting one credential.
pub type Client = SluiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <hex>` to every call; the value is marked sensitive so HTTP/2
/// tracing never prints it.
#[derive(Clone)]
pub struct Bearer(AsciiMetadataValue);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// Where the daemon is and how to prove who we are to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// host:port of the daemon's API.
    pub addr: String,
    /// The daemon's certificate, pinned.
    pub tls_cert: PathBuf,
    /// The credential file to present.
    pub credential: PathBuf,
}

/// Expands a leading `~/` (env values are not expanded by the shell).
fn expand(path: &Path, home: Option<&Path>) -> Result<PathBuf, CliError> {
    match path.strip_prefix("~") {
        Ok(rest) => Ok(home.ok_or(CliError::NoHome)?.join(rest)),
        Err(_) => Ok(path.to_owned()),
    }
}

impl Target {
    /// Resolves flags and env (already merged by clap) against the defaults: data dir
    /// `~/.sluice`, `<datadir>/tls.cert`, `<datadir>/admin.credential`. `home` is only needed
    /// when a default under it is used.
    pub fn resolve(args: &Args, home: Option<PathBuf>) -> Result<Target, CliError> {
        let home = home.as_deref();
        let datadir = || -> Result<PathBuf, CliError> {
            match &args.datadir {
                Some(dir) => expand(dir, home),
                None => Ok(home.ok_or(CliError::NoHome)?.join(DEFAULT_DATADIR)),
            }
        };
        let tls_cert = match &args.tlscert {
            Some(p) => expand(p, home)?,
            None => datadir()?.join(TLS_CERT_FILE),
        };
        let credential = match &args.credential {
            Some(p) => expand(p, home)?,
            None => datadir()?.join(auth::ADMIN_FILE),
        };
        Ok(Target {
            addr: args.rpcserver.clone(),
            tls_cert,
            credential,
        })
    }

    fn unreachable(&self, hint: Option<String>) -> CliError {
        CliError::Unreachable {
            addr: self.addr.clone(),
            hint,
        }
    }

    /// Connects to the daemon and loads the credential. The certificate is read first: a
    /// daemon that never started has none, and that is reported as unreachable with a hint.
    pub async fn connect(&self) -> Result<Client, CliError> {
        let cert = match std::fs::read(&self.tls_cert) {
            Ok(cert) => cert,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.unreachable(Some(format!(
                    "no TLS certificate at {}: sluiced writes it there on first start; \
                     pass --tlscert or --datadir if it lives elsewhere",
                    self.tls_cert.display()
                ))));
            }
            Err(source) => {
                return Err(CliError::Tls(TlsError::File {
                    action: "read",
                    path: self.tls_cert.clone(),
                    source,
                }));
            }
        };
        let channel = tls::pinned_channel(&self.addr, &cert, CONNECT_TIMEOUT)
            .await
            .map_err(|e| match e {
                TlsError::Unreachable { .. } | TlsError::Timeout { .. } => self.unreachable(None),
                TlsError::Handshake { source, .. } => self.unreachable(Some(format!(
                    "something answers there but the TLS handshake failed ({source}); \
                     is {} the daemon's RPC address?",
                    self.addr
                ))),
                TlsError::Channel { .. } => self.unreachable(None),
                TlsError::CertMismatch { .. } => CliError::CertMismatch {
                    addr: self.addr.clone(),
                    cert: self.tls_cert.clone(),
                },
                other => CliError::Tls(other),
            })?;
        let token =
            auth::read_token(&self.credential).map_err(|source| CliError::Credential { source })?;
        let mut value: AsciiMetadataValue =
            MetadataValue::try_from(token.bearer()).map_err(|_| CliError::Credential {
                source: crate::api::ApiError::CredentialContent {
                    path: self.credential.clone(),
                    reason: "not usable as metadata".to_owned(),
                },
            })?;
        value.set_sensitive(true);
        Ok(SluiceClient::with_interceptor(channel, Bearer(value)))
    }

    /// Turns a failed call into the message the operator reads; `action` says what the
    /// command tried to do ("stop the daemon").
    pub fn call_error(&self, status: tonic::Status, action: &'static str) -> CliError {
        match status.code() {
            tonic::Code::Unauthenticated => CliError::Unauthenticated {
                addr: self.addr.clone(),
                credential: self.credential.clone(),
                message: status.message().to_owned(),
            },
            tonic::Code::PermissionDenied => CliError::PermissionDenied {
                credential: self.credential.clone(),
                action,
            },
            // A status the daemon itself sent has no transport error behind it and says which
            // of its parts is not ready; only a failed connection means "is it running?".
            tonic::Code::Unavailable if std::error::Error::source(&status).is_none() => {
                CliError::NotReady {
                    addr: self.addr.clone(),
                    message: status.message().to_owned(),
                }
            }
            tonic::Code::Unavailable => self.unreachable(None),
            code => CliError::Rpc {
                addr: self.addr.clone(),
                code,
                message: status.message().to_owned(),
            },
        }
    }
}
