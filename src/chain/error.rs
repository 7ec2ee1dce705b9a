//! The one error type of the `chain` boundary.

use bitcoin::Amount;

/// Why a chain computation failed. None of these go away on retry: they describe bad input or
/// an impossible transaction, so [`ChainError::is_transient`] is always false.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A caller-supplied value is malformed; `place` names the flag, field or argument.
    #[error("{place}: {problem}")]
    InvalidInput {
        /// Where the value came from, e.g. `--sender-key`.
        place: &'static str,
        /// What is wrong and what is expected instead.
        problem: String,
    },

    /// MuSig2 key aggregation produced the point at infinity (the keys cancel out).
    #[error("the sender and receiver keys aggregate to no key at all; use different keys")]
    KeyAggregation(#[source] musig2::errors::KeyAggError),

    /// The BIP-341 tweak of the aggregate key failed (negligible probability).
    #[error("the taproot tweak of the aggregate HTLC key failed; use different keys")]
    Tweak(#[source] musig2::errors::TweakError),

    /// The two-leaf tap tree could not be assembled.
    #[error("the HTLC tap tree could not be built: {0}")]
    TapTree(#[from] bitcoin::taproot::TaprootBuilderError),

    /// A taproot signature hash could not be computed (index or prevouts wrong).
    #[error("taproot sighash of input {index}: {source}")]
    TaprootSighash {
        /// The input being signed.
        index: usize,
        /// The underlying error.
        #[source]
        source: bitcoin::sighash::TaprootError,
    },

    /// A segwit v0 signature hash could not be computed (index out of range).
    #[error("segwit v0 sighash of input {index}: {source}")]
    SegwitSighash {
        /// The input being signed.
        index: usize,
        /// The underlying error.
        #[source]
        source: bitcoin::transaction::InputsIndexError,
    },

    /// The sweep fee would eat the whole HTLC.
    #[error(
        "a sweep fee of {fee} leaves nothing of the {value} HTLC; wait for lower fees or raise \
         the cap"
    )]
    FeeExceedsValue {
        /// The fee the rate asked for.
        fee: Amount,
        /// The HTLC value.
        value: Amount,
    },

    /// The swept output would be dust and not relay.
    #[error(
        "the sweep output of {value} is below the {dust_limit} dust limit of its script; the \
         HTLC is too small for this fee rate"
    )]
    Dust {
        /// What would be left for the destination.
        value: Amount,
        /// The smallest relayable value for the destination script.
        dust_limit: Amount,
    },

    /// A cooperative MuSig2 signing step failed: a malformed or invalid nonce or partial
    /// signature from the other party, or a key that is not part of the HTLC. The sweep falls
    /// back to the script path.
    #[error("MuSig2 {stage}: {reason}")]
    MuSig2 {
        /// The step that failed (key, nonce, sign, partial signature, combine).
        stage: &'static str,
        /// What went wrong.
        reason: String,
    },

    /// An input failed libbitcoinconsensus script verification.
    #[error("input {index} fails script verification: {reason}")]
    ScriptVerify {
        /// The failing input.
        index: usize,
        /// libbitcoinconsensus's verdict.
        reason: String,
    },
}

impl ChainError {
    /// Whether trying again unchanged could succeed. Chain errors are all permanent.
    pub fn is_transient(&self) -> bool {
        false
    }

    pub(crate) fn invalid(place: &'static str, problem: impl Into<String>) -> ChainError {
        ChainError::InvalidInput {
            place,
            problem: problem.into(),
        }
    }
}
