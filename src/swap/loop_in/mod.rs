//! The Loop In swap: the node pays on chain into a P2TR HTLC it can take back after the expiry,
//! the server pays the node's invoice off chain and then claims the HTLC
//! (`loop-in-protocol.md`).
//!
//! A sibling of the Loop Out core in [`crate::swap`], sharing its preimage type, key locator,
//! HTLC output record and the chain code (`chain::htlc::HtlcV3::with_internal_keys`, the
//! timeout-leaf sweep): the pure files here (`contract`, `state`, `event`, `step`, `diagram`)
//! do no I/O, read no clock and draw no randomness.
//! - [`LoopInContract`]: the validated terms (no secret inside).
//! - [`LoopInState`] / [`LoopInProgress`]: the state with its stable code and what was learnt.
//! - [`step`]: `(contract, progress, input) -> LoopInTransition { next, actions, rule }`.
//! - [`LoopInProgress::release_internal_key`]: the only gate through which the internal key
//!   leaves, and only once the swap invoice is recorded settled.
//! - [`diagram`]: `docs/loop-in-fsm.md`, drawn by exploring [`step`].
//!
//! The driver's duties are those of the Loop Out driver (save `next` before any action, log and
//! drop a rejected input, feed `Resumed` only with a fresh height), plus: never retry
//! `FundHtlc`; after a failed `SendOutputs`, look the wallet up for a transaction paying the
//! script before reporting `FundingFailed`.

mod contract;
pub mod diagram;
mod event;
mod state;
mod step;

#[cfg(test)]
mod tests;

pub use contract::{
    DEFAULT_HTLC_CONF_TARGET, FUNDING_WEIGHT_ESTIMATE, InternalKey, LoopInContract,
    LoopInContractError, LoopInContractTerms, LoopInLimits, MAX_EXPIRY_DELTA, MIN_EXPIRY_DELTA,
    MIN_HTLC_CONF_TARGET, MIN_PUBLISH_DELTA, SWAP_INVOICE_EXPIRY_SECS, TIMEOUT_SWEEP_CONF_TARGET,
};
pub use event::{LoopInAction, LoopInInput, LoopInRejected, LoopInRule, LoopInTransition};
pub use state::{
    Funding, InternalKeyLocked, InvoiceStatus, LoopInCosts, LoopInProgress, LoopInSpend,
    LoopInSpendPath, LoopInState, UnknownLoopInStateCode,
};
pub use step::step;
