//! One autoloop pass: inputs → policy → quote and budget checks → dispatch → journal.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

use std::collections::BTreeMap;

use super::history;
use super::inputs::{self, InputError};
pub(super) use super::state::State;
use super::{AUTOLOOP_INITIATOR, AUTOLOOP_LABEL, Mode};
use crate::chain::SatPerKw;
use crate::domain::{BlockHeight, Direction, Ppm, Sat, SwapHash};
use crate::ledger::{AdmitError, AdmitRequest, Entry, Refusal};
use crate::lnd::LightningNode;
use crate::policy::{self, Decision, Destination, Proposal, Reason, Snapshot};
use crate::provider::SwapProvider;
use crate::store::{JournalRecord, PassSummary, Store};
use crate::swap::loop_in::LoopInContract;
use crate::swap::{
    Admission, FeeLimits, LoopInAdmission, LoopInRequest, LoopOutContract, LoopOutRequest,
    SwapEngine,
};

/// The ports and settings a pass uses.
pub(super) struct Ports {
    pub node: Arc<dyn LightningNode>,
    pub provider: Arc<dyn SwapProvider>,
    pub engine: SwapEngine,
    pub store: Store,
    pub flow_windows_days: Vec<u32>,
    pub fee_sample_every: TimeDelta,
    pub journal_retention: TimeDelta,
    pub l402_dir: Option<std::path::PathBuf>,
}

/// One target's decision after the scheduler's own checks.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetDecision {
    /// The policy's decision, with the reason and detail the scheduler settled on.
    pub decision: Decision,
    /// The swap dispatched for it, in mode `on`.
    pub swap: Option<SwapHash>,
}

/// What one pass decided.
#[derive(Debug, Clone, PartialEq)]
pub struct PassReport {
    /// The pass's id (0 for a suggestion, which is not journalled).
    pub pass_id: i64,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// The mode it ran in.
    pub mode: Mode,
    /// Every target's decision.
    pub decisions: Vec<TargetDecision>,
    /// Whether every gated rule's fee gate was open after the pass (true with no gate).
    pub fee_gate_open: bool,
    /// lnd's fee estimates the pass saw, as (confirmation target, rate).
    pub fee_estimates: Vec<(u32, SatPerKw)>,
    /// The routing fee the pass expected for swap payments, and where it comes from.
    pub routing_ppm: Ppm,
    /// Where `routing_ppm` comes from, for people.
    pub routing_source: String,
    /// The swap server's terms as the policy saw them (Loop's defaults during an outage).
    pub terms: policy::ServerTerms,
}

impl PassReport {
    /// Swaps dispatched by the pass.
    pub fn dispatched(&self) -> impl Iterator<Item = SwapHash> + '_ {
        self.decisions.iter().filter_map(|d| d.swap)
    }

    /// The decision about `target` (its display form, e.g. `800000x1x0`).
    pub fn decision(&self, target: &str) -> Option<&TargetDecision> {
        self.decisions
            .iter()
            .find(|d| d.decision.target.to_string() == target)
    }
}

/// How a pass treats its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A scheduled pass in this mode: dispatch when `on`, journal.
    Run(Mode),
    /// `sluice suggest`: full pipeline, nothing dispatched or journalled.
    Suggest,
}

