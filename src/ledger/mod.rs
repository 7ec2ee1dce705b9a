//! The fee budget as a ledger of reservations and spends, not a counter.
//!
//! Every swap the scheduler starts first gets a reservation of its worst-case fees
//! ([`Ledger::admit`]); the store writes that entry in the same transaction as the swap's
//! intent. As the swap pays fees the engine appends spends, and when it reaches a terminal
//! state a release frees whatever it did not spend. Budget status is a pure fold of those
//! entries, so the store only persists entries and a restart rebuilds the same ledger.
//!
//! Accounting rules (the property tests in `props.rs` hold the ledger to them):
//! - A spend counts in the window of its own timestamp, whatever window the swap started in.
//! - A pending swap's reservation counts against every window it overlaps until it is
//!   released, so it counts in every current window regardless of when the swap started
//!   (as Loop reserves pending swaps regardless of period). What counts is the part not yet
//!   spent: `worst_case − spent so far`, and the same for `expected` in the status.
//! - Admission checks worst cases: `spent + reserved_worst + worst_case ≤ limit` for every
//!   limit of every budget. Given that the engine's caps bound each swap's fees by its worst
//!   case, fees spent in any window of any budget can then never exceed its limit.
//! - The ledger's time never runs backwards. Entries and admissions take effect at the later
//!   of their own timestamp and the latest one seen, so a clock stepped back cannot reopen a
//!   window that was already spent. Replaying entries in their recorded order reproduces the
//!   same effective times. The price: an entry stamped far in the future (a badly wrong
//!   clock) pins the ledger's calendar there until real time catches up, so the caller must
//!   only stamp entries with a clock it trusts.
//!
//! Architecture invariant: pure. No tokio, tonic or sqlx; time is passed in.

mod account;
mod budget;
mod entry;
mod period;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use account::SwapAccount;
pub use budget::{BudgetSpec, BudgetStatus, Refusal, Scope, SpecError, WindowStatus};
pub use entry::{Entry, EntryError, EntryId, EntryKind, SpendCategory};
pub use period::{Period, Window};

use crate::domain::{Sat, SwapHash};

/// What the scheduler asks the ledger before starting a swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitRequest {
    /// The swap to reserve for; it must not have a reservation yet.
    pub swap: SwapHash,
    /// The policy rule that proposed the swap.
    pub rule: String,
    /// The fees the quote leads us to expect.
    pub expected: Sat,
    /// The most the swap can cost with every fee at its cap; at least `expected`.
    pub worst_case: Sat,
}

/// An admitted swap's reservation, ready to be persisted with the swap's intent and then
/// applied with [`Ledger::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    entry: Entry,
}

impl Reservation {
    /// The reserve entry to persist and apply.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The reserve entry to persist and apply, by value.
    pub fn into_entry(self) -> Entry {
        self.entry
    }
}

/// Why [`Ledger::admit`] did not admit a swap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The swap does not fit a budget: a normal decision, reported as the swap's reason.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The request itself is wrong (a swap reserved twice, expected above worst case): a bug.
    #[error(transparent)]
    Invalid(#[from] EntryError),
}

/// What [`Ledger::apply`] did with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The entry was new and is now part of the ledger.
    Recorded,
    /// The same `(swap, id)` with the same content was already recorded; nothing changed.
    Replayed,
    /// The spend was recorded, but the swap has now spent more than its worst case, which
    /// the engine's caps should make impossible. The fee was paid, so it counts; the caller
    /// should raise an alarm.
    Overrun {
        /// Total fees the swap has spent.
        spent: Sat,
        /// The worst case it reserved.
        worst_case: Sat,
    },
}

/// The fee budget ledger: budget specifications plus the fold of every entry applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    budgets: Vec<BudgetSpec>,
    tz: Tz,
    /// The latest effective time seen; the ledger's time never runs behind it.
    clock: Option<DateTime<Utc>>,
    swaps: BTreeMap<SwapHash, SwapAccount>,
}

impl Ledger {
    /// An empty ledger enforcing `budgets`, with calendar periods aligned in `tz`.
    pub fn new(budgets: Vec<BudgetSpec>, tz: Tz) -> Result<Ledger, SpecError> {
        validate(&budgets)?;
        Ok(Ledger {
            budgets,
            tz,
            clock: None,
            swaps: BTreeMap::new(),
        })
    }

    /// Replaces the budget specifications and time zone (a policy reload). Entries are kept,
    /// so spends and reservations count against the new limits at once. On error nothing
    /// changes and the last good budgets stay in force.
    pub fn reconfigure(&mut self, budgets: Vec<BudgetSpec>, tz: Tz) -> Result<(), SpecError> {
        validate(&budgets)?;
        self.budgets = budgets;
        self.tz = tz;
        Ok(())
    }

