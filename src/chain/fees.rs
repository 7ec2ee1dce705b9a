//! Sweep fee maths: which rate to pay as the expiry nears, the caps, weights and fees.
//!
//! The rate follows Loop's deadline rule: the confirmation target is the number of blocks left
//! before the HTLC expires, so the fee rises by itself block after block; inside the last ten
//! blocks the target drops to three and the estimate is raised by 10 %. A swept value can never
//! pay more than 20 % of itself in fees.
//!
//! sluice's own rules on top (`docs/misbehaviour.md`, Fees): the preimage is revealed only when
//! the heaviest sweep at the needed rate fits `max_miner_fee` ([`sweep_affordable`]); after the
//! reveal a sweep offers the needed rate raised on a schedule toward the whole cap
//! ([`fee_schedule_share`], [`offered_rate`]) and never more, so [`miner_fee_bound`] bounds what
//! any swap pays miners.

use std::fmt;

use bitcoin::Weight;
use bitcoin::script::Script;

use crate::domain::{BlockHeight, Ppm, Sat};

/// A fee rate in satoshis per 1000 weight units, lnd's unit (1 sat/vB = 250 sat/kw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SatPerKw(pub u64);

impl SatPerKw {
    /// lnd's absolute floor (`chainfee.AbsoluteFeePerKwFloor`): 253 sat/kw, just above
    /// 1 sat/vB once rounding is accounted for.
    pub const FLOOR: SatPerKw = SatPerKw(253);

    /// Converts from sat/vB.
    pub fn from_sat_per_vbyte(sat_per_vbyte: u64) -> SatPerKw {
        SatPerKw(sat_per_vbyte.saturating_mul(250))
    }

    /// The rate in sat/vB, rounded down.
    pub fn to_sat_per_vbyte_floor(self) -> u64 {
        self.0 / 250
    }
}

impl fmt::Display for SatPerKw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat/kw", self.0)
    }
}

/// Below this many blocks left the sweep is urgent (Loop's `DefaultSweepConfTargetDelta`).
pub const URGENT_WITHIN_BLOCKS: u32 = 10;

/// The confirmation target used once the sweep is urgent.
pub const URGENT_CONF_TARGET: u32 = 3;

/// lnd's estimator refuses targets below two blocks.
pub const MIN_CONF_TARGET: u32 = 2;

/// The largest share of the swept value the fee may take (Loop's `MaxFeeToAmountRatio`).
pub const MAX_FEE_SHARE: Ppm = Ppm(200_000);

/// Blocks left before `expiry` at `height`; zero once the expiry is reached or passed.
pub fn blocks_left(expiry: BlockHeight, height: BlockHeight) -> u32 {
    expiry.0.saturating_sub(height.0)
}

/// The confirmation target for a sweep with `blocks_left` blocks to go, and whether the
/// sweep is urgent (which also raises the estimate by 10 %).
pub fn conf_target(blocks_left: u32) -> (u32, bool) {
    let target = blocks_left.max(MIN_CONF_TARGET);
    if target <= URGENT_WITHIN_BLOCKS {
        (target.min(URGENT_CONF_TARGET), true)
    } else {
        (target, false)
    }
}

/// The sweep fee rate for `blocks_left` blocks before expiry, given a fee estimator for a
/// confirmation target (lnd's `EstimateFee`): estimate at the deadline-driven target, ×1.1 when
/// urgent, never below [`SatPerKw::FLOOR`].
pub fn sweep_fee_rate(blocks_left: u32, estimate: impl Fn(u32) -> SatPerKw) -> SatPerKw {
    let (target, urgent) = conf_target(blocks_left);
    let mut rate = estimate(target).0;
    if urgent {
        rate = rate.saturating_mul(11) / 10;
    }
    SatPerKw(rate).max(SatPerKw::FLOOR)
}

/// The heaviest sweep sluice ever publishes: the v3 success leaf (the path that needs nothing
/// from the server) paying to the longest output script an address can have (a 40-byte witness
/// program). Fees are bounded with it, so they hold whatever the destination and path.
pub fn max_sweep_weight() -> Weight {
    let longest = bitcoin::ScriptBuf::from_bytes([vec![0x5a, 40], vec![0; 40]].concat());
    sweep_weight(SweepWitness::V3Success, &longest)
}

