//! Which way a swap moves liquidity: the closed set of directions.

use std::fmt;

/// A swap's direction. A closed set: metrics label series with [`Direction::as_str`], so a new
/// direction is a new variant, never a free string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Direction {
    /// Loop Out: off-chain funds leave through a channel and come back on chain; the node
    /// gains inbound liquidity.
    #[default]
    Out,
    /// Loop In: on-chain funds go to the server, which pays the node off chain; the node
    /// gains outbound liquidity (loses inbound).
    In,
}

impl Direction {
    /// Both directions, in a stable order.
    pub const ALL: [Direction; 2] = [Direction::Out, Direction::In];

    /// The stable name: `out` or `in` (API fields, journal, metrics label, scripts).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }

    /// For people: `loop out` or `loop in`.
    pub fn swap_name(self) -> &'static str {
        match self {
            Direction::Out => "loop out",
            Direction::In => "loop in",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
