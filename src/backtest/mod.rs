//! `sluice backtest`: what a policy would have done to a node, and cost, over a history.
//!
//! A pure core driven on a virtual clock ([`replay::run`]) runs the live policy, ledger and
//! autoloop checks over a [`History`] (a recorded trace, or the synthetic node of
//! [`model::synthetic`], or a node's own records rebuilt by [`rebuild::rebuild`]) and a [`FeeSeries`] (a fee file or [`model::fee_market`]). The I/O
//! shell is `src/cli/backtest.rs`. Formats, models and limits: `docs/backtest.md`.

pub mod input;
pub mod model;
pub mod plot;
pub mod rebuild;
pub mod replay;
pub mod report;

#[cfg(test)]
mod tests;

pub use input::{
    ChannelStart, Event, EventKind, FeeSeries, History, InputError, parse_fees, parse_trace,
    write_trace,
};
pub use replay::{Outcome, Settings, run};
