//! TLS for sluice's own gRPC API and for clients of self-signed gRPC servers such as lnd.
//!
//! Two halves:
//! - [`generate_self_signed`] / [`load_or_create_identity`]: the certificate `sluiced` serves its
//!   API with, created in the data dir on first start as lnd does.
//! - [`pinned_channel`] / [`pinned_channel_lazy`]: a tonic [`Channel`] that trusts exactly one
//!   certificate, compared byte for byte. lnd marks its self-signed `tls.cert` as a CA, which
//!   webpki refuses as an end-entity certificate (`CaUsedAsEndEntity`, lnd issue #5450), so the
//!   usual "use the cert as a root" approach never works against a stock lnd. Pinning the exact
//!   DER is what lnd's own clients do in effect, and ignores hostname and expiry as lnd users
//!   expect.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A certificate and its private key, both PEM. `Debug` never prints the key.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM. Secret.
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Why a certificate could not be made or loaded, or a pinned connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters (e.g. a host name that is not a valid DNS name).
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Reading or writing a certificate or key file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// What was being done ("read", "write", "create the directory of").
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Only one of the certificate and key files exists, so neither can be trusted.
    #[error(
        "{} exists but {} does not; delete the remaining file so both are generated again",
        present.display(), missing.display()
    )]
    HalfIdentity {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A PEM input did not hold what it should.
    #[error("{what}: {reason}")]
    BadPem {
        /// Which input (a path, or "pinned certificate").
        what: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// The address is not `host:port`.
    #[error("`{addr}` is not a host:port address: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing accepted a TCP connection (refused, unresolvable, unroutable). Transient.
    #[error("cannot connect to {addr}: {source}")]
    Unreachable {
        /// The address dialled.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// TCP connect plus TLS handshake did not finish in time. Transient.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The address dialled.
        addr: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// The server's certificate is not the pinned one: a different server, or a regenerated cert.
    #[error(
        "{addr} presented a TLS certificate that does not match the pinned certificate; \
         if the server regenerated its tls.cert, point the client at the new file"
    )]
    CertMismatch {
        /// The address dialled.
        addr: String,
    },
    /// The TLS handshake failed for another reason (e.g. the peer does not speak TLS).
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        /// The address dialled.
        addr: String,
        /// The handshake error.
        source: io::Error,
    },
    /// The TLS connection was made but the HTTP/2 channel could not be set up.
    #[error("cannot open a gRPC channel to {addr}: {source}")]
    Channel {
        /// The address dialled.
        addr: String,
        /// tonic's error.
        source: tonic::transport::Error,
    },
}

impl TlsError {
    /// Whether retrying later may succeed without anyone changing files or flags.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TlsError::Unreachable { .. } | TlsError::Timeout { .. } | TlsError::Channel { .. }
        )
    }
}

