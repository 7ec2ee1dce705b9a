//! One evaluation pass over 1k, 10k and 100k channels, for the YAML `set-and-forget` policy
//! and the scripted `earnings-aware` policy, each next to a hand-written loop doing the same
//! threshold logic over the same snapshot. The ratio policy/native is the figure to watch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use divan::Bencher;
use sluice::chain::fees::SatPerKw;
use sluice::domain::{ChanId, Sat};
use sluice::policy::{self, Channel, FlowWindow, Policy, Snapshot};

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// A node with `n` channels of varied size and balance, from a fixed seed.
fn snapshot(n: usize) -> Snapshot {
    let mut s = Snapshot::empty(chrono::DateTime::from_timestamp(1_772_332_200, 0).unwrap());
    s.fees.estimates = vec![(100, SatPerKw::from_sat_per_vbyte(8))];
    s.fees.history = (0..336)
        .map(|h| policy::FeeSample {
            at: s.now - chrono::TimeDelta::hours(h),
            conf_target: 100,
            rate: SatPerKw::from_sat_per_vbyte(5 + (h as u64 * 7) % 30),
        })
        .collect();
    s.budget.total = Some(Sat(u64::MAX / 2));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    s.channels = (0..n)
        .map(|i| {
            let capacity = 1_000_000 + next() % 9_000_000;
            let local = next() % capacity;
            Channel {
                id: ChanId::from_parts(700_000 + (i / 1000) as u32, (i % 1000) as u32, 0),
                peer: format!("02{:064x}", i / 3),
                alias: format!("node-{}", i / 3),
                capacity: Sat(capacity),
                local: Sat(local),
                remote: Sat(capacity - local),
                active: next() % 20 != 0,
                pending_htlcs: 0,
                age_blocks: 20_000,
                tags: Vec::new(),
                flows: vec![FlowWindow {
                    days: 30,
                    fees_earned_sat: next() % 20_000,
                    out_sat: next() % 10_000_000,
                    in_sat: 0,
                }],
            }
        })
        .collect();
    s
}

fn example(name: &str) -> Policy {
    let mut p = policy::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join(name),
    )
    .unwrap();
    // Measure the full pipeline for every target, not the in-flight limit's early exit.
    p.limits.in_flight = u32::MAX;
    p.limits.in_flight_per_target = u32::MAX;
    p
}

/// The band logic of `set-and-forget` written by hand: 30%/70%, restore 50%, 250k–2M.
fn native_band(s: &Snapshot) -> usize {
    let mut swaps = 0;
    for c in &s.channels {
        if !c.active {
            continue;
        }
        let min = c.capacity.0 * 30 / 100;
        if c.remote.0 >= min {
            continue;
        }
        let reserve = c.capacity.0 - c.capacity.0 * 70 / 100;
        let required = c.capacity.0 / 2 - c.remote.0;
        let amount = required
            .min(c.local.0.saturating_sub(reserve))
            .min(2_000_000);
        if amount >= 250_000 {
            swaps += 1;
        }
    }
    swaps
}

/// `native_band` plus the earnings check of `earnings-aware.rhai`.
fn native_earnings(s: &Snapshot) -> usize {
    let mut swaps = 0;
    for c in &s.channels {
        if !c.active {
            continue;
        }
        let min = c.capacity.0 * 30 / 100;
        if c.remote.0 >= min {
            continue;
        }
        let reserve = c.capacity.0 - c.capacity.0 * 70 / 100;
        let required = c.capacity.0 / 2 - c.remote.0;
        let amount = required
            .min(c.local.0.saturating_sub(reserve))
            .min(2_000_000);
        let cost = amount / 1000 + 1200;
        let earned = c.flows.first().map_or(0, |f| f.fees_earned_sat);
        if amount >= 250_000 && earned >= cost * 2 {
            swaps += 1;
        }
    }
    swaps
}

#[divan::bench(args = SIZES)]
fn yaml_set_and_forget(b: Bencher, n: usize) {
    let (p, s) = (example("set-and-forget"), snapshot(n));
    b.bench(|| policy::evaluate(&p, &s));
}

#[divan::bench(args = SIZES)]
fn native_set_and_forget(b: Bencher, n: usize) {
    let s = snapshot(n);
    b.bench(|| native_band(divan::black_box(&s)));
}

#[divan::bench(args = SIZES)]
fn rhai_earnings_aware(b: Bencher, n: usize) {
    let (p, s) = (example("earnings-aware"), snapshot(n));
    b.bench(|| policy::evaluate(&p, &s));
}

#[divan::bench(args = SIZES)]
fn native_earnings_aware(b: Bencher, n: usize) {
    let s = snapshot(n);
    b.bench(|| native_earnings(divan::black_box(&s)));
}
