//! The inputs of a backtest and their file formats: a trace of channel balances and routed
//! payments (JSON Lines) and a fee-rate history (CSV). Parsing is pure (text in, data or a
//! located error out); `docs/backtest.md` documents both formats.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Sat};

/// A channel at the start of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStart {
    /// Short channel id.
    pub id: ChanId,
    /// Peer pubkey (hex) or any stable label.
    pub peer: String,
    /// Peer alias.
    pub alias: String,
    /// Capacity.
    pub capacity: Sat,
    /// Local balance at the start of the window.
    pub local: Sat,
}

/// Something that happened to the node's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A payment routed in through `chan_in` and out through `chan_out`; the node kept `fee`.
    Forward {
        /// Where it came in.
        chan_in: ChanId,
        /// Where it left.
        chan_out: ChanId,
        /// The amount that left.
        amount: Sat,
        /// The routing fee earned.
        fee: Sat,
    },
    /// The node's own payment left through `chan`: `amount` (with its routing fees) leaves the
    /// channel's local balance.
    Payment {
        /// The channel it left through.
        chan: ChanId,
        /// What left.
        amount: Sat,
    },
    /// A payment to one of the node's invoices arrived on `chan`.
    Receipt {
        /// The channel it arrived on.
        chan: ChanId,
        /// What arrived.
        amount: Sat,
    },
    /// The channel's local balance was observed at this value (payments, invoices, anything a
    /// forward does not explain).
    Balance {
        /// The channel.
        chan: ChanId,
        /// Its local balance.
        local: Sat,
    },
}

/// One event, timestamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

/// A node's history over a window: its channels at the start and what happened after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Start of the window.
    pub start: DateTime<Utc>,
    /// End of the window.
    pub end: DateTime<Utc>,
    /// Channels at the start.
    pub channels: Vec<ChannelStart>,
    /// Events in time order.
    pub events: Vec<Event>,
}

/// A malformed input file: where, what is wrong, and the form expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}; expected {expected}")]
pub struct InputError {
    /// The file.
    pub file: String,
    /// The 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub problem: String,
    /// The form expected there.
    pub expected: String,
}

/// The expected form of a trace line, for error messages.
pub const TRACE_FORM: &str = "one JSON object per line: {\"type\":\"window\",\"start\":RFC3339,\"end\":RFC3339} first, then {\"type\":\"channel\",\"id\":\"800000x1x0\",\"peer\":..,\"alias\":..,\"capacity\":sat,\"local\":sat}, {\"type\":\"forward\",\"at\":RFC3339,\"in\":chan,\"out\":chan,\"amount\":sat,\"fee\":sat}, {\"type\":\"payment\"|\"receipt\",\"at\":RFC3339,\"id\":chan,\"amount\":sat} or {\"type\":\"balance\",\"at\":RFC3339,\"id\":chan,\"local\":sat} (docs/backtest.md)";

