//! Handlers of the autoloop RPCs: `Suggest`, `PolicyShow`, `PolicyReload`, `Budget`,
//! `Journal`, `SetAutoloopMode`, `GetAutoloopMode`. `service.rs` delegates to these.

use chrono::DateTime;

use super::ApiError;
use super::state::ApiState;
use crate::autoloop::{Autoloop, AutoloopError, Mode, PolicyStatus, TargetDecision};
use crate::ledger::BudgetStatus;
use crate::proto::sluice as pb;
use crate::store::{JournalFilter, JournalRecord};

/// Journal rows returned when the request asks for no limit.
const DEFAULT_JOURNAL_LIMIT: u32 = 100;

fn autoloop(state: &ApiState) -> Result<&Autoloop, ApiError> {
    state.autoloop.get().ok_or_else(|| ApiError::Unavailable {
        what: "autoloop",
        reason: "the daemon has not started it yet (lnd or the swap server not ready)".to_owned(),
    })
}

fn failed(e: AutoloopError) -> ApiError {
    ApiError::Unavailable {
        what: "autoloop",
        reason: e.to_string(),
    }
}

fn decision(t: &TargetDecision) -> pb::AutoloopDecision {
    let d = &t.decision;
    pb::AutoloopDecision {
        target: d.target.to_string(),
        rule: d.rule.clone().unwrap_or_default(),
        reason: d.reason.name().to_owned(),
        detail: match d.reason.text() {
            Some(text) if !d.detail.contains(text) => format!("{}: {text}", d.detail),
            _ => d.detail.clone(),
        },
        inbound_ppm: d.inbound_share.0,
        amount_sat: d.proposal.as_ref().map_or(0, |p| p.amount.0),
        swap_hash: t.swap.map(|h| h.to_string()).unwrap_or_default(),
        channels: d.channels.iter().map(ToString::to_string).collect(),
        direction: d
            .proposal
            .as_ref()
            .map(|p| p.direction.as_str().to_owned())
            .unwrap_or_default(),
    }
}

fn journal_entry(r: JournalRecord) -> pb::JournalEntry {
    pb::JournalEntry {
        pass_id: r.pass_id,
        at_unix: r.at.timestamp(),
        decision: Some(pb::AutoloopDecision {
            target: r.target,
            rule: r.rule.unwrap_or_default(),
            reason: r.reason,
            detail: r.detail,
            inbound_ppm: r.inbound_share.0,
            amount_sat: r.amount.map_or(0, |a| a.0),
            swap_hash: r.swap.map(|h| h.to_string()).unwrap_or_default(),
            channels: Vec::new(),
            direction: r
                .direction
                .map(|d| d.as_str().to_owned())
                .unwrap_or_default(),
        }),
    }
}

fn policy_show(s: PolicyStatus) -> pb::PolicyShowResponse {
    pb::PolicyShowResponse {
        files: s.files.iter().map(|f| f.display().to_string()).collect(),
        rules: s.rules,
        loaded_at_unix: s.loaded_at.map_or(0, |t| t.timestamp()),
        rejected: s.rejected.unwrap_or_default(),
    }
}

fn budget_lines(status: Vec<BudgetStatus>) -> pb::BudgetResponse {
    let lines = status
        .iter()
        .flat_map(|b| {
            b.lines().map(move |(scope, w)| pb::BudgetLine {
                budget: b.name.clone(),
                scope: scope.to_string(),
                window_start_unix: w.window.start.timestamp(),
                window_end_unix: w.window.end.timestamp(),
                limit_sat: w.limit.0,
                spent_sat: w.spent.0,
                reserved_expected_sat: w.reserved_expected.0,
                reserved_worst_sat: w.reserved_worst.0,
                available_sat: w.available.0,
                period: w.period.to_string(),
            })
        })
        .collect();
    pb::BudgetResponse { lines }
}

