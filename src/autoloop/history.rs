//! The fee history behind the percentile gate, and the gates' state, as autoloop keeps and
//! persists them. The history holds what each gate compares: lnd's estimate for each
//! confirmation target a gated rule uses, sampled by time (at most one sample per target per
//! `autoloop.fee_sample_every`, however often passes run) and kept for the largest window any
//! rule names.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use crate::chain::SatPerKw;
use crate::policy::{FeeMarket, FeeSample, Policy};

/// The store key of the persisted fee history.
pub(super) const FEE_HISTORY_KEY: &str = "fee_history";
/// The store key of the persisted gate states.
pub(super) const GATE_OPEN_KEY: &str = "gate_open";
/// The target of samples persisted before samples carried one (lnd's 6-block estimate).
const LEGACY_TARGET: u32 = 6;

/// The fee samples a daemon recorded in its store (what its fee gates read: the gated
/// targets, over the largest gate window), oldest first; empty when it recorded none.
pub async fn recorded(
    store: &crate::store::Store,
) -> Result<Vec<FeeSample>, crate::store::StoreError> {
    Ok(store
        .autoloop_setting(FEE_HISTORY_KEY)
        .await?
        .map(|text| decode_fee_history(&text).into())
        .unwrap_or_default())
}

/// The history as `unix:conf_target:sat_per_kw` triples separated by commas.
pub(super) fn encode_fee_history(h: &VecDeque<FeeSample>) -> String {
    h.iter()
        .map(|s| format!("{}:{}:{}", s.at.timestamp(), s.conf_target, s.rate.0))
        .collect::<Vec<_>>()
        .join(",")
}

/// The persisted history; malformed samples are skipped (it only feeds a percentile), and
/// older `unix:rate` pairs are read as 6-block samples.
pub(super) fn decode_fee_history(text: &str) -> VecDeque<FeeSample> {
    let mut out: Vec<FeeSample> = text
        .split(',')
        .filter_map(|item| {
            let parts: Vec<&str> = item.split(':').collect();
            let (at, target, rate) = match parts.as_slice() {
                [at, rate] => (*at, LEGACY_TARGET, *rate),
                [at, target, rate] => (*at, target.parse().ok()?, *rate),
                _ => return None,
            };
            Some(FeeSample {
                at: DateTime::from_timestamp(at.parse().ok()?, 0)?,
                conf_target: target,
                rate: SatPerKw(rate.parse().ok()?),
            })
        })
        .collect();
    out.sort_by_key(|s| s.at);
    out.into()
}

/// Each gated rule's open state as `name=1` / `name=0` separated by commas (rule names
/// cannot hold either character).
pub(super) fn encode_gates(g: &BTreeMap<String, bool>) -> String {
    g.iter()
        .map(|(k, v)| format!("{k}={}", u8::from(*v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The persisted gate states; malformed entries are skipped (that gate starts closed).
pub(super) fn decode_gates(text: &str) -> BTreeMap<String, bool> {
    text.split(',')
        .filter_map(|e| {
            let (k, v) = e.split_once('=')?;
            let open = match v {
                "1" => true,
                "0" => false,
                _ => return None,
            };
            (!k.is_empty()).then(|| (k.to_owned(), open))
        })
        .collect()
}

/// The confirmation targets whose estimates the policy's percentile gates compare (as
/// `FeeMarket::estimate_entry` picks them from `estimates`), and the largest window any of
/// them names (zero without a percentile gate: then nothing is kept).
pub fn gated_targets(policy: &Policy, estimates: &[(u32, SatPerKw)]) -> (BTreeSet<u32>, TimeDelta) {
    let market = FeeMarket {
        estimates: estimates.to_vec(),
        ..FeeMarket::default()
    };
    let mut targets = BTreeSet::new();
    let mut keep = TimeDelta::zero();
    for r in &policy.rules {
        let Some(gate) = r.settings.gate.filter(|g| g.percentile.is_some()) else {
            continue;
        };
        keep = keep.max(gate.window);
        if let Some((t, _)) = market.estimate_entry(r.settings.swap.conf_target) {
            targets.insert(t);
        }
    }
    (targets, keep)
}

/// Adds a sample of each gated target's current estimate when its last sample is at least
/// `every` old, and drops samples older than `keep` (and of targets no gate reads any more).
/// Returns whether the history changed.
pub fn record(
    history: &mut VecDeque<FeeSample>,
    estimates: &[(u32, SatPerKw)],
    targets: &BTreeSet<u32>,
    now: DateTime<Utc>,
    every: TimeDelta,
    keep: TimeDelta,
) -> bool {
    let before = history.len();
    let since = now - keep;
    history.retain(|s| s.at >= since && targets.contains(&s.conf_target));
    let mut changed = history.len() != before;
    for &(target, rate) in estimates.iter().filter(|(t, _)| targets.contains(t)) {
        let last = history
            .iter()
            .rev()
            .find(|s| s.conf_target == target)
            .map(|s| s.at);
        if last.is_none_or(|at| now - at >= every) {
            history.push_back(FeeSample {
                at: now,
                conf_target: target,
                rate,
            });
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    #[test]
    fn passes_every_minute_sample_by_time_and_the_window_bounds_the_history() {
        let mut h = VecDeque::new();
        let targets: BTreeSet<u32> = [100].into();
        let est = [(6, SatPerKw(5_000)), (100, SatPerKw(2_000))];
        let every = TimeDelta::minutes(10);
        let keep = TimeDelta::days(14);
        // Three days of passes, one a minute.
        for m in 0..(3 * 24 * 60) {
            record(&mut h, &est, &targets, t(m), every, keep);
        }
        assert_eq!(
            h.len(),
            3 * 24 * 6,
            "one sample per 10 minutes, not per pass"
        );
        assert!(
            h.iter().all(|s| s.conf_target == 100),
            "only what a gate reads"
        );
        // 14 days of them cover 14 days, however many passes ran.
        for m in (3 * 24 * 60)..(16 * 24 * 60) {
            if m % 10 == 0 {
                record(&mut h, &est, &targets, t(m), every, keep);
            }
        }
        let now = t(16 * 24 * 60 - 10);
        let oldest = h.front().unwrap().at;
        assert!(
            now - oldest <= keep && now - oldest >= keep - every,
            "{oldest}"
        );
        assert_eq!(h.len(), 14 * 24 * 6 + 1);
    }

    #[test]
    fn history_and_gates_round_trip_and_old_pairs_are_six_block_samples() {
        let h: VecDeque<FeeSample> = (0..5)
            .map(|i| FeeSample {
                at: t(i * 10),
                conf_target: if i % 2 == 0 { 100 } else { 6 },
                rate: SatPerKw(250 + u64::try_from(i).unwrap()),
            })
            .collect();
        assert_eq!(decode_fee_history(&encode_fee_history(&h)), h);
        assert!(decode_fee_history("").is_empty());
        let legacy = decode_fee_history("x:1,1700000000:300");
        assert_eq!(legacy.len(), 1);
        assert_eq!(legacy[0].conf_target, 6);
        let g: BTreeMap<String, bool> = [("a".to_owned(), true), ("b-1".to_owned(), false)].into();
        assert_eq!(decode_gates(&encode_gates(&g)), g);
        assert!(decode_gates("").is_empty());
    }
}
