//! Connecting to lnd the way lnd users expect: `host:port`, lnd's `tls.cert` pinned, the
//! macaroon file sent as hex metadata, then the version and the network checked before the
//! daemon relies on the node.
//!
//! [`open`] reads the files and builds the [`LndClient`] over one lazy, pinned channel (no
//! network I/O); [`check`] asks the node for its version and identity and compares them with
//! what sluice needs. [`connect`] does both. Every failure is a [`ConnectError`] whose message
//! names the config key and file involved and says what to change; [`ConnectError::is_transient`]
//! separates "lnd is not there yet, try again" from "the configuration is wrong".

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::LndClient;
use super::error::{NodeError, NodeErrorKind};
use super::port::LightningNode;
use super::types::NodeVersion;
use crate::config::LndConfig;
use crate::domain::{Network, NodeInfo};
use crate::tls::{self, TlsError};

/// The oldest lnd sluice runs against: the minimum Loop's client requires (P2TR HTLCs with
/// MuSig2 v1.0.0-rc2 and the `RegisterBlockEpochNtfn`/`TrackPaymentV2` behaviour it relies on).
pub const MIN_LND_VERSION: (u32, u32, u32) = (0, 18, 4);

/// The same minimum as lnd prints it, for messages.
pub const MIN_LND_VERSION_TEXT: &str = "0.18.4-beta";

/// The lnd build tags sluice needs, and the RPCs each one enables. `routerrpc` and `verrpc`
/// are part of every lnd build and need no tag.
pub const REQUIRED_BUILD_TAGS: &[(&str, &str)] = &[
    (
        "signrpc",
        "Signer: SignOutputRaw for HTLC sweeps, MuSig2 sessions for cooperative key spends",
    ),
    (
        "walletrpc",
        "WalletKit: DeriveNextKey/DeriveKey for swap keys, NextAddr for sweep addresses, \
         EstimateFee, PublishTransaction (and SendOutputs for `sluice loopserver`'s HTLCs)",
    ),
    (
        "chainrpc",
        "ChainNotifier: RegisterConfirmationsNtfn, RegisterSpendNtfn, RegisterBlockEpochNtfn",
    ),
    (
        "invoicesrpc",
        "Invoices: hold invoices (AddHoldInvoice, SettleInvoice, CancelInvoice, \
         SubscribeSingleInvoice)",
    ),
];

/// TCP connect plus TLS handshake to lnd must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why sluice cannot use the configured lnd. `Display` is the operator-facing message.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A configured file could not be read.
    #[error("cannot read {key} {}: {source}", path.display())]
    ReadFile {
        /// The config key (`lnd.tls_cert` or `lnd.macaroon`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The macaroon file is empty.
    #[error(
        "lnd.macaroon {} is empty; point it at lnd's admin.macaroon \
         (usually ~/.lnd/data/chain/bitcoin/<network>/admin.macaroon)",
        path.display()
    )]
    EmptyMacaroon {
        /// The file.
        path: PathBuf,
    },
    /// The certificate file or the host could not be used to set up the connection.
    #[error("lnd.tls_cert {} / lnd.host {host}: {source}", cert.display())]
    Setup {
        /// `lnd.host`.
        host: String,
        /// `lnd.tls_cert`.
        cert: PathBuf,
        /// What was wrong.
        source: TlsError,
    },
    /// lnd answered TLS with a certificate other than the pinned one.
    #[error(
        "lnd at {host} presented a certificate that does not match lnd.tls_cert {}; \
         copy lnd's current tls.cert there (lnd regenerates it when it is deleted or expires)",
        cert.display()
    )]
    CertMismatch {
        /// `lnd.host`.
        host: String,
        /// `lnd.tls_cert`.
        cert: PathBuf,
    },
    /// lnd refused the macaroon.
    #[error(
        "lnd at {host} rejected the macaroon in lnd.macaroon {} ({message}); use lnd's \
         admin.macaroon for this node and network, or a macaroon baked with the permissions \
         sluice needs",
        macaroon.display()
    )]
    MacaroonRejected {
        /// `lnd.host`.
        host: String,
        /// `lnd.macaroon`.
        macaroon: PathBuf,
        /// lnd's reason (never the macaroon).
        message: String,
    },
    /// Nothing usable answers at the address, or lnd is still starting. Transient.
    #[error("lnd at {host} is unreachable: {reason}")]
    Unreachable {
        /// `lnd.host`.
        host: String,
        /// What happened.
        reason: String,
    },
    /// lnd is older than [`MIN_LND_VERSION`].
    #[error(
        "lnd at {host} is version {found}, but sluice needs {MIN_LND_VERSION_TEXT} or newer; \
         upgrade lnd"
    )]
    VersionTooOld {
        /// `lnd.host`.
        host: String,
        /// The version lnd reported.
        found: String,
    },
    /// lnd was built without a sub-server sluice needs.
    #[error(
        "lnd at {host} ({version}) was built without the build tags {}; sluice needs {}. \
         Use an official lnd release or build with tags=\"signrpc walletrpc chainrpc invoicesrpc\"",
        missing.join(", "),
        missing.iter().map(|t| tag_purpose(t)).collect::<Vec<_>>().join("; ")
    )]
    MissingBuildTags {
        /// `lnd.host`.
        host: String,
        /// The version lnd reported.
        version: String,
        /// The tags that are missing.
        missing: Vec<String>,
    },
    /// lnd runs on another chain than sluice is configured for.
    #[error(
        "lnd at {host} runs on {lnd} but sluiced is configured for {ours}; set `network` \
         (SLUICE_NETWORK, --network) to {suggested} or point lnd.host at a {ours} lnd"
    )]
    NetworkMismatch {
        /// `lnd.host`.
        host: String,
        /// The chain lnd reports.
        lnd: Network,
        /// sluice's network.
        ours: Network,
        /// The sluice network that would pair with this lnd.
        suggested: Network,
    },
    /// Any other failure of a check call.
    #[error("lnd at {host}: {source}")]
    Node {
        /// `lnd.host`.
        host: String,
        /// The failed call.
        source: NodeError,
    },
}