/// Runs one pass.
pub(super) async fn run(
    ports: &Ports,
    state: &mut State,
    now: DateTime<Utc>,
    purpose: Purpose,
) -> Result<PassReport, InputError> {
    let mode = match purpose {
        Purpose::Run(m) => m,
        Purpose::Suggest => Mode::DryRun,
    };
    if matches!(purpose, Purpose::Run(_)) {
        // Swaps whose last payment result came after their terminal update settle here.
        if let Err(e) =
            super::supervise::settle_finished(ports.node.as_ref(), &ports.store, state, now).await
        {
            tracing::error!(error = %e, "settling finished autoloop swaps failed");
        }
        book_l402(ports, state, now).await;
    }
    let Some(policy) = state.policy.clone() else {
        return Ok(PassReport {
            pass_id: 0,
            at: now,
            mode,
            decisions: Vec::new(),
            fee_gate_open: true,
            fee_estimates: Vec::new(),
            routing_ppm: policy::DEFAULT_ROUTING_PPM,
            routing_source: "no policy".to_owned(),
            terms: policy::ServerTerms::default(),
        });
    };
    // lnd's own height: the engine's follows block epochs and may lag a block behind.
    let height = match ports.node.block_height().await {
        Ok(h) => h.max(ports.engine.height().unwrap_or(h)),
        Err(source) => ports.engine.height().ok_or(InputError::Node {
            op: "GetInfo",
            source,
        })?,
    };
    let channels =
        inputs::channels(&*ports.node, Some(height), &ports.flow_windows_days, now).await?;
    let estimates = inputs::fee_estimates(&*ports.node, &policy).await?;
    // A swap-server outage is a decision for every target that needs the server, not a
    // failed pass: the journal and `suggest` say what happened.
    let (terms, raw_terms, outage) = match inputs::terms(&*ports.provider, height, now).await {
        Ok((t, raw)) => (t, Some(raw), None),
        Err(e @ InputError::Provider { .. }) => {
            tracing::warn!(error = %e, "the swap server is unavailable; autoloop decides nothing that needs it");
            (policy::ServerTerms::default(), None, Some(e.to_string()))
        }
        Err(e) => return Err(e),
    };
    // Loop In's terms and the wallet that funds it, only when some rule swaps in.
    let (terms_in, outage_in, wallet) = if policy.rules.iter().any(|r| r.settings.loop_in.is_some())
    {
        let (terms_in, outage_in) = match inputs::terms_in(&*ports.provider, &*ports.node).await {
            Ok(t) => (t, None),
            Err(e) => {
                tracing::warn!(error = %e, "the swap server gave no Loop In terms; autoloop decides no Loop In");
                (policy::LoopInServerTerms::default(), Some(e.to_string()))
            }
        };
        (terms_in, outage_in, inputs::wallet(&*ports.node).await)
    } else {
        (policy::LoopInServerTerms::default(), None, None)
    };
    let unreleased: Vec<SwapHash> = state.ledger.pending().copied().collect();
    let (in_flight, manual) = inputs::in_flight(&ports.store, &unreleased).await?;
    let backoff = ports.store.backoffs().await?;
    let (routing_ppm, routing_source) = inputs::routing_ppm(&ports.store).await?;

    if matches!(purpose, Purpose::Run(_)) {
        let (targets, keep) = history::gated_targets(&policy, &estimates);
        if history::record(
            &mut state.fee_history,
            &estimates,
            &targets,
            now,
            ports.fee_sample_every,
            keep,
        ) {
            ports
                .store
                .set_autoloop_setting(
                    history::FEE_HISTORY_KEY,
                    &history::encode_fee_history(&state.fee_history),
                )
                .await?;
        }
    }
    let snapshot = Snapshot {
        now,
        channels,
        fees: policy::FeeMarket {
            estimates,
            history: state.fee_history.iter().copied().collect(),
            routing_ppm,
        },
        budget: inputs::budget_left(&state.ledger, &policy, now),
        in_flight,
        backoff,
        terms,
        terms_in,
        wallet,
        gate_open: state.gate_open.clone(),
        dry_run: mode != Mode::On,
    };
    let plan = evaluate_beside_the_runtime(&policy, &snapshot);
    let fee_gate_open = plan.gate_open.values().all(|open| *open);
    let fee_estimates = snapshot.fees.estimates.clone();
    let seen_terms = snapshot.terms;
    if matches!(purpose, Purpose::Run(_)) && state.gate_open != plan.gate_open {
        // Persisted so a restart keeps each gate's hysteresis.
        ports
            .store
            .set_autoloop_setting(
                history::GATE_OPEN_KEY,
                &history::encode_gates(&plan.gate_open),
            )
            .await?;
        state.gate_open = plan.gate_open.clone();
    }

    let mut decisions = Vec::with_capacity(plan.decisions.len());
    for mut d in plan.decisions {
        let mut swap = None;
        if let Some(why) = &outage
            && !matches!(
                d.reason,
                Reason::Excluded | Reason::NoRule | Reason::Inactive | Reason::Ok
            )
        {
            d.reason = Reason::ProviderUnavailable;
            d.detail = format!("{why}; nothing that needs the swap server is decided");
            d.proposal = None;
        }
        if let Some(why) = &outage_in
            && matches!(d.reason, Reason::Swap | Reason::DryRun)
            && d.proposal
                .as_ref()
                .is_some_and(|p| p.direction == Direction::In)
        {
            d.reason = Reason::ProviderUnavailable;
            d.detail = format!("{why}; no Loop In is decided");
            d.proposal = None;
        }
        if matches!(d.reason, Reason::Swap | Reason::DryRun)
            && let Some(p) = d.proposal.clone()
        {
            if let Some(c) = d.channels.iter().find(|c| manual.contains(c)) {
                d.reason = Reason::InFlight;
                d.detail = format!("channel {c} is in a manual swap; autoloop leaves it alone");
            } else if p.direction == Direction::In {
                swap = check_and_dispatch_in(ports, state, &mut d, &p, now, purpose).await;
            } else if let Some(raw_terms) = &raw_terms {
                swap = check_and_dispatch(
                    ports,
                    state,
                    &mut d,
                    &p,
                    (height, raw_terms, routing_ppm),
                    now,
                    purpose,
                )
                .await;
            }
        }
        decisions.push(TargetDecision { decision: d, swap });
    }

    let mut report = PassReport {
        pass_id: 0,
        at: now,
        mode,
        decisions,
        fee_gate_open,
        fee_estimates,
        routing_ppm,
        routing_source,
        terms: seen_terms,
    };
    if matches!(purpose, Purpose::Run(_)) {
        state.pass_id += 1;
        report.pass_id = state.pass_id;
        // A decision is journalled when it acts or differs from the target's last journalled
        // one; the summary records every pass.
        let mut records = Vec::new();
        for t in &report.decisions {
            let key = t.decision.target.to_string();
            let seen = (t.decision.reason.name(), t.decision.rule.clone());
            let acts = t.swap.is_some()
                || matches!(
                    t.decision.reason,
                    Reason::Swap | Reason::DispatchFailed | Reason::QuoteFailed
                );
            let changed = state
                .last_journalled
                .get(&key)
                .is_none_or(|(r, rule)| (r.as_str(), rule) != (seen.0, &seen.1));
            if acts || changed {
                records.push(journal_record(report.pass_id, now, t));
            }
        }
        let summary = PassSummary {
            pass_id: report.pass_id,
            at: now,
            mode: mode.as_str().to_owned(),
            targets: report.decisions.len() as u64,
            counts: report.decisions.iter().fold(BTreeMap::new(), |mut m, t| {
                *m.entry(t.decision.reason.name().to_owned()).or_insert(0) += 1;
                m
            }),
        };
        let keep_since = now - ports.journal_retention;
        ports
            .store
            .record_pass(&summary, &records, keep_since)
            .await?;
        state.last_journalled = report
            .decisions
            .iter()
            .map(|t| {
                (
                    t.decision.target.to_string(),
                    (t.decision.reason.name().to_owned(), t.decision.rule.clone()),
                )
            })
            .collect();
    }
    // The pass's quotes may have bought an L402 token: book it now, not a pass later.
    book_l402(ports, state, now).await;
    Ok(report)
}