    /// The time zone calendar periods are aligned in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The budget specifications in force.
    pub fn budgets(&self) -> &[BudgetSpec] {
        &self.budgets
    }

    /// Applies persisted entries in their recorded order, as after a restart. Stops at the
    /// first entry refused; the entries before it stay applied.
    pub fn replay(&mut self, entries: impl IntoIterator<Item = Entry>) -> Result<(), EntryError> {
        for entry in entries {
            self.apply(entry)?;
        }
        Ok(())
    }

    /// Decides whether a swap fits every budget and, if so, returns its reservation.
    ///
    /// Checks `spent + reserved_worst + worst_case ≤ limit` for every budget's hard cap,
    /// overall limit and (when the rule has one) rule sub-limit, in that order, and reports
    /// the first that fails. Does not change the ledger: persist the reservation's entry with
    /// the swap's intent, then [`Ledger::apply`] it before admitting the next swap.
    pub fn admit(
        &self,
        request: AdmitRequest,
        now: DateTime<Utc>,
    ) -> Result<Reservation, AdmitError> {
        let AdmitRequest {
            swap,
            rule,
            expected,
            worst_case,
        } = request;
        if let Some(account) = self.swaps.get(&swap) {
            return Err(EntryError::AlreadyReserved {
                swap,
                id: EntryId::RESERVE,
                existing: account.reserve_id,
            }
            .into());
        }
        if expected > worst_case {
            return Err(EntryError::ExpectedAboveWorstCase {
                swap,
                expected,
                worst_case,
            }
            .into());
        }
        let now = self.effective(now);
        for (budget, scope, status) in self.limits_for(&rule, now) {
            if status.is_exhausted() {
                return Err(Refusal::Exhausted {
                    budget: budget.to_owned(),
                    scope,
                    window: status.window,
                    limit: status.limit,
                    spent: status.spent,
                    reserved: status.reserved_worst,
                }
                .into());
            }
            if worst_case > status.available {
                return Err(Refusal::Insufficient {
                    budget: budget.to_owned(),
                    scope,
                    window: status.window,
                    available: status.available,
                    needed: worst_case,
                }
                .into());
            }
        }
        let kind = EntryKind::Reserve {
            rule,
            expected,
            worst_case,
        };
        Ok(Reservation {
            entry: Entry {
                swap,
                id: EntryId::RESERVE,
                at: now,
                kind,
            },
        })
    }

    /// Records an entry, after checking it is consistent with the swap's account.
    ///
    /// Never refuses for budget reasons (admission did that), so persisted entries always
    /// replay. Refuses a spend or release for a swap without a reservation or after its
    /// release, a second reservation, and an id reused for a different fact. An entry whose
    /// `(swap, id)` and content were already recorded is a harmless replay; the first
    /// recorded timestamp stands.
    pub fn apply(&mut self, entry: Entry) -> Result<Applied, EntryError> {
        let Entry { swap, id, at, kind } = entry;
        if let Some(recorded) = self
            .swaps
            .get(&swap)
            .and_then(|account| account.entries.get(&id))
        {
            return if *recorded == kind {
                Ok(Applied::Replayed)
            } else {
                Err(EntryError::Conflict { swap, id })
            };
        }
        let at = self.effective(at);
        let applied = match &kind {
            EntryKind::Reserve {
                rule,
                expected,
                worst_case,
            } => {
                if let Some(account) = self.swaps.get(&swap) {
                    return Err(EntryError::AlreadyReserved {
                        swap,
                        id,
                        existing: account.reserve_id,
                    });
                }
                if expected > worst_case {
                    return Err(EntryError::ExpectedAboveWorstCase {
                        swap,
                        expected: *expected,
                        worst_case: *worst_case,
                    });
                }
                self.swaps.insert(
                    swap,
                    SwapAccount {
                        reserve_id: id,
                        rule: rule.clone(),
                        expected: *expected,
                        worst_case: *worst_case,
                        spends: Vec::new(),
                        released: false,
                        entries: BTreeMap::new(),
                    },
                );
                Applied::Recorded
            }
            EntryKind::Spend { amount, category } => {
                let account = self.open_account(swap, id)?;
                account.spends.push((at, *amount, *category));
                let spent = account.spent();
                if spent > account.worst_case {
                    Applied::Overrun {
                        spent,
                        worst_case: account.worst_case,
                    }
                } else {
                    Applied::Recorded
                }
            }
            EntryKind::Release => {
                self.open_account(swap, id)?.released = true;
                Applied::Recorded
            }
        };
        if let Some(account) = self.swaps.get_mut(&swap) {
            account.entries.insert(id, kind);
        }
        self.clock = Some(at);
        Ok(applied)
    }

