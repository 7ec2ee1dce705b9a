//! The one error type of the reference Loop server, and its mapping to gRPC statuses.

use crate::chain::ChainError;
use crate::domain::{BlockHeight, Sat, SwapHash};
use crate::lnd::NodeError;

/// Why the server refused a request or could not drive a swap.
#[derive(Debug, thiserror::Error)]
pub enum LoopServerError {
    /// The request's `protocol_version` predates P2TR HTLCs with BIP-327 MuSig2.
    #[error("protocol_version {0} is not supported; send MUSIG2 (11) or later")]
    ProtocolVersion(i32),

    /// The amount is outside the server's terms.
    #[error("swap amount {amount} is outside the terms [{min}, {max}]; ask LoopOutTerms first")]
    AmountOutsideTerms {
        /// The requested amount.
        amount: Sat,
        /// The smallest amount accepted.
        min: Sat,
        /// The largest amount accepted.
        max: Sat,
    },

    /// The Loop In amount is outside the server's Loop In terms.
    #[error("loop in amount {amount} is outside the terms [{min}, {max}]; ask LoopInTerms first")]
    LoopInAmountOutsideTerms {
        /// The requested amount.
        amount: Sat,
        /// The smallest amount accepted.
        min: Sat,
        /// The largest amount accepted.
        max: Sat,
    },

    /// The server could not get the probe payment to the client (Loop In).
    #[error(
        "the server cannot reach your node with {amount}: {reason}; check your inbound \
         liquidity (or last_hop and route hints)"
    )]
    Unreachable {
        /// The amount probed.
        amount: Sat,
        /// What the payment reported.
        reason: String,
    },

    /// `PushKey` came before the server paid the swap invoice.
    #[error(
        "swap {0}: the server has not paid the swap invoice yet; push the internal key once \
         the invoice is settled"
    )]
    NotPaidYet(SwapHash),

    /// The expiry is outside `[height + min_cltv_delta, height + max_cltv_delta]`.
    #[error(
        "expiry {expiry} is outside [{min}, {max}] at height {height}; pick the expiry from \
         LoopOutTerms' cltv deltas"
    )]
    ExpiryOutsideTerms {
        /// The requested expiry.
        expiry: i64,
        /// The server's current height.
        height: BlockHeight,
        /// The earliest expiry accepted now.
        min: u32,
        /// The latest expiry accepted now.
        max: u32,
    },

    /// A request field is malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        /// The proto field name.
        field: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },

    /// No swap with this hash (or with a preimage hashing to it) exists.
    #[error("swap {0} is not known to this server")]
    UnknownSwap(SwapHash),

    /// A swap with this hash was registered before.
    #[error("swap {0} exists already; use a fresh preimage")]
    SwapExists(SwapHash),

    /// The payment address does not prove ownership of the swap.
    #[error("the payment_address does not match swap {0}'s invoice")]
    PaymentAddress(SwapHash),

    /// Co-signing was asked before the server knows the preimage.
    #[error("swap {0}: the preimage is not known yet; push it with LoopOutPushPreimage first")]
    PreimageUnknown(SwapHash),

    /// The sweep has no input spending the swap's HTLC.
    #[error("the sweep spends no HTLC output of swap {0}")]
    NoHtlcInput(SwapHash),

    /// The sweep PSBT or its prevout list is malformed.
    #[error("sweep_tx_psbt: {0}")]
    Psbt(String),

    /// The swap's behaviour switch makes the server refuse this call.
    #[error("{0}")]
    Refused(&'static str),

    /// An HTLC or signature computation failed.
    #[error(transparent)]
    Chain(#[from] ChainError),

    /// The server's Lightning node failed.
    #[error(transparent)]
    Node(#[from] NodeError),

    /// A swap invoice could not be built.
    #[error("building the swap invoice: {0}")]
    Invoice(String),

    /// The server's wallet could not fund the HTLC.
    #[error("funding the HTLC: {0}")]
    Fund(String),
}

impl LoopServerError {
    /// Whether the same call may succeed later unchanged.
    pub fn is_transient(&self) -> bool {
        match self {
            LoopServerError::Node(e) => e.kind.is_transient(),
            LoopServerError::PreimageUnknown(_) | LoopServerError::Fund(_) => true,
            _ => false,
        }
    }

    /// The gRPC status a client sees. Internal causes are summarised, never leaked with
    /// secrets: no error here carries a key or preimage.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Status;
        let msg = self.to_string();
        match self {
            LoopServerError::ProtocolVersion(_)
            | LoopServerError::AmountOutsideTerms { .. }
            | LoopServerError::LoopInAmountOutsideTerms { .. }
            | LoopServerError::ExpiryOutsideTerms { .. }
            | LoopServerError::InvalidField { .. }
            | LoopServerError::Psbt(_)
            | LoopServerError::NoHtlcInput(_) => Status::invalid_argument(msg),
            LoopServerError::UnknownSwap(_) => Status::not_found(msg),
            LoopServerError::SwapExists(_) => Status::already_exists(msg),
            LoopServerError::PaymentAddress(_) => Status::permission_denied(msg),
            LoopServerError::PreimageUnknown(_)
            | LoopServerError::NotPaidYet(_)
            | LoopServerError::Unreachable { .. } => Status::failed_precondition(msg),
            // Loop's Go server answers plain errors with UNKNOWN; a switch's refusal does too.
            LoopServerError::Refused(_) => Status::unknown(msg),
            LoopServerError::Chain(_) => Status::internal(msg),
            LoopServerError::Node(e) if e.kind.is_transient() => Status::unavailable(msg),
            LoopServerError::Node(_) | LoopServerError::Fund(_) | LoopServerError::Invoice(_) => {
                Status::internal(msg)
            }
        }
    }
}
