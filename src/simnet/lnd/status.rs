//! How a [`NodeError`] of the simulated node becomes the gRPC status lnd would send.
//!
//! lnd answers most failures with `UNKNOWN` and a Go error string, and sluice's client reads
//! them back with [`classify`]. So the facade sends `UNKNOWN` plus the node's message whenever
//! that message alone classifies as the error's kind (as lnd's own strings do); otherwise it
//! picks the specific code whose meaning is the kind, so the round trip through the real client
//! always gives back the kind the simulated node meant.

use tonic::{Code, Status};

use crate::lnd::{NodeError, NodeErrorKind, classify};

/// The status lnd would send for `err`; the message never carries more than the node's
/// one-line description (which by contract holds no secrets).
pub fn to_status(err: &NodeError) -> Status {
    let message = err.message.clone();
    let wanted = match err.kind {
        // The client never produces InvalidResponse from a status; the nearest reading of "the
        // node is inconsistent" is a permanent failure.
        NodeErrorKind::InvalidResponse => NodeErrorKind::Permanent,
        kind => kind,
    };
    if classify(Code::Unknown, &message) == wanted {
        return Status::new(Code::Unknown, message);
    }
    let code = match wanted {
        NodeErrorKind::Transient => Code::Unavailable,
        NodeErrorKind::NotFound => Code::NotFound,
        NodeErrorKind::AlreadyExists => Code::AlreadyExists,
        NodeErrorKind::PermissionDenied => Code::PermissionDenied,
        NodeErrorKind::InvalidArgument => Code::InvalidArgument,
        // A message that merely mentions, say, "invalid" would read as a bad request under
        // UNKNOWN. UNIMPLEMENTED is the one code the client reads as permanent whatever the
        // message says, so the kind survives; the message still says what went wrong.
        NodeErrorKind::Permanent | NodeErrorKind::InvalidResponse => Code::Unimplemented,
    };
    Status::new(code, message)
}

/// A request the facade rejects before reaching the node, worded like lnd's own checks
/// ("... must be ...", "invalid ..."), which the client reads as `InvalidArgument`.
pub fn bad_request(message: impl Into<String>) -> Status {
    Status::new(Code::InvalidArgument, message.into())
}

/// A request lnd would serve but the port cannot express (e.g. a key-path signature).
pub fn unsupported(what: impl Into<String>) -> Status {
    Status::new(
        Code::Unimplemented,
        format!("{}: not supported by the simulated lnd", what.into()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KINDS: [NodeErrorKind; 7] = [
        NodeErrorKind::Transient,
        NodeErrorKind::NotFound,
        NodeErrorKind::AlreadyExists,
        NodeErrorKind::PermissionDenied,
        NodeErrorKind::InvalidArgument,
        NodeErrorKind::InvalidResponse,
        NodeErrorKind::Permanent,
    ];

    /// What the client makes of the status the facade sends.
    fn round_trip(kind: NodeErrorKind, message: &str) -> NodeErrorKind {
        let status = to_status(&NodeError::new(kind, "test", message));
        classify(status.code(), status.message())
    }

    #[test]
    fn every_kind_survives_the_round_trip_whatever_the_message() {
        let messages = [
            "",
            "insufficient local balance",
            "invalid payment request",
            "unable to find payment",
            "server is still in the process of starting",
            "invoice with payment hash already exists",
            "verification failed",
        ];
        for kind in KINDS {
            for msg in messages {
                let want = if kind == NodeErrorKind::InvalidResponse {
                    NodeErrorKind::Permanent
                } else {
                    kind
                };
                assert_eq!(round_trip(kind, msg), want, "{kind:?} {msg:?}");
            }
        }
    }

    #[test]
    fn lnds_own_strings_go_out_as_unknown_like_lnd_sends_them() {
        let cases = [
            (NodeErrorKind::AlreadyExists, "invoice is already paid"),
            (NodeErrorKind::NotFound, "there are no existing invoices"),
            (NodeErrorKind::Permanent, "insufficient local balance"),
            (
                NodeErrorKind::Transient,
                "server is still in the process of starting",
            ),
        ];
        for (kind, msg) in cases {
            let status = to_status(&NodeError::new(kind, "test", msg));
            assert_eq!(status.code(), Code::Unknown, "{msg}");
            assert_eq!(status.message(), msg);
        }
    }
}
