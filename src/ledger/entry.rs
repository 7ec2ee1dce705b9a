//! The append-only entries the ledger is folded from, and why one can be refused.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::{Sat, SwapHash};

/// One fact about a swap's fees, appended to the ledger and persisted by the store.
///
/// Entries are identified by `(swap, id)`. The caller picks `id` deterministically for the
/// fact it records (for example one id per payment or sweep of a swap), so that recording the
/// same fact again after a crash is recognised as a replay and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The swap the entry belongs to.
    pub swap: SwapHash,
    /// The entry's id within its swap; see the type's documentation.
    pub id: EntryId,
    /// When the fact happened, as the injected clock said.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EntryKind,
}

/// An entry's id within its swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub u32);

impl EntryId {
    /// The id [`super::Reservation::into_entry`] gives the reservation, the first entry of a swap.
    pub const RESERVE: EntryId = EntryId(0);
    /// The conventional id of the release, the last entry of a swap.
    pub const RELEASE: EntryId = EntryId(u32::MAX);
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an [`Entry`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// Budget set aside for a swap before it is dispatched. Written in the same store
    /// transaction as the swap's intent, so a swap never runs without its reservation.
    Reserve {
        /// The policy rule that asked for the swap; it selects the per-rule sub-budget.
        rule: String,
        /// The fees the quote leads us to expect; shown to the operator, not enforced.
        expected: Sat,
        /// The most the swap can cost if every fee hits its cap; this is what admission checks.
        worst_case: Sat,
    },
    /// A fee actually paid. It counts in the window of its own timestamp.
    Spend {
        /// How much was paid.
        amount: Sat,
        /// What it was paid for.
        category: SpendCategory,
    },
    /// The swap reached a terminal state: whatever it did not spend is free again.
    Release,
}

/// What a fee was paid for, following Loop's cost breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpendCategory {
    /// The swap server's fee, paid with the swap invoice.
    Server,
    /// The no-show prepayment, when the server keeps it.
    Prepay,
    /// Lightning routing fees for the swap and prepay payments.
    Routing,
    /// The on-chain fee of the sweep (or of a timeout claim).
    Miner,
    /// The price of the L402 token that authenticates to the swap server.
    L402,
    /// Money lost to a swap that failed after the reveal: the swap invoice the server
    /// collected while its timeout path took the HTLC back.
    Loss,
}

impl SpendCategory {
    /// Every category, in display order; handy for metric labels and tests.
    pub const ALL: [SpendCategory; 6] = [
        SpendCategory::Server,
        SpendCategory::Prepay,
        SpendCategory::Routing,
        SpendCategory::Miner,
        SpendCategory::L402,
        SpendCategory::Loss,
    ];

    /// A stable lower-case name, usable as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SpendCategory::Server => "server",
            SpendCategory::Prepay => "prepay",
            SpendCategory::Routing => "routing",
            SpendCategory::Miner => "miner",
            SpendCategory::L402 => "l402",
            SpendCategory::Loss => "loss",
        }
    }
}

impl fmt::Display for SpendCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`super::Ledger::apply`] refused an entry. None of these is transient: each means the
/// caller's record of a swap disagrees with the ledger's, which is a bug to surface, not retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A spend or release arrived for a swap the ledger has no reservation for.
    #[error(
        "swap {swap}: entry {id} has no reservation to count against; record the swap's \
         reservation (Ledger::admit, then apply its entry) before any spend or release"
    )]
    NoReservation {
        /// The swap named by the entry.
        swap: SwapHash,
        /// The refused entry's id.
        id: EntryId,
    },
    /// A second reservation for a swap that already has one.
    #[error(
        "swap {swap}: entry {id} reserves again, but entry {existing} already reserved budget for it"
    )]
    AlreadyReserved {
        /// The swap named by the entry.
        swap: SwapHash,
        /// The refused entry's id.
        id: EntryId,
        /// The id of the reservation already recorded.
        existing: EntryId,
    },
    /// A spend or a second release after the swap was released.
    #[error(
        "swap {swap}: entry {id} arrives after the swap was released; record fees before the release"
    )]
    AfterRelease {
        /// The swap named by the entry.
        swap: SwapHash,
        /// The refused entry's id.
        id: EntryId,
    },
    /// The same `(swap, id)` was recorded before with different content.
    #[error(
        "swap {swap}: entry {id} was already recorded with different content; entry ids must name one fact"
    )]
    Conflict {
        /// The swap named by the entry.
        swap: SwapHash,
        /// The reused id.
        id: EntryId,
    },
    /// A reservation expecting more than its worst case, which would make the worst case a lie.
    #[error(
        "swap {swap}: expected fees {expected} exceed the worst case {worst_case}; the worst case must bound every fee"
    )]
    ExpectedAboveWorstCase {
        /// The swap named by the entry or request.
        swap: SwapHash,
        /// The expected fees.
        expected: Sat,
        /// The worst-case fees.
        worst_case: Sat,
    },
}
