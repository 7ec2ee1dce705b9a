//! The one error type of the swap-provider boundary, and the pure classifier that decides
//! from a gRPC status whether a failed call is worth repeating.

use std::fmt;

use tonic::Code;

/// What the caller should do about a failed provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The server or the network hiccuped (unavailable, deadline, overload, connection reset):
    /// repeating the same call later may succeed. Whether repeating is *safe* is a property of
    /// the method, documented on [`super::SwapProvider`].
    Transient,
    /// The server refused the request on its merits (bad amount, unknown swap, unsupported
    /// method): repeating it unchanged will fail the same way.
    Permanent,
    /// The server still demands an L402 payment after sluice tried to buy and attach a token,
    /// or the token could not be bought (payment failed or still in flight).
    PaymentRequired,
    /// The L402 challenge asked for more than the configured price cap; nothing was paid.
    PriceTooHigh,
    /// The server answered, but the answer breaks the protocol (wrong lengths, unknown
    /// enum values, an invalid L402 challenge).
    InvalidResponse,
    /// A local failure: the L402 token store could not be read or written.
    Local,
}

impl ErrorKind {
    /// True when a later retry of the same call may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }

    /// The kind as one fixed word, for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::PaymentRequired => "payment_required",
            ErrorKind::PriceTooHigh => "price_too_high",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Local => "local",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::PaymentRequired => "payment required",
            ErrorKind::PriceTooHigh => "price too high",
            ErrorKind::InvalidResponse => "invalid response",
            ErrorKind::Local => "local",
        })
    }
}

/// A failed call to the swap server: what kind of failure, which method, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("swap server {method}: {kind} error: {source}")]
pub struct ProviderError {
    /// What the caller should do about it.
    pub kind: ErrorKind,
    /// The `looprpc.SwapServer` method that failed, e.g. `NewLoopOutSwap`.
    pub method: &'static str,
    /// The underlying cause (a gRPC status, an L402 error, a validation message).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl ProviderError {
    /// Wraps `source` as a failure of `method` of the given kind.
    pub fn new(
        kind: ErrorKind,
        method: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        ProviderError {
            kind,
            method,
            source: source.into(),
        }
    }

    /// Classifies a gRPC status with [`classify_status`] and keeps it as the cause.
    pub fn from_status(method: &'static str, status: tonic::Status) -> Self {
        let kind = classify_status(status.code(), status.message());
        ProviderError::new(kind, method, StatusError(status))
    }

    /// A response that breaks the protocol, with a message naming the offending field.
    pub fn invalid(method: &'static str, message: impl Into<String>) -> Self {
        ProviderError::new(ErrorKind::InvalidResponse, method, message.into())
    }

    /// True when a later retry of the same call may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// A gRPC status as an error cause, printed as `code: message` without the metadata (which may
/// carry an L402 macaroon).
#[derive(Debug)]
pub struct StatusError(pub tonic::Status);

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.0.code(), self.0.message())
    }
}

impl std::error::Error for StatusError {}

/// True when a status is aperture's L402 challenge: code INTERNAL (or UNKNOWN, which some
/// proxies turn it into) with "payment required" in the message.
pub fn is_payment_required(code: Code, message: &str) -> bool {
    matches!(code, Code::Internal | Code::Unknown)
        && message.to_ascii_lowercase().contains("payment required")
}

/// Decides from a gRPC code and message what kind of failure a call had.
///
/// The Loop server is written in Go: its business refusals ("swap amount too low", "unknown
/// swap") arrive as UNKNOWN with the error text, so UNKNOWN is permanent unless the text is a
/// transport failure. INTERNAL is the server's own trouble and worth a retry.
pub fn classify_status(code: Code, message: &str) -> ErrorKind {
    if is_payment_required(code, message) {
        return ErrorKind::PaymentRequired;
    }
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Internal => ErrorKind::Transient,
        Code::Unknown => {
            let lower = message.to_ascii_lowercase();
            let transport = [
                "transport",
                "connection",
                "broken pipe",
                "stream",
                "h2 protocol",
            ];
            if transport.iter().any(|t| lower.contains(t)) {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            }
        }
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss
        | Code::Unauthenticated => ErrorKind::Permanent,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn payment_required_is_recognised_on_internal_and_unknown_only() {
        assert_eq!(
            classify_status(Code::Internal, "payment required"),
            ErrorKind::PaymentRequired
        );
        assert_eq!(
            classify_status(Code::Unknown, "rpc error: Payment Required"),
            ErrorKind::PaymentRequired
        );
        assert_eq!(
            classify_status(Code::InvalidArgument, "payment required"),
            ErrorKind::Permanent
        );
    }

    #[test]
    fn network_trouble_is_transient() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Cancelled,
            Code::Internal,
        ] {
            assert_eq!(classify_status(code, "x"), ErrorKind::Transient, "{code:?}");
        }
        assert_eq!(
            classify_status(Code::Unknown, "transport error"),
            ErrorKind::Transient
        );
    }

    #[test]
    fn refusals_on_the_merits_are_permanent() {
        assert_eq!(
            classify_status(Code::Unknown, "swap amount too low"),
            ErrorKind::Permanent
        );
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Unauthenticated,
        ] {
            assert_eq!(
                classify_status(code, "no"),
                ErrorKind::Permanent,
                "{code:?}"
            );
        }
    }

    #[test]
    fn status_display_leaves_metadata_out() {
        let mut status = tonic::Status::internal("payment required");
        status.metadata_mut().insert(
            "www-authenticate",
            "L402 macaroon=\"c2VjcmV0\""
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        let err = ProviderError::from_status("LoopOutTerms", status);
        let text = err.to_string();
        assert!(text.contains("LoopOutTerms"));
        assert!(text.contains("payment required"));
        assert!(!text.contains("c2VjcmV0"));
    }
}
