//! The pure transition function of a Loop Out.
//!
//! `step(contract, progress, input)` returns the progress to save and the actions to run after
//! saving. It reads no clock, draws no randomness and does no I/O, so the same stored progress and
//! input always give the same result; that is what makes resuming after a crash safe.
//!
//! The rules (`loop-protocol.md` §1 F–H, §2.4, §2.5, §4.4):
//! - Reveal only when the recorded HTLC pays at least `amount`, has `htlc_confirmations`, the
//!   best height is strictly below `expiry − margin`, and a sweep at the rate needed now (lnd's
//!   estimate at the deadline-driven target, ×1.1 when urgent, at least the relay floor) fits
//!   `max_miner_fee` for the heaviest sweep and the 20 % clamp (`chain::fees::sweep_affordable`).
//!   When everything but the fee holds, the driver is asked for the estimate at that height
//!   (`EstimateSweepFee`), and the reveal happens on its answer (`SweepFeeEstimate`) for the
//!   same best height; too expensive, the swap waits and asks again next block. The stored state
//!   then becomes `PreimageRevealed` before the preimage is pushed or a sweep is published.
//! - Before the reveal, a best height at or past `expiry − margin` fails the swap
//!   (`FailedTimeout`): no later block can make a reveal safe again, so waiting cannot help. This
//!   is one block stricter than Loop's `>` check while waiting, and equal to its sweep-time check.
//! - Before the reveal, a terminal payment failure fails the swap (`FailedOffchain`) and an HTLC
//!   under `amount` fails it (`FailedInsufficientValue`); each cancels with the server.
//! - After the reveal the swap never gives up: every block pushes the preimage (until the swap
//!   payment settles) and publishes a sweep, at once, at the needed rate raised on a schedule to
//!   the whole `max_miner_fee` by `fee_cap_lifted_within_blocks` before the expiry and never above
//!   it (`chain::fees::fee_schedule_share`, `offered_rate`). A reorg of the HTLC or of the spend
//!   keeps sweeping.
//! - A confirmed spend is judged from its witness path once it has the finality confirmations:
//!   the server's timeout path ⇒ `FailedSweepTimeout`; our sweep ⇒ `Succeeded` once both payments
//!   are final.
//! - On `Resumed` in `Initiated`, the stored HTLC is forgotten and watched for again, so a reorg
//!   while the daemon was down can never lead to a reveal.
//! - On `Resumed` in `SpendConfirming`, the stored spend is forgotten and the swap sweeps again
//!   (`PreimageRevealed`) until the spend watch reports a spend from the chain as it is now: a
//!   sweep reorged out while the daemon was down is never taken for final. The driver's spend
//!   watch reports `SpendReorged` whenever it has to register again, for the same reason.
//! - Terminal states emit no actions; they only record late payment results (for the costs).

use super::contract::LoopOutContract;
use super::event::{Action, CancelReason, Input, PaymentEvent, Rejected, Rule, Transition};
use super::state::{
    HtlcOutput, HtlcSpend, PaymentKind, PaymentStatus, SpendPath, SwapProgress, SwapState,
};
use crate::chain::SatPerKw;
use crate::chain::fees::{fee_schedule_share, sweep_affordable, sweep_fee_rate};
use crate::domain::BlockHeight;

/// Advances a swap by one input. See the module documentation for the rules.
pub fn step(
    contract: &LoopOutContract,
    progress: &SwapProgress,
    input: Input,
) -> Result<Transition, Rejected> {
    let next = progress.clone();
    match progress.state {
        SwapState::Initiated => initiated(contract, next, input),
        SwapState::PreimageRevealed => revealed(contract, next, input),
        SwapState::SpendConfirming => spend_confirming(contract, next, input),
        SwapState::Succeeded
        | SwapState::FailedOffchain
        | SwapState::FailedTimeout
        | SwapState::FailedSweepTimeout
        | SwapState::FailedInsufficientValue => terminal(next, input),
    }
}

fn done(next: SwapProgress, actions: Vec<Action>, rule: Rule) -> Result<Transition, Rejected> {
    Ok(Transition {
        next,
        actions,
        rule,
    })
}

