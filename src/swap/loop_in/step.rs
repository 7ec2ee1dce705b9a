//! The pure transition function of a Loop In.
//!
//! `step(contract, progress, input)` returns the progress to save and the actions to run after
//! saving; no clock, no randomness, no I/O. The rules (`loop-in-protocol.md` §1 F–I, §2.3–2.5):
//! - Funding: while at least 10 blocks are left before the expiry, ask lnd what funding the HTLC
//!   costs; fund only when that fee is within `max_miner_fee` (Loop never checks), and only
//!   through the one transition `Initiated → HtlcPublished`, which saves the intent before the
//!   wallet is asked. `FundHtlc` is therefore emitted at most once per swap, whatever the
//!   inputs; a restart in `HtlcPublished` looks the wallet up (`FindFunding`) and never funds
//!   again. With fewer than 10 blocks left unfunded, the swap fails having spent nothing.
//! - The HTLC needs one confirmation. An output paying another value than the amount is
//!   recorded (`IncorrectHtlcAmount`) and taken back at the expiry.
//! - The internal key leaves only once the invoice is recorded settled (`InvoiceSettled`): it is
//!   pushed every block until the server acknowledges it. Before settlement no input produces
//!   `PushKey`. Once paid, no timeout sweep is published any more, and from the expiry on the
//!   swap has succeeded even if the server never claimed (Loop's rule).
//! - From the expiry on, unpaid: a timeout sweep every block (fee capped at `max_miner_fee`)
//!   until a spend is final; our final timeout spend fails the swap and cancels the invoice.
//!   A server payment that arrives while we sweep stops the sweeping.
//! - Terminal states emit nothing; they only record a late funding or payment for the costs.

use super::contract::LoopInContract;
use super::event::{LoopInAction, LoopInInput, LoopInRejected, LoopInRule, LoopInTransition};
use super::state::{
    Funding, InvoiceStatus, LoopInProgress, LoopInSpend, LoopInSpendPath, LoopInState, htlc_output,
};
use crate::domain::{BlockHeight, Sat};
use crate::swap::HtlcOutput;

type Stepped = Result<LoopInTransition, LoopInRejected>;

/// Advances a Loop In by one input. See the module documentation for the rules.
pub fn step(contract: &LoopInContract, progress: &LoopInProgress, input: LoopInInput) -> Stepped {
    let next = progress.clone();
    match progress.state {
        LoopInState::Initiated => initiated(contract, next, input),
        LoopInState::HtlcPublished => published(contract, next, input),
        LoopInState::HtlcConfirmed | LoopInState::IncorrectHtlcAmount => {
            match next.htlc {
                Some(htlc) => confirmed(contract, next, htlc, input),
                // A corrupted row: treat as published, the chain watch will report it again.
                None => published(contract, next, input),
            }
        }
        LoopInState::TimeoutSweeping => match next.htlc {
            Some(htlc) => sweeping(contract, next, htlc, input),
            None => published(contract, next, input),
        },
        LoopInState::InvoiceSettled => settled(contract, next, input),
        LoopInState::Succeeded
        | LoopInState::FailedTimeout
        | LoopInState::FailedFunding
        | LoopInState::FailedIncorrectHtlcAmtSwept
        | LoopInState::FailedNotPublished => terminal(next, input),
    }
}

fn done(next: LoopInProgress, actions: Vec<LoopInAction>, rule: LoopInRule) -> Stepped {
    Ok(LoopInTransition {
        next,
        actions,
        rule,
    })
}

fn ignored(next: LoopInProgress) -> Stepped {
    done(next, Vec::new(), LoopInRule::Ignored)
}

/// Moves to `state` (with a `Notify` first when it changes), then `actions`.
fn move_to(
    mut next: LoopInProgress,
    state: LoopInState,
    actions: Vec<LoopInAction>,
    rule: LoopInRule,
) -> Stepped {
    let mut all = Vec::with_capacity(actions.len() + 1);
    if next.state != state {
        next.state = state;
        all.push(LoopInAction::Notify { state });
    }
    all.extend(actions);
    done(next, all, rule)
}