impl ConnectError {
    /// Whether retrying later may succeed without the operator changing anything: lnd
    /// unreachable, starting, or its wallet still locked. Everything else fails the start.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectError::Unreachable { .. } => true,
            ConnectError::Node { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// What the RPCs behind a build tag are for, for [`ConnectError::MissingBuildTags`].
fn tag_purpose(tag: &str) -> String {
    REQUIRED_BUILD_TAGS
        .iter()
        .find(|(t, _)| *t == tag)
        .map_or_else(|| tag.to_owned(), |(t, why)| format!("{t} for {why}"))
}

/// The chain name lnd reports for the lnd sluice's `network` pairs with: the embedded
/// simnet speaks lnd's `regtest`.
pub fn lnd_network_for(ours: Network) -> Network {
    match ours {
        Network::Simnet => Network::Regtest,
        other => other,
    }
}

/// Whether an lnd reporting `lnd` may serve a sluice configured for `ours`.
pub fn networks_pair(ours: Network, lnd: Network) -> bool {
    lnd_network_for(ours) == lnd_network_for(lnd)
}

/// `major.minor.patch` from a version string such as `0.21.2-beta` or
/// `0.18.4-beta.rc1 commit=v0.18.4-beta`; `None` when it does not start that way.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let core = text.trim().trim_start_matches('v');
    let core = core
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

/// The version lnd reported, as numbers: the numeric fields when lnd filled them, else the
/// parsed string.
fn version_numbers(v: &NodeVersion) -> Option<(u32, u32, u32)> {
    if (v.major, v.minor, v.patch) != (0, 0, 0) {
        Some((v.major, v.minor, v.patch))
    } else {
        parse_version(&v.version)
    }
}

/// Checks a reported lnd build against [`MIN_LND_VERSION`] and [`REQUIRED_BUILD_TAGS`].
/// A pre-release of the minimum (e.g. `0.18.4-beta.rc1`) counts as the minimum.
pub fn check_version(host: &str, v: &NodeVersion) -> Result<(), ConnectError> {
    let found = if v.version.is_empty() {
        format!("{}.{}.{}", v.major, v.minor, v.patch)
    } else {
        v.version.clone()
    };
    match version_numbers(v) {
        Some(n) if n >= MIN_LND_VERSION => {}
        _ => {
            return Err(ConnectError::VersionTooOld {
                host: host.to_owned(),
                found,
            });
        }
    }
    let missing: Vec<String> = REQUIRED_BUILD_TAGS
        .iter()
        .filter(|(tag, _)| !v.build_tags.iter().any(|t| t == tag))
        .map(|(tag, _)| (*tag).to_owned())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ConnectError::MissingBuildTags {
            host: host.to_owned(),
            version: found,
            missing,
        })
    }
}

/// Checks lnd's chain against sluice's network.
pub fn check_network(host: &str, ours: Network, info: &NodeInfo) -> Result<(), ConnectError> {
    if networks_pair(ours, info.network) {
        Ok(())
    } else {
        Err(ConnectError::NetworkMismatch {
            host: host.to_owned(),
            lnd: info.network,
            ours,
            suggested: info.network,
        })
    }
}

