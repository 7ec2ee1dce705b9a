//! The seeded models a backtest uses when it is not given the real thing: a synthetic node
//! whose routed traffic is the simnet's traffic model, a fee market with daily and weekly
//! cycles and spikes, and the swap server's terms. Same seed, same history.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::input::{ChannelStart, Event, EventKind, FeeSeries, History};
use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Ppm, Sat};
use crate::loopserver::terms::Terms;
use crate::simnet::world::traffic::{SizeDistribution, Traffic, TrafficConfig};

/// The synthetic node's routing fee on forwarded amounts (0.05 %).
pub const SYNTHETIC_FORWARD_PPM: Ppm = Ppm(500);
/// Payments per hour per channel of the synthetic node.
pub const SYNTHETIC_PAYMENTS_PER_CHANNEL_HOUR: f64 = 0.5;
/// Step of the synthetic traffic: payments are timestamped to the minute.
const SYNTHETIC_STEP: TimeDelta = TimeDelta::minutes(1);

/// A synthetic routing node of `channels` channels over `days` days ending at `end`.
///
/// Capacities are drawn from 1, 2, 5 and 10 M sat, the starting local balance uniformly in
/// 20–80 % of it. Each channel has an outward bias drawn uniformly in 0.3–0.7 (the simnet's
/// `TrafficConfig::outward_bias`): channels below 0.5 fill up with local balance (inbound
/// runs out, what a Loop Out fixes), those above drain. Payments arrive as the simnet's
/// Poisson process at [`SYNTHETIC_PAYMENTS_PER_CHANNEL_HOUR`] per channel, sizes log-uniform
/// in 1,000–300,000 sat, and the node earns [`SYNTHETIC_FORWARD_PPM`] on each.
pub fn synthetic(channels: usize, days: u32, seed: u64, end: DateTime<Utc>) -> History {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0000_ba57_7e57);
    let start = end - TimeDelta::days(i64::from(days));
    let caps = [1_000_000u64, 2_000_000, 5_000_000, 10_000_000];
    let mut starts = Vec::with_capacity(channels);
    let mut bias = HashMap::new();
    for i in 0..channels {
        let id = ChanId::from_parts(800_000 + (i / 1000) as u32, (i % 1000) as u32, 0);
        let capacity = caps[rng.gen_range(0..caps.len())];
        let local = capacity * rng.gen_range(20..=80) / 100;
        bias.insert(id, rng.gen_range(0.3..0.7));
        starts.push(ChannelStart {
            id,
            peer: format!("peer{i:05}"),
            alias: format!("synthetic-{i}"),
            capacity: Sat(capacity),
            local: Sat(local),
        });
    }
    let mut traffic = Traffic::new(TrafficConfig {
        seed,
        node: "sluice".to_owned(),
        payments_per_hour: SYNTHETIC_PAYMENTS_PER_CHANNEL_HOUR * channels as f64,
        size: SizeDistribution::LogUniform {
            min: Sat(1_000),
            max: Sat(300_000),
        },
        outward_bias: bias,
        default_outward_bias: 0.5,
    });
    let ids: Vec<ChanId> = starts.iter().map(|c| c.id).collect();
    let mut events = Vec::new();
    let mut t = start;
    let step = Duration::from_secs(SYNTHETIC_STEP.num_seconds().unsigned_abs());
    while t < end {
        t += SYNTHETIC_STEP;
        for r in traffic.draws(step, &ids) {
            events.push(Event {
                at: t,
                kind: EventKind::Forward {
                    chan_in: ids[r.inbound],
                    chan_out: ids[r.outbound],
                    amount: r.amount,
                    fee: r.amount.mul_ppm(SYNTHETIC_FORWARD_PPM),
                },
            });
        }
    }
    History {
        start,
        end,
        channels: starts,
        events,
    }
}

/// The confirmation targets of the modelled fee market, with their share of the 6-block rate.
pub const FEE_TARGETS: [(u32, f64); 5] = [(2, 1.6), (6, 1.0), (36, 0.7), (144, 0.5), (1008, 0.3)];

/// A seeded fee market from `start` to `end`, one sample per target per 10 minutes.
///
/// The 6-block rate is a base of 8 sat/vB, times a daily cycle (×0.6 at 03:00 UTC up to ×1.4
/// at 15:00), times 0.7 on Saturdays and Sundays, plus spikes: about two a week, each lasting
/// 2–12 hours at 3–8× the rate. Other targets are a fixed share of it ([`FEE_TARGETS`]),
/// never below 1 sat/vB.
pub fn fee_market(start: DateTime<Utc>, end: DateTime<Utc>, seed: u64) -> FeeSeries {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfee5_0000_0000_0001);
    let every = TimeDelta::minutes(10);
    let mut series = FeeSeries::default();
    let mut spike_until = start;
    let mut spike_factor = 1.0;
    let spike_chance = 2.0 / (7.0 * 24.0 * 6.0);
    let mut t = start - every;
    while t <= end + every {
        if t >= spike_until && rng.gen_bool(spike_chance) {
            spike_until = t + TimeDelta::hours(rng.gen_range(2..=12));
            spike_factor = rng.gen_range(3.0..8.0);
        }
        let hour = f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
        let daily = 1.0 - 0.4 * ((hour - 3.0) / 24.0 * std::f64::consts::TAU).cos();
        let weekly = if t.weekday().number_from_monday() >= 6 {
            0.7
        } else {
            1.0
        };
        let spike = if t < spike_until { spike_factor } else { 1.0 };
        let noise = rng.gen_range(0.9..1.1);
        let base = 8.0 * daily * weekly * spike * noise;
        for (target, share) in FEE_TARGETS {
            let vb = (base * share).max(1.0);
            series
                .by_target
                .entry(target)
                .or_default()
                .push((t, SatPerKw((vb * 250.0).round() as u64)));
        }
        t += every;
    }
    series
}

/// The swap server a backtest prices swaps with: the reference server's fee (50 sat + 0.1 %,
/// `src/loopserver/terms.rs`) and its 1,000 sat prepay, with Loop's mainnet amounts
/// (250,000 – 10,000,000 sat).
pub fn default_terms() -> Terms {
    Terms {
        min_swap_amount: Sat(250_000),
        max_swap_amount: Sat(10_000_000),
        ..Terms::default()
    }
}