/// The fee of the smallest valid sweep sluice may have to pay: [`max_sweep_weight`] at the
/// relay floor. A `max_miner_fee` below it can never pay a sweep.
pub fn min_sweep_fee() -> Sat {
    fee_for(max_sweep_weight(), SatPerKw::FLOOR)
}

/// The reveal gate's fee rule: the sweep at the `needed` rate ([`sweep_fee_rate`]) fits the
/// swap's `max_miner_fee`, for the heaviest sweep, and without the 20 % clamp of the `swept`
/// value cutting it below that rate. Only then may the preimage leave: after the reveal the
/// sweep must go out at once and confirm before the expiry, within the same cap.
pub fn sweep_affordable(needed: SatPerKw, max_miner_fee: Sat, swept: Sat) -> bool {
    let fee = fee_for(max_sweep_weight(), needed);
    fee <= max_miner_fee && !clamp_fee(fee, swept).1
}

/// The share of `max_miner_fee` a sweep offers at least, at `height`, after a reveal at
/// `revealed_at`: it rises linearly from nothing at the reveal to the whole cap
/// `full_within` blocks before `expiry` (and stays whole from there), so a sweep that does not
/// confirm is replaced at a higher fee every block while the deadline nears.
pub fn fee_schedule_share(
    revealed_at: BlockHeight,
    height: BlockHeight,
    expiry: BlockHeight,
    full_within: u32,
) -> Ppm {
    let full_at = expiry.0.saturating_sub(full_within);
    if height.0 >= full_at || revealed_at.0 >= full_at {
        return Ppm(1_000_000);
    }
    let span = u64::from(full_at - revealed_at.0);
    let elapsed = u64::from(height.0.saturating_sub(revealed_at.0));
    Ppm(elapsed * 1_000_000 / span)
}

/// The rate a sweep of `weight` is published at after the reveal: the `needed` rate, raised to
/// at least `share` of the cap, never above the cap (`max_miner_fee` over `weight`) and never
/// below the relay floor. The fee is then clamped to 20 % of the swept value
/// ([`clamp_fee`], in `build_sweep`). The fee paid is therefore at most
/// [`miner_fee_bound`] of `max_miner_fee`, in every regime.
pub fn offered_rate(needed: SatPerKw, max_miner_fee: Sat, weight: Weight, share: Ppm) -> SatPerKw {
    let cap = rate_for_fee(max_miner_fee, weight);
    let scheduled = SatPerKw(
        u64::try_from(u128::from(cap.0) * u128::from(share.0.min(1_000_000)) / 1_000_000)
            .unwrap_or(u64::MAX),
    );
    needed.max(scheduled).min(cap).max(SatPerKw::FLOOR)
}

/// The rate of a Loop In timeout sweep of `weight`: lnd's `needed` estimate, never above the
/// rate at which the sweep pays `max_fee` and never below the relay floor. Loop leaves the
/// timeout sweep uncapped; sluice caps it, which is safe because until someone sweeps, only a
/// server that paid the invoice can take the HTLC.
pub fn capped_rate(needed: SatPerKw, max_fee: Sat, weight: Weight) -> SatPerKw {
    needed
        .min(rate_for_fee(max_fee, weight))
        .max(SatPerKw::FLOOR)
}

/// The most a swap with `max_miner_fee` can pay miners: the cap itself, or the smallest valid
/// sweep when the cap is below it (a swap revealed under an older rule still sweeps at the
/// floor). What a reservation counts for the sweep.
pub fn miner_fee_bound(max_miner_fee: Sat) -> Sat {
    max_miner_fee.max(min_sweep_fee())
}

/// The highest rate at which a transaction of `weight` pays at most `max_fee`: how an absolute
/// miner-fee budget (Loop's `max_miner_fee`) becomes a rate cap for [`apply_fee_cap`].
pub fn rate_for_fee(max_fee: Sat, weight: Weight) -> SatPerKw {
    let wu = weight.to_wu();
    if wu == 0 {
        return SatPerKw(u64::MAX);
    }
    SatPerKw(((u128::from(max_fee.0) * 1000) / u128::from(wu)).min(u128::from(u64::MAX)) as u64)
}

