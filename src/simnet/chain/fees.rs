//! Fee estimates that follow a configurable trace, answered per confirmation target in sat/kw
//! (lnd's unit: satoshis per 1000 weight units).

use crate::domain::BlockHeight;

/// lnd's floor for fee rates: 253 sat/kw, i.e. just over 1 sat/vB after rounding.
pub const FEE_FLOOR_SAT_KW: u64 = 253;

/// The largest confirmation target answered; larger targets are treated as this one.
pub const MAX_CONF_TARGET: u32 = 1008;

/// How the next-block fee rate moves with height. All rates are in sat/kw.
#[derive(Debug, Clone, PartialEq)]
pub enum FeeTrace {
    /// The same rate at every height (sat/kw).
    Flat(u64),
    /// The same rate at every height, answered as is even below lnd's floor of 253 sat/kw:
    /// an estimator that misbehaves (a chain backend answering with less than the relay fee).
    /// Blocks still take only what pays the relay fee.
    BelowFloor(u64),
    /// A daily rhythm: `base + amplitude × sin(2π × height / period_blocks)`.
    Diurnal {
        /// The mean rate (sat/kw).
        base_sat_kw: u64,
        /// How far the rate swings either side of the mean (sat/kw).
        amplitude_sat_kw: u64,
        /// Blocks per cycle (144 is one day).
        period_blocks: u32,
    },
    /// `base` everywhere except `rate` for `duration_blocks` blocks from `at_height`.
    Spike {
        /// The rate outside the spike (sat/kw).
        base_sat_kw: u64,
        /// The first height of the spike.
        at_height: BlockHeight,
        /// The rate during the spike (sat/kw).
        rate_sat_kw: u64,
        /// How many blocks the spike lasts.
        duration_blocks: u32,
    },
}

impl Default for FeeTrace {
    /// A calm chain: 2,500 sat/kw (10 sat/vB).
    fn default() -> Self {
        FeeTrace::Flat(2_500)
    }
}

impl FeeTrace {
    /// The rate a transaction needs to get into the block at `height` (sat/kw, floored).
    pub fn rate_at(&self, height: BlockHeight) -> u64 {
        let rate = match *self {
            FeeTrace::Flat(rate) => rate,
            FeeTrace::BelowFloor(rate) => return rate,
            FeeTrace::Diurnal {
                base_sat_kw,
                amplitude_sat_kw,
                period_blocks,
            } => {
                let period = f64::from(period_blocks.max(1));
                let phase = f64::from(height.0 % period_blocks.max(1)) / period;
                let swing = amplitude_sat_kw as f64 * (std::f64::consts::TAU * phase).sin();
                (base_sat_kw as f64 + swing).round().max(0.0) as u64
            }
            FeeTrace::Spike {
                base_sat_kw,
                at_height,
                rate_sat_kw,
                duration_blocks,
            } => {
                let end = u64::from(at_height.0) + u64::from(duration_blocks);
                if height >= at_height && u64::from(height.0) < end {
                    rate_sat_kw
                } else {
                    base_sat_kw
                }
            }
        };
        rate.max(FEE_FLOOR_SAT_KW)
    }

    /// The fee rate (sat/kw) to confirm within `conf_target` blocks when the tip is at `tip`
    /// (below the floor only for [`FeeTrace::BelowFloor`]):
    /// the lowest rate the trace reaches in blocks `tip+1 ..= tip+conf_target`. Waiting longer
    /// never costs more, so the answer never increases with the target. A target of 0 is
    /// treated as 1, targets above [`MAX_CONF_TARGET`] as that.
    pub fn estimate(&self, conf_target: u32, tip: BlockHeight) -> u64 {
        let target = conf_target.clamp(1, MAX_CONF_TARGET);
        (1..=target)
            .map(|ahead| self.rate_at(BlockHeight(tip.0.saturating_add(ahead))))
            .min()
            .unwrap_or(FEE_FLOOR_SAT_KW)
    }
}
