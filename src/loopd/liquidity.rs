//! `SuggestSwaps` and `GetLiquidityParams`: sluice's autoloop and policy in Loop's terms.
//!
//! `SuggestSwaps` runs sluice's `suggest` (a full pass that dispatches nothing) and answers
//! each `swap` or `dry_run` decision as a `LoopOutRequest` (or, above a band, a
//! `LoopInRequest`) and every other decision as
//! `Disqualified` entries, one per channel of the target, with the Loop reason of
//! [`auto_reason`]. `GetLiquidityParams` shows the policy in force through Loop's fields where
//! one means the same (see `docs/loopd-api.md` for the table and what has no Loop field).

use tonic::Status;

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::autoloop::{Autoloop, Mode};
use crate::domain::Direction;
use crate::policy::{Decision, Reason};
use crate::proto::loopd::looprpc as rpc;

fn autoloop(state: &ApiState) -> Result<&Autoloop, Status> {
    state.autoloop.get().ok_or_else(|| {
        Status::from(ApiError::Unavailable {
            what: "autoloop",
            reason: "the daemon has not started it yet (lnd or the swap server not ready)"
                .to_owned(),
        })
    })
}

/// sluice's reason as the nearest of Loop's `AutoReason`s. Reasons Loop has no word for
/// (schedules, blackouts, rules, scripts, dry runs of a rule, an unreachable server) are
/// `AUTO_REASON_UNKNOWN`; sluice's own name is in `sluice suggest`.
pub fn auto_reason(reason: &Reason) -> rpc::AutoReason {
    use rpc::AutoReason as A;
    match reason {
        Reason::Ok | Reason::BelowMinSize => A::LiquidityOk,
        Reason::BudgetExhausted | Reason::BudgetInsufficient => A::BudgetInsufficient,
        Reason::FeeCap => A::SwapFee,
        Reason::FeeGate => A::SweepFees,
        Reason::Backoff => A::FailureBackoff,
        Reason::InFlight => A::InFlight,
        Reason::Swap
        | Reason::DryRun
        | Reason::OutsideSchedule
        | Reason::Blackout
        | Reason::Inactive
        | Reason::PendingHtlcs
        | Reason::Vetoed(_)
        | Reason::Excluded
        | Reason::NoRule
        | Reason::NoRoute
        | Reason::InsufficientFunds
        | Reason::ScriptError(_)
        | Reason::QuoteFailed
        | Reason::DispatchFailed
        | Reason::ProviderUnavailable => A::Unknown,
    }
}

fn signed(sat: u64) -> i64 {
    i64::try_from(sat).unwrap_or(i64::MAX)
}

/// One decision in Loop's suggestion shape: a swap, or what disqualified its channels.
fn suggestion(d: &Decision, out: &mut rpc::SuggestSwapsResponse) {
    match (&d.reason, &d.proposal) {
        (Reason::Swap | Reason::DryRun, Some(p)) if p.direction == Direction::In => {
            out.loop_in.push(rpc::LoopInRequest {
                amt: signed(p.amount.0),
                max_swap_fee: signed(p.caps.server.0),
                max_miner_fee: signed(p.caps.miner.0),
                last_hop: p
                    .last_hop
                    .as_deref()
                    .and_then(|h| hex::decode(h).ok())
                    .unwrap_or_default(),
                htlc_conf_target: i32::try_from(p.conf_target).unwrap_or(i32::MAX),
                label: d.rule.clone().unwrap_or_default(),
                initiator: "autoloop".to_owned(),
                ..rpc::LoopInRequest::default()
            });
        }
        (Reason::Swap | Reason::DryRun, Some(p)) => {
            out.loop_out.push(rpc::LoopOutRequest {
                amt: signed(p.amount.0),
                dest: match &p.destination {
                    crate::policy::Destination::Wallet => String::new(),
                    crate::policy::Destination::Address(a) => a.clone(),
                },
                max_swap_routing_fee: signed(p.caps.routing.0),
                max_prepay_routing_fee: signed(p.caps.prepay_routing.0),
                max_swap_fee: signed(p.caps.server.0),
                max_prepay_amt: signed(p.caps.prepay.0),
                max_miner_fee: signed(p.caps.miner.0),
                outgoing_chan_set: p.outgoing.iter().map(|c| c.0).collect(),
                sweep_conf_target: i32::try_from(p.conf_target).unwrap_or(i32::MAX),
                htlc_confirmations: i32::try_from(p.htlc_confs).unwrap_or(i32::MAX),
                label: d.rule.clone().unwrap_or_default(),
                initiator: "autoloop".to_owned(),
                ..rpc::LoopOutRequest::default()
            });
        }
        (reason, _) => {
            let reason = auto_reason(reason);
            if d.channels.is_empty()
                && let crate::policy::Target::Peer(pubkey) = &d.target
            {
                out.disqualified.push(rpc::Disqualified {
                    channel_id: 0,
                    pubkey: hex::decode(pubkey).unwrap_or_default(),
                    reason: reason.into(),
                });
            }
            for c in &d.channels {
                out.disqualified.push(rpc::Disqualified {
                    channel_id: c.0,
                    pubkey: Vec::new(),
                    reason: reason.into(),
                });
            }
        }
    }
}

