//! One swap's account in the ledger, folded from its entries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::entry::{EntryId, EntryKind, SpendCategory};
use crate::domain::Sat;

/// One swap's account: its reservation, the fees it paid, whether it is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapAccount {
    /// The id of the entry that reserved for the swap.
    pub(super) reserve_id: EntryId,
    pub(super) rule: String,
    pub(super) expected: Sat,
    pub(super) worst_case: Sat,
    /// Fees paid, with the effective time each counts at.
    pub(super) spends: Vec<(DateTime<Utc>, Sat, SpendCategory)>,
    pub(super) released: bool,
    /// Every entry recorded for the swap, for replay detection.
    pub(super) entries: BTreeMap<EntryId, EntryKind>,
}

impl SwapAccount {
    /// The rule that proposed the swap.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The fees reserved as expected.
    pub fn expected(&self) -> Sat {
        self.expected
    }

    /// The fees reserved as worst case.
    pub fn worst_case(&self) -> Sat {
        self.worst_case
    }

    /// Total fees the swap has paid.
    pub fn spent(&self) -> Sat {
        self.spends.iter().map(|&(_, amount, _)| amount).sum()
    }

    /// Whether the swap is terminal and its reservation freed.
    pub fn is_released(&self) -> bool {
        self.released
    }

    /// What the swap may still spend at most: zero once released.
    pub fn reserved_worst(&self) -> Sat {
        if self.released {
            Sat::ZERO
        } else {
            self.worst_case - self.spent()
        }
    }

    /// What the swap is still expected to spend: zero once released.
    pub fn reserved_expected(&self) -> Sat {
        if self.released {
            Sat::ZERO
        } else {
            self.expected - self.spent()
        }
    }
}