/// Evaluates the policy without holding up the runtime's thread: `sluiced` runs one, which
/// also carries lnd's streams, the swap drivers and the API, and a large node's rhai rules take
/// milliseconds. On a multi-thread runtime the thread's other tasks move to another thread for
/// the evaluation's length (`block_in_place`); a current-thread runtime (tests, the backtest)
/// evaluates in place.
fn evaluate_beside_the_runtime(policy: &policy::Policy, snapshot: &Snapshot) -> policy::Plan {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| policy::evaluate(policy, snapshot))
    } else {
        policy::evaluate(policy, snapshot)
    }
}

/// Books a paid L402 token's price in the ledger (once); errors are logged and retried on the
/// next pass.
pub(super) async fn book_l402(ports: &Ports, state: &mut State, now: DateTime<Utc>) {
    if let Some(dir) = &ports.l402_dir
        && let Err(e) = super::supervise::book_l402(dir, &ports.store, state, now).await
    {
        tracing::error!(error = %e, "booking the L402 token's price in the ledger failed");
    }
}

fn journal_record(pass_id: i64, at: DateTime<Utc>, t: &TargetDecision) -> JournalRecord {
    let d = &t.decision;
    JournalRecord {
        pass_id,
        at,
        target: d.target.to_string(),
        rule: d.rule.clone(),
        reason: d.reason.name().to_owned(),
        detail: match d.reason.text() {
            Some(text) if !d.detail.contains(text) => format!("{}: {text}", d.detail),
            _ => d.detail.clone(),
        },
        inbound_share: d.inbound_share,
        amount: d.proposal.as_ref().map(|p| p.amount),
        direction: d.proposal.as_ref().map(|p| p.direction),
        swap: t.swap,
    }
}

