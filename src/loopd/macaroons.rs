//! loopd-style macaroons: `loop.macaroon` (every permission) and `readonly.macaroon` (the
//! read permissions), minted from a root key kept in the same directory, and the check every
//! call passes against the permission table of Loop's `looprpc/perms.go`.
//!
//! The format is lnd's and loopd's: a V2 binary macaroon at location `loop` whose identifier
//! is the byte 3 followed by the protobuf `MacaroonId { nonce, storageId, ops }`. Clients send
//! it hex-encoded in the `macaroon` metadata; Loop's CLI adds a `time-before` caveat to every
//! call, which is checked here like loopd's bakery does. Refusals use loopd's words and code
//! (`UNKNOWN`), so a tool written against loopd understands them.

use std::future::{Ready, ready};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use prost::Message;

use crate::provider::macaroon::Macaroon;

/// The full-permission macaroon's file name, as loopd names it.
pub const ADMIN_FILE: &str = "loop.macaroon";
/// The read-only macaroon's file name.
pub const READONLY_FILE: &str = "readonly.macaroon";
/// The root key both are minted from (hex, mode 0600). Secret.
pub const ROOT_KEY_FILE: &str = "macaroons.key";
/// The location loopd writes into its macaroons.
const LOCATION: &str = "loop";
/// The identifier version byte of lnd's and loopd's macaroons.
const ID_VERSION: u8 = 3;

/// The gRPC service whose methods [`PERMISSIONS`] lists.
pub const SERVICE_PATH: &str = "/looprpc.SwapClient/";

/// What each method of `looprpc.SwapClient` needs, as (entity, action) pairs: Loop's
/// `looprpc/perms.go` (`RequiredPermissions`) for looprpc v1.0.15. A method not listed is
/// refused, as loopd refuses it.
pub const PERMISSIONS: &[(&str, &[(&str, &str)])] = &[
    ("LoopOut", &[("swap", "execute"), ("loop", "out")]),
    ("LoopIn", &[("swap", "execute"), ("loop", "in")]),
    ("Monitor", &[("swap", "read")]),
    ("ListSwaps", &[("swap", "read")]),
    ("SwapInfo", &[("swap", "read")]),
    (
        "AbandonSwap",
        &[("swap", "execute"), ("loop", "in"), ("loop", "out")],
    ),
    ("LoopOutTerms", &[("terms", "read"), ("loop", "out")]),
    ("LoopOutQuote", &[("swap", "read"), ("loop", "out")]),
    ("SweepHtlc", &[("swap", "execute"), ("loop", "out")]),
    ("GetLoopInTerms", &[("terms", "read"), ("loop", "in")]),
    ("GetLoopInQuote", &[("swap", "read"), ("loop", "in")]),
    ("GetL402Tokens", &[("auth", "read")]),
    ("NewStaticAddress", &[("swap", "read"), ("loop", "in")]),
    ("ListUnspentDeposits", &[("swap", "read"), ("loop", "in")]),
    ("WithdrawDeposits", &[("swap", "execute"), ("loop", "in")]),
    (
        "ListStaticAddressDeposits",
        &[("swap", "read"), ("loop", "in")],
    ),
    (
        "ListStaticAddressWithdrawals",
        &[("swap", "read"), ("loop", "in")],
    ),
    (
        "ListStaticAddressSwaps",
        &[("swap", "read"), ("loop", "in")],
    ),
    (
        "GetStaticAddressSummary",
        &[("swap", "read"), ("loop", "in")],
    ),
    (
        "StaticAddressLoopIn",
        &[("swap", "execute"), ("loop", "in")],
    ),
    ("StaticOpenChannel", &[("deposit", "spend"), ("loop", "in")]),
    ("GetLsatTokens", &[("auth", "read")]),
    ("FetchL402Token", &[("auth", "write")]),
    ("SuggestSwaps", &[("suggestions", "read")]),
    ("GetInfo", &[("suggestions", "read")]),
    ("GetLiquidityParams", &[("suggestions", "read")]),
    ("SetLiquidityParams", &[("suggestions", "write")]),
    ("Probe", &[("swap", "execute"), ("loop", "in")]),
    ("ListReservations", &[("swap", "read"), ("loop", "out")]),
    ("InstantOut", &[("swap", "execute"), ("loop", "out")]),
    ("InstantOutQuote", &[("swap", "read"), ("loop", "out")]),
    ("ListInstantOuts", &[("swap", "read"), ("loop", "out")]),
    ("StopDaemon", &[("loop", "admin")]),
];

/// The permissions of `readonly.macaroon`: every `read` action, and the `loop` scopes a read
/// call also names (`loop out` for the Loop Out terms and quote), never `execute`, `write`,
/// `spend` or `admin`.
const READONLY_OPS: &[(&str, &[&str])] = &[
    ("auth", &["read"]),
    ("loop", &["in", "out"]),
    ("suggestions", &["read"]),
    ("swap", &["read"]),
    ("terms", &["read"]),
];

