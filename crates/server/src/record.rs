//! What one event-log record holds: the accepted events and the rejected
//! items of one request, already decoded, validated and enriched, so the sink
//! only converts them into Arrow columns.
//!
//! ## Layout (version 2)
//! A compact binary layout: each record is written once by a request handler
//! and read once by the sink, so it is laid out for those two and nothing
//! else. Payloads are stored as received (no escaping), and the sink reads
//! every string in place, without copying.
//!
//! ```text
//! record   = VERSION:u8 at:i64 source:str protocol:str path:str
//!            n_events:uint event{n_events} n_rejected:uint rejection{n_rejected}
//! event    = id:str type:str name:str ts:i64
//!            anonymous_id:opt user_id:opt session_id:opt page_url:opt page_path:opt
//!            referrer:opt utm_source:opt utm_medium:opt utm_campaign:opt
//!            search_query:opt device_type:str browser:opt os:opt country:opt
//!            ip_anon:opt is_bot:u8 order_id:opt currency:opt revenue:opt_i64
//!            n_products:uint item{n_products} product_id:opt properties:opt raw:str
//! item     = product_id:opt sku:opt name:opt category:opt brand:opt
//!            price:opt_i64 quantity:opt_i64
//! rejection= idx:uint reason:str raw:str
//! uint     = LEB128            i64 = zigzag LEB128
//! str      = len:uint bytes    opt = 0 (none) | len+1:uint bytes
//! opt_i64  = 0 (none) | 1 i64
//! ```
//!
//! Layout 1 (JSON) is not read by this build: the sink quarantines such a
//! record with its bytes rather than dropping it.

use std::borrow::Cow;

use shoplake_core::event::{Event, LineItem};

/// Version of the record layout, the first byte of every record.
pub const VERSION: u8 = 2;

/// Builds one record.
#[derive(Debug)]
pub struct Encoder {
    buf: Vec<u8>,
    events_left: usize,
    rejected_left: usize,
}

impl Encoder {
    /// Starts a record of `n_events` events and `n_rejected` rejections, to
    /// be added in that order.
    pub fn new(
        at: i64,
        source: &str,
        protocol: &str,
        path: &str,
        n_events: usize,
        n_rejected: usize,
    ) -> Encoder {
        let mut e = Encoder {
            buf: Vec::with_capacity(64 + n_events * 768),
            events_left: n_events,
            rejected_left: n_rejected,
        };
        e.buf.push(VERSION);
        e.i64(at);
        e.str(source);
        e.str(protocol);
        e.str(path);
        e.uint(n_events as u64);
        if n_events == 0 {
            e.uint(n_rejected as u64);
        }
        e
    }

    /// Adds an accepted event and the payload it came from.
    pub fn event(&mut self, e: &Event<'_>, raw: &str) {
        assert!(self.events_left > 0, "more events than announced");
        self.str(&e.event_id);
        self.str(e.event_type);
        self.str(&e.event_name);
        self.i64(e.event_ts);
        for s in [
            &e.anonymous_id,
            &e.user_id,
            &e.session_id,
            &e.page_url,
            &e.page_path,
            &e.referrer,
            &e.utm_source,
            &e.utm_medium,
            &e.utm_campaign,
            &e.search_query,
        ] {
            self.opt(s.as_deref());
        }
        self.str(e.device_type);
        for s in [&e.browser, &e.os, &e.country, &e.ip_anon] {
            self.opt(s.as_deref());
        }
        self.buf.push(u8::from(e.is_bot));
        self.opt(e.order_id.as_deref());
        self.opt(e.currency.as_deref());
        self.opt_i64(money(e.revenue));
        self.uint(e.products.len() as u64);
        for p in &e.products {
            for s in [&p.product_id, &p.sku, &p.name, &p.category, &p.brand] {
                self.opt(s.as_deref());
            }
            self.opt_i64(money(p.price));
            self.opt_i64(p.quantity.map(i64::from));
        }
        self.opt(e.product_id.as_deref());
        self.opt(e.properties.as_deref());
        self.str(raw);
        self.events_left -= 1;
        if self.events_left == 0 {
            self.uint(self.rejected_left as u64);
        }
    }

    /// Adds a rejected item: its 1-based position, why, and the item as
    /// received.
    pub fn rejection(&mut self, idx: u32, reason: &str, raw: &str) {
        assert!(
            self.events_left == 0 && self.rejected_left > 0,
            "rejections follow all events, as many as announced"
        );
        self.uint(u64::from(idx));
        self.str(reason);
        self.str(raw);
        self.rejected_left -= 1;
    }