/// The fee for `weight` at `rate`, rounded up so the transaction never pays less than the
/// rate asked for.
pub fn fee_for(weight: Weight, rate: SatPerKw) -> Sat {
    let fee = (u128::from(weight.to_wu()) * u128::from(rate.0)).div_ceil(1000);
    Sat(fee.min(u128::from(u64::MAX)) as u64)
}

/// Clamps `fee` to [`MAX_FEE_SHARE`] of the swept value; returns the fee and whether it was cut.
pub fn clamp_fee(fee: Sat, swept: Sat) -> (Sat, bool) {
    let max = swept.mul_ppm(MAX_FEE_SHARE);
    if fee > max { (max, true) } else { (fee, false) }
}

/// How the HTLC input of a sweep is spent; it decides the witness size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SweepWitness {
    /// v3 cooperative key path: one 64-byte BIP-340 signature.
    KeyPath,
    /// v3 success leaf: preimage, signature, the 63-byte script, the 65-byte control block.
    V3Success,
    /// v2 success branch: preimage, DER signature with sighash byte (at most 73), the script.
    V2Success {
        /// Length of the v2 witness script in bytes.
        script_len: usize,
    },
    /// v3 timeout leaf (a Loop In sweeping its own HTLC back after the expiry): signature, the
    /// timeout script, the 65-byte control block.
    V3Timeout {
        /// Length of the timeout script in bytes (it depends on the expiry's encoding).
        script_len: usize,
    },
}

/// The witness of each kind, in bytes (= weight units), counting the item count and lengths.
fn witness_wu(kind: SweepWitness) -> u64 {
    match kind {
        // count + (len + sig)
        SweepWitness::KeyPath => 1 + 1 + 64,
        // count + preimage + sig + script + control block
        SweepWitness::V3Success => 1 + (1 + 32) + (1 + 64) + (1 + 63) + (1 + 65),
        SweepWitness::V2Success { script_len } => {
            1 + (1 + 32) + (1 + 73) + varint_len(script_len as u64) + script_len as u64
        }
        SweepWitness::V3Timeout { script_len } => {
            1 + (1 + 64) + varint_len(script_len as u64) + script_len as u64 + (1 + 65)
        }
    }
}

