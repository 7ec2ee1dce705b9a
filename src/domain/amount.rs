//! Amounts. Satoshis and millisatoshis never mix without an explicit conversion.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub};

/// An amount in satoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sat(pub u64);

/// An amount in millisatoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Msat(pub u64);

/// Parts per million, the unit of fee rates and shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ppm(pub u64);

impl Sat {
    /// Zero satoshis.
    pub const ZERO: Sat = Sat(0);

    /// The amount in millisatoshis.
    pub fn to_msat(self) -> Msat {
        Msat(self.0.saturating_mul(1000))
    }

    /// `self - rhs`, or zero if `rhs` is larger.
    pub fn saturating_sub(self, rhs: Sat) -> Sat {
        Sat(self.0.saturating_sub(rhs.0))
    }

    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: Sat) -> Option<Sat> {
        self.0.checked_add(rhs.0).map(Sat)
    }

    /// `self - rhs`, or `None` if `rhs` is larger.
    pub fn checked_sub(self, rhs: Sat) -> Option<Sat> {
        self.0.checked_sub(rhs.0).map(Sat)
    }

    /// `self × ppm / 1_000_000`, rounded down, computed without overflow.
    pub fn mul_ppm(self, ppm: Ppm) -> Sat {
        Sat(((u128::from(self.0) * u128::from(ppm.0)) / 1_000_000) as u64)
    }
}

impl Msat {
    /// The amount in whole satoshis, rounded down (as lnd and Loop truncate).
    pub fn to_sat_floor(self) -> Sat {
        Sat(self.0 / 1000)
    }
}

impl Ppm {
    /// The share `part / whole` in ppm, rounded down; zero when `whole` is zero.
    pub fn ratio(part: u64, whole: u64) -> Ppm {
        if whole == 0 {
            return Ppm(0);
        }
        Ppm(((u128::from(part) * 1_000_000) / u128::from(whole)) as u64)
    }
}

impl Add for Sat {
    type Output = Sat;
    fn add(self, rhs: Sat) -> Sat {
        Sat(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Sat {
    fn add_assign(&mut self, rhs: Sat) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl Sub for Sat {
    type Output = Sat;
    /// Saturating: amounts never go negative.
    fn sub(self, rhs: Sat) -> Sat {
        self.saturating_sub(rhs)
    }
}

impl Sum for Sat {
    fn sum<I: Iterator<Item = Sat>>(iter: I) -> Sat {
        iter.fold(Sat::ZERO, Add::add)
    }
}

impl fmt::Display for Sat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat", self.0)
    }
}

impl fmt::Display for Msat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} msat", self.0)
    }
}

impl fmt::Display for Ppm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ppm", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_ppm_rounds_down_and_does_not_overflow() {
        assert_eq!(Sat(1_000_000).mul_ppm(Ppm(20_000)), Sat(20_000));
        assert_eq!(Sat(999).mul_ppm(Ppm(1_000)), Sat(0));
        assert_eq!(Sat(u64::MAX).mul_ppm(Ppm(1_000_000)), Sat(u64::MAX));
    }

    #[test]
    fn msat_truncates_to_sat() {
        assert_eq!(Msat(1_999).to_sat_floor(), Sat(1));
        assert_eq!(Sat(2).to_msat(), Msat(2_000));
    }

    #[test]
    fn ratio_of_zero_whole_is_zero() {
        assert_eq!(Ppm::ratio(5, 0), Ppm(0));
        assert_eq!(Ppm::ratio(1, 4), Ppm(250_000));
    }
}