/// `Suggest`.
pub(super) async fn suggest(state: &ApiState) -> Result<pb::SuggestResponse, ApiError> {
    let al = autoloop(state)?;
    let report = al.suggest().await.map_err(failed)?;
    Ok(pb::SuggestResponse {
        mode: al.mode().as_str().to_owned(),
        decisions: report.decisions.iter().map(decision).collect(),
        routing_ppm: report.routing_ppm.0,
        routing_source: report.routing_source.clone(),
    })
}

/// `PolicyShow`.
pub(super) fn policy(state: &ApiState) -> Result<pb::PolicyShowResponse, ApiError> {
    let status = autoloop(state)?.policy_status().borrow().clone();
    Ok(policy_show(status))
}

/// `PolicyReload`: a rejected policy is an answer, not an error; it shows in `rejected`.
pub(super) async fn reload(state: &ApiState) -> Result<pb::PolicyShowResponse, ApiError> {
    let al = autoloop(state)?;
    let _ = al.reload_policy().await;
    let status = al.policy_status().borrow().clone();
    Ok(policy_show(status))
}

/// `Budget`.
pub(super) async fn budget(state: &ApiState) -> Result<pb::BudgetResponse, ApiError> {
    Ok(budget_lines(autoloop(state)?.budget().await))
}

/// `Journal`.
pub(super) async fn journal(
    state: &ApiState,
    req: pb::JournalRequest,
) -> Result<pb::JournalResponse, ApiError> {
    let since = match req.since_unix {
        0 => None,
        t => Some(
            DateTime::from_timestamp(t, 0).ok_or_else(|| ApiError::InvalidArgument {
                field: "since_unix",
                reason: format!("{t} is not a representable Unix time"),
            })?,
        ),
    };
    let filter = JournalFilter {
        target: (!req.target.is_empty()).then_some(req.target),
        since,
        reason: (!req.reason.is_empty()).then_some(req.reason),
        limit: Some(if req.limit == 0 {
            DEFAULT_JOURNAL_LIMIT
        } else {
            req.limit
        }),
    };
    if let Some(r) = &filter.reason
        && !crate::policy::Reason::NAMES.contains(&r.as_str())
    {
        return Err(ApiError::InvalidArgument {
            field: "reason",
            reason: format!(
                "`{r}` is not a reason; use one of {}",
                crate::policy::Reason::NAMES.join(", ")
            ),
        });
    }
    let al = autoloop(state)?;
    let rows = al.journal(&filter).await.map_err(failed)?;
    let passes = if req.passes {
        al.pass_summaries(filter.limit.unwrap_or(DEFAULT_JOURNAL_LIMIT))
            .await
            .map_err(failed)?
    } else {
        Vec::new()
    };
    Ok(pb::JournalResponse {
        entries: rows.into_iter().map(journal_entry).collect(),
        passes: passes
            .into_iter()
            .map(|p| pb::PassSummary {
                pass_id: p.pass_id,
                at_unix: p.at.timestamp(),
                mode: p.mode,
                targets: p.targets,
                counts: p.counts.into_iter().collect(),
            })
            .collect(),
    })
}

/// `SetAutoloopMode`.
pub(super) async fn set_mode(
    state: &ApiState,
    req: pb::SetAutoloopModeRequest,
) -> Result<pb::AutoloopModeResponse, ApiError> {
    let mode: Mode =
        req.mode.parse().map_err(
            |e: crate::autoloop::UnknownMode| ApiError::InvalidArgument {
                field: "mode",
                reason: e.to_string(),
            },
        )?;
    let al = autoloop(state)?;
    al.set_mode(mode).await.map_err(failed)?;
    Ok(pb::AutoloopModeResponse {
        mode: mode.as_str().to_owned(),
    })
}

/// `GetAutoloopMode`.
pub(super) fn mode(state: &ApiState) -> Result<pb::AutoloopModeResponse, ApiError> {
    Ok(pb::AutoloopModeResponse {
        mode: autoloop(state)?.mode().as_str().to_owned(),
    })
}
