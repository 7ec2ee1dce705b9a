//! Budget specifications, what admission reports when it says no, and the status report.

use std::collections::BTreeMap;
use std::fmt;

use chrono::TimeDelta;

use super::period::{Period, Window};
use crate::domain::Sat;

/// One fee budget: a limit per period, optional sub-limits per policy rule, and an optional
/// hard cap over its own period.
///
/// Several budgets can apply at once (say a monthly 150k and a weekly 50k); a swap is
/// admitted only if it fits every one. The ledger enforces every limit on every admission;
/// `hard_cap` exists for the policy layer, which may let scripts tighten or relax `limit`
/// and `per_rule`, but never the hard cap (policy-sketch.md, `hard_daily_cap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpec {
    /// The budget's name, unique among budgets; shown in refusals, status and metrics.
    pub name: String,
    /// The period `limit` and `per_rule` apply to.
    pub period: Period,
    /// The most all swaps together may spend in fees per window of `period`.
    pub limit: Sat,
    /// Sub-limits for swaps of the named rules, per window of `period`. Rules not listed are
    /// bound only by `limit`.
    pub per_rule: BTreeMap<String, Sat>,
    /// A ceiling over its own period (typically a day) that nothing but the configuration
    /// file can change.
    pub hard_cap: Option<(Period, Sat)>,
}

/// Which limit of a budget a status line or a refusal is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// The budget's overall `limit`.
    Total,
    /// The sub-limit of the named rule.
    Rule(String),
    /// The budget's `hard_cap`.
    HardCap,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Total => f.write_str("limit"),
            Scope::Rule(rule) => write!(f, "per_rule.{rule}"),
            Scope::HardCap => f.write_str("hard_cap"),
        }
    }
}

/// Why a budget specification was rejected. Messages name the budget and the key to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Two budgets share a name, so refusals and metrics could not tell them apart.
    #[error("budget `{name}` is defined twice; give each budget its own name")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A budget without a name.
    #[error("a budget has an empty name; every budget needs a name for status and metrics")]
    EmptyName,
    /// A rolling period of zero or negative length, which would hold no fees at all.
    #[error(
        "budget `{name}`: {scope} has a rolling period of {seconds}s; use a positive length such as 24h"
    )]
    NonPositiveRolling {
        /// The budget's name.
        name: String,
        /// The limit whose period is wrong.
        scope: Scope,
        /// The length given, in seconds.
        seconds: i64,
    },
}

impl BudgetSpec {
    /// Checks the parts of the specification a single budget can get wrong.
    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        if self.name.is_empty() {
            return Err(SpecError::EmptyName);
        }
        let mut periods = vec![(Scope::Total, self.period)];
        if let Some((period, _)) = self.hard_cap {
            periods.push((Scope::HardCap, period));
        }
        for (scope, period) in periods {
            if let Period::Rolling(length) = period
                && length <= TimeDelta::zero()
            {
                return Err(SpecError::NonPositiveRolling {
                    name: self.name.clone(),
                    scope,
                    seconds: length.num_seconds(),
                });
            }
        }
        Ok(())
    }
}

/// A swap's fees did not fit a budget; the decision reason the policy layer reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Nothing is left: spent plus worst-case reservations already reach the limit.
    #[error(
        "budget `{budget}` {scope} is exhausted in {window}: {spent} spent and {reserved} reserved of {limit}"
    )]
    Exhausted {
        /// The budget's name.
        budget: String,
        /// The limit that is exhausted.
        scope: Scope,
        /// The window the limit applies to.
        window: Window,
        /// The limit.
        limit: Sat,
        /// Fees spent in the window.
        spent: Sat,
        /// Worst-case fees of pending swaps.
        reserved: Sat,
    },
    /// Something is left, but less than the swap's worst-case fees.
    #[error(
        "budget `{budget}` {scope} has {available} left in {window}; the swap's worst case needs {needed}"
    )]
    Insufficient {
        /// The budget's name.
        budget: String,
        /// The limit that is too tight.
        scope: Scope,
        /// The window the limit applies to.
        window: Window,
        /// What is still available.
        available: Sat,
        /// The swap's worst-case fees.
        needed: Sat,
    },
}

impl Refusal {
    /// The name of the budget that refused.
    pub fn budget(&self) -> &str {
        match self {
            Refusal::Exhausted { budget, .. } | Refusal::Insufficient { budget, .. } => budget,
        }
    }
}

/// Where one limit stands in its current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowStatus {
    /// The period the limit applies to.
    pub period: Period,
    /// The window containing the moment asked about.
    pub window: Window,
    /// The limit.
    pub limit: Sat,
    /// Fees paid with timestamps inside the window.
    pub spent: Sat,
    /// What pending swaps are still expected to spend (expected fees minus fees paid so far).
    pub reserved_expected: Sat,
    /// What pending swaps may still spend at most (worst case minus fees paid so far).
    pub reserved_worst: Sat,
    /// `limit − spent − reserved_worst`, never below zero: the most a new swap may cost.
    pub available: Sat,
}

impl WindowStatus {
    /// Whether nothing is left for a new swap, however cheap.
    pub fn is_exhausted(&self) -> bool {
        self.spent + self.reserved_worst >= self.limit
    }
}

/// Where one budget stands: its overall limit, each rule's sub-limit and its hard cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The budget's name.
    pub name: String,
    /// The overall limit.
    pub total: WindowStatus,
    /// The sub-limit of each rule listed in the specification.
    pub per_rule: BTreeMap<String, WindowStatus>,
    /// The hard cap, if the budget has one.
    pub hard_cap: Option<WindowStatus>,
}

impl BudgetStatus {
    /// Every limit of the budget with its scope: total, hard cap, then rules by name.
    pub fn lines(&self) -> impl Iterator<Item = (Scope, &WindowStatus)> {
        std::iter::once((Scope::Total, &self.total))
            .chain(self.hard_cap.iter().map(|status| (Scope::HardCap, status)))
            .chain(
                self.per_rule
                    .iter()
                    .map(|(rule, status)| (Scope::Rule(rule.clone()), status)),
            )
    }
}
