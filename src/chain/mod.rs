//! The on-chain half of a Loop Out: HTLC scripts, sweep transactions and fee maths.
//!
//! Everything here is pure: no I/O, no clock, nothing async (no tokio, tonic or sqlx). The swap
//! engine, the simnet and the CLI feed it numbers and keys and get scripts, transactions and
//! rates back, so each rule is tested once, here, against Bitcoin Core's script interpreter.
//!
//! - [`htlc`]: the v3 (P2TR, MuSig2 key path + two tapscript leaves) HTLC sluice creates, and
//!   the v2 (P2WSH) HTLC it can still decode; witnesses; which path a spend took.
//! - [`fees`]: the deadline-driven sweep fee rate, the fee cap rules, weights and fees.
//! - [`musig`]: the two halves of the cooperative MuSig2 key-path signature.
//! - [`sweep`]: the unsigned sweep transaction, its BIP-341/BIP-143 sighashes, final witnesses.
//! - [`report`]: the validated input and printable result of `sluice htlc`.
//! - [`verify`]: every input of a transaction checked by libbitcoinconsensus.

mod error;
pub mod fees;
pub mod htlc;
pub mod musig;
pub mod report;
pub mod sweep;
pub mod verify;

pub use error::ChainError;
pub use fees::SatPerKw;
pub use htlc::{HtlcKeys, HtlcV2, HtlcV3, HtlcVersion};
pub use report::{HtlcArgs, HtlcReport, htlc_report};
