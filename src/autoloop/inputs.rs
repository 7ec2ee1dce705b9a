//! Gathering a pass's inputs through the ports: channels with their routing flows, fee
//! estimates, the server's terms and the swaps in flight. Everything here only reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};

use crate::chain::SatPerKw;
use crate::domain::{BlockHeight, ChanId, Ppm, Sat, SwapHash};
use crate::ledger::{BudgetSpec, Period};
use crate::lnd::{LightningNode, NodeError};
use crate::policy::{self, FlowWindow, PeriodSpec, Policy};
use crate::provider::port::{LoopInRoute, LoopOutTerms};
use crate::provider::{ProviderError, SwapProvider};
use crate::store::{Store, StoreError, SwapFilter};
use crate::swap::engine::expiry_for;

use super::AUTOLOOP_INITIATOR;

/// Most forwarding events read per pass; older flows beyond it are not counted.
const MAX_FORWARDS: usize = 200_000;
/// Forwarding events per page.
const FORWARD_PAGE: u32 = 10_000;

/// Why a pass could not gather its inputs; the pass is skipped and retried on the next wake.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// lnd failed a call.
    #[error("lnd {op} failed: {source}")]
    Node {
        /// The call.
        op: &'static str,
        /// lnd's error.
        #[source]
        source: NodeError,
    },
    /// The swap server failed a call.
    #[error("swap server {op} failed: {source}")]
    Provider {
        /// The call.
        op: &'static str,
        /// The server's error.
        #[source]
        source: ProviderError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn node(op: &'static str) -> impl FnOnce(NodeError) -> InputError {
    move |source| InputError::Node { op, source }
}

pub(super) fn provider(op: &'static str) -> impl FnOnce(ProviderError) -> InputError {
    move |source| InputError::Provider { op, source }
}

/// The ledger's budget specifications for the policy's budgets.
pub fn budget_specs(policy: &Policy) -> Vec<BudgetSpec> {
    let period = |p: PeriodSpec| match p {
        PeriodSpec::Day => Period::Day,
        PeriodSpec::Week => Period::Week,
        PeriodSpec::Month => Period::Month,
        PeriodSpec::Rolling(d) => Period::Rolling(d),
    };
    policy
        .budgets
        .iter()
        .map(|b| BudgetSpec {
            name: b.name.clone(),
            period: period(b.period),
            limit: b.limit,
            per_rule: b.per_rule.clone(),
            hard_cap: b.hard_cap.map(|(p, l)| (period(p), l)),
        })
        .collect()
}

/// Open channels as the policy sees them, with routing flows per window.
pub(super) async fn channels(
    lnd: &dyn LightningNode,
    height: Option<BlockHeight>,
    windows_days: &[u32],
    now: DateTime<Utc>,
) -> Result<Vec<policy::Channel>, InputError> {
    let chans = lnd.list_channels().await.map_err(node("ListChannels"))?;
    let flows = flows(lnd, windows_days, now).await?;
    Ok(chans
        .into_iter()
        .map(|c| policy::Channel {
            id: c.chan_id,
            peer: c.peer.to_string(),
            alias: c.peer_alias.clone().unwrap_or_default(),
            capacity: c.capacity,
            local: c.local_balance,
            remote: c.remote_balance,
            active: c.active,
            pending_htlcs: c.pending_htlc_count,
            age_blocks: height.map_or(0, |h| h.0.saturating_sub(c.chan_id.block())),
            tags: Vec::new(),
            flows: flows.get(&c.chan_id).cloned().unwrap_or_else(|| {
                windows_days
                    .iter()
                    .map(|&days| FlowWindow {
                        days,
                        fees_earned_sat: 0,
                        out_sat: 0,
                        in_sat: 0,
                    })
                    .collect()
            }),
        })
        .collect())
}

/// Per channel, one [`FlowWindow`] per configured window, from lnd's forwarding history.
async fn flows(
    lnd: &dyn LightningNode,
    windows_days: &[u32],
    now: DateTime<Utc>,
) -> Result<HashMap<ChanId, Vec<FlowWindow>>, InputError> {
    let Some(&longest) = windows_days.iter().max() else {
        return Ok(HashMap::new());
    };
    let start = now - TimeDelta::days(i64::from(longest));
    let start_unix = u64::try_from(start.timestamp()).unwrap_or(0);
    let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut out: HashMap<ChanId, Vec<FlowWindow>> = HashMap::new();
    let mut offset = 0;
    let mut seen = 0usize;
    loop {
        let page = lnd
            .forwarding_history(start_unix, 0, offset, FORWARD_PAGE)
            .await
            .map_err(node("ForwardingHistory"))?;
        let n = page.events.len();
        for ev in &page.events {
            let age_ns = now_ns.saturating_sub(i64::try_from(ev.timestamp_ns).unwrap_or(i64::MAX));
            for (i, &days) in windows_days.iter().enumerate() {
                if age_ns > i64::from(days).saturating_mul(86_400_000_000_000) {
                    continue;
                }
                let mut add = |chan: ChanId, f: &dyn Fn(&mut FlowWindow)| {
                    let w = out.entry(chan).or_insert_with(|| {
                        windows_days
                            .iter()
                            .map(|&days| FlowWindow {
                                days,
                                fees_earned_sat: 0,
                                out_sat: 0,
                                in_sat: 0,
                            })
                            .collect()
                    });
                    if let Some(w) = w.get_mut(i) {
                        f(w);
                    }
                };
                let amount_in = ev.amount_in.to_sat_floor().0;
                let amount_out = ev.amount_out.to_sat_floor().0;
                let fee = ev.fee.to_sat_floor().0;
                add(ev.chan_in, &|w| {
                    w.in_sat = w.in_sat.saturating_add(amount_in)
                });
                add(ev.chan_out, &|w| {
                    w.out_sat = w.out_sat.saturating_add(amount_out);
                    w.fees_earned_sat = w.fees_earned_sat.saturating_add(fee);
                });
            }
        }
        seen += n;
        if n < FORWARD_PAGE as usize || seen >= MAX_FORWARDS || page.next_index_offset == offset {
            break;
        }
        offset = page.next_index_offset;
    }
    Ok(out)
}

/// lnd's estimates for every confirmation target a rule uses (and 6, the usual one).
pub(super) async fn fee_estimates(
    lnd: &dyn LightningNode,
    policy: &Policy,
) -> Result<Vec<(u32, SatPerKw)>, InputError> {
    let targets: BTreeSet<u32> = policy
        .rules
        .iter()
        .map(|r| {
            r.settings
                .swap
                .conf_target
                .max(crate::chain::fees::MIN_CONF_TARGET)
        })
        .chain([6])
        .collect();
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let rate = lnd.estimate_fee(t).await.map_err(node("EstimateFee"))?;
        out.push((t, SatPerKw(rate.to_sat_per_kwu())));
    }
    Ok(out)
}

