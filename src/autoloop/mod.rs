//! Autoloop: the scheduler that turns policy decisions into supervised swaps.
//!
//! One task ([`Autoloop::start`]) wakes on channel events (debounced), on each block, on
//! schedule boundaries, on a policy reload, when an autoloop swap finishes, on a periodic
//! safety tick and when asked ([`Wake`]). Each pass:
//! 1. snapshots the node through the ports (channels, forwarding flows, fee estimates with a
//!    history per gated confirmation target, sampled by time and kept for the largest gate
//!    window), the ledger, swaps in flight, backoff and the routing fee sluice's swaps paid;
//! 2. evaluates the policy (pure, `policy::evaluate`);
//! 3. for each proposed swap asks the server for a quote and checks it against the caps,
//!    checks the budget with the ledger, then dispatches through the swap engine with the
//!    ledger's reservation stored in the same transaction as the swap (mode `on`), or only
//!    journals `dry_run` (mode `dry-run`);
//! 4. journals each target's decision when it changed or acted, and a summary of the pass.
//!
//! A swap-server outage gives the targets that need a swap `provider_unavailable`; a failed
//! quote or dispatch is `quote_failed` / `dispatch_failed`: decisions, not a failed pass.
//!
//! Supervision follows the engine's updates: when an autoloop swap ends its fees are appended
//! to the ledger by category (idempotent entry ids), its reservation is released, backoff is
//! updated and a pass is woken. Manual swaps have no reservation and are never touched; their
//! channels are skipped.
//!
//! The policy directory is polled; a changed policy that fails to load is reported and the
//! last good one stays in force.

pub mod admit;
mod handle;
mod history;
mod inputs;
mod pass;
mod state;
mod supervise;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use handle::{Autoloop, AutoloopDeps, PolicyStatus};
pub use history::{gated_targets, record as record_fee_sample, recorded as recorded_fee_samples};
pub use inputs::{InputError, budget_left, budget_specs};
pub use pass::{PassReport, TargetDecision};

use crate::domain::{BlockHeight, SwapHash};
use crate::store::StoreError;

/// The label autoloop swaps carry, following Loop's reserved label for its own autoloop.
pub const AUTOLOOP_LABEL: &str = "[reserved]: autoloop-out";

/// The initiator autoloop swaps carry; manual swaps carry another one.
pub const AUTOLOOP_INITIATOR: &str = "autoloop";

/// What autoloop does with the swaps the policy proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No passes run.
    #[default]
    Off,
    /// Full pipeline including server quotes; nothing is dispatched, decisions are journalled.
    DryRun,
    /// Swaps are dispatched.
    On,
}

impl Mode {
    /// The stable name: `off`, `dry-run` or `on`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::DryRun => "dry-run",
            Mode::On => "on",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An autoloop mode name that is not one of `off`, `dry-run`, `on`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown autoloop mode `{0}`; use one of off, dry-run, on")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Mode, UnknownMode> {
        match s {
            "off" => Ok(Mode::Off),
            "dry-run" | "dry_run" | "dryrun" => Ok(Mode::DryRun),
            "on" => Ok(Mode::On),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// Why a pass ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Channel balances or states changed (after the debounce).
    ChannelEvent,
    /// A new block.
    Block(BlockHeight),
    /// A minute boundary while a rule has a schedule.
    ScheduleBoundary,
    /// The policy was reloaded.
    PolicyReloaded,
    /// An autoloop swap finished.
    SwapFinished(SwapHash),
    /// The periodic safety tick.
    Tick,
    /// Asked for (mode change, API, tests).
    Forced,
}

impl Wake {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Wake::ChannelEvent => "channel_event",
            Wake::Block(_) => "block",
            Wake::ScheduleBoundary => "schedule",
            Wake::PolicyReloaded => "policy_reloaded",
            Wake::SwapFinished(_) => "swap_finished",
            Wake::Tick => "tick",
            Wake::Forced => "forced",
        }
    }
}

/// Tunables of the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoloopConfig {
    /// The policy file or directory.
    pub policy_path: PathBuf,
    /// The periodic safety tick.
    pub tick: Duration,
    /// How long channel events are collected before a pass runs.
    pub debounce: Duration,
    /// How often the policy files' modification times are checked.
    pub policy_poll: Duration,
    /// How long the journal keeps decisions and pass summaries.
    pub journal_retention: Duration,
    /// The spacing of fee samples for the percentile gate (one per confirmation target per
    /// this period, however often passes run); they are kept for the largest gate window.
    pub fee_sample_every: Duration,
    /// Days of each routing-flow window given to the policy.
    pub flow_windows_days: Vec<u32>,
    /// Where the swap-server client keeps its L402 token (`<datadir>/l402`): a paid token's
    /// price is booked in the ledger under the `l402` category. `None`: nothing is booked.
    pub l402_dir: Option<PathBuf>,
}

/// The safety tick's default period (config `autoloop.tick`).
pub const DEFAULT_TICK: Duration = Duration::from_secs(600);

/// The routing-flow windows scripts can ask for by default (config `autoloop.flow_windows`).
pub const DEFAULT_FLOW_WINDOWS: [u32; 3] = [1, 7, 30];

/// How long the journal keeps decisions and pass summaries by default (config
/// `autoloop.journal_retention`).
pub const DEFAULT_JOURNAL_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// The default spacing of fee samples (config `autoloop.fee_sample_every`): 2,016 samples
/// per confirmation target over a 14-day window.
pub const DEFAULT_FEE_SAMPLE_EVERY: Duration = Duration::from_secs(600);

/// How long channel events are gathered before a pass, by default (config `autoloop.debounce`).
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);

impl AutoloopConfig {
    /// Defaults: a 10-minute tick, 2 s debounce, 5 s policy poll, 30 days of journal,
    /// a fee sample every 10 minutes and 1/7/30-day flow windows.
    pub fn new(policy_path: PathBuf) -> AutoloopConfig {
        AutoloopConfig {
            policy_path,
            tick: DEFAULT_TICK,
            debounce: DEFAULT_DEBOUNCE,
            policy_poll: Duration::from_secs(5),
            journal_retention: DEFAULT_JOURNAL_RETENTION,
            fee_sample_every: DEFAULT_FEE_SAMPLE_EVERY,
            flow_windows_days: DEFAULT_FLOW_WINDOWS.to_vec(),
            l402_dir: None,
        }
    }
}

/// Why autoloop could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum AutoloopError {
    /// The store failed.
    #[error("autoloop store access failed: {0}")]
    Store(#[from] StoreError),
    /// The persisted ledger does not replay: a record disagrees with the ledger's rules.
    #[error(
        "the persisted fee ledger does not replay: {0}; the store's ledger_entries table is inconsistent"
    )]
    Ledger(#[from] crate::ledger::EntryError),
    /// The policy's budgets are not a valid ledger specification.
    #[error("the policy's budgets are invalid: {0}")]
    Budget(#[from] crate::ledger::SpecError),
    /// The policy could not be loaded and there is no good one to keep.
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// A pass could not gather its inputs.
    #[error("autoloop pass inputs: {0}")]
    Inputs(#[from] InputError),
    /// The scheduler task has stopped.
    #[error("autoloop has stopped")]
    Stopped,
}
