//! Credentials: two bearer tokens in the data dir, and the one place every call is checked.
//!
//! `admin.credential` may call everything, `readonly.credential` only the methods marked
//! [`Access::Read`] in [`METHODS`]. Clients send `authorization: Bearer <hex>` metadata. The
//! check runs as a tower layer in front of every service, so it sees the method path before any
//! handler does; health and reflection are the only paths that need no credential.

use std::future::{Ready, ready};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The admin credential's file name in the data dir.
pub const ADMIN_FILE: &str = "admin.credential";
/// The read-only credential's file name in the data dir.
pub const READONLY_FILE: &str = "readonly.credential";

/// The gRPC service every method of [`METHODS`] belongs to.
pub const SERVICE_PATH: &str = "/sluice.v1.Sluice/";

/// Path prefixes served without a credential: liveness probes and schema discovery reveal
/// nothing about the node.
const PUBLIC_PREFIXES: [&str; 2] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
];

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads state; either credential may call it.
    Read,
    /// Changes state; only the admin credential may call it.
    Write,
}

/// Every method of `sluice.v1.Sluice` and what it needs. A test fails when the proto gains a
/// method that is missing here; a method missing anyway is treated as [`Access::Write`].
pub const METHODS: &[(&str, Access)] = &[
    ("GetInfo", Access::Read),
    ("StopDaemon", Access::Write),
    ("Terms", Access::Read),
    ("Quote", Access::Read),
    ("LoopOut", Access::Write),
    ("LoopInQuote", Access::Read),
    ("LoopIn", Access::Write),
    ("ListSwaps", Access::Read),
    ("SwapInfo", Access::Read),
    ("Monitor", Access::Read),
    ("ListChannels", Access::Read),
    ("Suggest", Access::Read),
    ("PolicyShow", Access::Read),
    ("PolicyReload", Access::Write),
    ("Budget", Access::Read),
    ("Journal", Access::Read),
    ("SetAutoloopMode", Access::Write),
    ("GetAutoloopMode", Access::Read),
];

/// What the method at `path` (`/package.Service/Method`) needs; `None` when it is public.
pub fn required_access(path: &str) -> Option<Access> {
    if PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return None;
    }
    let access = path
        .strip_prefix(SERVICE_PATH)
        .and_then(|method| METHODS.iter().find(|(m, _)| *m == method))
        .map_or(Access::Write, |(_, access)| *access);
    Some(access)
}

/// Who a credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May call every method.
    Admin,
    /// May call [`Access::Read`] methods only.
    ReadOnly,
}

/// A 32-byte bearer token. Secret: `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A fresh token from the operating system's random source.
    fn random() -> Result<Token, rand::Error> {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
        Ok(Token(bytes))
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Token> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Token(bytes))
    }

    /// The value of the `authorization` metadata that presents this token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", hex::encode(self.0))
    }

    fn ct_eq(&self, other: &Token) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

/// Reads a credential file as a client does: content only, no permission check. Errors name
/// the file.
pub fn read_token(path: &Path) -> Result<Token, ApiError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApiError::CredentialIo {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::CredentialContent {
            path: path.to_owned(),
            reason: "the file is empty".to_owned(),
        });
    }
    Token::from_hex(text).ok_or_else(|| ApiError::CredentialContent {
        path: path.to_owned(),
        reason: format!("{} characters that are not a hex token", text.len()),
    })
}

/// The daemon's two credentials, loaded from (or created in) the data dir.
#[derive(Debug, Clone)]
pub struct Credentials {
    admin: Token,
    readonly: Token,
    admin_path: PathBuf,
    readonly_path: PathBuf,
}

