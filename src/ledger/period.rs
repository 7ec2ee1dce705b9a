//! Budget periods and the windows they cut time into.
//!
//! Calendar periods (day, week, month) are aligned to local midnight in the operator's time
//! zone, so "the daily cap" means the operator's day, not a UTC day or a day that drifts with
//! the daemon's tick timing (Loop's budget refresh drifts; see liquidity-landscape.md §1.6).
//! A rolling period is the span of its length that ends at the moment asked about.

use std::fmt;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// How a budget cuts time into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// A local calendar day, from midnight to midnight (23 or 25 hours across a DST change).
    Day,
    /// A local calendar week, from Monday midnight to the next Monday midnight (ISO 8601).
    Week,
    /// A local calendar month, from midnight on the 1st to midnight on the next 1st.
    Month,
    /// The span of this length that ends at the moment asked about. Must be positive;
    /// [`super::Ledger::new`] rejects zero or negative lengths.
    Rolling(TimeDelta),
}

/// A span of time a budget limit applies to.
///
/// Membership is half-open: `start <= t < end`. A calendar window is exactly its calendar
/// unit. A rolling window of length `d` asked about at `now` covers `[now − d, now]`, both
/// ends included, so it is stored with `end = now + 1 ns`; that keeps one membership rule for
/// both kinds and makes a fee recorded at `now` count in the window seen at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// The first instant inside the window.
    pub start: DateTime<Utc>,
    /// The first instant after the window.
    pub end: DateTime<Utc>,
}

impl Window {
    /// All of representable time; the conservative fallback when a bound cannot be computed.
    pub const ALL_TIME: Window = Window {
        start: DateTime::<Utc>::MIN_UTC,
        end: DateTime::<Utc>::MAX_UTC,
    };

    /// Whether the instant `t` lies inside the window.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.start.to_rfc3339(),
            self.end.to_rfc3339()
        )
    }
}

impl Period {
    /// The window of this period that contains `now`, with calendar periods aligned in `tz`.
    ///
    /// Bounds that fall outside chrono's representable range (hundreds of thousands of years
    /// away) widen to [`Window::ALL_TIME`] on that side. A wider window counts more fees, so
    /// the fallback can only make admission stricter, never looser.
    pub fn window_containing(&self, now: DateTime<Utc>, tz: Tz) -> Window {
        let local_date = now.with_timezone(&tz).date_naive();
        let bounds = match *self {
            Period::Day => Some((local_date, local_date.checked_add_days(Days::new(1)))),
            Period::Week => {
                let back = u64::from(local_date.weekday().num_days_from_monday());
                local_date
                    .checked_sub_days(Days::new(back))
                    .map(|monday| (monday, monday.checked_add_days(Days::new(7))))
            }
            Period::Month => local_date
                .with_day(1)
                .map(|first| (first, first.checked_add_months(Months::new(1)))),
            Period::Rolling(length) => {
                return Window {
                    start: now
                        .checked_sub_signed(length)
                        .unwrap_or(DateTime::<Utc>::MIN_UTC),
                    end: now
                        .checked_add_signed(TimeDelta::nanoseconds(1))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                };
            }
        };
        let Some((first_day, next_first_day)) = bounds else {
            return Window::ALL_TIME;
        };
        Window {
            start: local_day_start(tz, first_day).unwrap_or(DateTime::<Utc>::MIN_UTC),
            end: next_first_day
                .and_then(|day| local_day_start(tz, day))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day => f.write_str("day"),
            Period::Week => f.write_str("week"),
            Period::Month => f.write_str("month"),
            Period::Rolling(length) => {
                let secs = length.num_seconds();
                match secs {
                    s if s != 0 && s % 86_400 == 0 => write!(f, "rolling {}d", s / 86_400),
                    s if s != 0 && s % 3_600 == 0 => write!(f, "rolling {}h", s / 3_600),
                    s if s != 0 && s % 60 == 0 => write!(f, "rolling {}m", s / 60),
                    s => write!(f, "rolling {s}s"),
                }
            }
        }
    }
}

/// Granularity used to find the first instant of a day whose midnight falls in a DST gap.
const GAP_STEP_MINUTES: i64 = 15;