/// Before the reveal: waiting for payments and the HTLC.
fn initiated(
    contract: &LoopOutContract,
    mut next: SwapProgress,
    input: Input,
) -> Result<Transition, Rejected> {
    match input {
        Input::Resumed { height } => {
            next.best_height = Some(height);
            // Re-learn the HTLC from the chain rather than trusting a confirmation that a reorg
            // may have undone while the daemon was down.
            next.htlc = None;
            if height >= contract.reveal_deadline() {
                return fail(
                    next,
                    SwapState::FailedTimeout,
                    CancelReason::RevealDeadlineReached,
                );
            }
            let mut actions = dispatch_unfinished(&next);
            actions.push(watch_htlc(contract));
            done(next, actions, Rule::Resumed)
        }
        Input::Block { height } => {
            next.best_height = Some(height);
            if height >= contract.reveal_deadline() {
                return fail(
                    next,
                    SwapState::FailedTimeout,
                    CancelReason::RevealDeadlineReached,
                );
            }
            try_reveal(contract, next)
        }
        Input::Payment { kind, event } => {
            let changed = record_payment(&mut next, kind, event)?;
            match event {
                PaymentEvent::Failed { reason } => fail(
                    next,
                    SwapState::FailedOffchain,
                    CancelReason::PaymentFailed { kind, reason },
                ),
                PaymentEvent::InFlight | PaymentEvent::Succeeded { .. } => {
                    done(next, Vec::new(), recorded_or_ignored(changed))
                }
            }
        }
        Input::HtlcConfirmed {
            outpoint,
            value,
            height,
            confirmations,
        } => {
            if confirmations == 0 {
                return Err(Rejected::ZeroConfirmations {
                    input: "HtlcConfirmed",
                });
            }
            raise_best_height(&mut next, tip_of(height, confirmations));
            if value < contract.terms().amount {
                return fail(
                    next,
                    SwapState::FailedInsufficientValue,
                    CancelReason::InsufficientHtlcValue { value },
                );
            }
            next.htlc = Some(HtlcOutput {
                outpoint,
                value,
                conf_height: Some(height),
            });
            if next
                .best_height
                .is_some_and(|h| h >= contract.reveal_deadline())
            {
                return fail(
                    next,
                    SwapState::FailedTimeout,
                    CancelReason::RevealDeadlineReached,
                );
            }
            try_reveal(contract, next)
        }
        Input::HtlcReorged => {
            if next.htlc.take().is_some() {
                done(next, vec![watch_htlc(contract)], Rule::HtlcReorged)
            } else {
                done(next, Vec::new(), Rule::Ignored)
            }
        }
        Input::HtlcSpent { path, .. } => match path {
            SpendPath::Success { .. } => Err(Rejected::SuccessSpendBeforeReveal),
            // The server reclaimed the HTLC: the expiry is behind us, whatever blocks we missed.
            SpendPath::Timeout => {
                let mut t = fail(
                    next,
                    SwapState::FailedTimeout,
                    CancelReason::RevealDeadlineReached,
                )?;
                t.rule = Rule::TimeoutSpendBeforeReveal;
                Ok(t)
            }
        },
        Input::SpendReorged | Input::SpendConfirmations { .. } => {
            done(next, Vec::new(), Rule::Ignored)
        }
        Input::ServerPushAcked => Err(Rejected::PushAckBeforeReveal),
        Input::SweepPublishFailed { .. } => Err(Rejected::SweepBeforeReveal),
        Input::SweepFeeEstimate { height, rate } => {
            reveal_if_affordable(contract, next, height, rate)
        }
    }
}

