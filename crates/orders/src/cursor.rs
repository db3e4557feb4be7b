//! The listing cursor: the sort key of the last order of a page,
//! `(placed_at, order_id)`, as opaque hex text.

use crate::error::OrderError;
use crate::validate::is_valid_order_id;

/// Where a page ends: the last order's `placed_at` (µs) and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub placed_at_us: i64,
    pub order_id: String,
}

const VERSION: &str = "1";

impl Cursor {
    /// The opaque text of the cursor.
    pub fn encode(&self) -> String {
        let plain = format!("{VERSION}|{}|{}", self.placed_at_us, self.order_id);
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a cursor returned by [`encode`](Self::encode).
    pub fn decode(text: &str) -> Result<Cursor, OrderError> {
        let bad = || {
            OrderError::invalid(
                "cursor",
                "is not a cursor returned by this API (start again without one)",
            )
        };
        if text.is_empty() || !text.len().is_multiple_of(2) || text.len() > 512 {
            return Err(bad());
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        let plain = bytes
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let mut parts = plain.splitn(3, '|');
        let (Some(VERSION), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let placed_at_us = at.parse().map_err(|_| bad())?;
        if !is_valid_order_id(id) {
            return Err(bad());
        }
        Ok(Cursor {
            placed_at_us,
            order_id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = Cursor {
            placed_at_us: 1_717_000_000_123_456,
            order_id: "A-1:x".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in [
            "",
            "zz",
            "abc",
            "7c7c",
            &"00".repeat(10),
            "327c317c",
            "317c787c61",
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