/// Names every certificate always carries, so local clients can use any loopback form.
const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// P-256 self-signed certificate for `hosts` (DNS names and IPs; localhost, 127.0.0.1 and ::1
/// are always included). With `ca_like_lnd` it is marked as a CA with keyCertSign and serverAuth,
/// exactly the shape lnd generates, which the simnet uses to prove pinning works against it.
/// Validity starts at the beginning of the current month and lasts ten years: clients pin the
/// certificate and ignore expiry, and a long life avoids silent expiry for tools that do check.
pub fn generate_self_signed(hosts: &[String], ca_like_lnd: bool) -> Result<Identity, TlsError> {
    use chrono::Datelike;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };

    let mut names: Vec<String> = LOCAL_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    for h in hosts {
        if !h.is_empty() && !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sluice autogenerated cert");
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    let today = chrono::Utc::now().date_naive();
    let month = u8::try_from(today.month()).unwrap_or(1);
    params.not_before = rcgen::date_time_ymd(today.year(), month, 1);
    params.not_after = rcgen::date_time_ymd(today.year() + 10, month, 1);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if ca_like_lnd {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Loads the certificate and key from `cert` and `key`, or, when neither exists, generates a
/// server certificate for `hosts` and writes it there (key file mode 0600), as lnd does on first
/// start. Refuses a lone certificate or key, and files that do not parse.
pub fn load_or_create_identity(
    cert: &Path,
    key: &Path,
    hosts: &[String],
) -> Result<Identity, TlsError> {
    match (cert.exists(), key.exists()) {
        (true, true) => {
            let read = |path: &Path| {
                std::fs::read_to_string(path).map_err(|source| TlsError::File {
                    action: "read",
                    path: path.to_owned(),
                    source,
                })
            };
            let identity = Identity {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
            };
            parse_certs(identity.cert_pem.as_bytes(), &cert.display().to_string())?;
            PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|e| {
                TlsError::BadPem {
                    what: key.display().to_string(),
                    reason: format!(
                        "no PEM private key ({e}); delete it and {} to generate both again",
                        cert.display()
                    ),
                }
            })?;
            Ok(identity)
        }
        (true, false) => Err(TlsError::HalfIdentity {
            present: cert.to_owned(),
            missing: key.to_owned(),
        }),
        // The key is written first and the certificate last, each through a temporary file and
        // a rename, so the certificate's existence marks a finished creation. A key without a
        // certificate is what a first start interrupted in between leaves: nobody can have
        // pinned a certificate that was never written, so both are made anew.
        (false, true) | (false, false) => {
            let identity = generate_self_signed(hosts, false)?;
            write_atomically(key, identity.key_pem.as_bytes(), 0o600)?;
            write_atomically(cert, identity.cert_pem.as_bytes(), 0o644)?;
            Ok(identity)
        }
    }
}

/// Writes `contents` to `path` through a fresh temporary file renamed into place, so `path`
/// either does not exist or holds everything, with `mode` from the moment it exists.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // A leftover from an interrupted attempt is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, contents, mode)?;
    std::fs::rename(&tmp, path).map_err(|source| TlsError::File {
        action: "rename into place",
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a file that must not exist yet, with `mode` from the moment it exists,
/// creating its directory if needed.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    let err = |action, source| TlsError::File {
        action,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err("create the directory of", e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| err("create", e))?;
    file.write_all(contents).map_err(|e| err("write", e))?;
    file.sync_all().map_err(|e| err("write", e))
}

/// Every certificate in a PEM input; an input without one is an error naming `what`.
fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: what.to_owned(),
            reason: format!("malformed PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            what: what.to_owned(),
            reason: "no `BEGIN CERTIFICATE` block; expected a PEM certificate such as tls.cert"
                .to_owned(),
        });
    }
    Ok(certs)
}

