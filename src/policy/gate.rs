//! The fee-market gate of a rule for one pass: absolute ceiling, percentile of recent
//! estimates with hysteresis (see [`super::model::FeeGate`]).

use super::model::{FeeGate, Rule};
use super::snapshot::Snapshot;
use crate::chain::fees::SatPerKw;

/// A rule's fee gate after this pass.
#[derive(Debug, Clone)]
pub(super) struct GateState {
    /// Whether swaps may pass.
    pub(super) open: bool,
    /// The numbers behind it.
    pub(super) detail: String,
}

/// The `p`-th percentile (nearest rank) of `sorted`.
fn percentile(sorted: &[u64], p: u8) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (usize::from(p) * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

pub(super) fn sat_vb(rate: SatPerKw) -> String {
    let tenths = rate.0 * 4 / 100;
    if tenths.is_multiple_of(10) {
        format!("{} sat/vB", tenths / 10)
    } else {
        format!("{}.{} sat/vB", tenths / 10, tenths % 10)
    }
}

pub(super) fn gate_state(rule: &Rule, snapshot: &Snapshot) -> Option<GateState> {
    let gate: &FeeGate = rule.settings.gate.as_ref()?;
    let Some((target, current)) = snapshot.fees.estimate_entry(rule.settings.swap.conf_target)
    else {
        return Some(GateState {
            open: false,
            detail: "no fee estimate".to_owned(),
        });
    };
    if let Some(ceiling) = gate.ceiling
        && current > ceiling
    {
        return Some(GateState {
            open: false,
            detail: format!("fee {} > ceiling {}", sat_vb(current), sat_vb(ceiling)),
        });
    }
    let Some(p) = gate.percentile else {
        return Some(GateState {
            open: true,
            detail: format!("fee {} within ceiling", sat_vb(current)),
        });
    };
    let since = snapshot.now - gate.window;
    let mut samples: Vec<u64> = snapshot
        .fees
        .history
        .iter()
        .filter(|s| s.conf_target == target && s.at >= since && s.at <= snapshot.now)
        .map(|s| s.rate.0)
        .collect();
    samples.sort_unstable();
    let (Some(open_at), Some(close_at)) = (
        percentile(&samples, p),
        percentile(&samples, gate.close_percentile),
    ) else {
        return Some(GateState {
            open: true,
            detail: format!(
                "no {target}-block fee history in the window; only the ceiling applies"
            ),
        });
    };
    let was_open = snapshot.gate_open.get(&rule.name).copied().unwrap_or(false);
    let open = if was_open {
        current.0 <= close_at
    } else {
        current.0 <= open_at
    };
    let detail = if was_open {
        format!(
            "fee {} vs p{} {} (closes above)",
            sat_vb(current),
            gate.close_percentile,
            sat_vb(SatPerKw(close_at))
        )
    } else {
        format!(
            "fee {} vs p{} {} (opens at or below)",
            sat_vb(current),
            p,
            sat_vb(SatPerKw(open_at))
        )
    };
    Some(GateState { open, detail })
}
