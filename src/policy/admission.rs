//! The one rule for a proposal's fee limits and its worst case, used by `evaluate` (with the
//! snapshot's terms, so `sluice policy test` predicts what runs) and by autoloop (with the
//! server's quote). The ledger admits a swap on its worst case: every fee at its limit, and
//! the prepay in place of the server fee when the swap fails after paying it. Only that
//! figure guarantees the fees spent in a window can never exceed a budget.

use super::model::{FeeCaps, LoopInFeeCaps, Policy};
use super::snapshot::BudgetLeft;
use crate::chain::fees::min_sweep_fee;
use crate::domain::{Ppm, Sat};
use crate::swap::loop_in::LoopInLimits;

/// Per-category fee caps of one swap, in satoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapCaps {
    /// Server swap fee.
    pub server: Sat,
    /// Routing fee of the swap invoice.
    pub routing: Sat,
    /// Routing fee of the prepay invoice.
    pub prepay_routing: Sat,
    /// The prepay.
    pub prepay: Sat,
    /// Loop Out: the sweep's miner fee; Loop In: the HTLC funding's.
    pub miner: Sat,
    /// What a Loop In the server never pays may lose on chain (0 for a Loop Out).
    pub timeout_risk: Sat,
}

/// The per-swap limits the swap engine enforces, in satoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapLimits {
    /// The server's swap fee (the quoted one, or the terms' rate for a prediction).
    pub server: Sat,
    /// The prepay the server may ask for.
    pub prepay: Sat,
    /// Routing fee of the swap invoice.
    pub routing: Sat,
    /// Routing fee of the prepay invoice.
    pub prepay_routing: Sat,
    /// The sweep's miner fee.
    pub miner: Sat,
}

impl SwapLimits {
    /// The most a swap with these limits can cost: every fee at its limit. A prepay the server
    /// keeps after a failed swap replaces the server fee, so the larger of the two counts; the
    /// sweep counts at its bound (the miner limit, never below the smallest valid sweep), the
    /// same rule as the engine's `FeeLimits::worst_case`.
    pub fn worst_case(&self) -> Sat {
        self.server.max(self.prepay)
            + self.routing
            + self.prepay_routing
            + crate::chain::fees::miner_fee_bound(self.miner)
    }
}

/// Each category's cap: its own key, else `max_total` (of the amount; of the prepay for the
/// prepay's routing fee).
pub fn category_caps(f: &FeeCaps, amount: Sat, prepay: Sat) -> SwapCaps {
    let total_cap = amount.mul_ppm(f.max_total);
    SwapCaps {
        server: f.max_server.map_or(total_cap, |p| amount.mul_ppm(p)),
        routing: f.max_routing.map_or(total_cap, |p| amount.mul_ppm(p)),
        prepay_routing: prepay.mul_ppm(f.max_prepay_routing.unwrap_or(f.max_total)),
        prepay: f.max_prepay.unwrap_or(total_cap),
        miner: f.max_miner.unwrap_or(total_cap),
        timeout_risk: Sat::ZERO,
    }
}

/// A Loop In's caps: the server fee and the HTLC miner fee each by its own key, else
/// `max_total` of the amount; the timeout risk by its key, else twice the miner cap (a funding
/// and a timeout sweep, each at that cap). Loop Out's categories are zero.
pub fn loop_in_caps(f: &LoopInFeeCaps, amount: Sat) -> SwapCaps {
    let total_cap = amount.mul_ppm(f.max_total);
    let miner = f.max_miner.unwrap_or(total_cap);
    SwapCaps {
        server: f.max_server.map_or(total_cap, |p| amount.mul_ppm(p)),
        routing: Sat::ZERO,
        prepay_routing: Sat::ZERO,
        prepay: Sat::ZERO,
        miner,
        timeout_risk: f.max_timeout_risk.unwrap_or(Sat(miner.0.saturating_mul(2))),
    }
}

/// The limits of a Loop In of `amount` with the server fee `server_fee` and an expected HTLC
/// miner fee `expected_miner`: the server fee as quoted, and one miner-fee limit (the engine
/// caps the funding and, separately, a timeout sweep with it) as large as every cap allows —
/// the miner cap, what `max_total` leaves after the server fee, and half the timeout-risk cap
/// (funding plus sweep). `None` when that limit cannot pay the expected funding or the
/// smallest valid timeout sweep: such a swap could not be funded, or not be taken back.
pub fn loop_in_limits(
    caps: &SwapCaps,
    fees: &LoopInFeeCaps,
    amount: Sat,
    server_fee: Sat,
    expected_miner: Sat,
) -> Option<LoopInLimits> {
    let rest = amount.mul_ppm(fees.max_total).checked_sub(server_fee)?;
    let miner = caps.miner.min(rest).min(Sat(caps.timeout_risk.0 / 2));
    if miner < expected_miner || miner < min_sweep_fee() {
        return None;
    }
    Some(LoopInLimits {
        max_swap_fee: server_fee,
        max_miner_fee: miner,
    })
}