/// Accepts a server whose leaf certificate is byte-identical to one of the pinned ones, and
/// still checks that the server holds the certificate's key (handshake signatures).
#[derive(Debug)]
struct PinnedVerifier {
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

/// The marker error a pin mismatch travels as inside rustls, recognised again in [`classify_handshake`].
#[derive(Debug, thiserror::Error)]
#[error("certificate does not match the pinned certificate")]
struct PinMismatch;

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The pieces every connection to one pinned server needs.
#[derive(Clone)]
struct Dialer {
    addr: Arc<str>,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    timeout: Duration,
}

type Io = TokioIo<TlsStream<TcpStream>>;

impl Dialer {
    fn new(addr: &str, cert_pem: &[u8], timeout: Duration) -> Result<Dialer, TlsError> {
        let invalid = |reason: &str| TlsError::InvalidAddress {
            addr: addr.to_owned(),
            reason: reason.to_owned(),
        };
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| invalid("no port; expected host:port such as 127.0.0.1:11011"))?;
        port.parse::<u16>()
            .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| invalid("the host is neither a DNS name nor an IP address"))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedVerifier {
            pinned: parse_certs(cert_pem, "pinned certificate")?,
            provider: provider.clone(),
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::BadPem {
                what: "TLS configuration".to_owned(),
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Dialer {
            addr: addr.into(),
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// TCP connect plus TLS handshake, bounded by the connect timeout.
    async fn dial(&self) -> Result<Io, TlsError> {
        let addr = self.addr.to_string();
        let attempt = async {
            let tcp =
                TcpStream::connect(&*self.addr)
                    .await
                    .map_err(|source| TlsError::Unreachable {
                        addr: addr.clone(),
                        source,
                    })?;
            let _ = tcp.set_nodelay(true);
            self.tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map(TokioIo::new)
                .map_err(|source| classify_handshake(&addr, source))
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| TlsError::Timeout {
                addr: addr.clone(),
                timeout: self.timeout,
            })?
    }

    fn endpoint(&self) -> Result<Endpoint, TlsError> {
        let invalid = |e: &dyn std::fmt::Display| TlsError::InvalidAddress {
            addr: self.addr.to_string(),
            reason: e.to_string(),
        };
        // The connector does TLS itself, so tonic must see plain `http`; the `:scheme` sent to
        // the server is still `https` through the origin.
        let origin: Uri = format!("https://{}", self.addr)
            .parse()
            .map_err(|e| invalid(&e))?;
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| invalid(&e))?
            .origin(origin)
            .http2_keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20)))
    }
}

/// Recognises a pin mismatch inside the handshake error tokio-rustls returns.
fn classify_handshake(addr: &str, source: io::Error) -> TlsError {
    let mismatch = source
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<PinMismatch>().is_some()
            }
            _ => false,
        });
    if mismatch {
        TlsError::CertMismatch {
            addr: addr.to_owned(),
        }
    } else {
        TlsError::Handshake {
            addr: addr.to_owned(),
            source,
        }
    }
}

/// The tower service tonic calls for every (re)connection. The eager variant hands over the
/// connection it already made for the first call, so connecting once costs one handshake.
#[derive(Clone)]
struct PinnedConnector {
    dialer: Dialer,
    first: Arc<Mutex<Option<Io>>>,
}

impl tower::Service<Uri> for PinnedConnector {
    type Response = Io;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<Io, TlsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let ready = self.first.lock().ok().and_then(|mut first| first.take());
        let dialer = self.dialer.clone();
        Box::pin(async move {
            match ready {
                Some(io) => Ok(io),
                None => dialer.dial().await,
            }
        })
    }
}

/// A channel to `addr` (host:port) that trusts exactly the certificate(s) in `cert_pem`, ALPN h2.
/// Connects now, so an unreachable server, a timeout (`connect_timeout` bounds TCP plus TLS) or
/// a certificate mismatch is reported here with its own [`TlsError`] variant. Reconnects later
/// on its own.
pub async fn pinned_channel(
    addr: &str,
    cert_pem: &[u8],
    connect_timeout: Duration,
) -> Result<Channel, TlsError> {
    let dialer = Dialer::new(addr, cert_pem, connect_timeout)?;
    let endpoint = dialer.endpoint()?;
    let io = dialer.dial().await?;
    let connector = PinnedConnector {
        dialer,
        first: Arc::new(Mutex::new(Some(io))),
    };
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|source| TlsError::Channel {
            addr: addr.to_owned(),
            source,
        })
}

/// Like [`pinned_channel`], but connects on first use and after every disconnection, for
/// long-lived clients. Connection failures then surface as `UNAVAILABLE` statuses whose source
/// chain holds the [`TlsError`].
pub fn pinned_channel_lazy(
    addr: &str,
    cert_pem: &[u8],
    connect_timeout: Duration,
) -> Result<Channel, TlsError> {
    let dialer = Dialer::new(addr, cert_pem, connect_timeout)?;
    let endpoint = dialer.endpoint()?;
    Ok(endpoint.connect_with_connector_lazy(PinnedConnector {
        dialer,
        first: Arc::new(Mutex::new(None)),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