/// A typical swap amount, used to read the server's fee rate off a quote (a quote for the
/// smallest swap would make a base fee look like a high rate).
const TYPICAL_AMOUNT: Sat = Sat(1_000_000);

/// The server's terms, with its fee rate and prepay read from a quote for a typical swap.
pub(super) async fn terms(
    provider: &dyn SwapProvider,
    height: BlockHeight,
    now: DateTime<Utc>,
) -> Result<(policy::ServerTerms, LoopOutTerms), InputError> {
    let terms = provider
        .loop_out_terms()
        .await
        .map_err(provider_err("LoopOutTerms"))?;
    let expiry = expiry(height, terms.min_cltv_delta, &terms);
    let probe = TYPICAL_AMOUNT.clamp(terms.min_amount, terms.max_amount.max(terms.min_amount));
    let quote = provider
        .loop_out_quote(probe, expiry, now.timestamp())
        .await
        .map_err(provider_err("LoopOutQuote"))?;
    Ok((
        policy::ServerTerms {
            min: terms.min_amount,
            max: terms.max_amount,
            swap_fee_ppm: Ppm::ratio(quote.swap_fee.0, probe.0),
            prepay: quote.prepay_amount,
        },
        terms,
    ))
}

/// The server's Loop In terms as the policy reads them: its bounds, and its fee rate from a
/// quote of a typical amount to this node (no last hop).
pub(super) async fn terms_in(
    provider: &dyn SwapProvider,
    node: &dyn LightningNode,
) -> Result<policy::LoopInServerTerms, InputError> {
    let terms = provider
        .loop_in_terms()
        .await
        .map_err(provider_err("LoopInTerms"))?;
    let info = node.get_info().await.map_err(self::node("GetInfo"))?;
    let probe = TYPICAL_AMOUNT.clamp(terms.min_amount, terms.max_amount.max(terms.min_amount));
    let quote = provider
        .loop_in_quote(&LoopInRoute {
            amount: probe,
            node: info.pubkey.0,
            last_hop: None,
            route_hints: Vec::new(),
        })
        .await
        .map_err(provider_err("LoopInQuote"))?;
    Ok(policy::LoopInServerTerms {
        min: terms.min_amount,
        max: terms.max_amount,
        swap_fee_ppm: Ppm::ratio(quote.swap_fee.0, probe.0),
    })
}