/// lnd's `MacaroonId` (`macaroons/id.proto`): what a macaroon's identifier encodes.
#[derive(Clone, PartialEq, prost::Message)]
struct MacaroonId {
    #[prost(bytes = "vec", tag = "1")]
    nonce: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    storage_id: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    ops: Vec<Op>,
}

/// One entity and the actions allowed on it.
#[derive(Clone, PartialEq, prost::Message)]
struct Op {
    #[prost(string, tag = "1")]
    entity: String,
    #[prost(string, repeated, tag = "2")]
    actions: Vec<String>,
}

/// Why the macaroon files could not be loaded or created. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum MacaroonFileError {
    /// Reading, creating or writing a file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The root key file does not hold 32 hex-encoded bytes.
    #[error(
        "{path} is not a macaroon root key (expected 64 hex characters); delete it together \
         with {ADMIN_FILE} and {READONLY_FILE} to mint new ones"
    )]
    BadRootKey {
        /// The file.
        path: PathBuf,
    },
    /// The root key is readable by other users.
    #[error("{path} has mode {mode:o}; it must be readable by its owner only (chmod 600)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The root key of one directory's macaroons. Secret: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Macaroons {
    root_key: Arc<[u8; 32]>,
    admin_path: PathBuf,
    readonly_path: PathBuf,
}

impl std::fmt::Debug for Macaroons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Macaroons")
            .field("admin_path", &self.admin_path)
            .field("readonly_path", &self.readonly_path)
            .finish_non_exhaustive()
    }
}

impl Macaroons {
    /// Loads the root key from `dir`, or creates it; then writes whichever of
    /// `loop.macaroon` and `readonly.macaroon` is missing (mode 0600). Existing macaroons are
    /// kept, so clients pointed at them keep working across restarts; deleting the root key
    /// (and both macaroons) revokes every macaroon minted before.
    pub fn load_or_create(dir: &Path) -> Result<Macaroons, MacaroonFileError> {
        create_private_dir(dir)?;
        let key_path = dir.join(ROOT_KEY_FILE);
        let root_key = match std::fs::read_to_string(&key_path) {
            Ok(text) => {
                check_private(&key_path)?;
                let mut key = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                    MacaroonFileError::BadRootKey {
                        path: key_path.clone(),
                    }
                })?;
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>(&key_path)?;
                write_private(&key_path, format!("{}\n", hex::encode(key)).as_bytes())?;
                key
            }
            Err(source) => {
                return Err(MacaroonFileError::Io {
                    action: "read",
                    path: key_path,
                    source,
                });
            }
        };
        let macaroons = Macaroons {
            root_key: Arc::new(root_key),
            admin_path: dir.join(ADMIN_FILE),
            readonly_path: dir.join(READONLY_FILE),
        };
        let admin_ops = all_ops();
        let readonly_ops: Vec<Op> = READONLY_OPS
            .iter()
            .map(|(entity, actions)| Op {
                entity: (*entity).to_owned(),
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            })
            .collect();
        for (path, ops) in [
            (&macaroons.admin_path, admin_ops),
            (&macaroons.readonly_path, readonly_ops),
        ] {
            if !path.exists() {
                let mac = macaroons.mint(ops, path)?;
                write_private(path, &mac.to_binary())?;
            }
        }
        Ok(macaroons)
    }

    /// Where `loop.macaroon` is.
    pub fn admin_path(&self) -> &Path {
        &self.admin_path
    }

    /// Where `readonly.macaroon` is.
    pub fn readonly_path(&self) -> &Path {
        &self.readonly_path
    }

    fn mint(&self, ops: Vec<Op>, path: &Path) -> Result<Macaroon, MacaroonFileError> {
        let id = MacaroonId {
            nonce: random_bytes::<16>(path)?.to_vec(),
            storage_id: b"0".to_vec(),
            ops,
        };
        let mut bytes = vec![ID_VERSION];
        bytes.extend(id.encode_to_vec());
        Ok(Macaroon::new(self.root_key.as_slice(), &bytes, LOCATION))
    }

    /// Decides whether a call to `path` may proceed with these request headers, at `now`
    /// (Unix seconds and nanoseconds, for `time-before`). `Ok(())` or loopd's refusal.
    pub fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tonic::Status> {
        let values: Vec<_> = headers.get_all("macaroon").iter().collect();
        let [value] = values.as_slice() else {
            return Err(tonic::Status::unknown(format!(
                "expected 1 macaroon, got {}",
                values.len()
            )));
        };
        let bytes = value
            .to_str()
            .ok()
            .and_then(|s| hex::decode(s.trim()).ok())
            .ok_or_else(|| tonic::Status::unknown("unable to decode macaroon: not hex"))?;
        let mac = Macaroon::from_binary(&bytes)
            .map_err(|e| tonic::Status::unknown(format!("unable to decode macaroon: {e}")))?;
        let conditions = mac.verify(self.root_key.as_slice()).map_err(|_| {
            tonic::Status::unknown(
                "verification failed: signature mismatch after caveat verification",
            )
        })?;
        for condition in conditions {
            check_caveat(condition, now)?;
        }
        let granted = mac
            .id()
            .split_first()
            .filter(|(version, _)| **version == ID_VERSION)
            .and_then(|(_, rest)| MacaroonId::decode(rest).ok())
            .ok_or_else(|| tonic::Status::unknown("invalid macaroon identifier"))?;
        let required = path
            .strip_prefix(SERVICE_PATH)
            .and_then(|method| PERMISSIONS.iter().find(|(m, _)| *m == method))
            .map(|(_, ops)| *ops)
            .ok_or_else(|| {
                tonic::Status::unknown(format!("unknown permissions required for method {path}"))
            })?;
        let allowed = required.iter().all(|(entity, action)| {
            granted
                .ops
                .iter()
                .any(|op| op.entity == *entity && op.actions.iter().any(|a| a == action))
        });
        if allowed {
            Ok(())
        } else {
            Err(tonic::Status::unknown("permission denied"))
        }
    }
}

