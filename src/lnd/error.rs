//! The one error type of the `LightningNode` port, and how lnd's gRPC errors map onto it.
//!
//! lnd returns most failures as `Unknown` with a Go error string, so [`classify`] looks at
//! the code first and at the message second. The classification decides what callers do:
//! retry (`Transient`), attach to existing work (`AlreadyExists`), treat as absent
//! (`NotFound`) or stop and report.

use std::fmt;

/// What kind of failure a node call met, which decides how the caller reacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeErrorKind {
    /// The node is unreachable, starting, syncing or overloaded: retry later, unchanged.
    Transient,
    /// The thing asked for does not exist (unknown payment, invoice, node).
    NotFound,
    /// The thing to create exists already (payment in flight or paid, invoice added).
    AlreadyExists,
    /// The macaroon lacks a permission or was rejected: fix the credentials.
    PermissionDenied,
    /// The node rejected the request's content: retrying it unchanged fails again.
    InvalidArgument,
    /// The node answered with data sluice cannot use (malformed key, hash, transaction).
    InvalidResponse,
    /// Any other failure; retrying unchanged is not expected to help.
    Permanent,
}

impl NodeErrorKind {
    /// Whether the same call may succeed if simply repeated later.
    pub fn is_transient(self) -> bool {
        self == NodeErrorKind::Transient
    }

    /// The kind as one fixed word, for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            NodeErrorKind::Transient => "transient",
            NodeErrorKind::NotFound => "not_found",
            NodeErrorKind::AlreadyExists => "already_exists",
            NodeErrorKind::PermissionDenied => "permission_denied",
            NodeErrorKind::InvalidArgument => "invalid_argument",
            NodeErrorKind::InvalidResponse => "invalid_response",
            NodeErrorKind::Permanent => "permanent",
        }
    }
}

impl fmt::Display for NodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeErrorKind::Transient => "transient",
            NodeErrorKind::NotFound => "not found",
            NodeErrorKind::AlreadyExists => "already exists",
            NodeErrorKind::PermissionDenied => "permission denied",
            NodeErrorKind::InvalidArgument => "invalid argument",
            NodeErrorKind::InvalidResponse => "invalid response",
            NodeErrorKind::Permanent => "permanent",
        })
    }
}

/// A failed call to the Lightning node: which method, what kind, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("lnd {method} failed ({kind}): {message}")]
pub struct NodeError {
    /// How the caller should react.
    pub kind: NodeErrorKind,
    /// The port method that failed, e.g. "list_channels".
    pub method: &'static str,
    /// A one-line description (never contains secrets).
    pub message: String,
    /// The underlying error, e.g. the gRPC status.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl NodeError {
    /// An error without an underlying cause.
    pub fn new(kind: NodeErrorKind, method: &'static str, message: impl Into<String>) -> Self {
        NodeError {
            kind,
            method,
            message: message.into(),
            source: None,
        }
    }

    /// The node answered with something that does not convert to a domain value.
    pub fn invalid_response(method: &'static str, message: impl Into<String>) -> Self {
        NodeError::new(NodeErrorKind::InvalidResponse, method, message)
    }

    /// The caller asked for something that cannot be expressed on the wire.
    pub fn invalid_argument(method: &'static str, message: impl Into<String>) -> Self {
        NodeError::new(NodeErrorKind::InvalidArgument, method, message)
    }

    /// An error from a gRPC status, classified by [`classify`].
    pub fn from_status(method: &'static str, status: tonic::Status) -> Self {
        let kind = classify(status.code(), status.message());
        NodeError {
            kind,
            method,
            message: format!("{:?}: {}", status.code(), status.message()),
            source: Some(Box::new(status)),
        }
    }

    /// Whether the same call may succeed if simply repeated later.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// Message fragments lnd uses for "wait and retry" conditions under a generic code.
const TRANSIENT_MESSAGES: &[&str] = &[
    "in the process of starting",
    "server is still starting",
    "waiting to start",
    "not yet ready",
    "wallet locked",
    "wallet is locked",
    "wallet not unlocked",
    "not synced",
    "still syncing",
    "chain backend is still syncing",
    "transport is closing",
    "connection refused",
    "connection reset",
    "broken pipe",
    "error trying to connect",
    "timed out",
    "deadline exceeded",
];

/// Message fragments for "this exists already" (paying a hash twice, adding an invoice twice).
const ALREADY_EXISTS_MESSAGES: &[&str] = &[
    "already exists",
    "already paid",
    "payment is in transition",
    "invoice with payment hash already exists",
    "already have transaction",
    "txn-already-in-mempool",
    "transaction already in block chain",
];

/// Message fragments for "no such thing".
const NOT_FOUND_MESSAGES: &[&str] = &[
    "not found",
    "unable to find",
    "unable to locate",
    "no existing invoice",
    "payment isn't initiated",
    "there are no existing invoices",
];

/// Message fragments for credential problems.
const PERMISSION_MESSAGES: &[&str] = &[
    "permission denied",
    "verification failed",
    "cannot get macaroon",
    "invalid macaroon",
    "macaroon",
];

/// Message fragments for a rejected request.
const INVALID_ARGUMENT_MESSAGES: &[&str] = &[
    "invalid",
    "unable to decode",
    "checksum failed",
    "malformed",
    "must be",
];

/// Classifies a gRPC error from lnd. Pure: the code decides when it is specific; for the
/// generic codes lnd uses for Go errors (`Unknown`, `Internal`), the message decides.
pub fn classify(code: tonic::Code, message: &str) -> NodeErrorKind {
    use tonic::Code;
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled => NodeErrorKind::Transient,
        Code::NotFound => NodeErrorKind::NotFound,
        Code::AlreadyExists => NodeErrorKind::AlreadyExists,
        Code::PermissionDenied | Code::Unauthenticated => NodeErrorKind::PermissionDenied,
        Code::InvalidArgument | Code::OutOfRange => NodeErrorKind::InvalidArgument,
        Code::Unimplemented | Code::DataLoss => NodeErrorKind::Permanent,
        Code::Ok | Code::Unknown | Code::Internal | Code::FailedPrecondition => {
            classify_message(message)
        }
    }
}