/// The most a swap with these limits can cost, in every regime ([`FeeLimits::worst_case`], the
/// same rule as [`policy::SwapLimits::worst_case`]): what its reservation holds.
pub(super) fn worst_case(l: &FeeLimits) -> Sat {
    l.worst_case()
}

fn refusal_reason(r: &Refusal) -> Reason {
    super::admit::refusal_reason(r)
}

/// Quote, fee-cap and budget checks for a proposed swap, then the dispatch when the pass
/// may dispatch. Settles `d`'s reason and returns the dispatched swap.
#[allow(clippy::too_many_arguments)]
async fn check_and_dispatch(
    ports: &Ports,
    state: &mut State,
    d: &mut Decision,
    p: &Proposal,
    (height, raw_terms, routing_ppm): (BlockHeight, &crate::provider::port::LoopOutTerms, Ppm),
    now: DateTime<Utc>,
    purpose: Purpose,
) -> Option<SwapHash> {
    let expiry = inputs::expiry(height, p.conf_target, raw_terms);
    let deadline = (now + TimeDelta::minutes(30)).timestamp();
    let quote = match ports
        .provider
        .loop_out_quote(p.amount, expiry, deadline)
        .await
    {
        Ok(q) => q,
        Err(e) => {
            d.reason = Reason::QuoteFailed;
            d.detail = format!(
                "{}; not dispatched: the swap server gave no quote: {e}",
                d.detail
            );
            return None;
        }
    };
    let admitted = match super::admit::check_quote(
        state.policy.as_deref(),
        d,
        p,
        (quote.swap_fee, quote.prepay_amount),
        routing_ppm,
        &state.ledger,
        now,
    ) {
        Ok(a) => a,
        Err(r) => {
            d.reason = r.reason;
            d.detail = r.detail;
            return None;
        }
    };
    let fee_limits = admitted.limits;
    let request = |swap| AdmitRequest {
        swap,
        ..admitted.request.clone()
    };
    if purpose != Purpose::Run(Mode::On) || d.reason != Reason::Swap {
        d.reason = Reason::DryRun;
        return None;
    }
    let req = LoopOutRequest {
        amount: p.amount,
        destination: match &p.destination {
            Destination::Wallet => None,
            Destination::Address(a) => Some(a.clone()),
        },
        outgoing_chan_set: p.outgoing.clone(),
        label: AUTOLOOP_LABEL.to_owned(),
        initiator: AUTOLOOP_INITIATOR.to_owned(),
        conf_target: Some(p.conf_target),
        limits: Some(fee_limits),
        fast: false,
    };
    let (reserved, reserve) = reservation(state, request(SwapHash([0; 32])), now);
    let admission: Admission = Box::new(move |contract: &LoopOutContract| {
        let t = contract.terms();
        reserve(t.swap_hash, worst_case(&t.fee_limits))
    });
    match ports.engine.loop_out_admitted(req, admission).await {
        Ok(hash) => {
            apply_reserved(state, &reserved, hash);
            if p.outgoing.is_empty()
                && let Err(e) = ports.store.set_swap_channels(hash, &d.channels).await
            {
                tracing::error!(swap = %hash, error = %e, "recording the channels of an autoloop swap failed; its target's in-flight limit and backoff will not see it");
            }
            d.detail = format!("{}; dispatched swap {hash}", d.detail);
            tracing::info!(swap = %hash, target = %d.target, amount = %p.amount, "autoloop dispatched a loop out");
            Some(hash)
        }
        Err(crate::swap::EngineError::NotAdmitted(AdmitError::Refused(r))) => {
            d.reason = refusal_reason(&r);
            d.detail = r.to_string();
            None
        }
        Err(e) => {
            tracing::warn!(target = %d.target, error = %e, "autoloop dispatch failed");
            d.reason = Reason::DispatchFailed;
            d.detail = format!("{}; dispatch failed: {e}", d.detail);
            None
        }
    }
}