/// After the reveal, before a spend confirmed: push and sweep every block, never give up.
fn revealed(
    contract: &LoopOutContract,
    mut next: SwapProgress,
    input: Input,
) -> Result<Transition, Rejected> {
    let htlc = next.htlc.ok_or(Rejected::MissingHtlc(next.state))?;
    match input {
        Input::Resumed { height } => {
            next.best_height = Some(height);
            let mut actions = dispatch_unfinished(&next);
            actions.push(watch_htlc(contract));
            actions.push(watch_spend(contract, &htlc));
            actions.extend(sweep_actions(contract, &mut next, &htlc, height));
            done(next, actions, Rule::Resumed)
        }
        Input::Block { height } => {
            next.best_height = Some(height);
            let actions = sweep_actions(contract, &mut next, &htlc, height);
            done(next, actions, Rule::Sweep)
        }
        Input::Payment { kind, event } => {
            let changed = record_payment(&mut next, kind, event)?;
            done(next, Vec::new(), recorded_or_ignored(changed))
        }
        Input::HtlcConfirmed {
            outpoint,
            value,
            height,
            confirmations,
        } => {
            if confirmations == 0 {
                return Err(Rejected::ZeroConfirmations {
                    input: "HtlcConfirmed",
                });
            }
            raise_best_height(&mut next, tip_of(height, confirmations));
            if outpoint == htlc.outpoint {
                next.htlc = Some(HtlcOutput {
                    conf_height: Some(height),
                    ..htlc
                });
                return done(next, Vec::new(), Rule::Recorded);
            }
            if htlc.conf_height.is_some() {
                // Loop takes the first output paying our script; a second one changes nothing.
                return done(next, Vec::new(), Rule::Ignored);
            }
            // Our HTLC was reorged out and the server's funding now confirms elsewhere. The
            // preimage is out, so anything paying our script is better than nothing: no value
            // check, sweep the new output.
            let replacement = HtlcOutput {
                outpoint,
                value,
                conf_height: Some(height),
            };
            next.htlc = Some(replacement);
            let tip = next.best_height.unwrap_or(height);
            let mut actions = vec![watch_spend(contract, &replacement)];
            actions.extend(sweep_actions(contract, &mut next, &replacement, tip));
            done(next, actions, Rule::HtlcReplaced)
        }
        Input::HtlcReorged => {
            next.htlc = Some(HtlcOutput {
                conf_height: None,
                ..htlc
            });
            done(next, Vec::new(), Rule::Recorded)
        }
        Input::HtlcSpent { txid, height, path } => {
            let confirmations = confirmations_at(next.best_height, height).unwrap_or(1);
            next.spend = Some(HtlcSpend {
                txid,
                height,
                confirmations,
                path,
            });
            next.state = SwapState::SpendConfirming;
            let mut t = settle(contract, next, Vec::new(), Rule::SpendSeen);
            if t.next.state == SwapState::SpendConfirming {
                t.actions.push(Action::Notify {
                    state: SwapState::SpendConfirming,
                });
            }
            Ok(t)
        }
        Input::SpendReorged | Input::SpendConfirmations { .. } => {
            done(next, Vec::new(), Rule::Ignored)
        }
        Input::ServerPushAcked => {
            next.preimage_push_acked = true;
            done(next, Vec::new(), Rule::Recorded)
        }
        Input::SweepPublishFailed { cause } => {
            next.sweep_failures = next.sweep_failures.saturating_add(1);
            next.last_sweep_failure = Some(cause);
            done(next, Vec::new(), Rule::Recorded)
        }
        Input::SweepFeeEstimate { .. } => done(next, Vec::new(), Rule::Ignored),
    }
}

