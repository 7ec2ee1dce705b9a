//! `sluice suggest`, `budget`, `journal` and `autoloop on|off|dry-run`: the autoloop's view
//! from the command line. Text is a table per answer; `--json` prints the same values.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::ValueEnum;
use serde::Serialize;

use super::CliError;
use super::client::Target;
use super::output::Format;
use crate::proto::sluice as pb;

/// The mode `sluice autoloop` sets.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeArg {
    /// Stop passes.
    Off,
    /// Decide and journal, dispatch nothing.
    DryRun,
    /// Dispatch swaps.
    On,
}

impl ModeArg {
    fn as_str(self) -> &'static str {
        match self {
            ModeArg::Off => "off",
            ModeArg::DryRun => "dry-run",
            ModeArg::On => "on",
        }
    }
}

/// One decision, as printed.
#[derive(Debug, Serialize)]
pub struct DecisionOut {
    /// The target.
    pub target: String,
    /// The deciding rule.
    pub rule: Option<String>,
    /// The reason's stable name.
    pub reason: String,
    /// The reason in words.
    pub detail: String,
    /// Inbound share in percent.
    pub inbound_percent: f64,
    /// Proposed amount.
    pub amount_sat: Option<u64>,
    /// The proposed swap's direction: `out` or `in`.
    pub direction: Option<String>,
    /// Dispatched swap.
    pub swap_hash: Option<String>,
}

fn decision_out(d: pb::AutoloopDecision) -> DecisionOut {
    DecisionOut {
        target: d.target,
        rule: (!d.rule.is_empty()).then_some(d.rule),
        reason: d.reason,
        detail: d.detail,
        // Display only: the ppm value is exact on the wire.
        #[allow(clippy::cast_precision_loss)]
        inbound_percent: d.inbound_ppm as f64 / 10_000.0,
        amount_sat: (d.amount_sat != 0).then_some(d.amount_sat),
        direction: (!d.direction.is_empty()).then_some(d.direction),
        swap_hash: (!d.swap_hash.is_empty()).then_some(d.swap_hash),
    }
}

fn decision_rows(ds: &[DecisionOut], prefix: &[String]) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        [
            "when", "target", "rule", "reason", "inbound", "amount", "detail",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    ];
    for (i, d) in ds.iter().enumerate() {
        rows.push(vec![
            prefix.get(i).cloned().unwrap_or_default(),
            d.target.clone(),
            d.rule.clone().unwrap_or_else(|| "-".to_owned()),
            d.reason.clone(),
            format!("{:.1}%", d.inbound_percent),
            match (d.amount_sat, &d.direction) {
                (None, _) => "-".to_owned(),
                (Some(a), None) => a.to_string(),
                (Some(a), Some(dir)) => format!("{dir} {a}"),
            },
            match &d.swap_hash {
                // The detail of a dispatch already names its swap.
                Some(h) if !d.detail.contains(h.as_str()) => format!("{} (swap {h})", d.detail),
                _ => d.detail.clone(),
            },
        ]);
    }
    if prefix.is_empty() {
        for r in &mut rows {
            r.remove(0);
        }
    }
    grid(&rows)
}

/// Left-aligned columns, the last one unpadded.
fn grid(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == cols {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            line.trim_end().to_owned() + "\n"
        })
        .collect()
}

fn json<T: Serialize>(v: &T) -> Result<String, CliError> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// `suggest`'s answer.
#[derive(Debug, Serialize)]
pub struct Suggestion {
    /// The daemon's autoloop mode.
    pub mode: String,
    /// Every target's decision.
    pub decisions: Vec<DecisionOut>,
    /// The routing fee expected for swap payments, ppm of the amount.
    pub routing_ppm: u64,
    /// Where the routing fee figure comes from.
    pub routing_source: String,
}

/// `suggest`: what a pass would do now, with reasons.
pub async fn suggest(target: &Target, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let r = client
        .suggest(pb::SuggestRequest {})
        .await
        .map_err(|s| target.call_error(s, "ask for suggestions"))?
        .into_inner();
    let s = Suggestion {
        mode: r.mode,
        decisions: r.decisions.into_iter().map(decision_out).collect(),
        routing_ppm: r.routing_ppm,
        routing_source: r.routing_source,
    };
    match format {
        Format::Json => json(&s),
        Format::Human => Ok(format!(
            "autoloop: {}\nexpected routing fee: {} ({})\n{}",
            s.mode,
            crate::policy::values::ppm_percent(crate::domain::Ppm(s.routing_ppm)),
            s.routing_source,
            decision_rows(&s.decisions, &[])
        )),
    }
}

