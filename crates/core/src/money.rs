//! Exact money. Amounts are integers of hundredths (the lake's `decimal(18,2)`),
//! parsed from their decimal text and never routed through a float.

use crate::Rejection;

/// Scale of every money column: two decimal places.
pub const SCALE: i8 = 2;
/// Precision of every money column.
pub const PRECISION: u8 = 18;
/// The largest absolute amount a `decimal(18,2)` holds, in hundredths.
pub const MAX_CENTS: i128 = 999_999_999_999_999_999;

/// Parses a decimal amount such as `19.99`, `-5`, `0.5` or `1200.00` into
/// hundredths. Rejects exponents, thousands separators, more than two decimal
/// places (rounding money silently is a bug) and values beyond `decimal(18,2)`.
pub fn parse_cents(text: &str) -> Result<i128, String> {
    let s = text.trim();
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err("empty amount".into());
    }
    let (neg, digits) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return Err(format!("not a decimal number: {text:?}"));
    }
    let mut units: i128 = 0;
    let mut frac: i128 = 0;
    let mut frac_digits = 0u32;
    let mut seen_point = false;
    let mut seen_digit = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                seen_digit = true;
                if seen_point {
                    frac_digits += 1;
                    if frac_digits > 2 {
                        if b == b'0' {
                            // trailing zeros beyond the scale carry no value
                            continue;
                        }
                        return Err(format!("more than 2 decimal places: {text:?}"));
                    }
                    frac = frac * 10 + i128::from(b - b'0');
                } else {
                    units = units * 10 + i128::from(b - b'0');
                    if units > MAX_CENTS / 100 {
                        return Err(format!("amount too large for decimal(18,2): {text:?}"));
                    }
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(format!("not a decimal number: {text:?}")),
        }
    }
    if !seen_digit {
        return Err(format!("not a decimal number: {text:?}"));
    }
    let frac_digits = frac_digits.min(2);
    let cents = units * 100 + frac * 10i128.pow(2 - frac_digits);
    Ok(if neg { -cents } else { cents })
}

/// Formats hundredths as a decimal string with two places: `1999` → `19.99`.
pub fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses an amount for `column`, wrapping the message in a [`Rejection`].
pub fn parse_column(column: &'static str, text: &str) -> Result<i128, Rejection> {
    parse_cents(text).map_err(|e| Rejection::column(column, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_amounts() {
        assert_eq!(parse_cents("19.99"), Ok(1999));
        assert_eq!(parse_cents("19.9"), Ok(1990));
        assert_eq!(parse_cents("19"), Ok(1900));
        assert_eq!(parse_cents("0.05"), Ok(5));
        assert_eq!(parse_cents("-5.10"), Ok(-510));
        assert_eq!(parse_cents(" 7.000 "), Ok(700));
        assert_eq!(parse_cents(".5"), Ok(50));
    }

    #[test]
    fn rejects_what_would_lose_money() {
        assert!(parse_cents("1.999").unwrap_err().contains("decimal places"));
        assert!(parse_cents("1e3").is_err());
        assert!(parse_cents("1,000.00").is_err());
        assert!(parse_cents("").is_err());
        assert!(parse_cents("-").is_err());
        assert!(parse_cents(".").is_err());
        assert!(parse_cents("NaN").is_err());
        assert!(parse_cents("99999999999999999999").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for c in [0, 1, 99, 100, 1999, -510, 123_456_789] {
            assert_eq!(parse_cents(&format_cents(c)), Ok(c));
        }
        assert_eq!(format_cents(-5), "-0.05");
    }
}