fn varint_len(n: u64) -> u64 {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The weight of a one-input, one-output sweep paying to `destination`: version, counts,
/// the input (outpoint, empty scriptSig, sequence), the output, lock time at four units per
/// byte, plus the segwit marker and flag and the witness at one unit per byte. For the v2
/// witness this is an upper bound (DER signatures are 71–73 bytes); otherwise exact.
pub fn sweep_weight(kind: SweepWitness, destination: &Script) -> Weight {
    let script_len = destination.len() as u64;
    let output = 8 + varint_len(script_len) + script_len;
    let base = 4 + 1 + (36 + 1 + 4) + 1 + output + 4;
    Weight::from_wu(base * 4 + 2 + witness_wu(kind))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flat(rate: u64) -> impl Fn(u32) -> SatPerKw {
        move |_| SatPerKw(rate)
    }

    proptest! {
        #[test]
        fn a_capped_rate_never_pays_more_than_the_cap_above_the_floor(
            needed in 0u64..10_000_000,
            max_fee in 0u64..10_000_000,
            script_len in 30usize..50,
        ) {
            let weight = sweep_weight(
                SweepWitness::V3Timeout { script_len },
                &bitcoin::ScriptBuf::from_bytes([vec![0x00, 0x14], vec![0; 20]].concat()),
            );
            let rate = capped_rate(SatPerKw(needed), Sat(max_fee), weight);
            prop_assert!(rate >= SatPerKw::FLOOR);
            prop_assert!(rate <= SatPerKw(needed).max(SatPerKw::FLOOR));
            if Sat(max_fee) >= fee_for(weight, SatPerKw::FLOOR) {
                prop_assert!(fee_for(weight, rate) <= Sat(max_fee));
            }
        }
    }

    #[test]
    fn deadline_rule_table() {
        // (blocks_left, estimator, expected target asked, expected rate)
        let by_target = |t: u32| SatPerKw(10_000 / u64::from(t));
        let cases: &[(u32, u32, u64)] = &[
            (100, 100, 253), // 10000/100 = 100 → floor
            (50, 50, 253),   // 200 → floor
            (11, 11, 909),   // not urgent yet
            (10, 3, 3666),   // urgent: target 3, 3333 × 1.1
            (3, 3, 3666),
            (2, 2, 5500), // target stays 2 (min), ×1.1
            (1, 2, 5500), // floored at 2
            (0, 2, 5500), // past expiry: still the most urgent target
        ];
        for &(left, target, rate) in cases {
            assert_eq!(conf_target(left).0, target, "target for {left} blocks left");
            assert_eq!(
                sweep_fee_rate(left, by_target),
                SatPerKw(rate),
                "rate for {left}"
            );
        }
    }

    #[test]
    fn floor_applies_after_the_urgent_factor() {
        assert_eq!(sweep_fee_rate(5, flat(100)), SatPerKw::FLOOR);
        assert_eq!(
            sweep_fee_rate(5, flat(240)),
            SatPerKw(264),
            "240 × 1.1 = 264 > 253"
        );
        assert_eq!(sweep_fee_rate(500, flat(0)), SatPerKw::FLOOR);
    }

    #[test]
    fn the_schedule_rises_from_the_reveal_to_the_whole_cap() {
        let (reveal, expiry) = (BlockHeight(1_000), BlockHeight(1_110));
        let share = |h: u32| fee_schedule_share(reveal, BlockHeight(h), expiry, 10);
        assert_eq!(share(1_000), Ppm(0));
        assert_eq!(share(1_050), Ppm(500_000));
        assert_eq!(share(1_099), Ppm(990_000));
        assert_eq!(share(1_100), Ppm(1_000_000));
        assert_eq!(share(1_200), Ppm(1_000_000));
        // Revealed inside the last blocks: the whole cap at once.
        assert_eq!(
            fee_schedule_share(BlockHeight(1_105), BlockHeight(1_105), expiry, 10),
            Ppm(1_000_000)
        );
    }

    #[test]
    fn offered_rate_table() {
        let w = Weight::from_wu(1_000);
        // (needed, max fee, share, expected): the cap is max fee / weight = 2 000 sat/kw.
        let cases: &[(u64, u64, u64, u64)] = &[
            (500, 2_000, 0, 500),             // the needed rate
            (500, 2_000, 500_000, 1_000),     // raised by the schedule
            (5_000, 2_000, 0, 2_000),         // a spike: held at the cap, urgent or not
            (5_000, 2_000, 1_000_000, 2_000), // the whole cap at the end
            (500, 100, 1_000_000, 253),       // a cap below the floor still pays the floor
        ];
        for &(needed, max_fee, share, want) in cases {
            assert_eq!(
                offered_rate(SatPerKw(needed), Sat(max_fee), w, Ppm(share)),
                SatPerKw(want),
                "needed {needed} max {max_fee} share {share}"
            );
        }
    }

    #[test]
    fn the_reveal_gate_needs_the_heaviest_sweep_to_fit() {
        let heaviest = max_sweep_weight();
        assert!(
            heaviest
                > sweep_weight(
                    SweepWitness::V3Success,
                    &bitcoin::ScriptBuf::from_bytes(vec![0x51; 34])
                )
        );
        let fee = fee_for(heaviest, SatPerKw(1_000));
        assert!(sweep_affordable(SatPerKw(1_000), fee, Sat(1_000_000)));
        assert!(!sweep_affordable(
            SatPerKw(1_000),
            fee - Sat(1),
            Sat(1_000_000)
        ));
        // The 20 % clamp would cut the fee below the needed rate: not affordable either.
        assert!(!sweep_affordable(SatPerKw(1_000), fee, Sat(fee.0 * 4)));
        assert_eq!(min_sweep_fee(), fee_for(heaviest, SatPerKw::FLOOR));
        assert_eq!(miner_fee_bound(Sat(10)), min_sweep_fee());
        assert_eq!(miner_fee_bound(Sat(100_000)), Sat(100_000));
    }

    #[test]
    fn clamp_takes_at_most_a_fifth() {
        assert_eq!(clamp_fee(Sat(30_000), Sat(100_000)), (Sat(20_000), true));
        assert_eq!(clamp_fee(Sat(20_000), Sat(100_000)), (Sat(20_000), false));
        assert_eq!(clamp_fee(Sat(1), Sat(0)), (Sat(0), true));
    }

    #[test]
    fn fee_rounds_up_and_rate_for_fee_inverts_it() {
        assert_eq!(fee_for(Weight::from_wu(444), SatPerKw(253)), Sat(113)); // 112.332 → 113
        assert_eq!(fee_for(Weight::from_wu(1000), SatPerKw(250)), Sat(250));
        let w = Weight::from_wu(607);
        let cap = rate_for_fee(Sat(1000), w);
        assert!(fee_for(w, cap) <= Sat(1000));
        assert!(fee_for(w, SatPerKw(cap.0 + 1)) > Sat(1000) || cap.0 == u64::MAX);
        assert_eq!(SatPerKw::from_sat_per_vbyte(2), SatPerKw(500));
        assert_eq!(SatPerKw(501).to_sat_per_vbyte_floor(), 2);
    }

    #[test]
    fn weights_for_a_p2tr_destination() {
        let p2tr = bitcoin::ScriptBuf::from_bytes(vec![0x51; 34]);
        assert_eq!(sweep_weight(SweepWitness::KeyPath, &p2tr).to_wu(), 444);
        assert_eq!(sweep_weight(SweepWitness::V3Success, &p2tr).to_wu(), 607);
    }

    proptest! {
        /// Whatever the estimate, the regime (urgent or not), the schedule and the path, the
        /// fee a sweep pays never exceeds the bound a reservation counts.
        #[test]
        fn a_sweep_never_pays_more_than_the_bound(
            estimate in prop_oneof![0u64..253, 0u64..10_000, 0u64..5_000_000],
            blocks_left in 0u32..300,
            max_fee in prop_oneof![0u64..200, 0u64..100_000],
            share in 0u64..=1_000_000,
            key_path in any::<bool>(),
            dest_len in prop::sample::select(vec![22usize, 23, 25, 34, 42]),
            swept in 1_000u64..10_000_000,
        ) {
            let dest = bitcoin::ScriptBuf::from_bytes(vec![0; dest_len]);
            let path = if key_path { SweepWitness::KeyPath } else { SweepWitness::V3Success };
            let weight = sweep_weight(path, &dest);
            prop_assert!(weight <= max_sweep_weight());
            let needed = sweep_fee_rate(blocks_left, |_| SatPerKw(estimate));
            prop_assert!(needed >= SatPerKw::FLOOR);
            let rate = offered_rate(needed, Sat(max_fee), weight, Ppm(share));
            prop_assert!(rate >= SatPerKw::FLOOR);
            let (fee, _) = clamp_fee(fee_for(weight, rate), Sat(swept));
            prop_assert!(fee <= miner_fee_bound(Sat(max_fee)), "fee {} bound {}", fee, miner_fee_bound(Sat(max_fee)));
            // When the gate let the reveal through, the sweep pays at least the needed rate.
            if sweep_affordable(needed, Sat(max_fee), Sat(swept)) {
                prop_assert!(rate >= needed);
                prop_assert!(fee <= Sat(max_fee));
            }
        }

        /// With a constant estimate, the rate never falls as the expiry approaches.
        #[test]
        fn rate_never_decreases_as_blocks_run_out(estimate in 0u64..2_000_000, start in 0u32..5_000) {
            let mut last = SatPerKw(0);
            for left in (0..=start).rev() {
                let rate = sweep_fee_rate(left, flat(estimate));
                prop_assert!(rate >= last, "rate fell at {} blocks left: {} < {}", left, rate, last);
                last = rate;
            }
        }

        /// The same holds for any estimator that asks more for faster confirmation.
        #[test]
        fn rate_never_decreases_with_a_monotone_estimator(base in 1u64..100_000, start in 0u32..1_000) {
            let est = move |t: u32| SatPerKw(base * 1000 / u64::from(t.max(1)));
            let mut last = SatPerKw(0);
            for left in (0..=start).rev() {
                let rate = sweep_fee_rate(left, est);
                prop_assert!(rate >= last);
                last = rate;
            }
        }
    }
}