/// A spend of the HTLC confirmed; waiting for it to be final (and, for our sweep, for the
/// payments to finish).
fn spend_confirming(
    contract: &LoopOutContract,
    mut next: SwapProgress,
    input: Input,
) -> Result<Transition, Rejected> {
    let htlc = next.htlc.ok_or(Rejected::MissingHtlc(next.state))?;
    match input {
        Input::Resumed { height } => {
            // The stored spend is a memory, not a fact: a reorg while the daemon was down may
            // have taken it out. Finality is never inferred from heights after a restart; the
            // swap sweeps again until the re-registered spend watch reports the spend from the
            // chain as it is now (a spend still confirmed is reported at once).
            next.best_height = Some(height);
            next.spend = None;
            next.state = SwapState::PreimageRevealed;
            let mut actions = dispatch_unfinished(&next);
            actions.push(watch_htlc(contract));
            actions.push(watch_spend(contract, &htlc));
            actions.extend(sweep_actions(contract, &mut next, &htlc, height));
            actions.push(Action::Notify {
                state: SwapState::PreimageRevealed,
            });
            done(next, actions, Rule::SpendUnverified)
        }
        Input::Block { height } => {
            next.best_height = Some(height);
            deepen_spend(&mut next);
            let actions = push_while_unsettled(&next);
            Ok(settle(contract, next, actions, Rule::Recorded))
        }
        Input::Payment { kind, event } => {
            let changed = record_payment(&mut next, kind, event)?;
            Ok(settle(
                contract,
                next,
                Vec::new(),
                recorded_or_ignored(changed),
            ))
        }
        Input::HtlcConfirmed {
            outpoint,
            height,
            confirmations,
            ..
        } => {
            if confirmations == 0 {
                return Err(Rejected::ZeroConfirmations {
                    input: "HtlcConfirmed",
                });
            }
            if outpoint != htlc.outpoint {
                return done(next, Vec::new(), Rule::Ignored);
            }
            next.htlc = Some(HtlcOutput {
                conf_height: Some(height),
                ..htlc
            });
            done(next, Vec::new(), Rule::Recorded)
        }
        Input::HtlcReorged => {
            next.htlc = Some(HtlcOutput {
                conf_height: None,
                ..htlc
            });
            done(next, Vec::new(), Rule::Recorded)
        }
        Input::HtlcSpent { txid, height, path } => {
            let confirmations = confirmations_at(next.best_height, height).unwrap_or(1);
            next.spend = Some(HtlcSpend {
                txid,
                height,
                confirmations,
                path,
            });
            Ok(settle(contract, next, Vec::new(), Rule::SpendSeen))
        }
        Input::SpendReorged => {
            next.spend = None;
            next.state = SwapState::PreimageRevealed;
            let tip = next
                .best_height
                .unwrap_or(contract.terms().initiation_height);
            let mut actions = vec![watch_spend(contract, &htlc)];
            actions.extend(sweep_actions(contract, &mut next, &htlc, tip));
            actions.push(Action::Notify {
                state: SwapState::PreimageRevealed,
            });
            done(next, actions, Rule::SpendReorged)
        }
        Input::SpendConfirmations { confirmations } => {
            if confirmations == 0 {
                return Err(Rejected::ZeroConfirmations {
                    input: "SpendConfirmations",
                });
            }
            if let Some(spend) = next.spend.as_mut() {
                spend.confirmations = confirmations;
            }
            Ok(settle(contract, next, Vec::new(), Rule::Recorded))
        }
        Input::ServerPushAcked => {
            next.preimage_push_acked = true;
            done(next, Vec::new(), Rule::Recorded)
        }
        Input::SweepPublishFailed { cause } => {
            next.sweep_failures = next.sweep_failures.saturating_add(1);
            next.last_sweep_failure = Some(cause);
            done(next, Vec::new(), Rule::Recorded)
        }
        Input::SweepFeeEstimate { .. } => done(next, Vec::new(), Rule::Ignored),
    }
}

/// Terminal states: no actions, no state change; late payment results are still recorded so the
/// costs come out right.
fn terminal(mut next: SwapProgress, input: Input) -> Result<Transition, Rejected> {
    match input {
        Input::Payment { kind, event } => {
            let changed = record_payment(&mut next, kind, event)?;
            done(next, Vec::new(), recorded_or_ignored(changed))
        }
        Input::Resumed { .. }
        | Input::Block { .. }
        | Input::HtlcConfirmed { .. }
        | Input::HtlcReorged
        | Input::HtlcSpent { .. }
        | Input::SpendReorged
        | Input::SpendConfirmations { .. }
        | Input::ServerPushAcked
        | Input::SweepPublishFailed { .. }
        | Input::SweepFeeEstimate { .. } => done(next, Vec::new(), Rule::Ignored),
    }
}

/// Moves to a pre-reveal failure state and cancels with the server.
fn fail(
    mut next: SwapProgress,
    state: SwapState,
    reason: CancelReason,
) -> Result<Transition, Rejected> {
    next.state = state;
    let rule = match reason {
        CancelReason::PaymentFailed { .. } => Rule::PaymentFailed,
        CancelReason::RevealDeadlineReached => Rule::RevealDeadlineReached,
        CancelReason::InsufficientHtlcValue { .. } => Rule::InsufficientHtlcValue,
    };
    done(
        next,
        vec![
            Action::CancelWithServer { reason },
            Action::Notify { state },
        ],
        rule,
    )
}

/// The recorded HTLC and best height when the HTLC is good, deep enough and the height safe.
fn reveal_candidate(
    contract: &LoopOutContract,
    next: &SwapProgress,
) -> Option<(HtlcOutput, BlockHeight)> {
    let (Some(htlc), Some(height)) = (next.htlc, next.best_height) else {
        return None;
    };
    let deep_enough = htlc
        .conf_height
        .and_then(|conf| confirmations_at(Some(height), conf))
        .is_some_and(|confs| confs >= contract.terms().htlc_confirmations);
    let safe = height < contract.reveal_deadline();
    let enough_value = htlc.value >= contract.terms().amount;
    (deep_enough && safe && enough_value).then_some((htlc, height))
}