    /// Where every budget stands at `now`: one line per budget, in specification order.
    pub fn status(&self, now: DateTime<Utc>) -> Vec<BudgetStatus> {
        let now = self.effective(now);
        self.budgets
            .iter()
            .map(|spec| BudgetStatus {
                name: spec.name.clone(),
                total: self.window_status(spec.period, spec.limit, None, now),
                per_rule: spec
                    .per_rule
                    .iter()
                    .map(|(rule, &limit)| {
                        (
                            rule.clone(),
                            self.window_status(spec.period, limit, Some(rule), now),
                        )
                    })
                    .collect(),
                hard_cap: spec
                    .hard_cap
                    .map(|(period, limit)| self.window_status(period, limit, None, now)),
            })
            .collect()
    }

    /// The most a new swap of `rule` could cost at `now` and still be admitted: the smallest
    /// `available` among the limits that apply to it. `None` when no budget is configured,
    /// meaning fees are not budgeted at all. Policy scripts see this as "budget left".
    pub fn available(&self, rule: &str, now: DateTime<Utc>) -> Option<Sat> {
        let now = self.effective(now);
        self.limits_for(rule, now)
            .into_iter()
            .map(|(_, _, status)| status.available)
            .min()
    }

    /// The account of one swap, if it was ever reserved.
    pub fn swap(&self, swap: &SwapHash) -> Option<&SwapAccount> {
        self.swaps.get(swap)
    }

    /// Swaps with a reservation that is not yet released, e.g. to check after a restart that
    /// every one of them is being resumed.
    pub fn pending(&self) -> impl Iterator<Item = &SwapHash> {
        self.swaps
            .iter()
            .filter(|(_, account)| !account.released)
            .map(|(swap, _)| swap)
    }

    /// The ledger's time for an event stamped `at`: never earlier than anything already seen.
    fn effective(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.clock.map_or(at, |clock| clock.max(at))
    }

    /// The unreleased account of `swap`, for a spend or release entry `id`.
    fn open_account(
        &mut self,
        swap: SwapHash,
        id: EntryId,
    ) -> Result<&mut SwapAccount, EntryError> {
        match self.swaps.get_mut(&swap) {
            None => Err(EntryError::NoReservation { swap, id }),
            Some(account) if account.released => Err(EntryError::AfterRelease { swap, id }),
            Some(account) => Ok(account),
        }
    }

    /// Every limit a swap of `rule` must fit, with its status at `now`, in admission order:
    /// per budget, the hard cap, the overall limit, then the rule's sub-limit if it has one.
    fn limits_for(&self, rule: &str, now: DateTime<Utc>) -> Vec<(&str, Scope, WindowStatus)> {
        let mut limits = Vec::new();
        for spec in &self.budgets {
            let name = spec.name.as_str();
            if let Some((period, limit)) = spec.hard_cap {
                let status = self.window_status(period, limit, None, now);
                limits.push((name, Scope::HardCap, status));
            }
            let status = self.window_status(spec.period, spec.limit, None, now);
            limits.push((name, Scope::Total, status));
            if let Some(&limit) = spec.per_rule.get(rule) {
                let status = self.window_status(spec.period, limit, Some(rule), now);
                limits.push((name, Scope::Rule(rule.to_owned()), status));
            }
        }
        limits
    }

    /// One limit's status at `now`, over all swaps or only those of `rule`.
    fn window_status(
        &self,
        period: Period,
        limit: Sat,
        rule: Option<&str>,
        now: DateTime<Utc>,
    ) -> WindowStatus {
        let window = period.window_containing(now, self.tz);
        let accounts = self
            .swaps
            .values()
            .filter(|account| rule.is_none_or(|rule| account.rule == rule));
        let (mut spent, mut reserved_expected, mut reserved_worst) =
            (Sat::ZERO, Sat::ZERO, Sat::ZERO);
        for account in accounts {
            spent += account
                .spends
                .iter()
                .filter(|(at, _, _)| window.contains(*at))
                .map(|&(_, amount, _)| amount)
                .sum();
            reserved_expected += account.reserved_expected();
            reserved_worst += account.reserved_worst();
        }
        WindowStatus {
            period,
            window,
            limit,
            spent,
            reserved_expected,
            reserved_worst,
            available: limit - spent - reserved_worst,
        }
    }
}

/// Checks each budget and that names are unique.
fn validate(budgets: &[BudgetSpec]) -> Result<(), SpecError> {
    let mut names = BTreeSet::new();
    for spec in budgets {
        spec.validate()?;
        if !names.insert(spec.name.as_str()) {
            return Err(SpecError::DuplicateName {
                name: spec.name.clone(),
            });
        }
    }
    Ok(())
}
