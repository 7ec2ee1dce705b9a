//! Routed traffic through one node (normally "sluice"): payments from one of its peers to
//! another, drawn from a seed, so its channels drain and refill the same way on every run.
//!
//! Arrivals are a Poisson process at `payments_per_hour` of simulated time; each payment
//! picks a channel of the node uniformly, sends through it outward with the channel's
//! direction bias (otherwise inward), and takes the other leg uniformly from the remaining
//! channels. Sizes follow [`SizeDistribution`]. The runner calls [`Traffic::step`] with the
//! simulated time that passed, so time can run faster than the wall clock.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{World, WorldError};
use crate::domain::{ChanId, Sat};

/// How large routed payments are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeDistribution {
    /// Always the same amount.
    Fixed(Sat),
    /// Uniform between two amounts (inclusive).
    Uniform {
        /// The smallest amount.
        min: Sat,
        /// The largest amount.
        max: Sat,
    },
    /// Log-uniform between two amounts: many small payments, a few large ones.
    LogUniform {
        /// The smallest amount.
        min: Sat,
        /// The largest amount.
        max: Sat,
    },
}

impl SizeDistribution {
    fn sample(&self, rng: &mut StdRng) -> Sat {
        match *self {
            SizeDistribution::Fixed(s) => s,
            SizeDistribution::Uniform { min, max } => Sat(rng.gen_range(min.0..=max.0.max(min.0))),
            SizeDistribution::LogUniform { min, max } => {
                let lo = (min.0.max(1) as f64).ln();
                let hi = (max.0.max(min.0).max(1) as f64).ln();
                let x = if hi > lo { rng.gen_range(lo..=hi) } else { lo };
                Sat(x.exp().round() as u64)
            }
        }
    }
}

/// What traffic to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficConfig {
    /// Seeds arrivals, channel choices and sizes.
    pub seed: u64,
    /// The node the payments route through.
    pub node: String,
    /// Mean payments per hour of simulated time.
    pub payments_per_hour: f64,
    /// Payment sizes.
    pub size: SizeDistribution,
    /// Per channel, the chance that a payment using it leaves the node through it (draining
    /// the node's side); channels not listed use `default_outward_bias`.
    pub outward_bias: HashMap<ChanId, f64>,
    /// The outward chance for channels not in `outward_bias`.
    pub default_outward_bias: f64,
}

impl TrafficConfig {
    /// Balanced traffic through "sluice": `payments_per_hour`, 1,000–200,000 sat log-uniform.
    pub fn balanced(seed: u64, payments_per_hour: f64) -> TrafficConfig {
        TrafficConfig {
            seed,
            node: "sluice".to_owned(),
            payments_per_hour,
            size: SizeDistribution::LogUniform {
                min: Sat(1_000),
                max: Sat(200_000),
            },
            outward_bias: HashMap::new(),
            default_outward_bias: 0.5,
        }
    }
}

/// What one step generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficReport {
    /// Payments tried.
    pub attempted: u32,
    /// Payments that settled.
    pub succeeded: u32,
    /// Payments that failed for lack of liquidity.
    pub failed: u32,
    /// The amount the settled payments delivered.
    pub delivered: Sat,
}

/// The traffic generator. Same config, same steps: same payments.
#[derive(Debug)]
pub struct Traffic {
    config: TrafficConfig,
    rng: StdRng,
    /// Simulated seconds until the next payment.
    until_next: f64,
}

impl Traffic {
    /// A generator; the first arrival is drawn now.
    pub fn new(config: TrafficConfig) -> Traffic {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let until_next = next_gap(&mut rng, config.payments_per_hour);
        Traffic {
            config,
            rng,
            until_next,
        }
    }

    /// Generates the payments that arrive within `dt` of simulated time.
    pub fn step(&mut self, world: &mut World, dt: Duration) -> Result<TrafficReport, WorldError> {
        let node = world.node_index(&self.config.node).ok_or_else(|| {
            WorldError::Config(format!(
                "traffic node `{}` is not in the world: set TrafficConfig.node to one of its aliases",
                self.config.node
            ))
        })?;
        let channels: Vec<usize> = world
            .channels()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.has(node) && c.active)
            .map(|(i, _)| i)
            .collect();
        let ids: Vec<ChanId> = channels
            .iter()
            .map(|&i| world.channels()[i].chan_id)
            .collect();
        let mut report = TrafficReport::default();
        for r in self.draws(dt, &ids) {
            let (inbound, outbound) = (channels[r.inbound], channels[r.outbound]);
            let payer = world.channels()[inbound].other(node);
            report.attempted += 1;
            if world.pay_along(payer, &[inbound, outbound], r.amount.to_msat().0)? {
                report.succeeded += 1;
                report.delivered += r.amount;
            } else {
                report.failed += 1;
            }
        }
        Ok(report)
    }

    /// The payments that arrive within `dt` of simulated time through a node with these
    /// channels, as indices into `channels`: the pure half of [`Traffic::step`], which
    /// `sluice backtest` drives without a world.
    pub fn draws(&mut self, dt: Duration, channels: &[ChanId]) -> Vec<Routed> {
        let mut out = Vec::new();
        let mut remaining = dt.as_secs_f64();
        while self.until_next <= remaining {
            remaining -= self.until_next;
            self.until_next = next_gap(&mut self.rng, self.config.payments_per_hour);
            if channels.len() < 2 {
                continue;
            }
            let pick = self.rng.gen_range(0..channels.len());
            let others: Vec<usize> = (0..channels.len()).filter(|&c| c != pick).collect();
            let other = others[self.rng.gen_range(0..others.len())];
            let bias = self
                .config
                .outward_bias
                .get(&channels[pick])
                .copied()
                .unwrap_or(self.config.default_outward_bias);
            let (inbound, outbound) = if self.rng.gen_bool(bias.clamp(0.0, 1.0)) {
                (other, pick)
            } else {
                (pick, other)
            };
            let amount = self.config.size.sample(&mut self.rng);
            out.push(Routed {
                inbound,
                outbound,
                amount,
            });
        }
        self.until_next -= remaining;
        out
    }
}

/// One routed payment drawn by [`Traffic::draws`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// The channel it arrives through (an index into the channels given).
    pub inbound: usize,
    /// The channel it leaves through.
    pub outbound: usize,
    /// Its amount.
    pub amount: Sat,
}

/// An exponential gap (seconds) for a Poisson process at `per_hour`.
fn next_gap(rng: &mut StdRng, per_hour: f64) -> f64 {
    if per_hour <= 0.0 {
        return f64::INFINITY;
    }
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    -u.ln() * 3600.0 / per_hour
}
