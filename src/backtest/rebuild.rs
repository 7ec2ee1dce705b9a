//! A node's history rebuilt from what lnd keeps: today's channels and balances, and the
//! forwards, payments and invoice receipts of the window. Each channel's balance at the start
//! of the window is today's less everything that moved it since. Pure: records in, a history
//! and what the rebuild could not see out.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::input::{ChannelStart, Event, EventKind, History};
use crate::domain::{ChanId, Channel, ForwardingEvent, Sat, SettledHtlc};

/// What lnd tells of a node, read at `now`.
#[derive(Debug, Clone)]
pub struct NodeRecords {
    /// When the records were read: the window's end.
    pub now: DateTime<Utc>,
    /// The open channels, with today's balances.
    pub channels: Vec<Channel>,
    /// Forwards that settled in the window.
    pub forwards: Vec<ForwardingEvent>,
    /// The settled HTLCs of the node's own payments (any time; the rebuild keeps the window).
    pub payments: Vec<SettledHtlc>,
    /// The settled HTLCs paid to the node's invoices (any time).
    pub receipts: Vec<SettledHtlc>,
}

/// A rebuilt history and what it could not see.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// The history, from `start` to the records' `now`.
    pub history: History,
    /// Movements on channels that are not open today (closed in the window): their channel
    /// is left out; the open side of a forward through one is kept as a payment or receipt.
    pub on_closed_channels: u64,
    /// Channels whose rebuilt starting balance fell outside 0..=capacity and was clamped: the
    /// channel was opened in the window, or something lnd does not list moved it (a splice,
    /// a channel reestablished from a backup).
    pub clamped: Vec<ChanId>,
}

