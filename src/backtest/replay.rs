//! The pure core of a backtest: the node's history replayed on a virtual clock, one autoloop
//! pass every `interval`, through the live code: [`policy::evaluate`] on a [`Snapshot`] built
//! as autoloop builds it, the fee history and gates of `autoloop::history`, the quote, fee-cap
//! and budget checks of [`autoloop::admit`], and the [`Ledger`]. Swaps complete after a
//! modelled delay, move the balance and book their costs by category; a seeded share fails.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::input::{EventKind, FeeSeries, History};
use crate::autoloop::{self, admit};
use crate::chain::fees::{SatPerKw, fee_for};
use crate::domain::{ChanId, Direction, Ppm, Sat, SwapHash};
use crate::ledger::{Entry, EntryId, EntryKind, Ledger, SpecError, SpendCategory};
use crate::loopserver::terms::Terms;
use crate::policy::{
    self, BackoffState, Channel, FeeMarket, FeeSample, FlowWindow, InFlightSwap, LoopInServerTerms,
    Policy, Reason, ServerTerms, Snapshot,
};
use crate::swap::loop_in::FUNDING_WEIGHT_ESTIMATE;

/// How the replay models what it cannot see.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time between passes (the daemon's `autoloop.tick`, 10 minutes).
    pub interval: TimeDelta,
    /// From dispatch to the swap's end (HTLC confirmations, reveal, sweep).
    pub swap_delay: TimeDelta,
    /// The share of swaps that fail (the server never publishes its HTLC: nothing is paid,
    /// the channels back off).
    pub failure_rate: f64,
    /// Seeds the failures.
    pub seed: u64,
    /// The swap server's terms and prices.
    pub terms: Terms,
    /// What the swap's payments really cost in routing fees.
    pub routing_ppm: Ppm,
    /// A channel is depleted when either side holds less than this share of its capacity.
    pub depleted_below: Ppm,
    /// The inbound share below which a channel counts as short of inbound whatever the
    /// policy's band: the one yardstick two policies with different bands share.
    pub reference_inbound: Ppm,
    /// The flow windows the snapshot carries (the daemon's `autoloop.flow_windows`).
    pub flow_windows_days: Vec<u32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            interval: TimeDelta::minutes(10),
            swap_delay: TimeDelta::minutes(60),
            failure_rate: 0.0,
            seed: 1,
            terms: super::model::default_terms(),
            routing_ppm: Ppm(500),
            depleted_below: Ppm(10_000),
            reference_inbound: Ppm(200_000),
            flow_windows_days: autoloop::DEFAULT_FLOW_WINDOWS.to_vec(),
        }
    }
}

/// One channel's figures over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelFigures {
    /// The channel.
    pub id: String,
    /// Hours its target spent below its band.
    pub below_band_hours: f64,
    /// Hours above its band.
    pub above_band_hours: f64,
    /// Hours it was depleted on either side.
    pub depleted_hours: f64,
    /// Hours its inbound share was below the reference share (`Settings::reference_inbound`).
    pub below_reference_hours: f64,
}