/// The reservation a swap's admission decides from its final contract (the swap's hash and the
/// worst case of its limits) and the engine stores beside it, and the slot it is kept in for
/// [`apply_reserved`].
#[allow(clippy::type_complexity)]
fn reservation(
    state: &State,
    request: AdmitRequest,
    now: DateTime<Utc>,
) -> (
    Arc<Mutex<Option<Entry>>>,
    impl FnOnce(SwapHash, Sat) -> Result<Entry, AdmitError> + Send + 'static,
) {
    let reserved: Arc<Mutex<Option<Entry>>> = Arc::new(Mutex::new(None));
    let ledger = state.ledger.clone();
    let slot = Arc::clone(&reserved);
    let reserve = move |swap: SwapHash, worst: Sat| {
        let reservation = ledger.admit(
            AdmitRequest {
                swap,
                expected: request.expected.min(worst),
                worst_case: worst,
                ..request
            },
            now,
        )?;
        let entry = reservation.into_entry();
        if let Ok(mut s) = slot.lock() {
            *s = Some(entry.clone());
        }
        Ok(entry)
    };
    (reserved, reserve)
}

/// Applies the reservation the engine stored with swap `hash` to the pass's ledger.
fn apply_reserved(state: &mut State, reserved: &Mutex<Option<Entry>>, hash: SwapHash) {
    let entry = reserved.lock().ok().and_then(|mut s| s.take());
    if let Some(entry) = entry
        && let Err(e) = state.ledger.apply(entry)
    {
        tracing::error!(swap = %hash, error = %e, "the stored reservation does not apply to the ledger");
    }
}