impl Credentials {
    /// Loads `admin.credential` and `readonly.credential` from `data_dir`, creating whichever
    /// is missing (random token, mode 0600; an existing file is never overwritten). Refuses a
    /// file other users can read, a file without a token, and two files with the same token.
    pub fn load_or_create(data_dir: &Path) -> Result<Credentials, ApiError> {
        create_private_dir(data_dir)?;
        let admin_path = data_dir.join(ADMIN_FILE);
        let readonly_path = data_dir.join(READONLY_FILE);
        let admin = load_or_create_token(&admin_path)?;
        let readonly = load_or_create_token(&readonly_path)?;
        if admin.ct_eq(&readonly) {
            return Err(ApiError::CredentialsIdentical {
                readonly: readonly_path,
            });
        }
        Ok(Credentials {
            admin,
            readonly,
            admin_path,
            readonly_path,
        })
    }

    /// Where the admin credential lives.
    pub fn admin_path(&self) -> &Path {
        &self.admin_path
    }

    /// Where the read-only credential lives.
    pub fn readonly_path(&self) -> &Path {
        &self.readonly_path
    }

    /// The role a presented token belongs to; both comparisons always run, in constant time.
    fn role_of(&self, token: &Token) -> Option<Role> {
        let admin = self.admin.ct_eq(token);
        let readonly = self.readonly.ct_eq(token);
        match (admin, readonly) {
            (true, _) => Some(Role::Admin),
            (false, true) => Some(Role::ReadOnly),
            (false, false) => None,
        }
    }

    /// Decides whether a call to `path` with these request headers may proceed. `Ok(None)` for
    /// public paths, `Ok(Some(role))` for an allowed call.
    pub fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Option<Role>, ApiError> {
        let Some(access) = required_access(path) else {
            return Ok(None);
        };
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated {
                reason: "no credential: send metadata `authorization: Bearer <hex>` with the \
                         content of admin.credential or readonly.credential",
            })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, hex)| Token::from_hex(hex.trim()))
            .ok_or(ApiError::Unauthenticated {
                reason: "malformed credential: expected metadata `authorization: Bearer <64 hex \
                         characters>`",
            })?;
        let role = self.role_of(&token).ok_or(ApiError::Unauthenticated {
            reason: "unknown credential: use admin.credential or readonly.credential from \
                     this daemon's data dir",
        })?;
        if role == Role::ReadOnly && access == Access::Write {
            return Err(ApiError::PermissionDenied {
                method: path.to_owned(),
            });
        }
        Ok(Some(role))
    }
}

/// Creates the data dir (mode 0700 when new) if it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), ApiError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|source| ApiError::CredentialIo {
            action: "create the directory of",
            path: dir.join(ADMIN_FILE),
            source,
        })
}

fn load_or_create_token(path: &Path) -> Result<Token, ApiError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(ApiError::CredentialPermissions {
                        path: path.to_owned(),
                        mode,
                    });
                }
            }
            if !meta.is_file() {
                return Err(ApiError::CredentialContent {
                    path: path.to_owned(),
                    reason: "not a regular file".to_owned(),
                });
            }
            read_token(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_token(path),
        Err(source) => Err(ApiError::CredentialIo {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a fresh token to a temporary file (0600 from creation) and links it into place, so
/// the credential file is either absent or complete, and an existing one is never replaced.
fn create_token(path: &Path) -> Result<Token, ApiError> {
    use std::io::Write;
    let io = |action: &'static str| {
        move |source| ApiError::CredentialIo {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let token = Token::random().map_err(|e| ApiError::CredentialIo {
        action: "create",
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("create")(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io("create"))?;
    file.write_all(format!("{}\n", hex::encode(token.0)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write"))?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, path).map_err(io("create"));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    Ok(token)
}

/// The tower layer that runs [`Credentials::authorize`] before every call.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    creds: Arc<Credentials>,
}

impl AuthLayer {
    /// A layer checking calls against `creds`.
    pub fn new(creds: Credentials) -> AuthLayer {
        AuthLayer {
            creds: Arc::new(creds),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            creds: self.creds.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server's routes. A refused call is answered with
/// the status made from its [`ApiError`] and never reaches a handler.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    creds: Arc<Credentials>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Auth<S>
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
        match self.creds.authorize(req.uri().path(), req.headers()) {
            Ok(_) => Either::Left(self.inner.call(req)),
            Err(err) => Either::Right(ready(Ok(tonic::Status::from(err).into_http()))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