/// Reads a macaroon file into the hex form lnd expects in metadata. A file that already
/// holds hex text (as some tools write) is accepted as it is.
pub fn read_macaroon_hex(path: &Path) -> Result<String, ConnectError> {
    let bytes = std::fs::read(path).map_err(|source| ConnectError::ReadFile {
        key: "lnd.macaroon",
        path: path.to_owned(),
        source,
    })?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let t = text.trim();
        if !t.is_empty() && t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(t.to_ascii_lowercase());
        }
    }
    if bytes.is_empty() {
        return Err(ConnectError::EmptyMacaroon {
            path: path.to_owned(),
        });
    }
    Ok(hex::encode(bytes))
}

/// Reads the files and builds the client over one lazy pinned channel that every service
/// shares and that reconnects by itself. Does no network I/O.
pub fn open(config: &LndConfig, network: Network) -> Result<LndClient, ConnectError> {
    let cert = std::fs::read(&config.tls_cert_path).map_err(|source| ConnectError::ReadFile {
        key: "lnd.tls_cert",
        path: config.tls_cert_path.clone(),
        source,
    })?;
    let macaroon = read_macaroon_hex(&config.macaroon_path)?;
    let channel =
        tls::pinned_channel_lazy(&config.host, &cert, CONNECT_TIMEOUT).map_err(|source| {
            ConnectError::Setup {
                host: config.host.clone(),
                cert: config.tls_cert_path.clone(),
                source,
            }
        })?;
    LndClient::new(channel, &macaroon, lnd_network_for(network)).map_err(|source| {
        ConnectError::Node {
            host: config.host.clone(),
            source,
        }
    })
}

/// The [`TlsError`] somewhere in an error's source chain, if any.
fn tls_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a TlsError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<TlsError>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// Turns a failed check call into the operator's message.
pub fn classify_failure(config: &LndConfig, err: NodeError) -> ConnectError {
    let host = config.host.clone();
    match tls_cause(&err) {
        Some(TlsError::CertMismatch { .. }) => {
            return ConnectError::CertMismatch {
                host,
                cert: config.tls_cert_path.clone(),
            };
        }
        Some(t) => {
            return ConnectError::Unreachable {
                host,
                reason: t.to_string(),
            };
        }
        None => {}
    }
    match err.kind {
        NodeErrorKind::PermissionDenied => ConnectError::MacaroonRejected {
            host,
            macaroon: config.macaroon_path.clone(),
            message: err.message,
        },
        _ => ConnectError::Node { host, source: err },
    }
}

/// What [`check`] learned about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// lnd's build.
    pub version: NodeVersion,
    /// lnd's identity and chain view.
    pub info: NodeInfo,
}

/// Asks `node` for its version and identity and checks both against what sluice needs.
/// `config` names the host and files in messages.
pub async fn check(
    node: &dyn LightningNode,
    config: &LndConfig,
    network: Network,
) -> Result<Checked, ConnectError> {
    let version = node
        .get_version()
        .await
        .map_err(|e| classify_failure(config, e))?;
    check_version(&config.host, &version)?;
    let info = node
        .get_info()
        .await
        .map_err(|e| classify_failure(config, e))?;
    check_network(&config.host, network, &info)?;
    Ok(Checked { version, info })
}