/// Watches for the HTLC: in our funding transaction once it is recorded, so an output another
/// transaction pays to the script (a decoy, §11 row 14) is never taken for it.
fn watch_htlc(contract: &LoopInContract, next: &LoopInProgress) -> LoopInAction {
    LoopInAction::WatchHtlc {
        pk_script: contract.terms().htlc_pk_script.clone(),
        height_hint: contract.terms().initiation_height,
        funding_txid: next.funding.map(|f| f.txid),
    }
}

fn watch_spend(contract: &LoopInContract, htlc: &HtlcOutput) -> LoopInAction {
    LoopInAction::WatchSpend {
        outpoint: htlc.outpoint,
        height_hint: contract.terms().initiation_height,
    }
}

fn sweep(contract: &LoopInContract, next: &mut LoopInProgress, htlc: &HtlcOutput) -> LoopInAction {
    next.sweeps_requested = next.sweeps_requested.saturating_add(1);
    LoopInAction::PublishTimeoutSweep {
        htlc: htlc.outpoint,
        htlc_value: htlc.value,
        max_fee: contract.terms().limits.max_miner_fee,
    }
}

fn expired(contract: &LoopInContract, next: &LoopInProgress) -> bool {
    next.best_height.is_some_and(|h| contract.expired_at(h))
}

fn record_funding(next: &mut LoopInProgress, txid: bitcoin::Txid, fee: Sat) -> bool {
    if next.funding.is_none() {
        next.funding = Some(Funding { txid, fee });
        true
    } else {
        false
    }
}

/// Our funding transaction is known: record it (once) and, unless the HTLC already recorded is
/// its output, watch that transaction from now on.
fn funding_published(
    contract: &LoopInContract,
    mut next: LoopInProgress,
    txid: bitcoin::Txid,
    fee: Sat,
) -> Stepped {
    if !record_funding(&mut next, txid, fee) {
        return ignored(next);
    }
    if next.htlc.is_some_and(|h| h.outpoint.txid == txid) {
        return done(next, Vec::new(), LoopInRule::Recorded);
    }
    let watch = watch_htlc(contract, &next);
    done(next, vec![watch], LoopInRule::Recorded)
}

fn recorded_or_ignored(next: LoopInProgress, changed: bool) -> Stepped {
    let rule = if changed {
        LoopInRule::Recorded
    } else {
        LoopInRule::Ignored
    };
    done(next, Vec::new(), rule)
}

/// The server paid: record it, stop sweeping, push the key.
fn paid(next: LoopInProgress) -> Stepped {
    let mut actions = Vec::new();
    if !next.key_push_acked {
        actions.push(LoopInAction::PushKey);
    }
    move_to(
        next,
        LoopInState::InvoiceSettled,
        actions,
        LoopInRule::InvoicePaid,
    )
}

fn record_settlement(next: &mut LoopInProgress, amount_paid: Sat) {
    next.invoice = InvoiceStatus::Settled { amount_paid };
}

fn raise_best_height(next: &mut LoopInProgress, height: BlockHeight, confirmations: u32) {
    let tip = BlockHeight(height.0.saturating_add(confirmations.saturating_sub(1)));
    if next.best_height.is_none_or(|h| h < tip) {
        next.best_height = Some(tip);
    }
}

/// The state an HTLC output puts a funded, unpaid swap in.
fn value_state(contract: &LoopInContract, htlc: &HtlcOutput) -> (LoopInState, LoopInRule) {
    if htlc.value == contract.terms().amount {
        (LoopInState::HtlcConfirmed, LoopInRule::HtlcConfirmed)
    } else {
        (
            LoopInState::IncorrectHtlcAmount,
            LoopInRule::IncorrectHtlcAmount,
        )
    }
}

