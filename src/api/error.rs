//! The API boundary's error type and the one place it becomes a gRPC status.

use std::path::PathBuf;

use crate::lnd::NodeError;
use crate::tls::TlsError;

/// Everything that can go wrong in the API: starting the server (credentials, TLS, transport)
/// and answering a call. Handlers and the auth layer return it; [`tonic::Status`] is made from it
/// only in the `From` impl below, so every code is chosen in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The call carried no credential, or one the daemon does not know.
    #[error("{reason}")]
    Unauthenticated {
        /// What was wrong with the presented credential (never the credential itself).
        reason: &'static str,
    },
    /// A read-only credential called a method that changes state.
    #[error("{method} changes state and needs the admin credential; a read-only one was presented")]
    PermissionDenied {
        /// The gRPC method path.
        method: String,
    },
    /// A request field is unusable.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field, as named in `proto/sluice.proto`.
        field: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The thing asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// A collaborator (lnd, the store, the swap server) cannot answer right now. Transient.
    #[error("{what} is unavailable: {reason}")]
    Unavailable {
        /// The collaborator.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The swap engine refused or failed to create a swap; the code follows the cause.
    #[error("{0}")]
    Swap(#[from] crate::swap::EngineError),
    /// A call to lnd failed; transient failures map to `UNAVAILABLE`.
    #[error("{0}")]
    Node(#[from] NodeError),
    /// A credential file could not be read or written.
    #[error("cannot {action} credential file {}: {source}", path.display())]
    CredentialIo {
        /// What was being done ("read", "create", "write").
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A credential file is readable by other users; the daemon refuses to start with it.
    #[error(
        "credential file {} has mode {mode:o}, readable by other users; run `chmod 600 {}` \
         or delete it so a new one is created",
        path.display(), path.display()
    )]
    CredentialPermissions {
        /// The file concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A credential file does not hold a credential.
    #[error(
        "credential file {}: {reason}; expected 64 hex characters, or delete the file so a new \
         one is created",
        path.display()
    )]
    CredentialContent {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// `admin.credential` and `readonly.credential` hold the same token.
    #[error(
        "{} holds the same token as the admin credential; delete it so a new read-only \
         credential is created",
        readonly.display()
    )]
    CredentialsIdentical {
        /// The read-only credential file.
        readonly: PathBuf,
    },
    /// The server's TLS identity is unusable.
    #[error("API TLS: {0}")]
    Tls(#[from] TlsError),
    /// The reflection service rejected a file descriptor set (a build problem, not an input).
    #[error("API reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed to start or stopped with an error.
    #[error("API server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl ApiError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unavailable { .. } | ApiError::Transport(_) => true,
            ApiError::Swap(e) => engine_code(e) == tonic::Code::Unavailable,
            ApiError::Node(e) => e.is_transient(),
            ApiError::Tls(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> tonic::Status {
        use tonic::Code;
        let code = match &err {
            ApiError::Unauthenticated { .. } => Code::Unauthenticated,
            ApiError::PermissionDenied { .. } => Code::PermissionDenied,
            ApiError::InvalidArgument { .. } => Code::InvalidArgument,
            ApiError::NotFound { .. } => Code::NotFound,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Swap(e) => engine_code(e),
            ApiError::Node(e) if e.is_transient() => Code::Unavailable,
            ApiError::Node(_) => Code::FailedPrecondition,
            ApiError::CredentialIo { .. }
            | ApiError::CredentialPermissions { .. }
            | ApiError::CredentialContent { .. }
            | ApiError::CredentialsIdentical { .. }
            | ApiError::Tls(_)
            | ApiError::Reflection(_)
            | ApiError::Transport(_) => Code::Internal,
        };
        // Internal errors carry server-side paths and causes; the client only needs to know to
        // look at the daemon's log.
        let message = if code == Code::Internal {
            "internal error; see the sluiced log".to_owned()
        } else {
            err.to_string()
        };
        tonic::Status::new(code, message)
    }
}

/// The gRPC code for a swap the engine did not create: the caller's input, the collaborators'
/// availability, or a refusal of the server's answer (nothing was paid in any case).
fn engine_code(e: &crate::swap::EngineError) -> tonic::Code {
    use crate::swap::EngineError as E;
    use tonic::Code;
    match e {
        E::AmountOutsideTerms { .. }
        | E::ConfTargetTooLarge { .. }
        | E::BadDestination { .. }
        | E::LoopInArgument(_) => Code::InvalidArgument,
        E::Node { .. } | E::Provider { .. } | E::NoHeight | E::ShutDown | E::Store(_) => {
            Code::Unavailable
        }
        E::Validation(_)
        | E::NotAdmitted(_)
        | E::QuoteAboveCeiling(_)
        | E::LoopIn(_)
        | E::LoopInRefused(_) => Code::FailedPrecondition,
        E::Contract(_) | E::Chain(_) | E::LoopInContract(_) => Code::Internal,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_by_cause() {
        use crate::domain::{Network, Sat};
        use crate::swap::EngineError as E;
        let cases = [
            (
                E::AmountOutsideTerms {
                    amount: Sat(1),
                    min: Sat(10),
                    max: Sat(20),
                },
                tonic::Code::InvalidArgument,
            ),
            (
                E::ConfTargetTooLarge {
                    conf_target: 500,
                    max: 400,
                },
                tonic::Code::InvalidArgument,
            ),
            (
                E::BadDestination {
                    address: "x".into(),
                    network: Network::Regtest,
                    reason: "bad".into(),
                },
                tonic::Code::InvalidArgument,
            ),
            (E::NoHeight, tonic::Code::Unavailable),
            (E::ShutDown, tonic::Code::Unavailable),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let api = ApiError::from(err);
            assert_eq!(api.is_transient(), code == tonic::Code::Unavailable);
            let status = tonic::Status::from(api);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }

    #[test]
    fn each_error_maps_to_its_code() {
        let cases = [
            (
                ApiError::Unauthenticated { reason: "missing" },
                tonic::Code::Unauthenticated,
            ),
            (
                ApiError::PermissionDenied {
                    method: "/sluice.v1.Sluice/StopDaemon".into(),
                },
                tonic::Code::PermissionDenied,
            ),
            (
                ApiError::InvalidArgument {
                    field: "amount_sat",
                    reason: "must be positive".into(),
                },
                tonic::Code::InvalidArgument,
            ),
            (
                ApiError::NotFound {
                    what: "swap".into(),
                },
                tonic::Code::NotFound,
            ),
            (
                ApiError::Unavailable {
                    what: "lnd",
                    reason: "down".into(),
                },
                tonic::Code::Unavailable,
            ),
            (
                ApiError::CredentialContent {
                    path: "/secret/dir/admin.credential".into(),
                    reason: "empty".into(),
                },
                tonic::Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), code, "{text}");
            if code == tonic::Code::Internal {
                assert!(!status.message().contains("/secret/dir"));
            } else {
                assert_eq!(status.message(), text);
            }
        }
    }
}