/// lnd's confirmed on-chain balance, which funds Loop Ins; `None` (not checked) when lnd does
/// not say.
pub(super) async fn wallet(node: &dyn LightningNode) -> Option<Sat> {
    match node.onchain_balance().await {
        Ok((confirmed, _)) => Some(confirmed),
        Err(e) => {
            tracing::warn!(error = %e, "lnd did not report its wallet balance; Loop Ins are not checked against it this pass");
            None
        }
    }
}

fn provider_err(op: &'static str) -> impl FnOnce(ProviderError) -> InputError {
    provider(op)
}

/// Blocks added to a quote's expiry so a block found between our height and the server's
/// does not put it below the server's minimum delta.
const QUOTE_MARGIN_BLOCKS: u32 = 3;

/// The expiry to quote a swap with `conf_target` created now: as the engine computes it, plus
/// a small margin, within the server's deltas.
pub(super) fn expiry(height: BlockHeight, conf_target: u32, terms: &LoopOutTerms) -> BlockHeight {
    let max = BlockHeight(height.0.saturating_add(terms.max_cltv_delta));
    expiry_for(height, conf_target, terms)
        .map(|e| BlockHeight(e.0.saturating_add(QUOTE_MARGIN_BLOCKS)).min(max))
        .unwrap_or(max)
}