/// When the HTLC is good, deep enough and the height safe, asks for the sweep's fee estimate
/// (the reveal waits for it); otherwise waits.
fn try_reveal(contract: &LoopOutContract, next: SwapProgress) -> Result<Transition, Rejected> {
    if next.htlc.is_none() || next.best_height.is_none() {
        return done(next, Vec::new(), Rule::Recorded);
    }
    let Some((_, height)) = reveal_candidate(contract, &next) else {
        return done(next, Vec::new(), Rule::WaitingForConfirmations);
    };
    let action = Action::EstimateSweepFee {
        height,
        blocks_left: contract.blocks_left(height),
    };
    done(next, vec![action], Rule::WaitingForFeeEstimate)
}

/// Reveals on the fee estimate for the current best height when a sweep at the needed rate
/// fits `max_miner_fee`; an estimate for another height (a block came meanwhile) decides
/// nothing and the estimate is asked again for the current one.
fn reveal_if_affordable(
    contract: &LoopOutContract,
    mut next: SwapProgress,
    at: BlockHeight,
    estimate: SatPerKw,
) -> Result<Transition, Rejected> {
    let Some((htlc, height)) = reveal_candidate(contract, &next) else {
        return done(next, Vec::new(), Rule::Ignored);
    };
    if height != at {
        // A block came while lnd answered: ask again for the height the reveal is decided at.
        let action = Action::EstimateSweepFee {
            height,
            blocks_left: contract.blocks_left(height),
        };
        return done(next, vec![action], Rule::WaitingForFeeEstimate);
    }
    let needed = sweep_fee_rate(contract.blocks_left(height), |_| estimate);
    if !sweep_affordable(
        needed,
        contract.terms().fee_limits.max_miner_fee,
        htlc.value,
    ) {
        return done(next, Vec::new(), Rule::SweepFeeAboveCap);
    }
    next.state = SwapState::PreimageRevealed;
    next.revealed_at = Some(height);
    let mut actions = vec![watch_spend(contract, &htlc)];
    actions.extend(sweep_actions(contract, &mut next, &htlc, height));
    actions.push(Action::Notify {
        state: SwapState::PreimageRevealed,
    });
    done(next, actions, Rule::Reveal)
}

/// Decides a confirmed spend once it is final.
fn settle(
    contract: &LoopOutContract,
    mut next: SwapProgress,
    mut actions: Vec<Action>,
    otherwise: Rule,
) -> Transition {
    let Some(spend) = next.spend else {
        return Transition {
            next,
            actions,
            rule: otherwise,
        };
    };
    if spend.confirmations < contract.terms().sweep_finality_confirmations {
        return Transition {
            next,
            actions,
            rule: otherwise,
        };
    }
    let (state, rule) = match spend.path {
        SpendPath::Timeout => (SwapState::FailedSweepTimeout, Rule::TimeoutSpendFinal),
        SpendPath::Success { .. } => {
            if !(next.swap_payment.is_final() && next.prepay_payment.is_final()) {
                return Transition {
                    next,
                    actions,
                    rule: Rule::AwaitingPayments,
                };
            }
            (SwapState::Succeeded, Rule::SweepFinal)
        }
    };
    next.state = state;
    // A terminal state emits nothing but the notice of itself.
    actions.clear();
    actions.push(Action::Notify { state });
    Transition {
        next,
        actions,
        rule,
    }
}

/// Push (while the swap payment has not settled) and publish a sweep at `height`.
fn sweep_actions(
    contract: &LoopOutContract,
    next: &mut SwapProgress,
    htlc: &HtlcOutput,
    height: BlockHeight,
) -> Vec<Action> {
    let mut actions = push_while_unsettled(next);
    next.sweeps_requested = next.sweeps_requested.saturating_add(1);
    let terms = contract.terms();
    actions.push(Action::PublishSweep {
        htlc: htlc.outpoint,
        htlc_value: htlc.value,
        blocks_left: contract.blocks_left(height),
        fee_share: fee_schedule_share(
            next.revealed_at.unwrap_or(height),
            height,
            terms.expiry,
            terms.fee_cap_lifted_within_blocks,
        ),
    });
    actions
}

