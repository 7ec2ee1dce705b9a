//! Parsers for the scalar forms of policy files. Each returns what is wrong in words; the
//! loader adds the place and the expected form from the key table.

use std::str::FromStr;

use chrono::{NaiveDateTime, TimeDelta};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::chain::fees::SatPerKw;
use crate::domain::{ChanId, Ppm, Sat};

/// Blocks per day, used to turn `30d` into a channel age in blocks.
pub const BLOCKS_PER_DAY: u32 = 144;

/// `150000`, `250k`, `2M`, `1.5M`, optionally followed by `sat` or `sats`.
pub fn amount(text: &str) -> Result<Sat, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("sats")
        .or_else(|| t.strip_suffix("sat"))
        .unwrap_or(t)
        .trim_end();
    let (number, mult) = if let Some(n) = t.strip_suffix('k') {
        (n, 1_000u64)
    } else if let Some(n) = t.strip_suffix('M') {
        (n, 1_000_000u64)
    } else {
        (t, 1u64)
    };
    let number = number.trim_end();
    let value = decimal_scaled(number, mult)
        .ok_or_else(|| format!("`{text}` is not an amount of satoshis"))?;
    Ok(Sat(value))
}

/// `number × mult` for a decimal `number` (at most as many decimals as `mult` allows),
/// exactly, without floating point.
fn decimal_scaled(number: &str, mult: u64) -> Option<u64> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (number.contains('.') && frac.is_empty()) {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let mut value = int.checked_mul(mult)?;
    let mut scale = mult;
    for d in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            return None;
        }
        value = value.checked_add(u64::from(d - b'0') * scale)?;
    }
    Some(value)
}

/// `30%`, `0.6%`, `100%` into parts per million.
pub fn percent(text: &str) -> Result<Ppm, String> {
    let t = text.trim();
    let Some(number) = t.strip_suffix('%') else {
        return Err(format!("`{text}` has no `%` sign"));
    };
    let ppm = decimal_scaled(number.trim_end(), 10_000)
        .ok_or_else(|| format!("`{text}` is not a percentage"))?;
    if ppm > 1_000_000 {
        return Err(format!("`{text}` is above 100%"));
    }
    Ok(Ppm(ppm))
}

/// A band level: a share of capacity or an absolute amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A share of the target's capacity.
    Share(Ppm),
    /// An absolute amount of inbound satoshis.
    Sats(Sat),
}

impl Level {
    /// The level in satoshis for a target of `capacity`.
    pub fn resolve(self, capacity: Sat) -> Sat {
        match self {
            Level::Share(p) => capacity.mul_ppm(p),
            Level::Sats(s) => s.min(capacity),
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Level::Share(p) => write!(f, "{}", ppm_percent(*p)),
            Level::Sats(s) => write!(f, "{}", s.0),
        }
    }
}

/// `30%` or an amount.
pub fn level(text: &str) -> Result<Level, String> {
    if text.trim().ends_with('%') {
        percent(text).map(Level::Share)
    } else {
        amount(text).map(Level::Sats)
    }
}

/// Renders ppm as a percentage without trailing zeros: 300000 → `30%`, 6000 → `0.6%`.
pub fn ppm_percent(p: Ppm) -> String {
    let whole = p.0 / 10_000;
    let frac = p.0 % 10_000;
    if frac == 0 {
        format!("{whole}%")
    } else {
        let f = format!("{frac:04}");
        format!("{whole}.{}%", f.trim_end_matches('0'))
    }
}

/// `30s`, `30m`, `6h`, `14d`, `1w`, or combinations such as `1d12h`.
pub fn duration(text: &str) -> Result<TimeDelta, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("the duration is empty".to_owned());
    }
    let mut total: i64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            "" => return Err(format!("`{text}` has no unit")),
            u => return Err(format!("`{u}` in `{text}` is not a unit (s, m, h, d, w)")),
        };
        total = total
            .checked_add(
                n.checked_mul(secs)
                    .ok_or_else(|| format!("`{text}` is too large"))?,
            )
            .ok_or_else(|| format!("`{text}` is too large"))?;
        rest = &rest[unit_len..];
    }
    if total == 0 {
        return Err(format!("`{text}` is zero"));
    }
    TimeDelta::try_seconds(total).ok_or_else(|| format!("`{text}` is too large"))
}

/// `20 sat/vB` (also `sat/vb`) or `5000 sat/kw`.
pub fn fee_rate(text: &str) -> Result<SatPerKw, String> {
    let t = text.trim();
    let (number, per_kw) = if let Some(n) = t.strip_suffix("sat/kw") {
        (n, true)
    } else if let Some(n) = t
        .strip_suffix("sat/vB")
        .or_else(|| t.strip_suffix("sat/vb"))
    {
        (n, false)
    } else {
        return Err(format!("`{text}` has no unit (sat/vB or sat/kw)"));
    };
    let number = number.trim();
    if per_kw {
        let v = decimal_scaled(number, 1).ok_or_else(|| format!("`{text}` is not a fee rate"))?;
        Ok(SatPerKw(v))
    } else {
        // 1 sat/vB = 250 sat/kw; allow one decimal place of sat/vB (25 sat/kw steps).
        let v =
            decimal_scaled(number, 1000).ok_or_else(|| format!("`{text}` is not a fee rate"))?;
        Ok(SatPerKw(v / 4))
    }
}

