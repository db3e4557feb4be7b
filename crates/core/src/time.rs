//! UTC time. Dates are days since 1970-01-01 (Arrow `date32`), timestamps are
//! microseconds since the epoch in UTC (Arrow `timestamp(µs, "UTC")`).
//!
//! The parsers take the formats the sources really send, with a fast path for
//! the common ones: `2025-01-15`, `2025-01-15T10:23:45Z`,
//! `2025-01-15 10:23:45.123`, `2025-01-15T10:23:45+02:00`; an integer is read
//! as epoch seconds (10 digits or fewer) or milliseconds (13 digits).

use chrono::{DateTime, NaiveDate};

/// Microseconds in one day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since the epoch of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    // Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

/// The civil date `(year, month, day)` of days since the epoch.
pub fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i32 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats days since the epoch as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Formats microseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_ts(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY) as i32;
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let secs = rem / 1_000_000;
    let ms = (rem % 1_000_000) / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        format_date(days),
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        ms
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn ymd(b: &[u8]) -> Option<(i32, u32, u32)> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])? as i32;
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((y, m, d))
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DD` (or the date part of a timestamp in one of the accepted
/// formats) into days since the epoch.
pub fn parse_date(text: &str) -> Result<i32, String> {
    let s = text.trim();
    let b = s.as_bytes();
    if b.len() == 10 {
        if let Some((y, m, d)) = ymd(b) {
            return Ok(days_from_civil(y, m, d));
        }
        return Err(format!("not a date (YYYY-MM-DD): {text:?}"));
    }
    match parse_ts(s) {
        Ok(us) => Ok(us.div_euclid(MICROS_PER_DAY) as i32),
        Err(_) => Err(format!("not a date (YYYY-MM-DD): {text:?}")),
    }
}

/// Parses a timestamp into microseconds since the epoch, UTC. A timestamp
/// without an offset is taken as UTC.
pub fn parse_ts(text: &str) -> Result<i64, String> {
    let s = text.trim();
    let b = s.as_bytes();
    if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        let n: i64 = s
            .parse()
            .map_err(|_| format!("not a timestamp: {text:?}"))?;
        return Ok(match b.len() {
            0..=10 => n * 1_000_000,
            11..=13 => n * 1000,
            14..=16 => n,
            _ => return Err(format!("not a timestamp: {text:?}")),
        });
    }
    if let Some(us) = fast_ts(b) {
        return Ok(us);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp_micros())
        })
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros())
        })
        .map_err(|_| format!("not a timestamp (RFC 3339 or YYYY-MM-DD HH:MM:SS): {text:?}"))
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM]`
fn fast_ts(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, m, d) = ymd(&b[..10])?;
    let hh = digits(&b[11..13])?;
    let mm = digits(&b[14..16])?;
    let ss = digits(&b[17..19])?;
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_us: i64 = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        let v = i64::from(digits(&b[start..start + n.min(6)])?);
        frac_us = v * 10i64.pow(6 - n.min(6) as u32);
    }
    let offset_s: i64 = if i == b.len() || (b[i] == b'Z' && i + 1 == b.len()) {
        0
    } else if (b[i] == b'+' || b[i] == b'-') && b.len() == i + 6 && b[i + 3] == b':' {
        let oh = i64::from(digits(&b[i + 1..i + 3])?);
        let om = i64::from(digits(&b[i + 4..i + 6])?);
        let o = oh * 3600 + om * 60;
        if b[i] == b'+' { o } else { -o }
    } else {
        return None;
    };
    let days = i64::from(days_from_civil(y, m, d));
    let secs = days * 86_400 + i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss) - offset_s;
    Some(secs * 1_000_000 + frac_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2025, 1, 15), 20_103);
        assert_eq!(format_date(20_103), "2025-01-15");
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("2025-01-15"), Ok(20_103));
        assert_eq!(parse_date("2025-01-15T23:59:59Z"), Ok(20_103));
        assert!(parse_date("2025-02-30").is_err());
        assert!(parse_date("15/01/2025").is_err());
        assert!(parse_date("").is_err());
    }

    #[test]
    fn parses_timestamps_like_chrono() {
        let cases = [
            "2025-01-15T10:23:45Z",
            "2025-01-15T10:23:45.5Z",
            "2025-01-15T10:23:45.123456Z",
            "2025-01-15T10:23:45.123456789Z",
            "2025-01-15T10:23:45+02:00",
            "2025-01-15T10:23:45.250-05:30",
        ];
        for c in cases {
            let want = DateTime::parse_from_rfc3339(c).unwrap().timestamp_micros();
            assert_eq!(parse_ts(c), Ok(want), "{c}");
        }
        let naive = parse_ts("2025-01-15 10:23:45").unwrap();
        assert_eq!(naive, parse_ts("2025-01-15T10:23:45Z").unwrap());
        assert_eq!(parse_ts("1736936625").unwrap(), 1_736_936_625_000_000);
        assert_eq!(parse_ts("1736936625123").unwrap(), 1_736_936_625_123_000);
        assert!(parse_ts("yesterday").is_err());
        assert!(parse_ts("2025-01-15T25:00:00Z").is_err());
        assert_eq!(
            format_ts(parse_ts("2025-01-15T10:23:45.123Z").unwrap()),
            "2025-01-15T10:23:45.123Z"
        );
    }
}