/// `SuggestSwaps`.
pub async fn suggest(state: &ApiState) -> Result<rpc::SuggestSwapsResponse, Status> {
    let report = autoloop(state)?
        .suggest()
        .await
        .map_err(|e| ApiError::Unavailable {
            what: "autoloop",
            reason: e.to_string(),
        })?;
    let mut out = rpc::SuggestSwapsResponse::default();
    for t in &report.decisions {
        suggestion(&t.decision, &mut out);
    }
    Ok(out)
}

/// `GetLiquidityParams`: the policy in force in Loop's fields ([`params_from`]); with no
/// policy loaded, only `autoloop`.
pub async fn params(state: &ApiState) -> Result<rpc::LiquidityParameters, Status> {
    let al = autoloop(state)?;
    let on = al.mode() == Mode::On;
    Ok(match al.policy().await {
        Some(policy) => params_from(&policy, on),
        None => rpc::LiquidityParameters {
            autoloop: on,
            ..rpc::LiquidityParameters::default()
        },
    })
}

/// A policy in Loop's liquidity parameters. Loop has one set of parameters for the node and
/// per-channel thresholds; sluice has rules. The node-wide fields come from the catch-all rule
/// (`match: all` or `node`; else the first rule) and the first budget, the thresholds from
/// every rule that names its channels or peers and has its band in shares. Pure.
pub fn params_from(policy: &crate::policy::Policy, autoloop_on: bool) -> rpc::LiquidityParameters {
    let mut out = rpc::LiquidityParameters {
        autoloop: autoloop_on,
        ..rpc::LiquidityParameters::default()
    };
    out.auto_max_in_flight = u64::from(policy.limits.in_flight);
    if let Some(budget) = policy.budgets.first() {
        out.autoloop_budget_sat = budget.limit.0;
        if let crate::policy::PeriodSpec::Rolling(d) = budget.period {
            out.autoloop_budget_refresh_period_sec = u64::try_from(d.num_seconds()).unwrap_or(0);
        }
    }
    let node_wide = policy
        .rules
        .iter()
        .find(|r| {
            matches!(
                r.matcher,
                crate::policy::Matcher::All | crate::policy::Matcher::Node
            )
        })
        .or_else(|| policy.rules.first());
    if let Some(rule) = node_wide {
        let s = &rule.settings;
        out.sweep_conf_target = i32::try_from(s.swap.conf_target).unwrap_or(i32::MAX);
        out.htlc_conf_target = i32::try_from(s.swap.htlc_confs).unwrap_or(i32::MAX);
        out.min_swap_amount = s.swap.min.map_or(0, |a| a.0);
        out.max_swap_amount = s.swap.max.map_or(0, |a| a.0);
        out.failure_backoff_sec = u64::try_from(s.backoff.after_failure.num_seconds()).unwrap_or(0);
        out.fee_ppm = s.fees.max_total.0;
        out.max_swap_fee_ppm = s.fees.max_server.map_or(0, |p| p.0);
        out.max_routing_fee_ppm = s.fees.max_routing.map_or(0, |p| p.0);
        out.max_prepay_routing_fee_ppm = s.fees.max_prepay_routing.map_or(0, |p| p.0);
        out.max_prepay_sat = s.fees.max_prepay.map_or(0, |a| a.0);
        out.max_miner_fee_sat = s.fees.max_miner.map_or(0, |a| a.0);
        if let crate::policy::Destination::Address(a) = &s.swap.destination {
            out.autoloop_dest_address = a.clone();
        }
    }
    for rule in &policy.rules {
        let crate::policy::Matcher::Select(sel) = &rule.matcher else {
            continue;
        };
        let band = &rule.settings.band;
        let crate::policy::values::Level::Share(min) = band.inbound_min else {
            continue;
        };
        let outgoing = match band.inbound_max {
            Some(crate::policy::values::Level::Share(max)) => {
                u32::try_from(100u64.saturating_sub(max.0.div_ceil(10_000))).unwrap_or(0)
            }
            _ => 0,
        };
        let threshold = |channel_id: u64, pubkey: Vec<u8>| rpc::LiquidityRule {
            channel_id,
            pubkey,
            swap_type: rpc::SwapType::LoopOut.into(),
            r#type: rpc::LiquidityRuleType::Threshold.into(),
            incoming_threshold: u32::try_from(min.0 / 10_000).unwrap_or(100),
            outgoing_threshold: outgoing,
        };
        for c in &sel.channels {
            out.rules.push(threshold(c.0, Vec::new()));
        }
        for p in &sel.peers {
            out.rules
                .push(threshold(0, hex::decode(p).unwrap_or_default()));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn loops_documented_autoloop_example_reads_back_in_loops_terms() {
        let policy = crate::policy::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("policies/loop-autoloop-equivalent/policy.yaml"),
        )
        .unwrap();
        let p = params_from(&policy, true);
        assert!(p.autoloop);
        assert_eq!(p.fee_ppm, 20_000);
        assert_eq!(p.sweep_conf_target, 100);
        assert_eq!(p.htlc_conf_target, 1);
        assert_eq!(p.failure_backoff_sec, 24 * 3600);
        assert_eq!(p.max_prepay_sat, 30_000);
        assert_eq!(p.autoloop_budget_sat, 335_544);
        assert_eq!(p.autoloop_budget_refresh_period_sec, 7 * 24 * 3600);
        assert_eq!(p.auto_max_in_flight, 1);
        // "incoming 20 / outgoing 30 on one channel", as Loop documents it.
        let chan = (800_020u64 << 40) | (1 << 16);
        assert_eq!(
            p.rules,
            vec![rpc::LiquidityRule {
                channel_id: chan,
                pubkey: Vec::new(),
                swap_type: rpc::SwapType::LoopOut.into(),
                r#type: rpc::LiquidityRuleType::Threshold.into(),
                incoming_threshold: 20,
                outgoing_threshold: 30,
            }]
        );
    }

    #[test]
    fn reasons_loop_knows_map_to_loops_words() {
        assert_eq!(auto_reason(&Reason::Ok), rpc::AutoReason::LiquidityOk);
        assert_eq!(auto_reason(&Reason::FeeGate), rpc::AutoReason::SweepFees);
        assert_eq!(auto_reason(&Reason::InFlight), rpc::AutoReason::InFlight);
        assert_eq!(
            auto_reason(&Reason::Backoff),
            rpc::AutoReason::FailureBackoff
        );
        assert_eq!(
            auto_reason(&Reason::BudgetInsufficient),
            rpc::AutoReason::BudgetInsufficient
        );
        assert_eq!(auto_reason(&Reason::NoRule), rpc::AutoReason::Unknown);
    }
}