/// One budget line, as printed.
#[derive(Debug, Serialize)]
pub struct BudgetOut {
    /// The budget.
    pub budget: String,
    /// `limit`, `per_rule.<rule>` or `hard_cap`.
    pub scope: String,
    /// The period of this line's limit (`day`, `month`, `rolling 7d`, ...): a hard cap has
    /// its own.
    pub period: String,
    /// Window start (RFC 3339).
    pub window_start: String,
    /// Window end (RFC 3339).
    pub window_end: String,
    /// The limit.
    pub limit_sat: u64,
    /// Fees spent in the window.
    pub spent_sat: u64,
    /// Reserved by swaps in flight, expected.
    pub reserved_expected_sat: u64,
    /// Reserved by swaps in flight, worst case.
    pub reserved_worst_sat: u64,
    /// What a new swap may still reserve.
    pub available_sat: u64,
}

fn rfc3339(t: i64) -> String {
    DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
}

/// `budget`: spent, reserved and available per budget, period and rule.
pub async fn budget(target: &Target, format: Format) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let r = client
        .budget(pb::BudgetRequest {})
        .await
        .map_err(|s| target.call_error(s, "read the budget"))?
        .into_inner();
    let lines: Vec<BudgetOut> = r
        .lines
        .into_iter()
        .map(|l| BudgetOut {
            budget: l.budget,
            scope: l.scope,
            period: l.period,
            window_start: rfc3339(l.window_start_unix),
            window_end: rfc3339(l.window_end_unix),
            limit_sat: l.limit_sat,
            spent_sat: l.spent_sat,
            reserved_expected_sat: l.reserved_expected_sat,
            reserved_worst_sat: l.reserved_worst_sat,
            available_sat: l.available_sat,
        })
        .collect();
    match format {
        Format::Json => json(&serde_json::json!({ "lines": lines })),
        Format::Human if lines.is_empty() => {
            Ok("no budget configured: fees are not budgeted\n".to_owned())
        }
        Format::Human => {
            let mut rows = vec![
                [
                    "budget",
                    "scope",
                    "period",
                    "limit",
                    "spent",
                    "reserved (exp/worst)",
                    "available",
                    "window",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
            ];
            for l in &lines {
                rows.push(vec![
                    l.budget.clone(),
                    l.scope.clone(),
                    l.period.clone(),
                    l.limit_sat.to_string(),
                    l.spent_sat.to_string(),
                    format!("{}/{}", l.reserved_expected_sat, l.reserved_worst_sat),
                    l.available_sat.to_string(),
                    format!("{} .. {}", l.window_start, l.window_end),
                ]);
            }
            Ok(grid(&rows))
        }
    }
}

/// Parses `--since`: RFC 3339, a date (`2026-03-01`, UTC midnight) or an age (`90m`, `6h`,
/// `2d`, `1w`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    let bad = || {
        CliError::Input(format!(
            "--since {s:?}: use an RFC 3339 time (2026-03-01T12:00:00Z), a date (2026-03-01) \
             or an age (90m, 6h, 2d, 1w)"
        ))
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        "w" => TimeDelta::try_weeks(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(age).ok_or_else(bad)
}

/// `journal`'s answer.
#[derive(Debug, Serialize)]
pub struct JournalOut {
    /// Entries, newest first.
    pub entries: Vec<JournalEntryOut>,
}

/// One journalled decision.
#[derive(Debug, Serialize)]
pub struct JournalEntryOut {
    /// The pass.
    pub pass_id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// The decision.
    #[serde(flatten)]
    pub decision: DecisionOut,
}