    /// The encoded record.
    pub fn finish(self) -> Vec<u8> {
        assert!(
            self.events_left == 0 && self.rejected_left == 0,
            "record holds fewer items than announced"
        );
        self.buf
    }

    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn i64(&mut self, v: i64) {
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.buf.push(0),
            Some(s) => {
                self.uint(s.len() as u64 + 1);
                self.buf.extend_from_slice(s.as_bytes());
            }
        }
    }

    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            None => self.buf.push(0),
            Some(v) => {
                self.buf.push(1);
                self.i64(v);
            }
        }
    }
}

/// Money fits i64 hundredths: the collector rejects amounts past 10^12.
fn money(v: Option<i128>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

/// A decoded record, borrowing every string from the record's bytes.
#[derive(Debug)]
pub struct Record<'a> {
    /// Server time the request arrived (µs).
    pub at: i64,
    /// Source (write-key name).
    pub source: &'a str,
    /// Wire protocol.
    pub protocol: &'static str,
    /// Request path.
    pub path: &'a str,
    /// Accepted events and the payloads they came from.
    pub events: Vec<(Event<'a>, &'a str)>,
    /// Rejected items.
    pub rejected: Vec<Rejected<'a>>,
}

/// A rejected item: where it was in the request, why, and the item as
/// received.
#[derive(Debug, PartialEq)]
pub struct Rejected<'a> {
    /// 1-based position of the item in the request.
    pub idx: u32,
    /// Why it was rejected.
    pub reason: &'a str,
    /// The item as received.
    pub raw: &'a str,
}

impl<'a> Record<'a> {
    /// Decodes a record read from the event log.
    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>, String> {
        let mut r = Reader { b: bytes, at: 0 };
        let v = r.byte()?;
        if v != VERSION {
            return Err(format!("record layout {v} (this build reads {VERSION})"));
        }
        let at = r.i64()?;
        let source = r.str()?;
        let protocol = static_protocol(r.str()?);
        let path = r.str()?;
        let n = r.count()?;
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(r.event(at, source, protocol)?);
        }
        let n = r.count()?;
        let mut rejected = Vec::with_capacity(n);
        for _ in 0..n {
            rejected.push(Rejected {
                idx: u32::try_from(r.uint()?).map_err(|_| "item index out of range")?,
                reason: r.str()?,
                raw: r.str()?,
            });
        }
        if r.at != bytes.len() {
            return Err(format!("{} bytes after the record", bytes.len() - r.at));
        }
        Ok(Record {
            at,
            source,
            protocol,
            path,
            events,
            rejected,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("record ends early")?;
        self.at += 1;
        Ok(v)
    }

    fn uint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("integer too long".into())
    }

    /// A count of items, bounded by the bytes left (each takes one at least).
    fn count(&mut self) -> Result<usize, String> {
        let n = self.uint()?;
        if n > (self.b.len() - self.at) as u64 {
            return Err(format!("{n} items cannot fit in what is left"));
        }
        Ok(n as usize)
    }

    fn i64(&mut self) -> Result<i64, String> {
        let u = self.uint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn bytes(&mut self, n: u64) -> Result<&'a str, String> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|e| *e <= self.b.len())
            .ok_or("string runs past the record")?;
        let s = std::str::from_utf8(&self.b[self.at..end]).map_err(|e| e.to_string())?;
        self.at = end;
        Ok(s)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.uint()?;
        self.bytes(n)
    }