/// A confirmed output paying our script, from a state without one (or a replacement).
fn htlc_confirmed(
    contract: &LoopInContract,
    mut next: LoopInProgress,
    outpoint: bitcoin::OutPoint,
    value: Sat,
    height: BlockHeight,
    confirmations: u32,
) -> Stepped {
    if confirmations == 0 {
        return Err(LoopInRejected::ZeroConfirmations {
            input: "HtlcConfirmed",
        });
    }
    // An output to the script from another transaction than our funding is not our HTLC.
    if next.funding.is_some_and(|f| f.txid != outpoint.txid) {
        return ignored(next);
    }
    raise_best_height(&mut next, height, confirmations);
    let htlc = htlc_output(outpoint, value, height);
    next.htlc = Some(htlc);
    next.spend = None;
    let watch = watch_spend(contract, &htlc);
    if next.invoice_settled() {
        let mut t = paid(next)?;
        t.actions.push(watch);
        return Ok(t);
    }
    if expired(contract, &next) {
        let action = sweep(contract, &mut next, &htlc);
        return move_to(
            next,
            LoopInState::TimeoutSweeping,
            vec![watch, action],
            LoopInRule::Expired,
        );
    }
    let (state, rule) = value_state(contract, &htlc);
    move_to(next, state, vec![watch], rule)
}

/// Records a confirmed spend and judges it.
fn spent(
    contract: &LoopInContract,
    mut next: LoopInProgress,
    txid: bitcoin::Txid,
    height: BlockHeight,
    path: LoopInSpendPath,
) -> Stepped {
    next.spend = Some(LoopInSpend {
        txid,
        height,
        confirmations: 1,
        path,
    });
    raise_best_height(&mut next, height, 1);
    judge_spend(contract, next, LoopInRule::SpendSeen)
}

/// Ends the swap if the recorded spend is final and says how; otherwise keeps waiting.
fn judge_spend(contract: &LoopInContract, next: LoopInProgress, otherwise: LoopInRule) -> Stepped {
    let Some(spend) = next.spend else {
        return done(next, Vec::new(), otherwise);
    };
    if spend.confirmations < contract.terms().sweep_finality_confirmations {
        return done(next, Vec::new(), otherwise);
    }
    if next.invoice_settled() {
        // Paid: whoever spent it, the swap is over for us.
        return move_to(
            next,
            LoopInState::Succeeded,
            Vec::new(),
            LoopInRule::ClaimFinal,
        );
    }
    match spend.path {
        // Only a payment reveals the preimage: the settlement report is on its way.
        LoopInSpendPath::ServerClaim => done(next, Vec::new(), otherwise),
        LoopInSpendPath::Timeout { .. } => {
            let state = match next.htlc {
                Some(h) if h.value != contract.terms().amount => {
                    LoopInState::FailedIncorrectHtlcAmtSwept
                }
                _ => LoopInState::FailedTimeout,
            };
            move_to(
                next,
                state,
                vec![LoopInAction::CancelInvoice],
                LoopInRule::TimeoutSpendFinal,
            )
        }
    }
}

/// Counts the recorded spend's confirmations from the best height (a block deepens it).
fn deepen_spend(next: &mut LoopInProgress) -> bool {
    let Some(best) = next.best_height else {
        return false;
    };
    match next.spend.as_mut() {
        Some(s) if best >= s.height => {
            let confs = best.0 - s.height.0 + 1;
            let changed = confs > s.confirmations;
            s.confirmations = s.confirmations.max(confs);
            changed
        }
        _ => false,
    }
}