/// The limits of a swap of `amount` with expected fees `expected` (server, routing, prepay
/// routing and miner together), a server fee `server_fee` and a prepay `prepay`.
///
/// The policy caps each fee and the total (`max_total` of the amount); the engine can only
/// cap each fee, so the total left after the server fee is shared among routing, prepay
/// routing and miner fees in proportion to what each is expected to cost, each still under
/// its own cap. The sum of the limits then never exceeds the total cap. `None` when the
/// total cap cannot cover the expected fees.
pub fn swap_limits(
    caps: &SwapCaps,
    fees: &FeeCaps,
    amount: Sat,
    expected: Sat,
    server_fee: Sat,
    prepay: Sat,
    routing_ppm: Ppm,
) -> Option<SwapLimits> {
    let total = amount.mul_ppm(fees.max_total);
    let rest = total.checked_sub(server_fee)?;
    let e_routing = amount.mul_ppm(routing_ppm) + Sat(1);
    let e_prepay_routing = prepay.mul_ppm(routing_ppm) + Sat(1);
    // The sweep must be able to pay at least the smallest valid sweep, or the swap could never
    // reveal: the miner share is expected at no less than that.
    let e_miner = expected
        .saturating_sub(server_fee + e_routing + e_prepay_routing)
        .max(min_sweep_fee());
    let sum = e_routing + e_prepay_routing + e_miner;
    if rest < sum {
        return None;
    }
    let share = |e: Sat| {
        Sat(
            u64::try_from(u128::from(rest.0) * u128::from(e.0) / u128::from(sum.0))
                .unwrap_or(u64::MAX),
        )
    };
    let miner = caps.miner.min(share(e_miner));
    if miner < min_sweep_fee() {
        // The policy's miner cap is below any sweep: such a swap would never reveal.
        return None;
    }
    Some(SwapLimits {
        server: server_fee,
        prepay,
        routing: caps.routing.min(share(e_routing)),
        prepay_routing: caps.prepay_routing.min(share(e_prepay_routing)),
        miner,
    })
}

/// What the policy's budgets leave before anything is spent or reserved: the tightest
/// node-wide limit (a budget's limit or its hard cap) and each rule's tightest sub-limit.
/// What a fresh ledger reports; a test case without its own `budget:` starts from it.
pub fn fresh_budget(policy: &Policy) -> BudgetLeft {
    let total = policy
        .budgets
        .iter()
        .flat_map(|b| std::iter::once(b.limit).chain(b.hard_cap.map(|(_, l)| l)))
        .min();
    let mut per_rule = std::collections::BTreeMap::new();
    for b in &policy.budgets {
        for (rule, limit) in &b.per_rule {
            let e = per_rule.entry(rule.clone()).or_insert(*limit);
            *e = (*e).min(*limit);
        }
    }
    BudgetLeft { total, per_rule }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn fees(max_total: u64) -> FeeCaps {
        FeeCaps {
            max_total: Ppm(max_total),
            max_server: None,
            max_routing: None,
            max_prepay_routing: None,
            max_prepay: None,
            max_miner: None,
        }
    }

    #[test]
    fn a_category_without_its_own_key_is_capped_by_max_total() {
        let f = fees(6_000);
        let c = category_caps(&f, Sat(2_000_000), Sat(30_000));
        assert_eq!(c.prepay, Sat(12_000), "the prepay is capped by max_total");
        assert_eq!(c.server, Sat(12_000));
        assert_eq!(c.miner, Sat(12_000));
        assert_eq!(c.prepay_routing, Sat(180));
        let own = FeeCaps {
            max_prepay: Some(Sat(30_000)),
            ..f
        };
        assert_eq!(
            category_caps(&own, Sat(2_000_000), Sat(30_000)).prepay,
            Sat(30_000)
        );
    }

    #[test]
    fn worst_case_counts_the_prepay_in_place_of_the_server_fee() {
        let l = SwapLimits {
            server: Sat(1_000),
            prepay: Sat(3_000),
            routing: Sat(200),
            prepay_routing: Sat(10),
            miner: Sat(500),
        };
        assert_eq!(l.worst_case(), Sat(3_000 + 200 + 10 + 500));
    }

    #[test]
    fn limits_share_what_the_total_leaves_after_the_server_fee() {
        let f = fees(6_000);
        let amount = Sat(2_000_000);
        let caps = category_caps(&f, amount, Sat(30_000));
        let l = swap_limits(
            &caps,
            &f,
            amount,
            Sat(2_000 + 1_200 + 2_000 + 30),
            Sat(2_000),
            Sat(30_000),
            Ppm(1_000),
        )
        .unwrap();
        assert!(l.routing + l.prepay_routing + l.miner <= Sat(10_000));
        assert_eq!(
            l.worst_case(),
            Sat(30_000) + l.routing + l.prepay_routing + l.miner
        );
        // A server fee above the total cap leaves nothing.
        assert!(
            swap_limits(
                &caps,
                &f,
                amount,
                Sat(13_000),
                Sat(12_001),
                Sat(30_000),
                Ppm(0)
            )
            .is_none()
        );
    }
}
