//! Identifiers and heights.

use std::fmt;
use std::str::FromStr;

/// A block height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockHeight(pub u32);

impl fmt::Display for BlockHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A short channel id, as lnd's `chan_id` (block height, tx index, output index packed in a
/// u64). Displayed in the `BLOCKxTXxOUT` form operators know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChanId(pub u64);

impl ChanId {
    /// Packs a short channel id from its parts.
    pub fn from_parts(block: u32, tx_index: u32, output: u16) -> ChanId {
        ChanId(
            (u64::from(block) << 40) | (u64::from(tx_index & 0xff_ffff) << 16) | u64::from(output),
        )
    }

    /// The block height the funding transaction confirmed in.
    pub fn block(self) -> u32 {
        (self.0 >> 40) as u32
    }

    /// The funding transaction's index in its block.
    pub fn tx_index(self) -> u32 {
        ((self.0 >> 16) & 0xff_ffff) as u32
    }

    /// The funding output's index.
    pub fn output(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Display for ChanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.block(), self.tx_index(), self.output())
    }
}

/// Why a channel id did not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a channel id: expected BLOCKxTXxOUT (e.g. 800000x12x1) or lnd's numeric form"
)]
pub struct ParseChanIdError(String);

impl FromStr for ChanId {
    type Err = ParseChanIdError;
    fn from_str(s: &str) -> Result<ChanId, ParseChanIdError> {
        let err = || ParseChanIdError(s.to_owned());
        if let Ok(n) = s.parse::<u64>() {
            return Ok(ChanId(n));
        }
        let parts: Vec<&str> = s.split(['x', ':']).collect();
        if parts.len() != 3 {
            return Err(err());
        }
        let block = parts[0].parse::<u32>().map_err(|_| err())?;
        let tx = parts[1].parse::<u32>().map_err(|_| err())?;
        let out = parts[2].parse::<u16>().map_err(|_| err())?;
        if tx > 0xff_ffff {
            return Err(err());
        }
        Ok(ChanId::from_parts(block, tx, out))
    }
}

/// A swap's payment hash: SHA256 of the preimage. Public; safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwapHash(pub [u8; 32]);

impl fmt::Display for SwapHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chan_id_round_trips_through_both_forms() {
        let id = ChanId::from_parts(800_000, 12, 1);
        assert_eq!(id.to_string(), "800000x12x1");
        assert_eq!("800000x12x1".parse::<ChanId>().ok(), Some(id));
        assert_eq!(id.0.to_string().parse::<ChanId>().ok(), Some(id));
        assert!("800000x12".parse::<ChanId>().is_err());
        assert!("axbxc".parse::<ChanId>().is_err());
    }
}