/// The Loop In half of [`check_and_dispatch`]: the server's quote for the amount (no probe:
/// the engine probes when it creates the swap), the fee-cap and budget checks, then the
/// dispatch with the reservation stored beside the contract, before anything is funded.
async fn check_and_dispatch_in(
    ports: &Ports,
    state: &mut State,
    d: &mut Decision,
    p: &Proposal,
    now: DateTime<Utc>,
    purpose: Purpose,
) -> Option<SwapHash> {
    let last_hop: Option<[u8; 33]> = p
        .last_hop
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok());
    let quoted = match ports.node.get_info().await {
        Ok(info) => ports
            .provider
            .loop_in_quote(&crate::provider::port::LoopInRoute {
                amount: p.amount,
                node: info.pubkey.0,
                last_hop,
                route_hints: Vec::new(),
            })
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("lnd GetInfo failed: {e}")),
    };
    let quote = match quoted {
        Ok(q) => q,
        Err(e) => {
            d.reason = Reason::QuoteFailed;
            d.detail = format!(
                "{}; not dispatched: the swap server gave no Loop In quote: {e}",
                d.detail
            );
            return None;
        }
    };
    let admitted = match super::admit::check_loop_in_quote(
        state.policy.as_deref(),
        d,
        p,
        quote.swap_fee,
        &state.ledger,
        now,
    ) {
        Ok(a) => a,
        Err(r) => {
            d.reason = r.reason;
            d.detail = r.detail;
            return None;
        }
    };
    if purpose != Purpose::Run(Mode::On) || d.reason != Reason::Swap {
        d.reason = Reason::DryRun;
        return None;
    }
    let req = LoopInRequest {
        amount: p.amount,
        max_swap_fee: Some(admitted.limits.max_swap_fee),
        max_miner_fee: Some(admitted.limits.max_miner_fee),
        last_hop,
        // lnd's own hints in the invoices cover a private target channel, as for Loop's.
        route_hints: crate::swap::RouteHints::None,
        htlc_conf_target: Some(p.conf_target),
        label: AUTOLOOP_LABEL.to_owned(),
        initiator: AUTOLOOP_INITIATOR.to_owned(),
    };
    let (reserved, reserve) = reservation(state, admitted.request.clone(), now);
    let admission: LoopInAdmission = Box::new(move |contract: &LoopInContract| {
        let t = contract.terms();
        reserve(t.swap_hash, t.limits.worst_case())
    });
    match ports.engine.loop_in_admitted(req, admission).await {
        Ok(created) => {
            let hash = created.hash;
            apply_reserved(state, &reserved, hash);
            if let Err(e) = ports.store.set_swap_channels(hash, &d.channels).await {
                tracing::error!(swap = %hash, error = %e, "recording the channels of an autoloop Loop In failed; its target's in-flight limit and backoff will not see it");
            }
            d.detail = format!("{}; dispatched Loop In {hash}", d.detail);
            tracing::info!(swap = %hash, target = %d.target, amount = %p.amount, "autoloop dispatched a loop in");
            Some(hash)
        }
        Err(crate::swap::EngineError::NotAdmitted(AdmitError::Refused(r))) => {
            d.reason = refusal_reason(&r);
            d.detail = r.to_string();
            None
        }
        Err(e) => {
            tracing::warn!(target = %d.target, error = %e, "autoloop Loop In dispatch failed");
            d.reason = Reason::DispatchFailed;
            d.detail = format!("{}; dispatch failed: {e}", d.detail);
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::chain::fees::min_sweep_fee;

    #[test]
    fn worst_case_bounds_every_fee_and_the_lost_prepay() {
        let l = FeeLimits {
            max_swap_fee: Sat(1_000),
            max_prepay_amount: Sat(3_000),
            max_swap_routing_fee: Sat(200),
            max_prepay_routing_fee: Sat(10),
            max_miner_fee: Sat(500),
        };
        assert_eq!(worst_case(&l), Sat(3_000 + 200 + 10 + 500));
        // A miner cap below the smallest valid sweep counts the sweep at the floor.
        let low = FeeLimits {
            max_miner_fee: Sat(5),
            ..l
        };
        assert_eq!(worst_case(&low), Sat(3_000 + 200 + 10) + min_sweep_fee());
        // The policy's rule (what `sluice policy test` admits on) is the same rule.
        for limits in [l, low] {
            let policy_view = policy::SwapLimits {
                server: limits.max_swap_fee,
                prepay: limits.max_prepay_amount,
                routing: limits.max_swap_routing_fee,
                prepay_routing: limits.max_prepay_routing_fee,
                miner: limits.max_miner_fee,
            };
            assert_eq!(policy_view.worst_case(), worst_case(&limits));
        }
    }
}