/// `journal [--target T] [--since D] [--limit N]`.
pub async fn journal(
    target: &Target,
    format: Format,
    q: &JournalQuery<'_>,
) -> Result<String, CliError> {
    let since_unix = q
        .since
        .map(|s| parse_since(s, Utc::now()))
        .transpose()?
        .map_or(0, |t| t.timestamp());
    if let Some(r) = q.reason
        && !crate::policy::Reason::NAMES.contains(&r)
    {
        return Err(CliError::Input(format!(
            "--reason: `{r}` is not a reason; use one of {}",
            crate::policy::Reason::NAMES.join(", ")
        )));
    }
    let mut client = target.connect().await?;
    let r = client
        .journal(pb::JournalRequest {
            target: q.target.unwrap_or_default().to_owned(),
            since_unix,
            limit: q.limit,
            reason: q.reason.unwrap_or_default().to_owned(),
            passes: q.passes,
        })
        .await
        .map_err(|s| target.call_error(s, "read the journal"))?
        .into_inner();
    if q.passes {
        let passes: Vec<PassOut> = r
            .passes
            .into_iter()
            .map(|p| PassOut {
                pass_id: p.pass_id,
                at: rfc3339(p.at_unix),
                mode: p.mode,
                targets: p.targets,
                counts: p.counts.into_iter().collect(),
            })
            .collect();
        return match format {
            Format::Json => json(&serde_json::json!({ "passes": passes })),
            Format::Human => {
                let mut rows = vec![vec![
                    "pass".to_owned(),
                    "at".to_owned(),
                    "mode".to_owned(),
                    "targets".to_owned(),
                    "reasons".to_owned(),
                ]];
                for p in &passes {
                    rows.push(vec![
                        format!("#{}", p.pass_id),
                        p.at.clone(),
                        p.mode.clone(),
                        p.targets.to_string(),
                        p.counts
                            .iter()
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]);
                }
                Ok(grid(&rows))
            }
        };
    }
    let out = JournalOut {
        entries: r
            .entries
            .into_iter()
            .map(|e| JournalEntryOut {
                pass_id: e.pass_id,
                at: rfc3339(e.at_unix),
                decision: decision_out(e.decision.unwrap_or_default()),
            })
            .collect(),
    };
    match format {
        Format::Json => json(&out),
        Format::Human if out.entries.is_empty() => Ok("no journalled decisions match\n".to_owned()),
        Format::Human => {
            let when: Vec<String> = out
                .entries
                .iter()
                .map(|e| format!("#{} {}", e.pass_id, e.at))
                .collect();
            let ds: Vec<DecisionOut> = out.entries.into_iter().map(|e| e.decision).collect();
            Ok(decision_rows(&ds, &when))
        }
    }
}

/// What `sluice journal` asks for.
#[derive(Debug, Clone, Default)]
pub struct JournalQuery<'a> {
    /// Only this target.
    pub target: Option<&'a str>,
    /// Only since this time (`--since`).
    pub since: Option<&'a str>,
    /// Only this reason.
    pub reason: Option<&'a str>,
    /// Pass summaries instead of decisions.
    pub passes: bool,
    /// At most this many.
    pub limit: u32,
}

/// One pass summary, as printed.
#[derive(Debug, Serialize)]
pub struct PassOut {
    /// The pass.
    pub pass_id: i64,
    /// When it ran (RFC 3339).
    pub at: String,
    /// The mode it ran in.
    pub mode: String,
    /// Targets decided.
    pub targets: u64,
    /// Targets per reason.
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// `autoloop`'s answer.
#[derive(Debug, Serialize)]
pub struct ModeOut {
    /// The mode now in force.
    pub mode: String,
}

/// `autoloop [on|off|dry-run]`: sets the mode, or shows it without an argument.
pub async fn mode(
    target: &Target,
    format: Format,
    set: Option<ModeArg>,
) -> Result<String, CliError> {
    let mut client = target.connect().await?;
    let r = match set {
        Some(m) => client
            .set_autoloop_mode(pb::SetAutoloopModeRequest {
                mode: m.as_str().to_owned(),
            })
            .await
            .map_err(|s| target.call_error(s, "set the autoloop mode"))?,
        None => client
            .get_autoloop_mode(pb::GetAutoloopModeRequest {})
            .await
            .map_err(|s| target.call_error(s, "read the autoloop mode"))?,
    }
    .into_inner();
    let out = ModeOut { mode: r.mode };
    match format {
        Format::Json => json(&out),
        Format::Human => Ok(format!("autoloop: {}\n", out.mode)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_dates_and_ages_and_names_the_flag_otherwise() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_since("6h", now).unwrap(), now - TimeDelta::hours(6));
        assert_eq!(parse_since("2d", now).unwrap(), now - TimeDelta::days(2));
        assert_eq!(
            parse_since("2026-03-01", now).unwrap().to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-03-01T10:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-03-01T10:00:00+00:00"
        );
        let e = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(e.contains("--since"), "{e}");
    }

    #[test]
    fn decision_table_aligns_columns() {
        let d = decision_out(pb::AutoloopDecision {
            target: "800000x1x0".into(),
            rule: "routing".into(),
            reason: "swap".into(),
            detail: "below band".into(),
            inbound_ppm: 240_000,
            amount_sat: 1_300_000,
            swap_hash: "ab".into(),
            channels: vec![],
            direction: "in".into(),
        });
        let text = decision_rows(&[d], &[]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("24.0%") && lines[1].contains("in 1300000"));
        assert_eq!(lines[0].find("reason"), lines[1].find("swap"));
        assert!(lines[1].contains("(swap ab)"));
        // A dispatch's detail names its swap once.
        let d = decision_out(pb::AutoloopDecision {
            target: "800000x1x0".into(),
            reason: "swap".into(),
            detail: "below band; dispatched swap abcd".into(),
            swap_hash: "abcd".into(),
            ..pb::AutoloopDecision::default()
        });
        let text = decision_rows(&[d], &[]);
        assert_eq!(text.matches("abcd").count(), 1, "{text}");
    }
}