/// The expected form of a fee-file line.
pub const FEES_FORM: &str = "`timestamp,conf_target,sat_per_vbyte` (RFC 3339 or Unix seconds, 1..=1008 blocks, a positive number), an optional header line `timestamp,conf_target,sat_per_vbyte` (docs/backtest.md)";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum TraceLine {
    Window {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Channel {
        id: String,
        #[serde(default)]
        peer: String,
        #[serde(default)]
        alias: String,
        capacity: u64,
        local: u64,
    },
    Forward {
        at: DateTime<Utc>,
        #[serde(rename = "in")]
        chan_in: String,
        #[serde(rename = "out")]
        chan_out: String,
        amount: u64,
        #[serde(default)]
        fee: u64,
    },
    Payment {
        at: DateTime<Utc>,
        id: String,
        amount: u64,
    },
    Receipt {
        at: DateTime<Utc>,
        id: String,
        amount: u64,
    },
    Balance {
        at: DateTime<Utc>,
        id: String,
        local: u64,
    },
}

/// Parses a trace (`file` names it in errors).
pub fn parse_trace(file: &str, text: &str) -> Result<History, InputError> {
    let err = |line: usize, problem: String| InputError {
        file: file.to_owned(),
        line,
        problem,
        expected: TRACE_FORM.to_owned(),
    };
    let mut window = None;
    let mut channels: Vec<ChannelStart> = Vec::new();
    let mut known = BTreeMap::new();
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let line: TraceLine =
            serde_json::from_str(raw).map_err(|e| err(n, format!("not a trace line: {e}")))?;
        let chan = |s: &str| -> Result<ChanId, InputError> {
            let id: ChanId = s
                .parse()
                .map_err(|e| err(n, format!("bad channel id `{s}`: {e}")))?;
            if known.contains_key(&id) {
                Ok(id)
            } else {
                Err(err(
                    n,
                    format!("channel {s} is not declared by a `channel` line before it"),
                ))
            }
        };
        let in_window = |at: DateTime<Utc>| -> Result<(), InputError> {
            match window {
                Some((s, e)) if at >= s && at <= e => Ok(()),
                Some((s, e)) => Err(err(
                    n,
                    format!("event at {at} is outside the trace's window {s} .. {e}"),
                )),
                None => Err(err(n, "an event before the `window` line".to_owned())),
            }
        };
        match line {
            TraceLine::Window { start, end } => {
                if window.is_some() {
                    return Err(err(n, "a second `window` line".to_owned()));
                }
                if end <= start {
                    return Err(err(
                        n,
                        format!("the window ends ({end}) before it starts ({start})"),
                    ));
                }
                window = Some((start, end));
            }
            TraceLine::Channel {
                id,
                peer,
                alias,
                capacity,
                local,
            } => {
                if window.is_none() {
                    return Err(err(n, "a channel before the `window` line".to_owned()));
                }
                let cid: ChanId = id
                    .parse()
                    .map_err(|e| err(n, format!("bad channel id `{id}`: {e}")))?;
                if known.insert(cid, ()).is_some() {
                    return Err(err(n, format!("channel {id} declared twice")));
                }
                if capacity == 0 || local > capacity {
                    return Err(err(
                        n,
                        format!(
                            "channel {id}: local {local} must be at most a non-zero capacity {capacity}"
                        ),
                    ));
                }
                channels.push(ChannelStart {
                    id: cid,
                    peer,
                    alias,
                    capacity: Sat(capacity),
                    local: Sat(local),
                });
            }
            TraceLine::Forward {
                at,
                chan_in,
                chan_out,
                amount,
                fee,
            } => {
                in_window(at)?;
                let (ci, co) = (chan(&chan_in)?, chan(&chan_out)?);
                events.push(Event {
                    at,
                    kind: EventKind::Forward {
                        chan_in: ci,
                        chan_out: co,
                        amount: Sat(amount),
                        fee: Sat(fee),
                    },
                });
            }
            TraceLine::Payment { at, id, amount } => {
                in_window(at)?;
                let c = chan(&id)?;
                events.push(Event {
                    at,
                    kind: EventKind::Payment {
                        chan: c,
                        amount: Sat(amount),
                    },
                });
            }
            TraceLine::Receipt { at, id, amount } => {
                in_window(at)?;
                let c = chan(&id)?;
                events.push(Event {
                    at,
                    kind: EventKind::Receipt {
                        chan: c,
                        amount: Sat(amount),
                    },
                });
            }
            TraceLine::Balance { at, id, local } => {
                in_window(at)?;
                let c = chan(&id)?;
                events.push(Event {
                    at,
                    kind: EventKind::Balance {
                        chan: c,
                        local: Sat(local),
                    },
                });
            }
        }
    }
    let Some((start, end)) = window else {
        return Err(err(0, "no `window` line".to_owned()));
    };
    if channels.is_empty() {
        return Err(err(0, "no `channel` line".to_owned()));
    }
    events.sort_by_key(|e| e.at);
    Ok(History {
        start,
        end,
        channels,
        events,
    })
}

