//! Policies: YAML rules and rhai scripts, loaded and validated as a whole, evaluated over a
//! snapshot into a plan where every target has a decision and a reason. Pure: no tokio,
//! tonic or sqlx; the caller passes `now` and every number in the snapshot.
//!
//! - [`load()`]: a file or directory into a [`Policy`], or a located [`PolicyError`].
//! - [`evaluate`]: a [`Policy`] and a [`Snapshot`] into a [`Plan`].
//! - [`run_tests`]: the `*.test.yaml` cases of a policy directory.
//! - [`json_schema`]: the JSON Schema of the file format (`policies/schema.json`).

mod admission;
mod check;
mod error;
mod eval;
mod fields;
mod gate;
pub mod keys;
pub mod load;
mod model;
mod reason;
mod schema;
pub mod script;
mod settings;
mod snapshot;
mod tally;
mod testcase;
mod tests;
mod tree;
pub mod values;
mod views;

#[cfg(test)]
mod eval_tests;

pub use admission::{
    SwapCaps, SwapLimits, category_caps, fresh_budget, loop_in_caps, loop_in_limits, swap_limits,
};
pub use error::PolicyError;
pub use eval::{Decision, Plan, Proposal, SWEEP_WEIGHT_WU, evaluate};
pub use keys::json_schema;
pub use load::{is_policy_file, load, load_str, load_with, policy_files};
pub use model::{
    Backoff, Band, Blackout, BudgetDef, Destination, FeeCaps, FeeGate, Grouping, LastHop, Limits,
    LoopInFeeCaps, LoopInSettings, Matcher, Outgoing, PeriodSpec, Policy, Rule, Schedule, Selector,
    Settings, SwapSettings, TagSet,
};
pub use reason::{Reason, Target};
pub use script::{Clock, FlowWindow, ScriptHost, ScriptLimits};
pub use snapshot::{
    BackoffState, BudgetLeft, Channel, DEFAULT_ROUTING_PPM, FeeMarket, FeeSample, InFlightSwap,
    LoopInServerTerms, ServerTerms, Snapshot,
};
pub use testcase::{Expectation, TestCase, parse_test_case};
pub use tests::{CaseResult, TestReport, run_tests, run_tests_below, run_tests_with, test_dirs};