/// A 5-field cron expression (no seconds, no year).
pub fn cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 && !text.trim().starts_with('@') {
        return Err(format!(
            "`{text}` has {fields} fields, not 5 (minute hour day-of-month month day-of-week)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text.trim())
        .map_err(|e| format!("`{text}` is not a valid cron expression: {e}"))
}

/// An IANA time zone name.
pub fn time_zone(text: &str) -> Result<Tz, String> {
    Tz::from_str(text.trim()).map_err(|_| format!("`{text}` is not a known time zone"))
}

/// `2026-12-24 18:00` or `2026-12-24T18:00` (local time).
pub fn local_datetime(text: &str) -> Result<NaiveDateTime, String> {
    let t = text.trim();
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M"))
        .map_err(|_| format!("`{text}` is not a date and time"))
}

/// A whole number in `lo..=hi`.
pub fn int(text: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if n < lo || n > hi {
        return Err(format!("{n} is out of range"));
    }
    Ok(n)
}

/// `true` or `false`.
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("`{other}` is not true or false")),
    }
}

/// A name of letters, digits, `-`, `_`, `.`.
pub fn name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a name"))
    }
}

/// A channel id.
pub fn chan_id(text: &str) -> Result<ChanId, String> {
    ChanId::from_str(text.trim()).map_err(|_| format!("`{text}` is not a channel id"))
}

/// A node pubkey: 66 hex digits, starting 02 or 03. Returned lower-case.
pub fn pubkey(text: &str) -> Result<String, String> {
    let t = text.trim();
    let ok = t.len() == 66
        && t.bytes().all(|b| b.is_ascii_hexdigit())
        && (t.starts_with("02") || t.starts_with("03"));
    if ok {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!("`{text}` is not a node pubkey"))
    }
}

/// A channel age: blocks, or days as `30d`.
pub fn age_blocks(text: &str) -> Result<u32, String> {
    let t = text.trim();
    if let Some(days) = t.strip_suffix('d') {
        let d: u32 = days
            .parse()
            .map_err(|_| format!("`{text}` is not a number of days"))?;
        return d
            .checked_mul(BLOCKS_PER_DAY)
            .ok_or_else(|| format!("`{text}` is too large"));
    }
    t.parse::<u32>()
        .map_err(|_| format!("`{text}` is not a number of blocks or days"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(amount("150000"), Ok(Sat(150_000)));
        assert_eq!(amount("250k"), Ok(Sat(250_000)));
        assert_eq!(amount("2M"), Ok(Sat(2_000_000)));
        assert_eq!(amount("1.5M"), Ok(Sat(1_500_000)));
        assert_eq!(amount("15k sat"), Ok(Sat(15_000)));
        assert!(amount("1.5").is_err());
        assert!(amount("lots").is_err());
        assert!(amount("-5k").is_err());
        assert!(amount("1.2345678M").is_err());
    }

    #[test]
    fn percents() {
        assert_eq!(percent("30%"), Ok(Ppm(300_000)));
        assert_eq!(percent("0.6%"), Ok(Ppm(6_000)));
        assert_eq!(ppm_percent(Ppm(6_000)), "0.6%");
        assert_eq!(ppm_percent(Ppm(300_000)), "30%");
        assert!(percent("30").is_err());
        assert!(percent("130%").is_err());
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(duration("6h"), Ok(TimeDelta::hours(6)));
        assert_eq!(duration("14d"), Ok(TimeDelta::days(14)));
        assert_eq!(duration("1d12h"), Ok(TimeDelta::hours(36)));
        assert!(duration("6").is_err());
        assert!(duration("6y").is_err());
        assert_eq!(fee_rate("20 sat/vB"), Ok(SatPerKw(5_000)));
        assert_eq!(fee_rate("2.5 sat/vB"), Ok(SatPerKw(625)));
        assert_eq!(fee_rate("253 sat/kw"), Ok(SatPerKw(253)));
        assert!(fee_rate("20").is_err());
    }

    #[test]
    fn cron_is_five_fields() {
        assert!(cron("0 1-6 * * *").is_ok());
        assert!(cron("0 0 1-6 * * *").is_err());
        assert!(cron("61 * * * *").is_err());
        assert!(time_zone("Europe/Berlin").is_ok());
        assert!(time_zone("Mars/Olympus").is_err());
    }
}