/// The message half of [`classify`], in order of precedence.
fn classify_message(message: &str) -> NodeErrorKind {
    let m = message.to_ascii_lowercase();
    let has = |list: &[&str]| list.iter().any(|frag| m.contains(frag));
    if has(TRANSIENT_MESSAGES) {
        NodeErrorKind::Transient
    } else if has(ALREADY_EXISTS_MESSAGES) {
        NodeErrorKind::AlreadyExists
    } else if has(NOT_FOUND_MESSAGES) {
        NodeErrorKind::NotFound
    } else if has(PERMISSION_MESSAGES) {
        NodeErrorKind::PermissionDenied
    } else if has(INVALID_ARGUMENT_MESSAGES) {
        NodeErrorKind::InvalidArgument
    } else {
        NodeErrorKind::Permanent
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn specific_codes_decide_regardless_of_message() {
        assert_eq!(
            classify(Code::Unavailable, "anything"),
            NodeErrorKind::Transient
        );
        assert_eq!(
            classify(Code::DeadlineExceeded, ""),
            NodeErrorKind::Transient
        );
        assert_eq!(
            classify(Code::NotFound, "payment isn't initiated"),
            NodeErrorKind::NotFound
        );
        assert_eq!(
            classify(Code::AlreadyExists, "payment is in transition"),
            NodeErrorKind::AlreadyExists
        );
        assert_eq!(
            classify(Code::Unauthenticated, ""),
            NodeErrorKind::PermissionDenied
        );
        assert_eq!(
            classify(Code::InvalidArgument, "not found"),
            NodeErrorKind::InvalidArgument
        );
        assert_eq!(
            classify(Code::Unimplemented, "unknown service"),
            NodeErrorKind::Permanent
        );
    }

    #[test]
    fn lnds_go_error_strings_under_unknown_are_read() {
        let cases = [
            (
                "server is still in the process of starting",
                NodeErrorKind::Transient,
            ),
            (
                "chain notifier RPC is still in the process of starting",
                NodeErrorKind::Transient,
            ),
            ("invoice is already paid", NodeErrorKind::AlreadyExists),
            ("payment is in transition", NodeErrorKind::AlreadyExists),
            (
                "invoice with payment hash already exists",
                NodeErrorKind::AlreadyExists,
            ),
            ("unable to find node: not found", NodeErrorKind::NotFound),
            ("there are no existing invoices", NodeErrorKind::NotFound),
            (
                "verification failed: signature mismatch after caveat verification",
                NodeErrorKind::PermissionDenied,
            ),
            (
                "invalid payment request: checksum failed",
                NodeErrorKind::InvalidArgument,
            ),
            ("insufficient local balance", NodeErrorKind::Permanent),
        ];
        for (msg, want) in cases {
            assert_eq!(classify(Code::Unknown, msg), want, "{msg}");
        }
    }

    #[test]
    fn transient_wins_over_other_fragments() {
        // A locked wallet mentions "invalid" nowhere but might mention "not found"; the
        // retryable reading must win so the caller waits instead of giving up.
        assert_eq!(
            classify(
                Code::Unknown,
                "wallet locked, unlock it to enable full RPC access; not found"
            ),
            NodeErrorKind::Transient
        );
    }

    #[test]
    fn from_status_keeps_the_cause_and_names_the_method() {
        let err = NodeError::from_status(
            "track_payment",
            tonic::Status::not_found("payment isn't initiated"),
        );
        assert_eq!(err.kind, NodeErrorKind::NotFound);
        assert_eq!(err.method, "track_payment");
        assert!(err.to_string().contains("track_payment"));
        assert!(std::error::Error::source(&err).is_some());
        assert!(!err.is_transient());
    }
}