/// The node at one pass, for plots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The pass's time.
    pub at: DateTime<Utc>,
    /// Node-wide inbound share, ppm.
    pub inbound_ppm: u64,
    /// Fees spent so far, sat.
    pub cumulative_cost: u64,
    /// The 6-block (or nearest) fee estimate, sat/vB.
    pub fee_sat_vb: f64,
    /// Whether every gated rule's fee gate was open.
    pub gate_open: bool,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Window start.
    pub start: DateTime<Utc>,
    /// Window end.
    pub end: DateTime<Utc>,
    /// Passes run.
    pub passes: u64,
    /// Swaps dispatched (both directions).
    pub swaps: u64,
    /// Of those, Loop Ins.
    pub loop_ins: u64,
    /// Swaps that failed.
    pub failed_swaps: u64,
    /// Swaps still running at the end.
    pub unfinished_swaps: u64,
    /// Amount moved by succeeded swaps, sat.
    pub volume_sat: u64,
    /// Fees by category, sat.
    pub fees_by_category: BTreeMap<String, u64>,
    /// All fees, sat.
    pub fees_total_sat: u64,
    /// Fees per sat moved, ppm.
    pub fees_ppm_of_volume: u64,
    /// Channel-hours below band, summed over channels.
    pub below_band_hours: f64,
    /// Channel-hours above band.
    pub above_band_hours: f64,
    /// Depleted channel-hours.
    pub depleted_channel_hours: f64,
    /// Channel-hours below the reference inbound share, the same yardstick for every policy.
    pub below_reference_hours: f64,
    /// The reference inbound share, ppm.
    pub reference_inbound_ppm: u64,
    /// Forwards of the history the replayed balances could not carry.
    pub forwards_failed: u64,
    /// The node's own payments and receipts of the history the replayed balances could not
    /// carry (a payment larger than the local balance, a receipt larger than the room left).
    pub payments_failed: u64,
    /// Routing fees the carried forwards earned, sat.
    pub routing_earned_sat: u64,
    /// Decisions by reason, over every pass.
    pub reasons: BTreeMap<String, u64>,
    /// Per channel.
    pub channels: Vec<ChannelFigures>,
    /// One point per pass.
    pub series: Vec<Point>,
    /// Each channel's inbound share (‰) at the first pass of every hour, for the heat map;
    /// not in the JSON (the series and per-channel figures are).
    #[serde(skip)]
    pub hourly_inbound: Vec<Vec<u16>>,
    /// The last pass's decisions, target by target: what the policy would decide at the end of
    /// the window (the same as `sluice suggest` on a live node in that state).
    pub final_pass: Vec<FinalDecision>,
    /// The swap server's terms the swaps were priced with.
    pub server: ServerFigures,
    /// Whether the run was stopped before the end.
    pub interrupted: bool,
}

/// The swap server's terms a run priced swaps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerFigures {
    /// Smallest swap, sat.
    pub min_swap_sat: u64,
    /// Largest swap, sat.
    pub max_swap_sat: u64,
    /// Fixed part of the swap fee, sat.
    pub fee_base_sat: u64,
    /// Proportional part of the swap fee, ppm.
    pub fee_ppm: u64,
    /// Prepay, sat.
    pub prepay_sat: u64,
}

/// One decision of the last pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalDecision {
    /// The target: a channel id, `peer:<key>` or `node`.
    pub target: String,
    /// The reason's name (`swap`, `ok`, `fee_cap`, ...).
    pub reason: String,
    /// The swap's amount, for the reasons that have one.
    pub amount_sat: Option<u64>,
}

/// Why a replay could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The policy's budgets do not make a ledger.
    #[error("the policy's budgets are invalid: {0}")]
    Budget(#[from] SpecError),
}

struct Chan {
    id: ChanId,
    capacity: Sat,
    local: Sat,
    /// Per day since the start: (out, in, fees earned).
    days: Vec<(u64, u64, u64)>,
    figures: ChannelFigures,
}

struct Running {
    hash: SwapHash,
    channels: Vec<usize>,
    outgoing: Vec<ChanId>,
    amount: Sat,
    done_at: DateTime<Utc>,
    fails: bool,
    swap_fee: Sat,
    leg: Leg,
}

/// What differs between a running Loop Out and a running Loop In.
enum Leg {
    /// A Loop Out: its limits and the prepay.
    Out {
        limits: crate::swap::FeeLimits,
        prepay: Sat,
    },
    /// A Loop In: its limits and the funding's confirmation target.
    In {
        limits: crate::swap::loop_in::LoopInLimits,
        conf_target: u32,
    },
}

