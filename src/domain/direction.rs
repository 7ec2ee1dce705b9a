//! Which way a swap moves funds.

use std::fmt;

/// A swap's direction: Loop Out (off-chain to on-chain) or Loop In (on-chain to off-chain).
/// A closed set: metrics label series with [`SwapDirection::as_str`], so a new direction is a
/// new variant, never a free string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SwapDirection {
    /// Loop Out: the node pays off-chain and receives on-chain.
    Out,
    /// Loop In: the node pays on-chain and receives off-chain.
    In,
}

impl SwapDirection {
    /// Every direction.
    pub const ALL: [SwapDirection; 2] = [SwapDirection::Out, SwapDirection::In];

    /// The word metric labels carry: `out` or `in`.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapDirection::Out => "out",
            SwapDirection::In => "in",
        }
    }
}

impl fmt::Display for SwapDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
