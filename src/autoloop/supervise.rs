//! Supervision: when an autoloop swap (Loop Out or Loop In) ends, its fees flow into the ledger by category, its
//! reservation is released and the backoff of its channels is updated.

use chrono::{DateTime, Utc};

use super::AutoloopError;
use super::state::State;
use crate::domain::{Sat, SwapHash};
use crate::ledger::{Applied, Entry, EntryId, EntryKind, SpendCategory};
use crate::lnd::{LightningNode, NodeErrorKind};
use crate::policy::BackoffState;
use crate::provider::l402::TokenStore;
use crate::store::loop_in::LoopInRecord;
use crate::store::{Store, SwapRecord};
use crate::swap::loop_in::LoopInState;
use crate::swap::{PaymentKind, PaymentStatus, SwapCosts, SwapProgress, SwapState};

/// Entry ids of a swap's spends; fixed per category so recording them again is a replay.
fn spend_id(category: SpendCategory) -> EntryId {
    EntryId(match category {
        SpendCategory::Server => 1,
        SpendCategory::Prepay => 2,
        SpendCategory::Routing => 3,
        SpendCategory::Miner => 4,
        SpendCategory::L402 => 5,
        SpendCategory::Loss => 6,
    })
}

/// The spends a finished swap's costs stand for. What the server kept is its fee on success;
/// before the reveal it is the prepay; after a reveal whose HTLC the server's timeout path
/// took back, the prepay it kept is booked as prepay and the rest (the swap invoice it
/// collected) as a loss.
pub(super) fn spends(progress: &SwapProgress, costs: &SwapCosts) -> Vec<(SpendCategory, Sat)> {
    let server = Sat(u64::try_from(costs.server_sat.max(0)).unwrap_or(0));
    let mut kept = match progress.state {
        SwapState::Succeeded => vec![(SpendCategory::Server, server)],
        SwapState::FailedSweepTimeout => {
            let prepay = match progress.prepay_payment {
                PaymentStatus::Succeeded { amount, .. } => amount.min(server),
                PaymentStatus::NotDispatched
                | PaymentStatus::InFlight
                | PaymentStatus::Failed { .. } => Sat::ZERO,
            };
            vec![
                (SpendCategory::Prepay, prepay),
                (SpendCategory::Loss, server - prepay),
            ]
        }
        SwapState::Initiated
        | SwapState::PreimageRevealed
        | SwapState::SpendConfirming
        | SwapState::FailedOffchain
        | SwapState::FailedTimeout
        | SwapState::FailedInsufficientValue => vec![(SpendCategory::Prepay, server)],
    };
    kept.extend([
        (SpendCategory::Routing, costs.offchain),
        (SpendCategory::Miner, costs.onchain),
    ]);
    kept.into_iter().filter(|(_, a)| *a > Sat::ZERO).collect()
}

