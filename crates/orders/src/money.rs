//! Money as exact integer cents.
//!
//! An amount arrives in JSON as a number (`19.99`) or a decimal string
//! (`"19.99"`); both are read from the raw JSON text and parsed with
//! [`shoplake_core::money::parse_cents`], so no amount ever passes through a
//! float. Exponent notation (`1e2`) is rejected rather than interpreted: it is
//! exact in JSON but no shop backend sends it on purpose, and accepting it
//! would invite `1.999e1`-style surprises. More than two decimal places is an
//! error, never a rounding. Amounts are stored as integer cents (`BIGINT`) and
//! written back as decimal strings with two places (`"19.99"`).

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use shoplake_core::money::{MAX_CENTS, format_cents, parse_cents};

/// An exact amount of money in cents (hundredths of the currency unit).
///
/// Serializes as a decimal string with two places; deserializes from a JSON
/// number or a decimal string (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// An amount of `cents` hundredths.
    pub const fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    /// The amount in cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Parses decimal text such as `19.99`, `0.5` or `-3` (see
    /// [`parse_cents`]): at most two decimal places, no exponent, no
    /// thousands separator, at most `decimal(18,2)`.
    pub fn parse(text: &str) -> Result<Money, String> {
        let cents = parse_cents(text)?;
        // parse_cents bounds the value by MAX_CENTS, which fits in an i64.
        i64::try_from(cents)
            .map(Money)
            .map_err(|_| format!("amount out of range: {text:?}"))
    }

    /// Parses the raw JSON text of an amount: a number token (`19.99`) or a
    /// string token (`"19.99"`).
    pub fn from_json_text(raw: &str) -> Result<Money, String> {
        let raw = raw.trim();
        match raw.as_bytes().first() {
            Some(b'"') => {
                let text: String =
                    serde_json::from_str(raw).map_err(|_| "not a valid JSON string".to_string())?;
                if text.contains(['e', 'E']) {
                    return Err(exponent_message(&text));
                }
                Money::parse(&text)
            }
            Some(b'-' | b'0'..=b'9') => {
                if raw.contains(['e', 'E']) {
                    return Err(exponent_message(raw));
                }
                Money::parse(raw)
            }
            _ => {
                Err("must be a decimal amount, as a number (19.99) or a string (\"19.99\")".into())
            }
        }
    }

    /// `self + other`, or `None` past the largest `decimal(18,2)` amount.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        let sum = i128::from(self.0) + i128::from(other.0);
        within_range(sum)
    }

    /// `self - other`, or `None` past the largest `decimal(18,2)` amount.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        let diff = i128::from(self.0) - i128::from(other.0);
        within_range(diff)
    }
}

/// `Some(Money)` when `cents` fits a `decimal(18,2)` column.
pub(crate) fn within_range(cents: i128) -> Option<Money> {
    if cents.abs() > MAX_CENTS {
        return None;
    }
    i64::try_from(cents).ok().map(Money)
}

fn exponent_message(text: &str) -> String {
    format!(
        "exponent notation is not accepted ({text}); write the amount in plain decimals, e.g. 100 or \"100.00\""
    )
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_cents(i128::from(self.0)))
    }
}

impl FromStr for Money {
    type Err = String;

    fn from_str(s: &str) -> Result<Money, String> {
        Money::parse(s)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Money::from_json_text(raw.get()).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_are_the_same_amount() {
        assert_eq!(Money::from_json_text("19.99"), Ok(Money(1999)));
        assert_eq!(Money::from_json_text("\"19.99\""), Ok(Money(1999)));
        assert_eq!(Money::from_json_text("0.1"), Ok(Money(10)));
        assert_eq!(Money::from_json_text("7"), Ok(Money(700)));
        assert_eq!(Money::from_json_text("19.990"), Ok(Money(1999)));
    }

    #[test]
    fn rejects_what_would_round_or_guess() {
        assert!(
            Money::from_json_text("19.999")
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(
            Money::from_json_text("1e2")
                .unwrap_err()
                .contains("exponent")
        );
        assert!(
            Money::from_json_text("\"1E2\"")
                .unwrap_err()
                .contains("exponent")
        );
        assert!(Money::from_json_text("true").is_err());
        assert!(Money::from_json_text("\"\"").is_err());
        assert!(Money::from_json_text("\"1,000.00\"").is_err());
        assert!(Money::from_json_text("99999999999999999999").is_err());
    }

    #[test]
    fn serde_round_trip_is_exact() {
        #[derive(Serialize, Deserialize)]
        struct T {
            a: Money,
            b: Option<Money>,
        }
        let t: T = serde_json::from_str(r#"{"a": 0.10, "b": "0.20"}"#).unwrap();
        assert_eq!(t.a.checked_add(t.b.unwrap()), Some(Money(30)));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"a":"0.10","b":"0.20"}"#
        );
        let t: T = serde_json::from_str(r#"{"a": "-5", "b": null}"#).unwrap();
        assert_eq!((t.a, t.b), (Money(-500), None));
        assert!(serde_json::from_str::<T>(r#"{"a": 1.005, "b": null}"#).is_err());
    }
}
