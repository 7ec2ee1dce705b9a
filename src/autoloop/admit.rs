//! The pure half of a pass's checks on a proposed swap (Loop Out or Loop In), shared by the live pass and by
//! `sluice backtest`: the server's quote against the policy's fee caps, the engine's fee
//! limits ([`policy::swap_limits`]) and budget admission in the ledger. No I/O, no clock.

use chrono::{DateTime, Utc};

use crate::chain::fees::min_sweep_fee;
use crate::domain::{Ppm, Sat, SwapHash};
use crate::ledger::{AdmitError, AdmitRequest, Ledger, Refusal};
use crate::policy::{self, Decision, Proposal, Reason};
use crate::swap::FeeLimits;
use crate::swap::loop_in::LoopInLimits;

/// A proposal that passed the quote, fee-cap and budget checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The limits to create the swap with.
    pub limits: FeeLimits,
    /// What to reserve in the ledger, with a placeholder swap hash: the caller sets the
    /// swap's own hash when it has one.
    pub request: AdmitRequest,
}

/// A proposal refused by the checks: the reason and the detail the decision takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The decision's new reason.
    pub reason: Reason,
    /// The decision's new detail.
    pub detail: String,
}

/// The engine's fee limits for a proposal and a quote: the policy's one rule
/// ([`policy::swap_limits`]), so the worst case admitted here is the one `evaluate` and
/// `sluice policy test` predict. `None` when the total cap cannot cover the expected fees or
/// the policy's miner cap is below the smallest valid sweep: such a swap could never reveal.
pub fn limits(
    p: &Proposal,
    fees: &policy::FeeCaps,
    swap_fee: Sat,
    prepay: Sat,
    routing_ppm: Ppm,
) -> Option<FeeLimits> {
    let caps = policy::category_caps(fees, p.amount, prepay);
    policy::swap_limits(
        &caps,
        fees,
        p.amount,
        p.expected_cost,
        swap_fee,
        prepay,
        routing_ppm,
    )
    .map(|l| FeeLimits {
        max_swap_fee: l.server,
        max_prepay_amount: l.prepay,
        max_swap_routing_fee: l.routing,
        max_prepay_routing_fee: l.prepay_routing,
        max_miner_fee: l.miner,
    })
}

/// A Loop In proposal that passed the quote, fee-cap and budget checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedIn {
    /// The limits to create the Loop In with.
    pub limits: LoopInLimits,
    /// What to reserve in the ledger, with a placeholder swap hash.
    pub request: AdmitRequest,
}

/// Checks a Loop In proposal against the server's quoted fee and the ledger, as a live pass
/// does between the quote and the dispatch: the fee within its cap, limits from the policy's
/// one rule ([`policy::loop_in_limits`]), and the worst case of those limits admitted.
pub fn check_loop_in_quote(
    policy: Option<&policy::Policy>,
    d: &Decision,
    p: &Proposal,
    swap_fee: Sat,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> Result<AdmittedIn, Refused> {
    if swap_fee > p.caps.server {
        return Err(Refused {
            reason: Reason::FeeCap,
            detail: format!(
                "the server quotes a Loop In fee of {} sat, above the cap of {} sat",
                swap_fee.0, p.caps.server.0
            ),
        });
    }
    let settings = policy
        .and_then(|pol| pol.rule(d.rule.as_deref().unwrap_or_default()))
        .and_then(|r| r.settings.loop_in);
    let Some(limits) = settings.and_then(|li| {
        policy::loop_in_limits(&p.caps, &li.fees, p.amount, swap_fee, p.expected_miner)
    }) else {
        return Err(Refused {
            reason: Reason::FeeCap,
            detail: format!(
                "with the quoted Loop In fee of {} sat no miner-fee limit fits the caps: the HTLC is expected to cost {} sat and a timeout sweep at least {} sat",
                swap_fee.0,
                p.expected_miner.0,
                min_sweep_fee().0
            ),
        });
    };
    let worst = limits.worst_case();
    let request = AdmitRequest {
        swap: SwapHash([0; 32]),
        rule: d.rule.clone().unwrap_or_default(),
        expected: (swap_fee + p.expected_miner).min(worst),
        worst_case: worst,
    };
    try_admit(ledger, d, &request, now)?;
    Ok(AdmittedIn { limits, request })
}

/// Whether the ledger would admit `request` now (nothing is reserved): a budget refusal or an
/// invalid request as the decision's reason and detail.
fn try_admit(
    ledger: &Ledger,
    d: &Decision,
    request: &AdmitRequest,
    now: DateTime<Utc>,
) -> Result<(), Refused> {
    match ledger.admit(request.clone(), now) {
        Ok(_) => Ok(()),
        Err(AdmitError::Refused(r)) => Err(Refused {
            reason: refusal_reason(&r),
            detail: r.to_string(),
        }),
        Err(AdmitError::Invalid(e)) => Err(Refused {
            reason: Reason::DispatchFailed,
            detail: format!("{}; not dispatched: {e}", d.detail),
        }),
    }
}

/// The decision's reason for a budget refusal.
pub fn refusal_reason(r: &Refusal) -> Reason {
    match r {
        Refusal::Exhausted { .. } => Reason::BudgetExhausted,
        Refusal::Insufficient { .. } => Reason::BudgetInsufficient,
    }
}

/// Checks a proposal against a quote (`swap_fee`, `prepay`) and the ledger, as a live pass
/// does between the quote and the dispatch. Nothing is reserved: the caller reserves
/// [`Admitted::request`] under the swap's own hash.
pub fn check_quote(
    policy: Option<&policy::Policy>,
    d: &Decision,
    p: &Proposal,
    (swap_fee, prepay): (Sat, Sat),
    routing_ppm: Ppm,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> Result<Admitted, Refused> {
    if swap_fee > p.caps.server {
        return Err(Refused {
            reason: Reason::FeeCap,
            detail: format!(
                "the server quotes a swap fee of {} sat, above the cap of {} sat",
                swap_fee.0, p.caps.server.0
            ),
        });
    }
    if prepay > p.caps.prepay {
        return Err(Refused {
            reason: Reason::FeeCap,
            detail: format!(
                "the server asks a prepay of {} sat, above the cap of {} sat",
                prepay.0, p.caps.prepay.0
            ),
        });
    }
    let fees = policy
        .and_then(|pol| pol.rule(d.rule.as_deref().unwrap_or_default()))
        .map(|r| r.settings.fees)
        .unwrap_or(policy::FeeCaps {
            max_total: Ppm(0),
            max_server: None,
            max_routing: None,
            max_prepay_routing: None,
            max_prepay: None,
            max_miner: None,
        });
    let max_total = fees.max_total;
    let Some(fee_limits) = limits(p, &fees, swap_fee, prepay, routing_ppm) else {
        return Err(Refused {
            reason: Reason::FeeCap,
            detail: format!(
                "the quoted server fee of {} sat leaves too little of the {} cap of {} sat for the expected routing and miner fees, or the miner-fee cap of {} sat is below the smallest valid sweep ({} sat)",
                swap_fee.0,
                max_total,
                p.amount.mul_ppm(max_total).0,
                p.caps.miner.0,
                min_sweep_fee().0
            ),
        });
    };
    let worst = fee_limits.worst_case();
    let request = AdmitRequest {
        swap: SwapHash([0; 32]),
        rule: d.rule.clone().unwrap_or_default(),
        expected: p.expected_cost.min(worst),
        worst_case: worst,
    };
    try_admit(ledger, d, &request, now)?;
    Ok(Admitted {
        limits: fee_limits,
        request,
    })
}
