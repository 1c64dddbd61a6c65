//! RFC 3339 timestamps in UTC with microseconds (`2026-11-23T12:00:00.123456+00:00`), the form Heroku prints log
//! lines with. Written here rather than pulled from a date crate: log lines only ever need this one format.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;

/// Displays (and serializes) a [`SystemTime`] as RFC 3339 in UTC with microseconds, truncating the nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, micros) = unix_micros(self.0);
        let (year, month, day) = civil_from_days(secs.div_euclid(SECONDS_PER_DAY));
        let second_of_day = secs.rem_euclid(SECONDS_PER_DAY);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
        )
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A timestamp that is not RFC 3339 (`2026-11-23T12:00:00.123456+00:00`), met when a [`LogLine`](crate::logs::LogLine) is
/// read back from JSON.
///
/// ```
/// let json = r#"{"timestamp":"yesterday","source":"app","dyno":"web.1","text":"hi"}"#;
/// let err = serde_json::from_str::<wasmdyno::logs::LogLine>(json).unwrap_err();
/// assert!(err.to_string().contains(r#"not an RFC 3339 timestamp: "yesterday""#), "{err}");
///
/// let json = r#"{"timestamp":"2026-11-23T12:00:00Z","source":"app","dyno":"web.1","text":"hi"}"#;
/// assert_eq!(serde_json::from_str::<wasmdyno::logs::LogLine>(json).unwrap().text(), "hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0:?}")]
pub struct ParseTimestampError(String);

/// Reads an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`), any offset, at most nanosecond
/// precision (further digits are ignored). The inverse of [`Rfc3339`], for clients reading log lines back.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, ParseTimestampError> {
    parse(text.as_bytes()).ok_or_else(|| ParseTimestampError(text.to_owned()))
}

fn parse(bytes: &[u8]) -> Option<SystemTime> {
    let (date_time, mut rest) = bytes.split_at_checked(19)?;
    let separators_ok = date_time[4] == b'-'
        && date_time[7] == b'-'
        && matches!(date_time[10], b'T' | b't' | b' ')
        && date_time[13] == b':'
        && date_time[16] == b':';
    if !separators_ok {
        return None;
    }
    let year = number(&date_time[0..4])?;
    let month = number(&date_time[5..7])?;
    let day = number(&date_time[8..10])?;
    let hour = number(&date_time[11..13])?;
    let minute = number(&date_time[14..16])?;
    // 60 is a leap second: it rolls over into the next minute.
    let second = number(&date_time[17..19])?;
    let date_ok = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
    if !date_ok || hour > 23 || minute > 59 || second > 60 {
        return None;
    }

    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (place, &digit) in fraction[..digits].iter().take(9).enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - place as u32);
        }
        rest = &fraction[digits..];
    }

    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (number(&[*h1, *h2])?, number(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };

    let secs = days_from_civil(i64::from(year), month, day) * SECONDS_PER_DAY
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

/// The value of a run of ASCII digits.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// Whole seconds since the Unix epoch (negative before it) and the microseconds within that second, rounding
/// towards the past so that times before 1970 still print the second they fall in.
fn unix_micros(time: SystemTime) -> (i64, u32) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => (since.as_secs() as i64, since.subsec_micros()),
        Err(before) => {
            let nanos = -(before.duration().as_nanos() as i128);
            let micros = nanos.div_euclid(1_000);
            (
                micros.div_euclid(1_000_000) as i64,
                micros.rem_euclid(1_000_000) as u32,
            )
        }
    }
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`: 400-year
/// eras of 146,097 days, years starting in March so that the leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * march_month + 2) / 5 + 1) as u32;
    let month = (if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    }) as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let march_month = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * march_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
