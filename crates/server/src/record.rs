//! What one event-log record holds: the accepted events and the rejected
//! items of one request, already decoded, validated and enriched, so the sink
//! only converts them into Arrow columns.
//!
//! The encoding is JSON (one object per record): readable with `strings` when
//! something goes wrong, and fast enough that encoding and decoding together
//! cost less than a tenth of the collector's time per event.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use shoplake_core::event::{Event, LineItem};

/// Version of the record layout, checked by the sink.
pub const VERSION: u8 = 1;

/// One request's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Layout version.
    pub v: u8,
    /// Server time the request arrived (µs).
    pub at: i64,
    /// Source (write-key name).
    pub source: String,
    /// Wire protocol.
    pub protocol: String,
    /// Request path.
    pub path: String,
    /// Accepted events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StoredEvent>,
    /// Rejected items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<StoredRejection>,
}

/// A rejected item: why, and the item as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRejection {
    /// 1-based position of the item in the request.
    pub idx: u32,
    /// Why it was rejected.
    pub reason: String,
    /// The item as received.
    pub raw: String,
}

/// A line item, owned.
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i32>,
}

/// A canonical event, owned, with the payload it came from. Field meanings
/// are those of [`Event`].
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub name: String,
    pub ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    pub device_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_anon: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_bot: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<StoredItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<String>,
    /// The item as received.
    pub raw: String,
}

fn own(c: &Option<Cow<'_, str>>) -> Option<String> {
    c.as_ref().map(|s| s.to_string())
}

fn cow(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

/// Money fits i64 hundredths: the collector rejects amounts past 10^12.
fn money(v: Option<i128>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

impl StoredEvent {
    /// Captures an event and its payload.
    pub fn new(e: &Event<'_>, raw: String) -> StoredEvent {
        StoredEvent {
            id: e.event_id.to_string(),
            event_type: e.event_type.to_string(),
            name: e.event_name.to_string(),
            ts: e.event_ts,
            anonymous_id: own(&e.anonymous_id),
            user_id: own(&e.user_id),
            session_id: own(&e.session_id),
            page_url: own(&e.page_url),
            page_path: own(&e.page_path),
            referrer: own(&e.referrer),
            utm_source: own(&e.utm_source),
            utm_medium: own(&e.utm_medium),
            utm_campaign: own(&e.utm_campaign),
            search_query: own(&e.search_query),
            device_type: e.device_type.to_string(),
            browser: own(&e.browser),
            os: own(&e.os),
            country: own(&e.country),
            ip_anon: own(&e.ip_anon),
            is_bot: e.is_bot,
            order_id: own(&e.order_id),
            currency: own(&e.currency),
            revenue: money(e.revenue),
            products: e
                .products
                .iter()
                .map(|p| StoredItem {
                    product_id: own(&p.product_id),
                    sku: own(&p.sku),
                    name: own(&p.name),
                    category: own(&p.category),
                    brand: own(&p.brand),
                    price: money(p.price),
                    quantity: p.quantity,
                })
                .collect(),
            product_id: own(&e.product_id),
            properties: e.properties.clone(),
            raw,
        }
    }

    /// The canonical event, borrowing from `self`.
    pub fn event<'a>(
        &'a self,
        received_at: i64,
        source: &'a str,
        protocol: &'static str,
    ) -> Event<'a> {
        Event {
            event_id: Cow::Borrowed(&self.id),
            event_type: static_type(&self.event_type),
            event_name: Cow::Borrowed(&self.name),
            event_ts: self.ts,
            received_at,
            anonymous_id: cow(&self.anonymous_id),
            user_id: cow(&self.user_id),
            session_id: cow(&self.session_id),
            page_url: cow(&self.page_url),
            page_path: cow(&self.page_path),
            referrer: cow(&self.referrer),
            utm_source: cow(&self.utm_source),
            utm_medium: cow(&self.utm_medium),
            utm_campaign: cow(&self.utm_campaign),
            search_query: cow(&self.search_query),
            device_type: static_device(&self.device_type),
            browser: cow(&self.browser),
            os: cow(&self.os),
            country: cow(&self.country),
            ip_anon: cow(&self.ip_anon),
            is_bot: self.is_bot,
            order_id: cow(&self.order_id),
            currency: cow(&self.currency),
            revenue: self.revenue.map(i128::from),
            products: self
                .products
                .iter()
                .map(|p| LineItem {
                    product_id: cow(&p.product_id),
                    sku: cow(&p.sku),
                    name: cow(&p.name),
                    category: cow(&p.category),
                    brand: cow(&p.brand),
                    price: p.price.map(i128::from),
                    quantity: p.quantity,
                })
                .collect(),
            product_id: cow(&self.product_id),
            properties: self.properties.clone(),
            source: Cow::Borrowed(source),
            protocol,
        }
    }
}

/// The canonical spelling of an event type (unknown ones are `custom`).
fn static_type(t: &str) -> &'static str {
    shoplake_core::event::EVENT_TYPES
        .iter()
        .find(|k| **k == t)
        .copied()
        .unwrap_or("custom")
}

fn static_device(d: &str) -> &'static str {
    shoplake_core::event::canonical_device(Some(d))
}

/// The canonical spelling of a protocol name.
pub fn static_protocol(p: &str) -> &'static str {
    match p {
        "native" => "native",
        "segment" => "segment",
        "snowplow" => "snowplow",
        "ga4" => "ga4",
        "posthog" => "posthog",
        "aws_clickstream" => "aws_clickstream",
        _ => "unknown",
    }
}

impl Record {
    /// Encodes the record for the event log.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialise")
    }

    /// Decodes a record read from the event log.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let r: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if r.v != VERSION {
            return Err(format!(
                "record layout {} (this build reads {VERSION})",
                r.v
            ));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let e = Event {
            event_id: "m1".into(),
            event_type: "purchase",
            event_name: "Order Completed".into(),
            event_ts: 1_700_000_000_000_000,
            received_at: 1_700_000_000_500_000,
            anonymous_id: Some("a".into()),
            user_id: Some("C1".into()),
            device_type: "mobile",
            is_bot: false,
            order_id: Some("O1".into()),
            currency: Some("EUR".into()),
            revenue: Some(12_345),
            products: vec![LineItem {
                product_id: Some("P1".into()),
                price: Some(6_000),
                quantity: Some(2),
                ..Default::default()
            }],
            product_id: Some("P1".into()),
            properties: Some("{\"coupon\":\"X\"}".into()),
            source: "web".into(),
            protocol: "segment",
            ..Default::default()
        };
        let rec = Record {
            v: VERSION,
            at: e.received_at,
            source: "web".into(),
            protocol: "segment".into(),
            path: "/v1/track".into(),
            events: vec![StoredEvent::new(&e, "{}".into())],
            rejected: vec![StoredRejection {
                idx: 2,
                reason: "no id".into(),
                raw: "{}".into(),
            }],
        };
        let back = Record::decode(&rec.encode()).unwrap();
        let got = back.events[0].event(rec.at, "web", "segment");
        assert_eq!(got, e);
        assert_eq!(back.rejected[0].idx, 2);
        assert!(
            Record::decode(b"{\"v\":9,\"at\":0,\"source\":\"\",\"protocol\":\"\",\"path\":\"\"}")
                .is_err()
        );
    }
}