/// Writes a history as a trace; [`parse_trace`] reads it back unchanged.
pub fn write_trace(h: &History) -> String {
    let mut out = String::new();
    let mut line = |l: &TraceLine| {
        if let Ok(s) = serde_json::to_string(l) {
            let _ = writeln!(out, "{s}");
        }
    };
    line(&TraceLine::Window {
        start: h.start,
        end: h.end,
    });
    for c in &h.channels {
        line(&TraceLine::Channel {
            id: c.id.to_string(),
            peer: c.peer.clone(),
            alias: c.alias.clone(),
            capacity: c.capacity.0,
            local: c.local.0,
        });
    }
    for e in &h.events {
        line(&match e.kind {
            EventKind::Forward {
                chan_in,
                chan_out,
                amount,
                fee,
            } => TraceLine::Forward {
                at: e.at,
                chan_in: chan_in.to_string(),
                chan_out: chan_out.to_string(),
                amount: amount.0,
                fee: fee.0,
            },
            EventKind::Payment { chan, amount } => TraceLine::Payment {
                at: e.at,
                id: chan.to_string(),
                amount: amount.0,
            },
            EventKind::Receipt { chan, amount } => TraceLine::Receipt {
                at: e.at,
                id: chan.to_string(),
                amount: amount.0,
            },
            EventKind::Balance { chan, local } => TraceLine::Balance {
                at: e.at,
                id: chan.to_string(),
                local: local.0,
            },
        });
    }
    out
}

/// Fee estimates over time, per confirmation target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeSeries {
    /// Per target, samples in time order.
    pub by_target: BTreeMap<u32, Vec<(DateTime<Utc>, SatPerKw)>>,
}

impl FeeSeries {
    /// The estimates in force at `t` (the latest sample at or before it, per target).
    pub fn at(&self, t: DateTime<Utc>) -> Vec<(u32, SatPerKw)> {
        self.by_target
            .iter()
            .filter_map(|(&target, s)| {
                let i = s.partition_point(|(at, _)| *at <= t);
                i.checked_sub(1).map(|i| (target, s[i].1))
            })
            .collect()
    }

    /// The first and last sample times.
    pub fn span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let first = self
            .by_target
            .values()
            .filter_map(|s| s.first())
            .map(|x| x.0)
            .min()?;
        let last = self
            .by_target
            .values()
            .filter_map(|s| s.last())
            .map(|x| x.0)
            .max()?;
        Some((first, last))
    }
}

/// Parses a fee-rate history (CSV).
pub fn parse_fees(file: &str, text: &str) -> Result<FeeSeries, InputError> {
    let err = |line: usize, problem: String| InputError {
        file: file.to_owned(),
        line,
        problem,
        expected: FEES_FORM.to_owned(),
    };
    let mut series = FeeSeries::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') || (n == 1 && raw.starts_with("timestamp")) {
            continue;
        }
        let cols: Vec<&str> = raw.split(',').map(str::trim).collect();
        let [ts, target, rate] = cols.as_slice() else {
            return Err(err(n, format!("{} columns, not 3", cols.len())));
        };
        let at = parse_time(ts).ok_or_else(|| err(n, format!("bad timestamp `{ts}`")))?;
        let target: u32 = target
            .parse()
            .ok()
            .filter(|t| (1..=1008).contains(t))
            .ok_or_else(|| err(n, format!("bad confirmation target `{target}`")))?;
        let rate: f64 = rate
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .ok_or_else(|| err(n, format!("bad fee rate `{rate}`")))?;
        series
            .by_target
            .entry(target)
            .or_default()
            .push((at, SatPerKw((rate * 250.0).round() as u64)));
    }
    if series.by_target.is_empty() {
        return Err(err(0, "no fee samples".to_owned()));
    }
    for s in series.by_target.values_mut() {
        s.sort_by_key(|x| x.0);
    }
    Ok(series)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    s.parse::<i64>()
        .ok()
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
}

/// Why an input does not cover the window asked for.
pub fn coverage(
    what: &str,
    have: (DateTime<Utc>, DateTime<Utc>),
    want: (DateTime<Utc>, DateTime<Utc>),
) -> Result<(), String> {
    let mut missing = Vec::new();
    if have.0 > want.0 {
        missing.push(format!("{} .. {}", want.0, have.0));
    }
    if have.1 < want.1 {
        missing.push(format!("{} .. {}", have.1, want.1));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what} covers {} .. {} but the window is {} .. {}: missing {}",
            have.0,
            have.1,
            want.0,
            want.1,
            missing.join(" and ")
        ))
    }
}
