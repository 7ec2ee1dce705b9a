//! Supervision: when an autoloop swap ends, its fees flow into the ledger by category, its
//! reservation is released and the backoff of its channels is updated.

use chrono::{DateTime, Utc};

use super::AutoloopError;
use super::state::State;
use crate::domain::{Sat, SwapHash};
use crate::ledger::{Applied, Entry, EntryId, EntryKind, SpendCategory};
use crate::policy::BackoffState;
use crate::store::Store;
use crate::swap::{PaymentStatus, SwapCosts, SwapState};

/// Entry ids of a swap's spends; fixed per category so recording them again is a replay.
fn spend_id(category: SpendCategory) -> EntryId {
    EntryId(match category {
        SpendCategory::Server => 1,
        SpendCategory::Prepay => 2,
        SpendCategory::Routing => 3,
        SpendCategory::Miner => 4,
        SpendCategory::L402 => 5,
    })
}

/// The spends a finished swap's costs stand for.
pub(super) fn spends(state: SwapState, costs: &SwapCosts) -> Vec<(SpendCategory, Sat)> {
    let server = Sat(u64::try_from(costs.server_sat.max(0)).unwrap_or(0));
    let server_cat = if state == SwapState::Succeeded {
        SpendCategory::Server
    } else {
        SpendCategory::Prepay
    };
    [
        (server_cat, server),
        (SpendCategory::Routing, costs.offchain),
        (SpendCategory::Miner, costs.onchain),
    ]
    .into_iter()
    .filter(|(_, a)| *a > Sat::ZERO)
    .collect()
}

/// Settles a finished autoloop swap from its stored record: records its spends and release
/// (store first, then the ledger) and updates backoff. Waits (returns `false`) while the swap
/// runs or one of its payments is still in flight, since a late payment result can still
/// change its costs. Swaps without a reservation (manual ones) and swaps already released are
/// left alone.
pub(super) async fn settle(
    store: &Store,
    state: &mut State,
    hash: SwapHash,
    now: DateTime<Utc>,
) -> Result<bool, AutoloopError> {
    match state.ledger.swap(&hash) {
        Some(account) if !account.is_released() => {}
        _ => return Ok(false),
    }
    let Some(stored) = store.load_swap(hash).await? else {
        return Ok(false);
    };
    let record = &stored.record;
    let swap_state = record.progress.state;
    let in_flight = |p: PaymentStatus| p == PaymentStatus::InFlight;
    if !swap_state.is_terminal()
        || in_flight(record.progress.swap_payment)
        || in_flight(record.progress.prepay_payment)
    {
        return Ok(false);
    }
    let costs = &record.costs;
    let mut entries: Vec<Entry> = spends(swap_state, costs)
        .into_iter()
        .map(|(category, amount)| Entry {
            swap: hash,
            id: spend_id(category),
            at: now,
            kind: EntryKind::Spend { amount, category },
        })
        .collect();
    entries.push(Entry {
        swap: hash,
        id: EntryId::RELEASE,
        at: now,
        kind: EntryKind::Release,
    });
    for entry in entries {
        store.append_ledger_entry(&entry).await?;
        if let Applied::Overrun { spent, worst_case } = state.ledger.apply(entry)? {
            tracing::error!(swap = %hash, spent = %spent, worst_case = %worst_case,
                "an autoloop swap spent more than its reserved worst case");
        }
    }
    {
        let backoffs = store.backoffs().await?;
        let channels =
            super::inputs::swap_channels(store, hash, &record.contract.terms().outgoing_chan_set)
                .await?;
        for chan in &channels {
            let next = if swap_state == SwapState::Succeeded {
                None
            } else {
                Some(BackoffState {
                    last_failure: now,
                    consecutive_failures: backoffs
                        .get(chan)
                        .map_or(0, |b| b.consecutive_failures)
                        .saturating_add(1),
                })
            };
            store.set_backoff(*chan, next).await?;
        }
    }
    tracing::info!(swap = %hash, state = %swap_state.as_str(), "autoloop swap settled in the ledger");
    Ok(true)
}

/// After a restart: settles every reserved swap that finished while the daemon was down
/// (or between its end and its release). Returns how many were settled.
pub(super) async fn settle_finished(
    store: &Store,
    state: &mut State,
    now: DateTime<Utc>,
) -> Result<usize, AutoloopError> {
    let pending: Vec<SwapHash> = state.ledger.pending().copied().collect();
    let mut n = 0;
    for hash in pending {
        if settle(store, state, hash, now).await? {
            n += 1;
        }
    }
    Ok(n)
}
