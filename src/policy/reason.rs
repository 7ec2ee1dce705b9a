//! Targets and the closed set of reasons a decision can carry.

use std::fmt;

use crate::domain::ChanId;

/// What a decision is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// One channel.
    Channel(ChanId),
    /// All channels with one peer (pubkey, lower-case hex).
    Peer(String),
    /// All channels of a `per: node` rule.
    Node,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Channel(id) => write!(f, "{id}"),
            Target::Peer(p) => write!(f, "peer:{p}"),
            Target::Node => f.write_str("node"),
        }
    }
}

impl Target {
    /// `channel`, `peer` or `node`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Channel(_) => "channel",
            Target::Peer(_) => "peer",
            Target::Node => "node",
        }
    }
}

/// Why a target got its decision. The set is closed and each reason has a stable name
/// ([`Reason::name`]) used by the API, the metrics label `reason` and the journal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Swap now; the decision carries the proposal.
    Swap,
    /// Inside (or above) the band: nothing to do.
    Ok,
    /// The amount needed is below the minimum swap size.
    BelowMinSize,
    /// A budget has nothing left.
    BudgetExhausted,
    /// A budget has something left, but not enough for this swap.
    BudgetInsufficient,
    /// An expected fee is above its cap.
    FeeCap,
    /// The fee-market gate is closed.
    FeeGate,
    /// The schedule does not allow dispatch at this minute.
    OutsideSchedule,
    /// Inside a blackout window.
    Blackout,
    /// A recent failure on one of the target's channels.
    Backoff,
    /// The in-flight limit (node-wide or per target) is reached.
    InFlight,
    /// No channel of the target is active.
    Inactive,
    /// Pending HTLCs keep the balance from covering the amount.
    PendingHtlcs,
    /// The rule's script vetoed the swap; its reason.
    Vetoed(String),
    /// The rule takes the channel but excludes it.
    Excluded,
    /// No rule takes the channel.
    NoRule,
    /// Too little local balance: the target's active channels together hold less than the
    /// amount (with `swap.outgoing: target`). The name is kept for the journal and metrics.
    NoRoute,
    /// A swap would be made, but the policy or the daemon is in dry-run mode.
    DryRun,
    /// A Loop In needs more confirmed on-chain funds than lnd's wallet has left.
    InsufficientFunds,
    /// The rule's script failed or hit a sandbox limit; where and why.
    ScriptError(String),
    /// The swap server gave no quote for the proposed swap (its error in the detail).
    QuoteFailed,
    /// The swap could not be created (the server's or lnd's error in the detail).
    DispatchFailed,
    /// The swap server is unreachable or failed: without its terms nothing that needs a swap
    /// is decided this pass.
    ProviderUnavailable,
}

impl Reason {
    /// Every reason's stable name.
    pub const NAMES: &'static [&'static str] = &[
        "swap",
        "ok",
        "below_min_size",
        "budget_exhausted",
        "budget_insufficient",
        "fee_cap",
        "fee_gate",
        "outside_schedule",
        "blackout",
        "backoff",
        "in_flight",
        "inactive",
        "pending_htlcs",
        "vetoed",
        "excluded",
        "no_rule",
        "no_route",
        "dry_run",
        "insufficient_funds",
        "script_error",
        "quote_failed",
        "dispatch_failed",
        "provider_unavailable",
    ];

    /// Reasons only the autoloop pass gives (after the pure evaluation, from the swap server
    /// or the swap engine); `evaluate` never does.
    pub const PASS_ONLY: &'static [&'static str] =
        &["quote_failed", "dispatch_failed", "provider_unavailable"];

    /// The stable name, e.g. `below_min_size`.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Swap => "swap",
            Reason::Ok => "ok",
            Reason::BelowMinSize => "below_min_size",
            Reason::BudgetExhausted => "budget_exhausted",
            Reason::BudgetInsufficient => "budget_insufficient",
            Reason::FeeCap => "fee_cap",
            Reason::FeeGate => "fee_gate",
            Reason::OutsideSchedule => "outside_schedule",
            Reason::Blackout => "blackout",
            Reason::Backoff => "backoff",
            Reason::InFlight => "in_flight",
            Reason::Inactive => "inactive",
            Reason::PendingHtlcs => "pending_htlcs",
            Reason::Vetoed(_) => "vetoed",
            Reason::Excluded => "excluded",
            Reason::NoRule => "no_rule",
            Reason::NoRoute => "no_route",
            Reason::DryRun => "dry_run",
            Reason::InsufficientFunds => "insufficient_funds",
            Reason::ScriptError(_) => "script_error",
            Reason::QuoteFailed => "quote_failed",
            Reason::DispatchFailed => "dispatch_failed",
            Reason::ProviderUnavailable => "provider_unavailable",
        }
    }

    /// The script's text for `vetoed` and `script_error`.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reason::Vetoed(t) | Reason::ScriptError(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(t) => write!(f, "{}: {t}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}