/// The server needs the preimage to settle the swap invoice and to co-sign the cheap key-path
/// sweep; push it until lnd reports the swap payment settled. Never for a timeout spend.
fn push_while_unsettled(next: &SwapProgress) -> Vec<Action> {
    let timeout_spent = next.spend.is_some_and(|s| s.path == SpendPath::Timeout);
    if next.swap_payment.is_succeeded() || timeout_spent {
        Vec::new()
    } else {
        vec![Action::PushPreimage]
    }
}

fn dispatch_unfinished(next: &SwapProgress) -> Vec<Action> {
    [PaymentKind::Swap, PaymentKind::Prepay]
        .into_iter()
        .filter(|kind| !next.payment(*kind).is_final())
        .map(|kind| Action::DispatchPayment { kind })
        .collect()
}

fn watch_htlc(contract: &LoopOutContract) -> Action {
    Action::WatchHtlc {
        pk_script: contract.terms().htlc_pk_script.clone(),
        height_hint: contract.terms().initiation_height,
        confirmations: contract.terms().htlc_confirmations,
    }
}

fn watch_spend(contract: &LoopOutContract, htlc: &HtlcOutput) -> Action {
    Action::WatchSpend {
        outpoint: htlc.outpoint,
        height_hint: htlc
            .conf_height
            .unwrap_or(contract.terms().initiation_height),
    }
}

/// Records a payment result; results only move forward and a final one never changes.
/// Returns whether anything changed.
fn record_payment(
    next: &mut SwapProgress,
    kind: PaymentKind,
    event: PaymentEvent,
) -> Result<bool, Rejected> {
    let recorded = next.payment(kind);
    let reported = match event {
        PaymentEvent::InFlight => PaymentStatus::InFlight,
        PaymentEvent::Succeeded {
            amount,
            routing_fee,
        } => PaymentStatus::Succeeded {
            amount,
            routing_fee,
        },
        PaymentEvent::Failed { reason } => PaymentStatus::Failed { reason },
    };
    let updated = match (recorded, reported) {
        (PaymentStatus::NotDispatched | PaymentStatus::InFlight, new) => new,
        // A late in-flight update (a tracking stream replaying) does not undo a final result.
        (
            PaymentStatus::Succeeded { .. } | PaymentStatus::Failed { .. },
            PaymentStatus::InFlight,
        ) => recorded,
        (
            PaymentStatus::Succeeded { .. } | PaymentStatus::Failed { .. },
            PaymentStatus::NotDispatched
            | PaymentStatus::Succeeded { .. }
            | PaymentStatus::Failed { .. },
        ) => {
            if recorded != reported {
                return Err(Rejected::ConflictingPaymentResult {
                    kind,
                    recorded,
                    reported: event,
                });
            }
            recorded
        }
    };
    let changed = updated != recorded;
    match kind {
        PaymentKind::Swap => next.swap_payment = updated,
        PaymentKind::Prepay => next.prepay_payment = updated,
    }
    Ok(changed)
}

fn recorded_or_ignored(changed: bool) -> Rule {
    if changed {
        Rule::Recorded
    } else {
        Rule::Ignored
    }
}

/// The best height implied by a report of `confirmations` for a block at `height`.
fn tip_of(height: BlockHeight, confirmations: u32) -> BlockHeight {
    BlockHeight(height.0.saturating_add(confirmations.saturating_sub(1)))
}

/// Raises the best height (never lowers it: a confirmation report proves the chain is at least
/// that tall, and a higher height only makes the reveal rule stricter).
fn raise_best_height(next: &mut SwapProgress, height: BlockHeight) {
    next.best_height = Some(next.best_height.map_or(height, |h| h.max(height)));
}

/// Confirmations of a block at `conf_height` when the tip is at `tip`, if it is not above the tip.
fn confirmations_at(tip: Option<BlockHeight>, conf_height: BlockHeight) -> Option<u32> {
    let tip = tip?;
    (tip >= conf_height).then(|| tip.0 - conf_height.0 + 1)
}

/// Recomputes the spend's depth from the best height, never below what was reported.
fn deepen_spend(next: &mut SwapProgress) {
    let tip = next.best_height;
    if let Some(spend) = next.spend.as_mut()
        && let Some(confs) = confirmations_at(tip, spend.height)
    {
        spend.confirmations = spend.confirmations.max(confs);
    }
}