fn at_ns(ns: u64) -> DateTime<Utc> {
    let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = u32::try_from(ns % 1_000_000_000).unwrap_or(0);
    Utc.timestamp_opt(secs, nanos)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn at_secs(secs: u64) -> DateTime<Utc> {
    at_ns(secs.saturating_mul(1_000_000_000))
}

/// Rebuilds the history of the window `start ..= records.now`.
pub fn rebuild(records: &NodeRecords, start: DateTime<Utc>) -> Rebuilt {
    let open: BTreeMap<ChanId, &Channel> =
        records.channels.iter().map(|c| (c.chan_id, c)).collect();
    // A record stamped after `now` (lnd's clock ahead of ours) happened before the read: it
    // counts, at `now`.
    let in_window = |t: DateTime<Utc>| t >= start;
    let mut events = Vec::new();
    let mut on_closed = 0u64;
    // What moved each open channel's local balance in the window, msat (signed).
    let mut moved: BTreeMap<ChanId, i128> = BTreeMap::new();
    let push = |events: &mut Vec<Event>, at, kind| events.push(Event { at, kind });

    for f in &records.forwards {
        let at = at_ns(f.timestamp_ns).min(records.now);
        if !in_window(at) {
            continue;
        }
        let (inn, out) = (
            open.contains_key(&f.chan_in),
            open.contains_key(&f.chan_out),
        );
        if inn {
            *moved.entry(f.chan_in).or_default() += i128::from(f.amount_in.0);
        }
        if out {
            *moved.entry(f.chan_out).or_default() -= i128::from(f.amount_out.0);
        }
        let amount = Sat(f.amount_out.0 / 1000);
        let arrived = Sat(f.amount_in.0 / 1000);
        let kind = match (inn, out) {
            (true, true) => EventKind::Forward {
                chan_in: f.chan_in,
                chan_out: f.chan_out,
                amount,
                fee: arrived.saturating_sub(amount),
            },
            (true, false) => {
                on_closed += 1;
                EventKind::Receipt {
                    chan: f.chan_in,
                    amount: arrived,
                }
            }
            (false, true) => {
                on_closed += 1;
                EventKind::Payment {
                    chan: f.chan_out,
                    amount,
                }
            }
            (false, false) => {
                on_closed += 1;
                continue;
            }
        };
        push(&mut events, at, kind);
    }
    for (list, leaves) in [(&records.payments, true), (&records.receipts, false)] {
        for h in list {
            let at = at_secs(h.at_unix).min(records.now);
            if !in_window(at) {
                continue;
            }
            if !open.contains_key(&h.chan) {
                on_closed += 1;
                continue;
            }
            let amount = Sat(h.amount.0 / 1000);
            let entry = moved.entry(h.chan).or_default();
            let kind = if leaves {
                *entry -= i128::from(h.amount.0);
                EventKind::Payment {
                    chan: h.chan,
                    amount,
                }
            } else {
                *entry += i128::from(h.amount.0);
                EventKind::Receipt {
                    chan: h.chan,
                    amount,
                }
            };
            push(&mut events, at, kind);
        }
    }
    events.sort_by_key(|e| e.at);

    let mut clamped = Vec::new();
    let channels = records
        .channels
        .iter()
        .map(|c| {
            let now_msat = i128::from(c.local_balance.0) * 1000;
            let start_msat = now_msat - moved.get(&c.chan_id).copied().unwrap_or(0);
            let cap_msat = i128::from(c.capacity.0) * 1000;
            if start_msat < 0 || start_msat > cap_msat {
                clamped.push(c.chan_id);
            }
            let local = start_msat.clamp(0, cap_msat) / 1000;
            ChannelStart {
                id: c.chan_id,
                peer: c.peer.to_string(),
                alias: c.peer_alias.clone().unwrap_or_default(),
                capacity: c.capacity,
                local: Sat(u64::try_from(local).unwrap_or(0)),
            }
        })
        .collect();
    Rebuilt {
        history: History {
            start,
            end: records.now,
            channels,
            events,
        },
        on_closed_channels: on_closed,
        clamped,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::{Msat, NodeId};

    const PEER: &str = "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619";

    fn chan(n: u32, capacity: u64, local: u64) -> Channel {
        Channel {
            chan_id: ChanId::from_parts(800_000 + n, 1, 0),
            channel_point: String::new(),
            peer: PEER.parse::<NodeId>().unwrap(),
            peer_alias: Some(format!("peer{n}")),
            capacity: Sat(capacity),
            local_balance: Sat(local),
            remote_balance: Sat(capacity - local),
            local_reserve: Sat(0),
            remote_reserve: Sat(0),
            commit_fee: Sat(0),
            active: true,
            private: false,
            initiator: true,
            pending_htlc_count: 0,
            pending_htlc_amount: Sat(0),
            total_sent: Sat(0),
            total_received: Sat(0),
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600 + secs, 0).unwrap()
    }

    fn ns(secs: i64) -> u64 {
        u64::try_from(t(secs).timestamp()).unwrap() * 1_000_000_000
    }

    #[test]
    fn start_balances_are_today_less_what_moved_them_and_replaying_gives_today_back() {
        let (a, b) = (chan(1, 1_000_000, 600_000), chan(2, 1_000_000, 300_000));
        let records = NodeRecords {
            now: t(3600),
            channels: vec![a.clone(), b.clone()],
            forwards: vec![ForwardingEvent {
                timestamp_ns: ns(100),
                chan_in: a.chan_id,
                chan_out: b.chan_id,
                amount_in: Msat(100_050_000),
                amount_out: Msat(100_000_000),
                fee: Msat(50_000),
            }],
            payments: vec![SettledHtlc {
                at_unix: u64::try_from(t(200).timestamp()).unwrap(),
                chan: a.chan_id,
                amount: Msat(20_000_000),
            }],
            receipts: vec![
                SettledHtlc {
                    at_unix: u64::try_from(t(300).timestamp()).unwrap(),
                    chan: b.chan_id,
                    amount: Msat(5_000_000),
                },
                // Before the window: already in the starting balance.
                SettledHtlc {
                    at_unix: u64::try_from(t(-10).timestamp()).unwrap(),
                    chan: b.chan_id,
                    amount: Msat(7_000_000),
                },
            ],
        };
        let r = rebuild(&records, t(0));
        assert!(r.clamped.is_empty());
        assert_eq!(r.on_closed_channels, 0);
        let start: Vec<u64> = r.history.channels.iter().map(|c| c.local.0).collect();
        // a: 600k - 100,050 (forward in) + 20k (payment out) = 519,950
        // b: 300k + 100k (forward out) - 5k (receipt) = 395k
        assert_eq!(start, [519_950, 395_000]);
        assert_eq!(r.history.events.len(), 3);
        // Replaying the events from the start gives today's balances back.
        let mut local = start.clone();
        for e in &r.history.events {
            match e.kind {
                EventKind::Forward {
                    chan_in,
                    chan_out,
                    amount,
                    fee,
                } => {
                    assert_eq!((chan_in, chan_out), (a.chan_id, b.chan_id));
                    local[0] += amount.0 + fee.0;
                    local[1] -= amount.0;
                }
                EventKind::Payment { amount, .. } => local[0] -= amount.0,
                EventKind::Receipt { amount, .. } => local[1] += amount.0,
                EventKind::Balance { .. } => unreachable!(),
            }
        }
        assert_eq!(local, [600_000, 300_000]);
    }

    #[test]
    fn a_closed_channel_is_left_out_and_a_balance_it_cannot_explain_is_clamped() {
        let a = chan(1, 1_000_000, 10_000);
        let closed = ChanId::from_parts(799_000, 1, 0);
        let records = NodeRecords {
            now: t(3600),
            channels: vec![a.clone()],
            // 200k arrived on `a` from a channel closed since: before it, `a` held less
            // than nothing, so it must have been opened (or refilled) in the window.
            forwards: vec![ForwardingEvent {
                timestamp_ns: ns(100),
                chan_in: a.chan_id,
                chan_out: closed,
                amount_in: Msat(200_000_000),
                amount_out: Msat(199_900_000),
                fee: Msat(100_000),
            }],
            payments: vec![],
            receipts: vec![],
        };
        let r = rebuild(&records, t(0));
        assert_eq!(r.on_closed_channels, 1);
        assert_eq!(r.clamped, vec![a.chan_id]);
        assert_eq!(r.history.channels[0].local, Sat(0));
        assert!(matches!(
            r.history.events[0].kind,
            EventKind::Receipt {
                amount: Sat(200_000),
                ..
            }
        ));
    }
}
