//! Why the chain refuses a transaction. Each reason names what failed and what would fix it,
//! because these messages reach users of `PublishTransaction` unchanged.

use bitcoin::{OutPoint, Txid};

use crate::domain::{BlockHeight, Sat};

/// Why a transaction was not accepted into the mempool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The transaction is structurally unusable (no inputs, no outputs, a coinbase, an input
    /// listed twice).
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// The transaction is already in the mempool or confirmed.
    #[error("transaction {0} is already known (in the mempool or confirmed)")]
    Duplicate(Txid),
    /// An output or the sum of outputs is above 21 million BTC.
    #[error(
        "output values are out of range: each output and their sum must be at most 21,000,000 BTC"
    )]
    ValueOutOfRange,
    /// An output pays less than the dust threshold for its script.
    #[error(
        "output {vout} pays {value}, below the dust threshold {min} for its script: pay at least {min}"
    )]
    Dust {
        /// The output's index.
        vout: u32,
        /// What it pays.
        value: Sat,
        /// The dust threshold (at 3 sat/vB, as Bitcoin Core).
        min: Sat,
    },
    /// The transaction is heavier than the standard limit.
    #[error("transaction weighs {weight} WU, above the standard limit of 400000 WU: split it")]
    TooLarge {
        /// Its weight.
        weight: u64,
    },
    /// An input spends an output that does not exist (never created, or spent and pruned).
    #[error(
        "input spends {0}, which is not in the UTXO set or the mempool: broadcast its parent first"
    )]
    MissingInput(OutPoint),
    /// An input spends an output already spent by a confirmed transaction.
    #[error("input spends {outpoint}, already spent by confirmed transaction {spent_by}")]
    DoubleSpend {
        /// The output.
        outpoint: OutPoint,
        /// The confirmed spender.
        spent_by: Txid,
    },
    /// An input conflicts with a mempool transaction and does not pay enough to replace it
    /// (BIP-125 rules 3, 4 and 6 under full RBF).
    #[error(
        "input spends {outpoint}, already spent by mempool transaction {spent_by}; a replacement \
         must pay at least {required_fee} (it pays {fee}): raise the fee"
    )]
    InsufficientReplacementFee {
        /// The contested output.
        outpoint: OutPoint,
        /// The mempool transaction spending it.
        spent_by: Txid,
        /// What the replacement pays.
        fee: Sat,
        /// The least it must pay.
        required_fee: Sat,
    },
    /// An input spends a coinbase output with fewer than 100 confirmations.
    #[error(
        "input spends coinbase output {outpoint} with {confirmations} confirmations: coinbase outputs need 100 (mine more blocks)"
    )]
    ImmatureCoinbase {
        /// The coinbase output.
        outpoint: OutPoint,
        /// Its confirmations counting the next block.
        confirmations: u32,
    },
    /// The outputs pay more than the inputs bring.
    #[error("outputs pay {outputs} but inputs bring only {inputs}")]
    OutputsExceedInputs {
        /// The sum of the spent outputs.
        inputs: Sat,
        /// The sum of the new outputs.
        outputs: Sat,
    },
    /// The absolute lock time is not yet reached (BIP-65; times compare to the median time
    /// past, BIP-113).
    #[error(
        "lock time {lock_time} is not final: the next block has height {next_height} and median \
         time past {median_time_past}; wait, or lower the lock time"
    )]
    NonFinalLocktime {
        /// The transaction's `nLockTime`.
        lock_time: u32,
        /// The height of the block it would go into.
        next_height: BlockHeight,
        /// The tip's median time past.
        median_time_past: u32,
    },
    /// An input's relative lock time (BIP-68, transaction version 2 or more) is not reached.
    #[error("input {input}'s relative lock time is not reached: {detail}; wait for more blocks")]
    SequenceLock {
        /// The input's index.
        input: usize,
        /// What is required and what the chain has.
        detail: String,
    },
    /// The fee is below the minimum relay fee.
    #[error("fee {fee} is below the minimum relay fee {min} for this size: raise the fee")]
    FeeTooLow {
        /// What the transaction pays.
        fee: Sat,
        /// The minimum for its virtual size.
        min: Sat,
    },
    /// An input's script failed Bitcoin Core's interpreter.
    #[error("input {input} ({outpoint}) fails script verification: {}", describe_script_error(*error))]
    Script {
        /// The input's index.
        input: usize,
        /// The output it spends.
        outpoint: OutPoint,
        /// What libbitcoinconsensus reported.
        error: bitcoinconsensus::Error,
    },
}

/// libbitcoinconsensus reports a failing script as "no error set"; say what that means.
impl RejectReason {
    /// The words lnd's `PublishTransaction` answers with for this rejection (btcwallet's
    /// mapping of the backend's refusal), or `None` where the simnet keeps its own: callers
    /// that read lnd's errors then read the simnet's alike. `docs/simnet-fidelity.md` lists
    /// them.
    pub fn lnd_wording(&self) -> Option<&'static str> {
        match self {
            RejectReason::DoubleSpend { .. } | RejectReason::InsufficientReplacementFee { .. } => {
                Some("transaction rejected: output already spent")
            }
            RejectReason::FeeTooLow { .. } => Some("insufficient fee"),
            _ => None,
        }
    }
}

fn describe_script_error(error: bitcoinconsensus::Error) -> String {
    match error {
        bitcoinconsensus::Error::ERR_SCRIPT => {
            "the script evaluated to false (wrong signature, key, preimage, or lock)".to_owned()
        }
        other => other.to_string(),
    }
}