/// [`open`] then [`check`]: a checked client, ready for the daemon.
pub async fn connect(
    config: &LndConfig,
    network: Network,
) -> Result<(LndClient, Checked), ConnectError> {
    let client = open(config, network)?;
    let checked = check(&client, config, network).await?;
    Ok((client, checked))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::{BlockHeight, NodeId};

    fn version(text: &str, tags: &[&str]) -> NodeVersion {
        let (major, minor, patch) = parse_version(text).unwrap_or((0, 0, 0));
        NodeVersion {
            version: text.to_owned(),
            major,
            minor,
            patch,
            commit_hash: String::new(),
            build_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    const ALL_TAGS: [&str; 5] = [
        "signrpc",
        "walletrpc",
        "chainrpc",
        "invoicesrpc",
        "peersrpc",
    ];

    #[test]
    fn versions_parse_from_lnds_forms() {
        assert_eq!(parse_version("0.21.2-beta"), Some((0, 21, 2)));
        assert_eq!(
            parse_version("0.18.4-beta.rc1 commit=v0.18.4-beta.rc1"),
            Some((0, 18, 4))
        );
        assert_eq!(parse_version("v0.19.0"), Some((0, 19, 0)));
        assert_eq!(parse_version("0.20"), Some((0, 20, 0)));
        assert_eq!(parse_version("beta"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn the_minimum_version_and_build_tags_are_enforced() {
        assert!(check_version("h:1", &version("0.18.4-beta", &ALL_TAGS)).is_ok());
        assert!(check_version("h:1", &version("0.21.2-beta", &ALL_TAGS)).is_ok());
        assert!(check_version("h:1", &version("1.0.0", &ALL_TAGS)).is_ok());
        let old = check_version("h:1", &version("0.18.3-beta", &ALL_TAGS)).unwrap_err();
        let msg = old.to_string();
        assert!(matches!(old, ConnectError::VersionTooOld { .. }));
        assert!(
            msg.contains("0.18.3-beta") && msg.contains("0.18.4-beta") && msg.contains("h:1"),
            "{msg}"
        );
        assert!(!old.is_transient());
        // Numeric fields win over the string when lnd filled them.
        let mut v = version("garbage", &ALL_TAGS);
        (v.major, v.minor, v.patch) = (0, 19, 1);
        assert!(check_version("h:1", &v).is_ok());
        assert!(check_version("h:1", &version("garbage", &ALL_TAGS)).is_err());

        let err =
            check_version("h:1", &version("0.21.2-beta", &["signrpc", "walletrpc"])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("chainrpc, invoicesrpc") && msg.contains("RegisterSpendNtfn"),
            "{msg}"
        );
        assert!(!msg.contains("signrpc,"), "{msg}");
    }

    #[test]
    fn simnet_pairs_with_regtest_and_nothing_else_crosses() {
        assert!(networks_pair(Network::Simnet, Network::Regtest));
        assert!(networks_pair(Network::Regtest, Network::Regtest));
        assert!(networks_pair(Network::Mainnet, Network::Mainnet));
        assert!(!networks_pair(Network::Mainnet, Network::Regtest));
        assert!(!networks_pair(Network::Testnet, Network::Testnet4));
        assert!(!networks_pair(Network::Signet, Network::Testnet));
        assert_eq!(lnd_network_for(Network::Simnet), Network::Regtest);
    }

    #[test]
    fn a_network_mismatch_says_both_sides_and_the_fix() {
        let info = NodeInfo {
            pubkey: NodeId([2; 33]),
            alias: "a".into(),
            block_height: BlockHeight(1),
            synced_to_chain: true,
            synced_to_graph: true,
            network: Network::Regtest,
            version: "0.21.2-beta".into(),
        };
        assert!(check_network("h:1", Network::Simnet, &info).is_ok());
        let err = check_network("lnd.example:10009", Network::Mainnet, &info).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lnd at lnd.example:10009 runs on regtest but sluiced is configured for mainnet; \
             set `network` (SLUICE_NETWORK, --network) to regtest or point lnd.host at a \
             mainnet lnd"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn macaroons_are_read_as_hex_from_binary_or_hex_files() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("admin.macaroon");
        std::fs::write(&bin, [0x02, 0x01, 0x03, 0xff]).unwrap();
        assert_eq!(read_macaroon_hex(&bin).unwrap(), "020103ff");
        let text = dir.path().join("hex.macaroon");
        std::fs::write(&text, "0201036C6E64\n").unwrap();
        assert_eq!(read_macaroon_hex(&text).unwrap(), "0201036c6e64");
        let empty = dir.path().join("empty.macaroon");
        std::fs::write(&empty, b"").unwrap();
        let err = read_macaroon_hex(&empty).unwrap_err();
        assert!(err.to_string().contains("lnd.macaroon"), "{err}");
        let missing = read_macaroon_hex(&dir.path().join("nope")).unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot read lnd.macaroon"),
            "{missing}"
        );
    }

    fn config(dir: &Path) -> LndConfig {
        LndConfig {
            host: "127.0.0.1:10009".into(),
            tls_cert_path: dir.join("tls.cert"),
            macaroon_path: dir.join("admin.macaroon"),
        }
    }

    #[test]
    fn failures_are_named_by_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let err = classify_failure(
            &c,
            NodeError::from_status(
                "get_version",
                tonic::Status::unknown("verification failed: signature mismatch"),
            ),
        );
        let msg = err.to_string();
        assert!(matches!(err, ConnectError::MacaroonRejected { .. }));
        assert!(
            msg.contains("lnd.macaroon")
                && msg.contains("admin.macaroon")
                && msg.contains("127.0.0.1:10009"),
            "{msg}"
        );
        let starting = classify_failure(
            &c,
            NodeError::from_status(
                "get_info",
                tonic::Status::unknown("server is still in the process of starting"),
            ),
        );
        assert!(starting.is_transient(), "{starting}");

        let cert_mismatch = ConnectError::CertMismatch {
            host: c.host.clone(),
            cert: c.tls_cert_path.clone(),
        };
        assert!(cert_mismatch.to_string().starts_with(&format!(
            "lnd at 127.0.0.1:10009 presented a certificate that does not match lnd.tls_cert {}",
            c.tls_cert_path.display()
        )));

        // Files are read before anything is dialled, and a missing one is named.
        let err = open(&c, Network::Regtest).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read lnd.tls_cert"),
            "{err}"
        );
    }
}