    fn opt(&mut self) -> Result<Option<Cow<'a, str>>, String> {
        match self.uint()? {
            0 => Ok(None),
            n => Ok(Some(Cow::Borrowed(self.bytes(n - 1)?))),
        }
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, String> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(self.i64()?)),
            t => Err(format!("bad option tag {t}")),
        }
    }

    fn event(
        &mut self,
        received_at: i64,
        source: &'a str,
        protocol: &'static str,
    ) -> Result<(Event<'a>, &'a str), String> {
        let event_id = Cow::Borrowed(self.str()?);
        let event_type = static_type(self.str()?);
        let event_name = Cow::Borrowed(self.str()?);
        let event_ts = self.i64()?;
        let mut e = Event {
            event_id,
            event_type,
            event_name,
            event_ts,
            received_at,
            anonymous_id: self.opt()?,
            user_id: self.opt()?,
            session_id: self.opt()?,
            page_url: self.opt()?,
            page_path: self.opt()?,
            referrer: self.opt()?,
            utm_source: self.opt()?,
            utm_medium: self.opt()?,
            utm_campaign: self.opt()?,
            search_query: self.opt()?,
            device_type: shoplake_core::event::canonical_device(Some(self.str()?)),
            browser: self.opt()?,
            os: self.opt()?,
            country: self.opt()?,
            ip_anon: self.opt()?,
            is_bot: self.byte()? != 0,
            order_id: self.opt()?,
            currency: self.opt()?,
            revenue: self.opt_i64()?.map(i128::from),
            source: Cow::Borrowed(source),
            protocol,
            ..Default::default()
        };
        let n = self.count()?;
        e.products.reserve_exact(n);
        for _ in 0..n {
            e.products.push(LineItem {
                product_id: self.opt()?,
                sku: self.opt()?,
                name: self.opt()?,
                category: self.opt()?,
                brand: self.opt()?,
                price: self.opt_i64()?.map(i128::from),
                quantity: self
                    .opt_i64()?
                    .map(|q| i32::try_from(q).map_err(|_| "quantity out of range"))
                    .transpose()?,
            });
        }
        e.product_id = self.opt()?;
        e.properties = self.opt()?.map(Cow::into_owned);
        let raw = self.str()?;
        Ok((e, raw))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase() -> Event<'static> {
        Event {
            event_id: "m1".into(),
            event_type: "purchase",
            event_name: "Order Completed".into(),
            event_ts: -1_700_000_000_000_000,
            received_at: 1_700_000_000_500_000,
            anonymous_id: Some("a".into()),
            user_id: Some("C1".into()),
            page_url: Some(String::new().into()),
            device_type: "mobile",
            browser: Some("Firefox".into()),
            is_bot: true,
            order_id: Some("O1".into()),
            currency: Some("EUR".into()),
            revenue: Some(12_345),
            products: vec![
                LineItem {
                    product_id: Some("P1".into()),
                    price: Some(6_000),
                    quantity: Some(-2),
                    ..Default::default()
                },
                LineItem {
                    name: Some("Mug \u{2615}".into()),
                    brand: Some("\"quoted\"".into()),
                    ..Default::default()
                },
            ],
            product_id: Some("P1".into()),
            properties: Some("{\"coupon\":\"X\"}".into()),
            source: "web".into(),
            protocol: "segment",
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let e = purchase();
        let minimal = Event {
            event_id: "m2".into(),
            event_type: "page_view",
            event_name: "page".into(),
            device_type: "desktop",
            received_at: e.received_at,
            source: "web".into(),
            protocol: "segment",
            ..Default::default()
        };
        let mut enc = Encoder::new(e.received_at, "web", "segment", "/v1/batch", 2, 1);
        enc.event(&e, "{\"a\":\"\\\"\"}");
        enc.event(&minimal, "");
        enc.rejection(3, "no id", "{}");
        let bytes = enc.finish();
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(
            (back.at, back.source, back.path),
            (e.received_at, "web", "/v1/batch")
        );
        assert_eq!(back.protocol, "segment");
        assert_eq!(back.events[0], (e, "{\"a\":\"\\\"\"}"));
        assert_eq!(back.events[1], (minimal, ""));
        assert_eq!(
            back.rejected,
            [Rejected {
                idx: 3,
                reason: "no id",
                raw: "{}"
            }]
        );
    }

    #[test]
    fn rejections_alone_and_empty_records_round_trip() {
        let mut enc = Encoder::new(5, "s", "ga4", "/mp/collect", 0, 1);
        enc.rejection(1, "bad", "x");
        let bytes = enc.finish();
        let back = Record::decode(&bytes).unwrap();
        assert!(back.events.is_empty());
        assert_eq!(back.rejected.len(), 1);
        let bytes = Encoder::new(5, "s", "ga4", "/mp/collect", 0, 0).finish();
        assert!(Record::decode(&bytes).unwrap().rejected.is_empty());
    }

    #[test]
    fn damaged_or_foreign_records_are_errors_not_panics() {
        let mut enc = Encoder::new(7, "web", "segment", "/v1/track", 1, 0);
        enc.event(&purchase(), "{}");
        let bytes = enc.finish();
        // every truncation and every single-byte change decodes or errs
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = Record::decode(&b);
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(
            Record::decode(&long)
                .unwrap_err()
                .contains("after the record")
        );
        // layout 1 was JSON
        let err = Record::decode(b"{\"v\":1,\"at\":0}").unwrap_err();
        assert!(err.contains("record layout 123"), "{err}");
    }
}