/// Swaps not yet finished, and the channels held by manual ones. An autoloop swap that has
/// ended but whose reservation is not yet released (a payment result still outstanding)
/// counts as in flight too, so its channel is not swapped again before its outcome (and any
/// backoff) is known.
pub(super) async fn in_flight(
    store: &Store,
    unreleased: &[SwapHash],
) -> Result<(Vec<policy::InFlightSwap>, BTreeSet<ChanId>), InputError> {
    let swaps = store
        .list_swaps(SwapFilter {
            unfinished_only: true,
            ..SwapFilter::default()
        })
        .await?;
    let mut manual = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(swaps.len());
    for s in swaps {
        let t = s.contract.terms();
        seen.insert(t.swap_hash);
        let is_manual = t.initiator != AUTOLOOP_INITIATOR;
        if is_manual {
            manual.extend(t.outgoing_chan_set.iter().copied());
        }
        out.push(policy::InFlightSwap {
            outgoing: swap_channels(store, t.swap_hash, &t.outgoing_chan_set).await?,
            amount: t.amount,
            manual: is_manual,
        });
    }
    // Loop Ins: an autoloop one counts against the target channels recorded for it, a manual
    // one node-wide.
    let (loop_ins, _) = store.load_unfinished_loop_ins().await?;
    for s in loop_ins {
        let t = s.record.contract.terms();
        seen.insert(t.swap_hash);
        let is_manual = t.initiator != AUTOLOOP_INITIATOR;
        out.push(policy::InFlightSwap {
            outgoing: store.swap_channels(t.swap_hash).await?,
            amount: t.amount,
            manual: is_manual,
        });
    }
    for hash in unreleased.iter().filter(|h| !seen.contains(*h)) {
        if let Some(s) = store.load_swap(*hash).await? {
            let t = s.record.contract.terms();
            out.push(policy::InFlightSwap {
                outgoing: swap_channels(store, *hash, &t.outgoing_chan_set).await?,
                amount: t.amount,
                manual: false,
            });
        } else if let Some(r) = store.load_loop_in(*hash).await? {
            out.push(policy::InFlightSwap {
                outgoing: store.swap_channels(*hash).await?,
                amount: r.contract.terms().amount,
                manual: false,
            });
        }
    }
    Ok((out, manual))
}

/// The channels a swap counts against: its outgoing channel set, or for a swap that may pay
/// through any channel the target channels autoloop recorded for it.
pub(super) async fn swap_channels(
    store: &Store,
    hash: SwapHash,
    outgoing: &[ChanId],
) -> Result<Vec<ChanId>, StoreError> {
    if outgoing.is_empty() {
        store.swap_channels(hash).await
    } else {
        Ok(outgoing.to_vec())
    }
}

/// Budget left per the ledger, in the shape the policy reads.
pub fn budget_left(
    ledger: &crate::ledger::Ledger,
    policy: &Policy,
    now: DateTime<Utc>,
) -> policy::BudgetLeft {
    let status = ledger.status(now);
    let total = status
        .iter()
        .flat_map(|b| std::iter::once(&b.total).chain(b.hard_cap.iter()))
        .map(|w| w.available)
        .min();
    let per_rule: BTreeMap<String, Sat> = policy
        .rules
        .iter()
        .filter_map(|r| {
            status
                .iter()
                .filter_map(|b| b.per_rule.get(&r.name))
                .map(|w| w.available)
                .min()
                .map(|left| (r.name.clone(), left))
        })
        .collect();
    policy::BudgetLeft { total, per_rule }
}

/// How many of sluice's latest completed swaps the routing fee figure is read from.
const ROUTING_SAMPLE: u32 = 20;

/// The routing fee a swap payment is expected to cost, as a share of its amount: what
/// sluice's latest completed swaps (manual or autoloop) paid in routing fees for their
/// payments, rounded up; [`policy::DEFAULT_ROUTING_PPM`] before any has completed. With where
/// the figure comes from, for `suggest`.
pub(super) async fn routing_ppm(store: &Store) -> Result<(Ppm, String), InputError> {
    let swaps = store
        .list_swaps(SwapFilter {
            state: Some(crate::swap::SwapState::Succeeded),
            limit: Some(ROUTING_SAMPLE),
            ..SwapFilter::default()
        })
        .await?;
    let (fees, amounts) = swaps.iter().fold((0u128, 0u128), |(f, a), s| {
        (
            f + u128::from(s.costs.offchain.0),
            a + u128::from(s.contract.terms().amount.0),
        )
    });
    if amounts == 0 {
        return Ok((
            policy::DEFAULT_ROUTING_PPM,
            "default: no swap of sluice's has completed yet".to_owned(),
        ));
    }
    let ppm = u64::try_from((fees * 1_000_000).div_ceil(amounts)).unwrap_or(u64::MAX);
    Ok((
        Ppm(ppm),
        format!("paid by sluice's last {} completed swap(s)", swaps.len()),
    ))
}