/// Replays `history` under `policy` with fees from `fees`. `tick` is called after every pass
/// with the share done; it returns `false` to stop the run (Ctrl-C).
pub fn run(
    policy: &Policy,
    history: &History,
    fees: &FeeSeries,
    settings: &Settings,
    tick: &mut dyn FnMut(f64) -> bool,
) -> Result<Outcome, ReplayError> {
    let mut ledger = Ledger::new(autoloop::budget_specs(policy), policy.tz)?;
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0xfa11_0000_0000_0000);
    let n_days = (history.end - history.start).num_days().max(0) as usize + 1;
    let mut chans: Vec<Chan> = history
        .channels
        .iter()
        .map(|c| Chan {
            id: c.id,
            capacity: c.capacity,
            local: c.local.min(c.capacity),
            days: vec![(0, 0, 0); n_days],
            figures: ChannelFigures {
                id: c.id.to_string(),
                ..ChannelFigures::default()
            },
        })
        .collect();
    let index: HashMap<ChanId, usize> = chans.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    let mut template: Vec<Channel> = history
        .channels
        .iter()
        .map(|c| Channel {
            id: c.id,
            peer: c.peer.clone(),
            alias: c.alias.clone(),
            capacity: c.capacity,
            local: c.local,
            remote: c.capacity.saturating_sub(c.local),
            active: true,
            pending_htlcs: 0,
            age_blocks: 100 * 144,
            tags: Vec::new(),
            flows: Vec::new(),
        })
        .collect();
    let mut gate_open = BTreeMap::new();
    let mut fee_history: VecDeque<FeeSample> = VecDeque::new();
    let mut backoff: BTreeMap<ChanId, BackoffState> = BTreeMap::new();
    let mut running: Vec<Running> = Vec::new();
    let mut last_pass: Option<(Vec<policy::Decision>, Vec<&'static str>)> = None;
    let mut recent: VecDeque<(Sat, Sat)> = VecDeque::new();
    let every =
        TimeDelta::from_std(autoloop::DEFAULT_FEE_SAMPLE_EVERY).unwrap_or(settings.interval);
    let mut out = Outcome {
        start: history.start,
        end: history.end,
        passes: 0,
        swaps: 0,
        loop_ins: 0,
        failed_swaps: 0,
        unfinished_swaps: 0,
        volume_sat: 0,
        fees_by_category: BTreeMap::new(),
        fees_total_sat: 0,
        fees_ppm_of_volume: 0,
        below_band_hours: 0.0,
        above_band_hours: 0.0,
        depleted_channel_hours: 0.0,
        below_reference_hours: 0.0,
        reference_inbound_ppm: settings.reference_inbound.0,
        forwards_failed: 0,
        payments_failed: 0,
        routing_earned_sat: 0,
        reasons: BTreeMap::new(),
        channels: Vec::new(),
        series: Vec::new(),
        hourly_inbound: vec![Vec::new(); history.channels.len()],
        final_pass: Vec::new(),
        server: ServerFigures {
            min_swap_sat: settings.terms.min_swap_amount.0,
            max_swap_sat: settings.terms.max_swap_amount.0,
            fee_base_sat: settings.terms.fee_base.0,
            fee_ppm: settings.terms.fee_rate.0,
            prepay_sat: settings.terms.prepay.0,
        },
        interrupted: false,
    };
    let hours = settings.interval.num_seconds() as f64 / 3600.0;
    let total = (history.end - history.start).num_seconds().max(1) as f64;
    let mut next_event = 0;
    let mut swap_counter: u64 = 0;
    let mut t = history.start;
    while t <= history.end {
        // 1. What happened since the last pass.
        while let Some(e) = history.events.get(next_event).filter(|e| e.at <= t) {
            next_event += 1;
            let day = ((e.at - history.start).num_days().max(0) as usize).min(n_days - 1);
            match e.kind {
                EventKind::Forward {
                    chan_in,
                    chan_out,
                    amount,
                    fee,
                } => {
                    let (Some(&i), Some(&o)) = (index.get(&chan_in), index.get(&chan_out)) else {
                        continue;
                    };
                    let in_amount = amount + fee;
                    let remote_in = chans[i].capacity.saturating_sub(chans[i].local);
                    if i == o || chans[o].local < amount || remote_in < in_amount {
                        out.forwards_failed += 1;
                        continue;
                    }
                    chans[o].local = chans[o].local.saturating_sub(amount);
                    chans[i].local += in_amount;
                    chans[o].days[day].0 += amount.0;
                    chans[o].days[day].2 += fee.0;
                    chans[i].days[day].1 += in_amount.0;
                    out.routing_earned_sat += fee.0;
                }
                EventKind::Payment { chan, amount } => {
                    if let Some(&i) = index.get(&chan) {
                        if chans[i].local < amount {
                            out.payments_failed += 1;
                        } else {
                            chans[i].local = chans[i].local.saturating_sub(amount);
                        }
                    }
                }
                EventKind::Receipt { chan, amount } => {
                    if let Some(&i) = index.get(&chan) {
                        if chans[i].capacity.saturating_sub(chans[i].local) < amount {
                            out.payments_failed += 1;
                        } else {
                            chans[i].local += amount;
                        }
                    }
                }
                EventKind::Balance { chan, local } => {
                    if let Some(&i) = index.get(&chan) {
                        chans[i].local = local.min(chans[i].capacity);
                    }
                }
            }
        }
        // 2. Swaps that ended.
        let estimates = fees.at(t);
        let market = FeeMarket {
            estimates: estimates.clone(),
            ..FeeMarket::default()
        };
        let mut k = 0;
        while k < running.len() {
            if running[k].done_at > t {
                k += 1;
                continue;
            }
            let s = running.swap_remove(k);
            finish(
                &s,
                t,
                &market,
                settings,
                &mut chans,
                &mut ledger,
                &mut backoff,
                &mut recent,
                &mut out,
            );
        }
        // 3. The snapshot, as autoloop assembles it.
        let (targets, keep) = autoloop::gated_targets(policy, &estimates);
        autoloop::record_fee_sample(&mut fee_history, &estimates, &targets, t, every, keep);
        let day = ((t - history.start).num_days().max(0) as usize).min(n_days - 1);
        for (c, tc) in chans.iter().zip(template.iter_mut()) {
            tc.local = c.local;
            tc.remote = c.capacity.saturating_sub(c.local);
            tc.flows = settings
                .flow_windows_days
                .iter()
                .map(|&d| {
                    let from = day.saturating_sub(d as usize - 1);
                    let (o, i, f) = c.days[from..=day]
                        .iter()
                        .fold((0, 0, 0), |a, x| (a.0 + x.0, a.1 + x.1, a.2 + x.2));
                    FlowWindow {
                        days: d,
                        fees_earned_sat: f,
                        out_sat: o,
                        in_sat: i,
                    }
                })
                .collect();
        }
        let probe = Sat(1_000_000).clamp(
            settings.terms.min_swap_amount,
            settings
                .terms
                .max_swap_amount
                .max(settings.terms.min_swap_amount),
        );
        let terms = match settings.terms.quote(probe) {
            Ok(q) => ServerTerms {
                min: settings.terms.min_swap_amount,
                max: settings.terms.max_swap_amount,
                swap_fee_ppm: Ppm::ratio(q.swap_fee.0, probe.0),
                prepay: q.prepay,
            },
            Err(_) => ServerTerms::default(),
        };
        let probe_in = Sat(1_000_000).clamp(
            settings.terms.loop_in_min_amount,
            settings
                .terms
                .loop_in_max_amount
                .max(settings.terms.loop_in_min_amount),
        );
        let terms_in = match settings.terms.quote_in(probe_in) {
            Ok(q) => LoopInServerTerms {
                min: settings.terms.loop_in_min_amount,
                max: settings.terms.loop_in_max_amount,
                swap_fee_ppm: Ppm::ratio(q.swap_fee.0, probe_in.0),
            },
            Err(_) => LoopInServerTerms::default(),
        };
        let snapshot = Snapshot {
            now: t,
            channels: std::mem::take(&mut template),
            fees: FeeMarket {
                estimates: estimates.clone(),
                history: fee_history.iter().copied().collect(),
                routing_ppm: routing_ppm(&recent),
            },
            budget: autoloop::budget_left(&ledger, policy, t),
            in_flight: running
                .iter()
                .map(|r| InFlightSwap {
                    outgoing: r.outgoing.clone(),
                    amount: r.amount,
                    manual: false,
                })
                .collect(),
            backoff: backoff.clone(),
            terms,
            terms_in,
            // The history has no wallet: a backtest assumes lnd's wallet can fund every Loop In.
            wallet: None,
            gate_open: gate_open.clone(),
            dry_run: false,
        };
        let plan = policy::evaluate(policy, &snapshot);
        template = snapshot.channels;
        gate_open = plan.gate_open.clone();
        let all_open = plan.gate_open.values().all(|o| *o);
        // 4. Dispatch, through the live checks.
        let mut reasons = Vec::with_capacity(plan.decisions.len());
        for d in &plan.decisions {
            let mut reason = d.reason.clone();
            if reason == Reason::Swap
                && let Some(p) = &d.proposal
            {
                // The server's quote and the live checks of the proposal's direction: the caps,
                // the engine's limits, the budget.
                let checked = match p.direction {
                    Direction::In => match settings.terms.quote_in(p.amount) {
                        Err(_) => Err(Reason::QuoteFailed),
                        Ok(q) => {
                            admit::check_loop_in_quote(Some(policy), d, p, q.swap_fee, &ledger, t)
                                .map(|a| {
                                    let leg = Leg::In {
                                        limits: a.limits,
                                        conf_target: p.conf_target,
                                    };
                                    (q.swap_fee, leg, a.request)
                                })
                                .map_err(|r| r.reason)
                        }
                    },
                    Direction::Out => match settings.terms.quote(p.amount) {
                        Err(_) => Err(Reason::QuoteFailed),
                        Ok(q) => admit::check_quote(
                            Some(policy),
                            d,
                            p,
                            (q.swap_fee, q.prepay),
                            snapshot.fees.routing_ppm,
                            &ledger,
                            t,
                        )
                        .map(|a| {
                            let leg = Leg::Out {
                                limits: a.limits,
                                prepay: q.prepay,
                            };
                            (q.swap_fee, leg, a.request)
                        })
                        .map_err(|r| r.reason),
                    },
                };
                match checked {
                    Err(r) => reason = r,
                    Ok((swap_fee, leg, request)) => {
                        swap_counter += 1;
                        let mut h = [0u8; 32];
                        h[..8].copy_from_slice(&swap_counter.to_be_bytes());
                        let hash = SwapHash(h);
                        let reserved = ledger
                            .admit(
                                crate::ledger::AdmitRequest {
                                    swap: hash,
                                    ..request
                                },
                                t,
                            )
                            .map(|r| ledger.apply(r.into_entry()));
                        if !matches!(reserved, Ok(Ok(_))) {
                            reason = Reason::DispatchFailed;
                        } else {
                            out.swaps += 1;
                            if matches!(leg, Leg::In { .. }) {
                                out.loop_ins += 1;
                            }
                            running.push(Running {
                                hash,
                                channels: d
                                    .channels
                                    .iter()
                                    .filter_map(|c| index.get(c).copied())
                                    .collect(),
                                // A Loop In has no outgoing channels: it counts on its target's.
                                outgoing: if p.outgoing.is_empty() {
                                    d.channels.clone()
                                } else {
                                    p.outgoing.clone()
                                },
                                amount: p.amount,
                                done_at: t + settings.swap_delay,
                                fails: settings.failure_rate > 0.0
                                    && rng.gen_bool(settings.failure_rate.clamp(0.0, 1.0)),
                                swap_fee,
                                leg,
                            });
                        }
                    }
                }
            }
            *out.reasons.entry(reason.name().to_owned()).or_insert(0) += 1;
            reasons.push(reason.name());
            // Band time, per channel of the target.
            if let Some(rule) = d.rule.as_deref().and_then(|r| policy.rule(r)) {
                let (cap, inbound) = d.channels.iter().filter_map(|c| index.get(c)).fold(
                    (Sat::ZERO, Sat::ZERO),
                    |(c, r), &i| {
                        (
                            c + chans[i].capacity,
                            r + chans[i].capacity.saturating_sub(chans[i].local),
                        )
                    },
                );
                let band = rule.settings.band;
                let below = inbound < band.inbound_min.resolve(cap);
                let above = band.inbound_max.is_some_and(|m| inbound > m.resolve(cap));
                for c in &d.channels {
                    if let Some(&i) = index.get(c) {
                        if below {
                            chans[i].figures.below_band_hours += hours;
                        }
                        if above {
                            chans[i].figures.above_band_hours += hours;
                        }
                    }
                }
            }
        }
        last_pass = Some((plan.decisions, reasons));
        // 5. Depletion and the node's point.
        let (mut cap, mut inbound) = (0u64, 0u64);
        let on_the_hour =
            (t - history.start).num_seconds() % 3600 < settings.interval.num_seconds();
        for (k, c) in chans.iter_mut().enumerate() {
            if on_the_hour {
                let share = Ppm::ratio(c.capacity.saturating_sub(c.local).0, c.capacity.0).0 / 1000;
                out.hourly_inbound[k].push(share.min(1000) as u16);
            }
            let floor = c.capacity.mul_ppm(settings.depleted_below);
            if c.local < floor || c.capacity.saturating_sub(c.local) < floor {
                c.figures.depleted_hours += hours;
            }
            if c.capacity.saturating_sub(c.local) < c.capacity.mul_ppm(settings.reference_inbound) {
                c.figures.below_reference_hours += hours;
            }
            cap += c.capacity.0;
            inbound += c.capacity.saturating_sub(c.local).0;
        }
        out.series.push(Point {
            at: t,
            inbound_ppm: Ppm::ratio(inbound, cap).0,
            cumulative_cost: out.fees_total_sat,
            fee_sat_vb: market.estimate(6).map_or(0.0, |r| r.0 as f64 / 250.0),
            gate_open: all_open,
        });
        out.passes += 1;
        if !tick((t - history.start).num_seconds() as f64 / total) {
            out.interrupted = true;
            break;
        }
        t += settings.interval;
    }
    out.unfinished_swaps = running.len() as u64;
    if let Some((decisions, reasons)) = last_pass {
        out.final_pass = decisions
            .iter()
            .zip(reasons)
            .map(|(d, r)| FinalDecision {
                target: d.target.to_string(),
                reason: r.to_owned(),
                amount_sat: d.proposal.as_ref().map(|p| p.amount.0),
            })
            .collect();
    }
    out.fees_ppm_of_volume = Ppm::ratio(out.fees_total_sat, out.volume_sat).0;
    for c in chans {
        out.below_band_hours += c.figures.below_band_hours;
        out.above_band_hours += c.figures.above_band_hours;
        out.depleted_channel_hours += c.figures.depleted_hours;
        out.below_reference_hours += c.figures.below_reference_hours;
        out.channels.push(c.figures);
    }
    Ok(out)
}

