//! The Loop Out swap engine: a pure core (the contract, the state with its stable codes, the
//! transition function) and, in [`engine`] and its private `driver`, the async shell around it.
//!
//! Architecture invariant: the core files (`contract`, `state`, `step`, `event`, `witness`,
//! `diagram`) do no I/O, read no clock and draw no randomness (no tokio, tonic or sqlx). The
//! driver that loads a swap, calls [`step`], saves the returned progress and only then runs the
//! returned actions is the only part that talks to lnd, the server and the store; everything it
//! needs to do that safely is decided in the core:
//! - [`LoopOutContract`]: the validated, immutable terms of one swap (no preimage inside).
//! - [`SwapState`] / [`SwapProgress`]: where the swap stands and what it has learned; the state's
//!   [`SwapState::code`] is persisted and never moves.
//! - [`step`]: `(contract, progress, input) -> Transition { next, actions, rule }`.
//! - [`SwapProgress::release_preimage`]: the only gate through which the preimage leaves, checked
//!   against the stored state.
//! - [`read_spend`]: which HTLC branch a confirmed spend used (success vs timeout); every spend
//!   gets a reading, an unknown witness shape by whether it carries the preimage.
//! - [`engine`]: the [`SwapEngine`] that creates swaps and runs one driver task per swap,
//!   saving every step before acting (tokio and the ports live there and in the driver, not
//!   in the pure files above).
//! - [`diagram`]: the state diagram in `docs/swap-fsm.md`, drawn by exploring [`step`].
//! - [`loop_in`]: the Loop In core, the same pattern for the opposite direction.
//!
//! Lifecycle: create the contract and the preimage, save them with [`SwapProgress::new`], then
//! feed [`Input::Resumed`] with the current height — the same input every unfinished swap gets at
//! daemon start — and from then on blocks, payment results and chain events.
//!
//! What the driver must do for the rules here to hold:
//! - Save `Transition::next` before running any of `Transition::actions`; if the save fails, run
//!   none of them and keep the old progress in memory.
//! - On `Err(Rejected)`, save nothing and do nothing but log: the input contradicts what is stored.
//! - Feed `Resumed` only with a height from a fresh block epoch, never a cached one.
//! - Report only outputs paying exactly the contract's `htlc_pk_script` as `HtlcConfirmed`, and
//!   read every spend with [`read_spend`] (a spend is never ignored).
//! - Take the preimage for `PushPreimage` and sweeps only through
//!   [`SwapProgress::release_preimage`] on the progress it just saved.
//! - Treat `CancelWithServer` as best effort (errors are logged, not retried). A failed push or
//!   sweep is requested again on the next block; a failed payment dispatch or watch only on the
//!   next `Resumed`, so the driver retries those itself (or re-feeds `Resumed`).

mod contract;
pub mod diagram;
pub mod drawing;
mod driver;
pub mod engine;
mod event;
pub mod loop_in;
mod state;
mod step;
mod witness;

#[cfg(test)]
mod tests;

pub use contract::{
    ContractError, ContractTerms, DEFAULT_FEE_CAP_LIFTED_WITHIN_BLOCKS,
    DEFAULT_REVEAL_MARGIN_BLOCKS, DEFAULT_SWEEP_FINALITY_CONFIRMATIONS, FeeLimits, InvoiceTerms,
    KeyLocator, LoopOutContract, Preimage, SWAP_KEY_FAMILY,
};
pub use engine::{
    Admission, CeilingError, CreatedLoopIn, CreatedLoopOut, EngineConfig, EngineError, FeeCeilings,
    LoopInAdmission, LoopInQuoteInfo, LoopInRequest, LoopInUpdate, LoopOutRequest, QuarantinedSwap,
    QuoteLimits, RouteHints, SwapEngine, SwapUpdate,
};
pub use event::{Action, CancelReason, Input, PaymentEvent, Rejected, Rule, Transition};
pub use state::{
    HtlcOutput, HtlcSpend, PaymentFailureReason, PaymentKind, PaymentStatus, PreimageLocked,
    SpendPath, SwapCosts, SwapProgress, SwapState, SweepFailure, UnknownStateCode,
};
pub use step::step;
pub use witness::{HtlcBranch, SpendReading, classify_v3_witness, read_spend, witness_shape};