/// The first instant of `date` in `tz`.
///
/// Normally local midnight. Where a DST change skips midnight (some zones switch at 00:00),
/// the day starts at the first local time that exists; every real gap is a multiple of
/// 15 minutes, so stepping by that finds the transition instant itself. Where midnight occurs
/// twice (a fall-back at 00:00), the earlier one starts the day.
fn local_day_start(tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = date.and_time(NaiveTime::MIN);
    (0..(24 * 60 / GAP_STEP_MINUTES))
        .filter_map(|step| midnight.checked_add_signed(TimeDelta::minutes(step * GAP_STEP_MINUTES)))
        .find_map(|local| tz.from_local_datetime(&local).earliest())
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test timestamp")
            .with_timezone(&Utc)
    }

    /// (period, zone, now, expected start, expected end), all instants in RFC 3339.
    #[rustfmt::skip]
    const CALENDAR_CASES: &[(Period, &str, &str, &str, &str)] = &[
        // Plain UTC day; the window is half-open, so midnight starts the new day.
        (Period::Day, "UTC", "2026-03-10T12:00:00Z", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z"),
        (Period::Day, "UTC", "2026-03-11T00:00:00Z", "2026-03-11T00:00:00Z", "2026-03-12T00:00:00Z"),
        (Period::Day, "UTC", "2026-03-10T23:59:59.999999999Z", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z"),
        // Berlin in winter (UTC+1): 23:30 UTC is already the next local day.
        (Period::Day, "Europe/Berlin", "2026-01-15T23:30:00Z", "2026-01-15T23:00:00Z", "2026-01-16T23:00:00Z"),
        (Period::Day, "Europe/Berlin", "2026-01-15T22:59:59Z", "2026-01-14T23:00:00Z", "2026-01-15T23:00:00Z"),
        // Spring forward in Berlin, Sunday 2026-03-29: a 23-hour day.
        (Period::Day, "Europe/Berlin", "2026-03-29T12:00:00Z", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"),
        // Fall back in Berlin, Sunday 2026-10-25: a 25-hour day, including the repeated hour.
        (Period::Day, "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"),
        (Period::Day, "Europe/Berlin", "2026-10-25T01:30:00Z", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"),
        // Midnight skipped by DST (Santiago springs forward at 00:00 on 2026-09-06):
        // the day starts at the transition, 04:00 UTC, and lasts 23 hours.
        (Period::Day, "America/Santiago", "2026-09-06T12:00:00Z", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z"),
        // Weeks start on Monday: 2026-03-11 is a Wednesday, 2026-03-15 a Sunday.
        (Period::Week, "UTC", "2026-03-11T08:00:00Z", "2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z"),
        (Period::Week, "UTC", "2026-03-15T23:59:00Z", "2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z"),
        (Period::Week, "UTC", "2026-03-16T00:00:00Z", "2026-03-16T00:00:00Z", "2026-03-23T00:00:00Z"),
        // The Berlin week holding the spring change is 167 hours long.
        (Period::Week, "Europe/Berlin", "2026-03-27T10:00:00Z", "2026-03-22T23:00:00Z", "2026-03-29T22:00:00Z"),
        // Sunday 23:30 UTC in winter is Monday 00:30 in Berlin: a new week there.
        (Period::Week, "Europe/Berlin", "2026-01-18T23:30:00Z", "2026-01-18T23:00:00Z", "2026-01-25T23:00:00Z"),
        // A week spanning a year end.
        (Period::Week, "UTC", "2026-01-01T00:00:00Z", "2025-12-29T00:00:00Z", "2026-01-05T00:00:00Z"),
        // Month ends: 31, 28, 29 (leap) and 30 days.
        (Period::Month, "UTC", "2026-01-31T23:59:59Z", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
        (Period::Month, "UTC", "2026-02-14T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"),
        (Period::Month, "UTC", "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),
        (Period::Month, "UTC", "2026-04-30T00:00:00Z", "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"),
        (Period::Month, "UTC", "2026-12-31T18:00:00Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        // Berlin months start at local midnight; March starts in winter time and ends in summer time.
        (Period::Month, "Europe/Berlin", "2026-03-15T00:00:00Z", "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z"),
        (Period::Month, "Europe/Berlin", "2026-03-31T22:30:00Z", "2026-03-31T22:00:00Z", "2026-04-30T22:00:00Z"),
        (Period::Month, "Europe/Berlin", "2026-10-31T23:30:00Z", "2026-10-31T23:00:00Z", "2026-11-30T23:00:00Z"),
    ];

    #[test]
    fn calendar_windows_align_to_local_midnight() {
        for (period, zone, now, start, end) in CALENDAR_CASES {
            let tz: Tz = zone.parse().expect("test zone");
            let window = period.window_containing(utc(now), tz);
            assert_eq!(
                window,
                Window {
                    start: utc(start),
                    end: utc(end)
                },
                "{period} in {zone} at {now}"
            );
            assert!(window.contains(utc(now)), "{period} in {zone} at {now}");
        }
    }

    #[test]
    fn consecutive_calendar_windows_tile_time() {
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        for period in [Period::Day, Period::Week, Period::Month] {
            let mut window = period.window_containing(utc("2025-12-20T00:00:00Z"), tz);
            for _ in 0..60 {
                let next = period.window_containing(window.end, tz);
                assert_eq!(next.start, window.end, "{period} after {window}");
                assert!(next.end > next.start, "{period}: {next}");
                window = next;
            }
        }
    }

    #[test]
    fn periods_display_in_the_largest_whole_unit() {
        let shown = [
            (Period::Month, "month"),
            (Period::Rolling(TimeDelta::days(30)), "rolling 30d"),
            (Period::Rolling(TimeDelta::hours(36)), "rolling 36h"),
            (Period::Rolling(TimeDelta::minutes(90)), "rolling 90m"),
            (Period::Rolling(TimeDelta::seconds(61)), "rolling 61s"),
        ];
        for (period, text) in shown {
            assert_eq!(period.to_string(), text);
        }
    }

    #[test]
    fn rolling_window_includes_both_ends() {
        let now = utc("2026-03-10T12:00:00Z");
        let window = Period::Rolling(TimeDelta::hours(24)).window_containing(now, Tz::UTC);
        assert!(window.contains(now));
        assert!(window.contains(utc("2026-03-09T12:00:00Z")));
        assert!(!window.contains(utc("2026-03-09T11:59:59.999999999Z")));
        assert!(!window.contains(now + TimeDelta::nanoseconds(1)));
    }

    #[test]
    fn unrepresentable_bounds_widen_the_window() {
        let window = Period::Rolling(TimeDelta::days(365))
            .window_containing(DateTime::<Utc>::MIN_UTC, Tz::UTC);
        assert_eq!(window.start, DateTime::<Utc>::MIN_UTC);
        let window = Period::Month.window_containing(DateTime::<Utc>::MAX_UTC, Tz::UTC);
        assert_eq!(window.end, DateTime::<Utc>::MAX_UTC);
        assert!(window.contains(DateTime::<Utc>::MAX_UTC - TimeDelta::days(1)));
    }
}