/// The routing fee figure autoloop derives from sluice's last 20 completed swaps.
fn routing_ppm(recent: &VecDeque<(Sat, Sat)>) -> Ppm {
    let (f, a) = recent.iter().fold((0u128, 0u128), |(f, a), (fee, amt)| {
        (f + u128::from(fee.0), a + u128::from(amt.0))
    });
    if a == 0 {
        return policy::DEFAULT_ROUTING_PPM;
    }
    Ppm(u64::try_from((f * 1_000_000).div_ceil(a)).unwrap_or(u64::MAX))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    s: &Running,
    t: DateTime<Utc>,
    market: &FeeMarket,
    settings: &Settings,
    chans: &mut [Chan],
    ledger: &mut Ledger,
    backoff: &mut BTreeMap<ChanId, BackoffState>,
    recent: &mut VecDeque<(Sat, Sat)>,
    out: &mut Outcome,
) {
    let mut spends = Vec::new();
    if s.fails {
        out.failed_swaps += 1;
        for &i in &s.channels {
            let b = backoff.entry(chans[i].id).or_insert(BackoffState {
                last_failure: t,
                consecutive_failures: 0,
            });
            b.last_failure = t;
            b.consecutive_failures += 1;
        }
        // A Loop In the server never paid is taken back: its funding and the timeout sweep
        // are lost to miners.
        if let Leg::In {
            limits,
            conf_target,
        } = &s.leg
        {
            let funding = fee_for(
                FUNDING_WEIGHT_ESTIMATE,
                market.estimate(*conf_target).unwrap_or(SatPerKw(253)),
            )
            .min(limits.max_miner_fee);
            let sweep = fee_for(
                bitcoin::Weight::from_wu(policy::SWEEP_WEIGHT_WU),
                market.estimate(2).unwrap_or(SatPerKw(253)),
            )
            .min(limits.max_miner_fee);
            spends.push((SpendCategory::Miner, funding + sweep));
        }
    } else {
        match &s.leg {
            Leg::Out { limits, prepay } => {
                // The swap payment leaves through the target's channels, fullest first.
                let mut left = s.amount;
                let mut order = s.channels.clone();
                order.sort_by_key(|&i| std::cmp::Reverse(chans[i].local));
                for i in order {
                    let take = left.min(chans[i].local);
                    chans[i].local = chans[i].local.saturating_sub(take);
                    left = left.saturating_sub(take);
                }
                let routing = s
                    .amount
                    .mul_ppm(settings.routing_ppm)
                    .min(limits.max_swap_routing_fee);
                let prepay_routing = prepay
                    .mul_ppm(settings.routing_ppm)
                    .min(limits.max_prepay_routing_fee);
                let rate = market.estimate(6).unwrap_or(SatPerKw(253));
                let miner = fee_for(bitcoin::Weight::from_wu(policy::SWEEP_WEIGHT_WU), rate)
                    .min(limits.max_miner_fee);
                spends.push((SpendCategory::Server, s.swap_fee));
                spends.push((SpendCategory::Routing, routing + prepay_routing));
                spends.push((SpendCategory::Miner, miner));
                recent.push_back((routing + prepay_routing, s.amount));
                if recent.len() > 20 {
                    recent.pop_front();
                }
            }
            Leg::In {
                limits,
                conf_target,
            } => {
                // The server's payment (the amount less its fee) arrives through the target's
                // channels, emptiest first.
                let mut left = s.amount.saturating_sub(s.swap_fee);
                let mut order = s.channels.clone();
                order.sort_by_key(|&i| chans[i].local);
                for i in order {
                    let room = chans[i].capacity.saturating_sub(chans[i].local);
                    let take = left.min(room);
                    chans[i].local += take;
                    left = left.saturating_sub(take);
                }
                let funding = fee_for(
                    FUNDING_WEIGHT_ESTIMATE,
                    market.estimate(*conf_target).unwrap_or(SatPerKw(253)),
                )
                .min(limits.max_miner_fee);
                spends.push((SpendCategory::Server, s.swap_fee));
                spends.push((SpendCategory::Miner, funding));
            }
        }
        out.volume_sat += s.amount.0;
        for &i in &s.channels {
            backoff.remove(&chans[i].id);
        }
    }
    let mut id = 1;
    for (category, amount) in spends {
        if amount == Sat::ZERO {
            continue;
        }
        let _ = ledger.apply(Entry {
            swap: s.hash,
            id: EntryId(id),
            at: t,
            kind: EntryKind::Spend { amount, category },
        });
        id += 1;
        *out.fees_by_category
            .entry(category.as_str().to_owned())
            .or_insert(0) += amount.0;
        out.fees_total_sat += amount.0;
    }
    let _ = ledger.apply(Entry {
        swap: s.hash,
        id: EntryId::RELEASE,
        at: t,
        kind: EntryKind::Release,
    });
}