/// Every (entity, actions) pair of [`PERMISSIONS`], actions merged per entity.
fn all_ops() -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    for (_, required) in PERMISSIONS {
        for (entity, action) in *required {
            match ops.iter_mut().find(|o| o.entity == *entity) {
                Some(op) => {
                    if !op.actions.iter().any(|a| a == action) {
                        op.actions.push((*action).to_owned());
                    }
                }
                None => ops.push(Op {
                    entity: (*entity).to_owned(),
                    actions: vec![(*action).to_owned()],
                }),
            }
        }
    }
    ops.sort_by(|a, b| a.entity.cmp(&b.entity));
    for op in &mut ops {
        op.actions.sort();
    }
    ops
}

/// Checks one first-party caveat as loopd's bakery does: `time-before <RFC 3339>` must lie in
/// the future; any other condition is refused, since it cannot be proven satisfied.
fn check_caveat(condition: &[u8], now: chrono::DateTime<chrono::Utc>) -> Result<(), tonic::Status> {
    let text = String::from_utf8_lossy(condition);
    if let Some(when) = text.strip_prefix("time-before ") {
        let deadline = chrono::DateTime::parse_from_rfc3339(when.trim()).map_err(|e| {
            tonic::Status::unknown(format!(
                "caveat {text:?} not satisfied: cannot parse the time: {e}"
            ))
        })?;
        if now < deadline {
            Ok(())
        } else {
            Err(tonic::Status::unknown(format!(
                "caveat {text:?} not satisfied: macaroon has expired"
            )))
        }
    } else {
        Err(tonic::Status::unknown(format!(
            "caveat {text:?} not satisfied: caveat not recognized"
        )))
    }
}

fn random_bytes<const N: usize>(path: &Path) -> Result<[u8; N], MacaroonFileError> {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| MacaroonFileError::Io {
            action: "create",
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(bytes)
}

fn create_private_dir(dir: &Path) -> Result<(), MacaroonFileError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| MacaroonFileError::Io {
        action: "create the directory",
        path: dir.to_owned(),
        source,
    })
}

fn check_private(path: &Path) -> Result<(), MacaroonFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| MacaroonFileError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MacaroonFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let _ = path;
    Ok(())
}

/// Writes `data` to a temporary file created with mode 0600, then renames it into place, so
/// the file is either absent or complete.
fn write_private(path: &Path, data: &[u8]) -> Result<(), MacaroonFileError> {
    use std::io::Write;
    let io = |action: &'static str| {
        move |source| MacaroonFileError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io("create"))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io("write"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("create"))
}

/// The tower layer that runs [`Macaroons::authorize`] before every call.
#[derive(Debug, Clone)]
pub struct MacaroonLayer {
    macaroons: Macaroons,
}

impl MacaroonLayer {
    /// A layer checking calls against `macaroons`.
    pub fn new(macaroons: Macaroons) -> MacaroonLayer {
        MacaroonLayer { macaroons }
    }
}

impl<S> tower::Layer<S> for MacaroonLayer {
    type Service = MacaroonCheck<S>;
    fn layer(&self, inner: S) -> MacaroonCheck<S> {
        MacaroonCheck {
            inner,
            macaroons: self.macaroons.clone(),
        }
    }
}

/// The service [`MacaroonLayer`] wraps around the routes; a refused call never reaches a
/// handler.
#[derive(Debug, Clone)]
pub struct MacaroonCheck<S> {
    inner: S,
    macaroons: Macaroons,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for MacaroonCheck<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<http::Response<ResBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        match self
            .macaroons
            .authorize(req.uri().path(), req.headers(), chrono::Utc::now())
        {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