/// On a block: a recorded spend deepens; when that makes it final, the swap ends here.
fn block_ends_it(contract: &LoopInContract, next: &mut LoopInProgress) -> Option<Stepped> {
    if next.spend.is_some() && deepen_spend(next) {
        match judge_spend(contract, next.clone(), LoopInRule::Recorded) {
            Ok(t) if t.next.state.is_terminal() => return Some(Ok(t)),
            Ok(t) => *next = t.next,
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

fn spend_confirmations(
    contract: &LoopInContract,
    mut next: LoopInProgress,
    confirmations: u32,
) -> Stepped {
    if confirmations == 0 {
        return Err(LoopInRejected::ZeroConfirmations {
            input: "SpendConfirmations",
        });
    }
    match next.spend.as_mut() {
        Some(s) if s.confirmations != confirmations => s.confirmations = confirmations,
        _ => return ignored(next),
    }
    judge_spend(contract, next, LoopInRule::Recorded)
}

/// Nothing funded yet.
fn initiated(contract: &LoopInContract, mut next: LoopInProgress, input: LoopInInput) -> Stepped {
    match input {
        LoopInInput::Resumed { height } | LoopInInput::Block { height } => {
            next.best_height = Some(height);
            if !contract.may_publish_at(height) {
                return move_to(
                    next,
                    LoopInState::FailedNotPublished,
                    vec![LoopInAction::CancelInvoice],
                    LoopInRule::PublishDeadlineReached,
                );
            }
            done(
                next,
                vec![LoopInAction::EstimateFunding { height }],
                LoopInRule::WaitingForFundingEstimate,
            )
        }
        LoopInInput::FundingEstimate { height, rate, fee } => {
            if next.best_height != Some(height) {
                return ignored(next);
            }
            if !contract.may_publish_at(height) {
                return move_to(
                    next,
                    LoopInState::FailedNotPublished,
                    vec![LoopInAction::CancelInvoice],
                    LoopInRule::PublishDeadlineReached,
                );
            }
            if fee > contract.terms().limits.max_miner_fee {
                return done(next, Vec::new(), LoopInRule::FundingFeeAboveCap);
            }
            let watch = watch_htlc(contract, &next);
            move_to(
                next,
                LoopInState::HtlcPublished,
                vec![
                    LoopInAction::FundHtlc { rate },
                    watch,
                    LoopInAction::WatchInvoice,
                ],
                LoopInRule::Fund,
            )
        }
        LoopInInput::FundingPublished { .. } | LoopInInput::FundingFailed => {
            Err(LoopInRejected::FundingBeforeIntent)
        }
        // Not ours: nothing was funded, and the script is not watched yet.
        LoopInInput::HtlcConfirmed { .. } | LoopInInput::HtlcReorged => ignored(next),
        LoopInInput::InvoiceSettled { amount_paid } => {
            record_settlement(&mut next, amount_paid);
            done(next, Vec::new(), LoopInRule::Recorded)
        }
        LoopInInput::InvoiceCanceled => {
            next.invoice = InvoiceStatus::Canceled;
            done(next, Vec::new(), LoopInRule::Recorded)
        }
        LoopInInput::HtlcSpent { .. } => Err(LoopInRejected::SpendBeforeHtlc),
        LoopInInput::SpendReorged | LoopInInput::SpendConfirmations { .. } => ignored(next),
        LoopInInput::KeyPushAcked => Err(LoopInRejected::KeyAckBeforeSettlement),
        LoopInInput::SweepPublishFailed => Err(LoopInRejected::SweepNotRequested(next.state)),
    }
}

/// Funding intent saved; waiting for the HTLC to confirm.
fn published(contract: &LoopInContract, mut next: LoopInProgress, input: LoopInInput) -> Stepped {
    match input {
        LoopInInput::Resumed { height } => {
            next.best_height = Some(height);
            let mut actions = vec![LoopInAction::WatchInvoice, watch_htlc(contract, &next)];
            if next.funding.is_none() {
                actions.push(LoopInAction::FindFunding);
            }
            if next.invoice_settled() {
                let mut t = paid(next)?;
                t.actions.splice(0..0, actions);
                return Ok(t);
            }
            move_to(
                next,
                LoopInState::HtlcPublished,
                actions,
                LoopInRule::Resumed,
            )
        }
        LoopInInput::Block { height } => {
            next.best_height = Some(height);
            if next.invoice_settled() {
                return paid(next);
            }
            ignored(next)
        }
        LoopInInput::FundingEstimate { .. } => ignored(next),
        LoopInInput::FundingPublished { txid, fee } => funding_published(contract, next, txid, fee),
        LoopInInput::FundingFailed => match next.funding {
            Some(f) => Err(LoopInRejected::FundingFailedAfterPublish(f.txid)),
            None => move_to(
                next,
                LoopInState::FailedFunding,
                vec![LoopInAction::CancelInvoice],
                LoopInRule::FundingFailed,
            ),
        },
        LoopInInput::HtlcConfirmed {
            outpoint,
            value,
            height,
            confirmations,
        } => htlc_confirmed(contract, next, outpoint, value, height, confirmations),
        LoopInInput::HtlcReorged => ignored(next),
        LoopInInput::InvoiceSettled { amount_paid } => {
            record_settlement(&mut next, amount_paid);
            paid(next)
        }
        LoopInInput::InvoiceCanceled => {
            next.invoice = InvoiceStatus::Canceled;
            done(next, Vec::new(), LoopInRule::Recorded)
        }
        LoopInInput::HtlcSpent { .. } => Err(LoopInRejected::SpendBeforeHtlc),
        LoopInInput::SpendReorged | LoopInInput::SpendConfirmations { .. } => ignored(next),
        LoopInInput::KeyPushAcked => Err(LoopInRejected::KeyAckBeforeSettlement),
        LoopInInput::SweepPublishFailed => Err(LoopInRejected::SweepNotRequested(next.state)),
    }
}

/// Funded and confirmed, unpaid, before the expiry.
fn confirmed(
    contract: &LoopInContract,
    mut next: LoopInProgress,
    htlc: HtlcOutput,
    input: LoopInInput,
) -> Stepped {
    match input {
        LoopInInput::Resumed { height } => {
            next.best_height = Some(height);
            let mut actions = vec![
                LoopInAction::WatchInvoice,
                watch_htlc(contract, &next),
                watch_spend(contract, &htlc),
            ];
            if next.funding.is_none() {
                actions.push(LoopInAction::FindFunding);
            }
            if next.invoice_settled() {
                let mut t = paid(next)?;
                t.actions.splice(0..0, actions);
                return Ok(t);
            }
            if expired(contract, &next) {
                actions.push(sweep(contract, &mut next, &htlc));
                return move_to(
                    next,
                    LoopInState::TimeoutSweeping,
                    actions,
                    LoopInRule::Expired,
                );
            }
            let state = next.state;
            move_to(next, state, actions, LoopInRule::Resumed)
        }
        LoopInInput::Block { height } => {
            next.best_height = Some(height);
            if let Some(ended) = block_ends_it(contract, &mut next) {
                return ended;
            }
            if next.invoice_settled() {
                return paid(next);
            }
            if next.spend.is_none() && expired(contract, &next) {
                let action = sweep(contract, &mut next, &htlc);
                return move_to(
                    next,
                    LoopInState::TimeoutSweeping,
                    vec![action],
                    LoopInRule::Expired,
                );
            }
            ignored(next)
        }
        LoopInInput::FundingEstimate { .. } | LoopInInput::FundingFailed => ignored(next),
        LoopInInput::FundingPublished { txid, fee } => funding_published(contract, next, txid, fee),
        LoopInInput::HtlcConfirmed {
            outpoint,
            value,
            height,
            confirmations,
        } => {
            if outpoint == htlc.outpoint && value == htlc.value {
                if confirmations == 0 {
                    return Err(LoopInRejected::ZeroConfirmations {
                        input: "HtlcConfirmed",
                    });
                }
                raise_best_height(&mut next, height, confirmations);
                return ignored(next);
            }
            htlc_confirmed(contract, next, outpoint, value, height, confirmations)
        }
        LoopInInput::HtlcReorged => {
            next.htlc = None;
            next.spend = None;
            let watch = watch_htlc(contract, &next);
            move_to(
                next,
                LoopInState::HtlcPublished,
                vec![watch],
                LoopInRule::HtlcReorged,
            )
        }
        LoopInInput::InvoiceSettled { amount_paid } => {
            record_settlement(&mut next, amount_paid);
            paid(next)
        }
        LoopInInput::InvoiceCanceled => {
            next.invoice = InvoiceStatus::Canceled;
            done(next, Vec::new(), LoopInRule::Recorded)
        }
        LoopInInput::HtlcSpent { txid, height, path } => match path {
            LoopInSpendPath::Timeout { .. } => {
                // Our timeout spend confirmed: the expiry is behind us, whatever blocks we missed.
                next.state = LoopInState::TimeoutSweeping;
                let mut t = spent(contract, next, txid, height, path)?;
                if t.next.state == LoopInState::TimeoutSweeping {
                    t.actions.insert(
                        0,
                        LoopInAction::Notify {
                            state: LoopInState::TimeoutSweeping,
                        },
                    );
                }
                Ok(t)
            }
            LoopInSpendPath::ServerClaim => spent(contract, next, txid, height, path),
        },
        LoopInInput::SpendReorged => {
            let changed = next.spend.take().is_some();
            recorded_or_ignored(next, changed)
        }
        LoopInInput::SpendConfirmations { confirmations } => {
            spend_confirmations(contract, next, confirmations)
        }
        LoopInInput::KeyPushAcked => Err(LoopInRejected::KeyAckBeforeSettlement),
        // A late result of a sweep requested before a reorg lowered the height.
        LoopInInput::SweepPublishFailed => {
            next.sweep_failures = next.sweep_failures.saturating_add(1);
            done(next, Vec::new(), LoopInRule::Recorded)
        }
    }
}

/// Expired unpaid: sweep back every block until a spend is final.
fn sweeping(
    contract: &LoopInContract,
    mut next: LoopInProgress,
    htlc: HtlcOutput,
    input: LoopInInput,
) -> Stepped {
    match input {
        LoopInInput::Resumed { height } => {
            next.best_height = Some(height);
            // A spend stored before the restart is re-learnt from the chain as it is now.
            next.spend = None;
            let mut actions = vec![
                LoopInAction::WatchInvoice,
                watch_htlc(contract, &next),
                watch_spend(contract, &htlc),
            ];
            if next.funding.is_none() {
                actions.push(LoopInAction::FindFunding);
            }
            if next.invoice_settled() {
                let mut t = paid(next)?;
                t.actions.splice(0..0, actions);
                return Ok(t);
            }
            if expired(contract, &next) {
                actions.push(sweep(contract, &mut next, &htlc));
            }
            done(next, actions, LoopInRule::Resumed)
        }
        LoopInInput::Block { height } => {
            next.best_height = Some(height);
            if let Some(ended) = block_ends_it(contract, &mut next) {
                return ended;
            }
            if next.invoice_settled() {
                return paid(next);
            }
            if next.spend.is_none() && expired(contract, &next) {
                let action = sweep(contract, &mut next, &htlc);
                return done(next, vec![action], LoopInRule::Sweep);
            }
            ignored(next)
        }
        LoopInInput::FundingEstimate { .. } | LoopInInput::FundingFailed => ignored(next),
        LoopInInput::FundingPublished { txid, fee } => funding_published(contract, next, txid, fee),
        LoopInInput::HtlcConfirmed {
            outpoint,
            value,
            height,
            confirmations,
        } => {
            if confirmations == 0 {
                return Err(LoopInRejected::ZeroConfirmations {
                    input: "HtlcConfirmed",
                });
            }
            raise_best_height(&mut next, height, confirmations);
            if outpoint == htlc.outpoint {
                return ignored(next);
            }
            // Replaced after a reorg: sweep the output that is there now.
            let replaced = htlc_output(outpoint, value, height);
            next.htlc = Some(replaced);
            next.spend = None;
            let watch = watch_spend(contract, &replaced);
            let action = sweep(contract, &mut next, &replaced);
            done(next, vec![watch, action], LoopInRule::Sweep)
        }
        // The funding goes back to the mempool; the sweep stays valid as its child.
        LoopInInput::HtlcReorged => ignored(next),
        LoopInInput::InvoiceSettled { amount_paid } => {
            record_settlement(&mut next, amount_paid);
            paid(next)
        }
        LoopInInput::InvoiceCanceled => {
            next.invoice = InvoiceStatus::Canceled;
            done(next, Vec::new(), LoopInRule::Recorded)
        }
        LoopInInput::HtlcSpent { txid, height, path } => spent(contract, next, txid, height, path),
        LoopInInput::SpendReorged => {
            if next.spend.take().is_none() {
                return ignored(next);
            }
            let mut actions = Vec::new();
            if expired(contract, &next) {
                actions.push(sweep(contract, &mut next, &htlc));
            }
            done(next, actions, LoopInRule::SpendReorged)
        }
        LoopInInput::SpendConfirmations { confirmations } => {
            spend_confirmations(contract, next, confirmations)
        }
        LoopInInput::KeyPushAcked => Err(LoopInRejected::KeyAckBeforeSettlement),
        LoopInInput::SweepPublishFailed => {
            next.sweep_failures = next.sweep_failures.saturating_add(1);
            done(next, Vec::new(), LoopInRule::Recorded)
        }
    }
}

/// Paid: push the key until acknowledged; success at the expiry or when a spend is final.
fn settled(contract: &LoopInContract, mut next: LoopInProgress, input: LoopInInput) -> Stepped {
    let push = |next: &LoopInProgress| -> Vec<LoopInAction> {
        if next.key_push_acked {
            Vec::new()
        } else {
            vec![LoopInAction::PushKey]
        }
    };
    match input {
        LoopInInput::Resumed { height } => {
            next.best_height = Some(height);
            if expired(contract, &next) {
                return move_to(
                    next,
                    LoopInState::Succeeded,
                    Vec::new(),
                    LoopInRule::ExpiryAfterPayment,
                );
            }
            let mut actions = match next.htlc {
                Some(h) => vec![watch_spend(contract, &h)],
                None => vec![watch_htlc(contract, &next)],
            };
            if next.funding.is_none() {
                actions.push(LoopInAction::FindFunding);
            }
            actions.extend(push(&next));
            done(next, actions, LoopInRule::Resumed)
        }
        LoopInInput::Block { height } => {
            next.best_height = Some(height);
            if let Some(ended) = block_ends_it(contract, &mut next) {
                return ended;
            }
            if expired(contract, &next) {
                return move_to(
                    next,
                    LoopInState::Succeeded,
                    Vec::new(),
                    LoopInRule::ExpiryAfterPayment,
                );
            }
            let actions = push(&next);
            if actions.is_empty() {
                return ignored(next);
            }
            done(next, actions, LoopInRule::PushKey)
        }
        LoopInInput::KeyPushAcked => {
            let changed = !next.key_push_acked;
            next.key_push_acked = true;
            recorded_or_ignored(next, changed)
        }
        LoopInInput::FundingEstimate { .. } | LoopInInput::FundingFailed => ignored(next),
        LoopInInput::FundingPublished { txid, fee } => funding_published(contract, next, txid, fee),
        LoopInInput::HtlcConfirmed {
            outpoint,
            value,
            height,
            confirmations,
        } => {
            if confirmations == 0 {
                return Err(LoopInRejected::ZeroConfirmations {
                    input: "HtlcConfirmed",
                });
            }
            raise_best_height(&mut next, height, confirmations);
            if next.htlc.is_some_and(|h| h.outpoint == outpoint) {
                return ignored(next);
            }
            let htlc = htlc_output(outpoint, value, height);
            next.htlc = Some(htlc);
            next.spend = None;
            done(
                next,
                vec![watch_spend(contract, &htlc)],
                LoopInRule::Recorded,
            )
        }
        LoopInInput::HtlcReorged => ignored(next),
        LoopInInput::InvoiceSettled { .. } => ignored(next),
        LoopInInput::InvoiceCanceled => Err(LoopInRejected::ConflictingInvoiceResult),
        LoopInInput::HtlcSpent { txid, height, path } => spent(contract, next, txid, height, path),
        LoopInInput::SpendReorged => {
            let changed = next.spend.take().is_some();
            recorded_or_ignored(next, changed)
        }
        LoopInInput::SpendConfirmations { confirmations } => {
            spend_confirmations(contract, next, confirmations)
        }
        LoopInInput::SweepPublishFailed => {
            next.sweep_failures = next.sweep_failures.saturating_add(1);
            done(next, Vec::new(), LoopInRule::Recorded)
        }
    }
}

/// Over: record a late funding report or payment for the costs, act on nothing.
fn terminal(mut next: LoopInProgress, input: LoopInInput) -> Stepped {
    match input {
        LoopInInput::FundingPublished { txid, fee } => {
            let changed = record_funding(&mut next, txid, fee);
            recorded_or_ignored(next, changed)
        }
        LoopInInput::InvoiceSettled { amount_paid } => {
            let changed = !next.invoice_settled();
            if changed {
                record_settlement(&mut next, amount_paid);
            }
            recorded_or_ignored(next, changed)
        }
        LoopInInput::Resumed { .. }
        | LoopInInput::Block { .. }
        | LoopInInput::FundingEstimate { .. }
        | LoopInInput::FundingFailed
        | LoopInInput::HtlcConfirmed { .. }
        | LoopInInput::HtlcReorged
        | LoopInInput::InvoiceCanceled
        | LoopInInput::HtlcSpent { .. }
        | LoopInInput::SpendReorged
        | LoopInInput::SpendConfirmations { .. }
        | LoopInInput::KeyPushAcked
        | LoopInInput::SweepPublishFailed => ignored(next),
    }
}