/// Whether both payments of a finished swap have a result that can no longer change its costs.
/// A final result in the store is. A payment the store has in flight is not. A payment the
/// store never saw dispatched may still have left just before a crash (or its first update was
/// not saved yet): it counts only once lnd, asked by hash (`TrackPaymentV2`), knows no payment
/// to it at all. If lnd has one, or cannot be asked, the swap waits: its driver follows the
/// payment into the store, and a later pass settles it.
async fn payments_settled(node: &dyn LightningNode, record: &SwapRecord) -> bool {
    let terms = record.contract.terms();
    for kind in [PaymentKind::Swap, PaymentKind::Prepay] {
        match record.progress.payment(kind) {
            PaymentStatus::Succeeded { .. } | PaymentStatus::Failed { .. } => {}
            PaymentStatus::InFlight => return false,
            PaymentStatus::NotDispatched => {
                let hash = match kind {
                    PaymentKind::Swap => terms.swap_hash,
                    PaymentKind::Prepay => SwapHash(terms.prepay_invoice.payment_hash),
                };
                match node.track_payment(hash).await {
                    Err(e) if e.kind == NodeErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(swap = %terms.swap_hash, ?kind, error = %e,
                            "cannot ask lnd about a payment the store never saw dispatched; \
                             the reservation stays until it can");
                        return false;
                    }
                    Ok(_) => {
                        tracing::info!(swap = %terms.swap_hash, ?kind,
                            "lnd has a payment the store never saw dispatched; the reservation \
                             stays until its result is stored");
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// Settles a finished autoloop swap from its stored record: records its spends and release
/// (store first, then the ledger) and updates backoff. Waits (returns `false`) while the swap
/// runs or one of its payments is not provably final ([`payments_settled`]), since a late
/// payment result can still change its costs. Swaps without a reservation (manual ones) and swaps already released are
/// left alone.
pub(super) async fn settle(
    node: &dyn LightningNode,
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
        return match store.load_loop_in(hash).await? {
            Some(record) if record.progress.state.is_terminal() => {
                let channels = store.swap_channels(hash).await?;
                let succeeded = record.progress.state == LoopInState::Succeeded;
                let spends = loop_in_spends(&record);
                book(store, state, hash, &spends, succeeded, &channels, now).await?;
                tracing::info!(swap = %hash, state = %record.progress.state.as_str(), "autoloop loop in settled in the ledger");
                Ok(true)
            }
            _ => Ok(false),
        };
    };
    let record = &stored.record;
    let swap_state = record.progress.state;
    if !swap_state.is_terminal() || !payments_settled(node, record).await {
        return Ok(false);
    }
    let channels =
        super::inputs::swap_channels(store, hash, &record.contract.terms().outgoing_chan_set)
            .await?;
    let spends = spends(&record.progress, &record.costs);
    book(
        store,
        state,
        hash,
        &spends,
        swap_state == SwapState::Succeeded,
        &channels,
        now,
    )
    .await?;
    tracing::info!(swap = %hash, state = %swap_state.as_str(), "autoloop swap settled in the ledger");
    Ok(true)
}

/// The spends a finished Loop In's costs stand for: what the server kept of the HTLC beyond
/// the invoice it paid is its fee up to the contract's `max_swap_fee` and a loss beyond it
/// (a server that took the HTLC without paying); the funding and any timeout sweep are miner
/// fees. A Loop In makes no payment of its own, so nothing else can change them.
pub(super) fn loop_in_spends(record: &LoopInRecord) -> Vec<(SpendCategory, Sat)> {
    let kept = Sat(u64::try_from(record.costs.server_sat.max(0)).unwrap_or(0));
    let fee = kept.min(record.contract.terms().limits.max_swap_fee);
    [
        (SpendCategory::Server, fee),
        (SpendCategory::Loss, kept - fee),
        (SpendCategory::Miner, record.costs.onchain),
    ]
    .into_iter()
    .filter(|(_, a)| *a > Sat::ZERO)
    .collect()
}

/// Records a finished swap's spends and its release (store first, then the ledger; recording
/// them again is a replay) and updates the backoff of its channels: cleared on success, one
/// more failure otherwise.
async fn book(
    store: &Store,
    state: &mut State,
    hash: SwapHash,
    spends: &[(SpendCategory, Sat)],
    succeeded: bool,
    channels: &[crate::domain::ChanId],
    now: DateTime<Utc>,
) -> Result<(), AutoloopError> {
    let mut entries: Vec<Entry> = spends
        .iter()
        .map(|&(category, amount)| Entry {
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
    let backoffs = store.backoffs().await?;
    for chan in channels {
        let next = if succeeded {
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
    Ok(())
}

/// The ledger account rule of an L402 token's booking (its sub-budget name, if a policy rule
/// were called that).
pub(super) const L402_RULE: &str = "l402";

/// Books the paid L402 token in `dir` (if any, and not booked yet) in the ledger: a reserve
/// of exactly its price (amount plus routing fee, rounded up to the sat), the spend under
/// [`SpendCategory::L402`] and the release, all under the token's payment hash so recording it
/// again is a replay. Store first, then the ledger, as for swaps. Returns whether it booked.
pub(super) async fn book_l402(
    dir: &std::path::Path,
    store: &Store,
    state: &mut State,
    now: DateTime<Utc>,
) -> Result<bool, AutoloopError> {
    let tokens = TokenStore::new(dir);
    // The file is replaced, never edited in place: unchanged metadata means the token already
    // booked, so a pass (one a block) costs a `stat` rather than a read and parse.
    let seen = std::fs::metadata(tokens.paid_path())
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    if seen.is_some() && seen == state.l402_booked {
        return Ok(false);
    }
    let token = match tokens.load_paid() {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(false),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e,
                "cannot read the paid L402 token to book its price; retried on the next pass");
            return Ok(false);
        }
    };
    let account = SwapHash(token.payment_hash);
    if state.ledger.swap(&account).is_some_and(|a| a.is_released()) {
        state.l402_booked = seen;
        return Ok(false);
    }
    let price = Sat((token.amount_paid.0 + token.routing_fee.0).div_ceil(1000));
    let entries = [
        Entry {
            swap: account,
            id: EntryId::RESERVE,
            at: now,
            kind: EntryKind::Reserve {
                rule: L402_RULE.to_owned(),
                expected: price,
                worst_case: price,
            },
        },
        Entry {
            swap: account,
            id: spend_id(SpendCategory::L402),
            at: now,
            kind: EntryKind::Spend {
                amount: price,
                category: SpendCategory::L402,
            },
        },
        Entry {
            swap: account,
            id: EntryId::RELEASE,
            at: now,
            kind: EntryKind::Release,
        },
    ];
    for entry in entries {
        // A crash between two entries leaves the first ones stored: storing and applying them
        // again is a replay, a no-op.
        store.append_ledger_entry(&entry).await?;
        state.ledger.apply(entry)?;
    }
    state.l402_booked = seen;
    tracing::info!(token = %account, price = %price, "L402 token price booked in the ledger");
    Ok(true)
}

/// After a restart: settles every reserved swap that finished while the daemon was down
/// (or between its end and its release). Returns how many were settled.
pub(super) async fn settle_finished(
    node: &dyn LightningNode,
    store: &Store,
    state: &mut State,
    now: DateTime<Utc>,
) -> Result<usize, AutoloopError> {
    let pending: Vec<SwapHash> = state.ledger.pending().copied().collect();
    let mut n = 0;
    for hash in pending {
        if settle(node, store, state, hash, now).await? {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn progress(state: SwapState, prepay: u64) -> SwapProgress {
        SwapProgress {
            state,
            prepay_payment: PaymentStatus::Succeeded {
                amount: Sat(prepay),
                routing_fee: Sat(1),
            },
            ..SwapProgress::new()
        }
    }

    #[test]
    fn a_timeout_loss_is_booked_as_a_loss_and_the_prepay_as_prepay() {
        // The server collected the swap invoice (500 000) and the prepay (1 000), and its
        // timeout path took the HTLC back: 500 000 lost, 1 000 prepay.
        let costs = SwapCosts {
            server_sat: 501_000,
            onchain: Sat::ZERO,
            offchain: Sat(7),
        };
        assert_eq!(
            spends(&progress(SwapState::FailedSweepTimeout, 1_000), &costs),
            vec![
                (SpendCategory::Prepay, Sat(1_000)),
                (SpendCategory::Loss, Sat(500_000)),
                (SpendCategory::Routing, Sat(7)),
            ]
        );
        // Before the reveal the server keeps the prepay only; on success its fee.
        let prepay_only = SwapCosts {
            server_sat: 1_000,
            ..costs
        };
        assert_eq!(
            spends(&progress(SwapState::FailedTimeout, 1_000), &prepay_only)[0],
            (SpendCategory::Prepay, Sat(1_000))
        );
        assert_eq!(
            spends(&progress(SwapState::Succeeded, 1_000), &prepay_only)[0],
            (SpendCategory::Server, Sat(1_000))
        );
        assert_ne!(
            spend_id(SpendCategory::Loss),
            spend_id(SpendCategory::Prepay)
        );
    }
}
