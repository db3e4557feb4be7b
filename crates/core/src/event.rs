//! The canonical behavioural event (`processed.events`), the builder that
//! turns events into Arrow columns, and the small URL and naming helpers every
//! decoder shares.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int32Builder, ListBuilder,
    StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::schema::{self, line_item_fields};

/// One line item of an event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineItem<'a> {
    /// Product id.
    pub product_id: Option<Cow<'a, str>>,
    /// SKU.
    pub sku: Option<Cow<'a, str>>,
    /// Name.
    pub name: Option<Cow<'a, str>>,
    /// Category.
    pub category: Option<Cow<'a, str>>,
    /// Brand.
    pub brand: Option<Cow<'a, str>>,
    /// Unit price in hundredths.
    pub price: Option<i128>,
    /// Units.
    pub quantity: Option<i32>,
}

/// One canonical event. Field meanings are in [`schema::EVENTS`].
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: &'static str,
    pub event_name: Cow<'a, str>,
    pub event_ts: i64,
    pub received_at: i64,
    pub anonymous_id: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub page_url: Option<Cow<'a, str>>,
    pub page_path: Option<Cow<'a, str>>,
    pub referrer: Option<Cow<'a, str>>,
    pub utm_source: Option<Cow<'a, str>>,
    pub utm_medium: Option<Cow<'a, str>>,
    pub utm_campaign: Option<Cow<'a, str>>,
    pub search_query: Option<Cow<'a, str>>,
    pub device_type: &'static str,
    pub browser: Option<Cow<'a, str>>,
    pub os: Option<Cow<'a, str>>,
    pub country: Option<Cow<'a, str>>,
    pub ip_anon: Option<Cow<'a, str>>,
    pub is_bot: bool,
    pub order_id: Option<Cow<'a, str>>,
    pub currency: Option<Cow<'a, str>>,
    pub revenue: Option<i128>,
    pub products: Vec<LineItem<'a>>,
    pub product_id: Option<Cow<'a, str>>,
    pub properties: Option<String>,
    pub source: Cow<'a, str>,
    pub protocol: &'static str,
}

/// The canonical event types.
pub const EVENT_TYPES: &[&str] = &[
    "page_view",
    "product_view",
    "product_list_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "cart_view",
    "checkout_started",
    "checkout_step",
    "purchase",
    "refund",
    "review",
    "identify",
    "custom",
];

/// Maps an event name as sent (`Product Viewed`, `view_item`, `add-to-cart`,
/// `checkout`, ...) to its canonical type; anything unknown is `custom`.
pub fn canonical_event_type(name: &str) -> &'static str {
    let mut buf = [0u8; 64];
    let mut n = 0;
    for &b in name.trim().as_bytes() {
        if n == buf.len() {
            return "custom";
        }
        buf[n] = match b {
            b' ' | b'-' | b'.' => b'_',
            b => b.to_ascii_lowercase(),
        };
        n += 1;
    }
    match &buf[..n] {
        b"page_view" | b"pageview" | b"page" | b"page_viewed" | b"screen" | b"screen_view" => {
            "page_view"
        }
        b"product_view" | b"product_viewed" | b"view_item" | b"product_detail_view" => {
            "product_view"
        }
        b"product_list_view" | b"product_list_viewed" | b"view_item_list" | b"category_view" => {
            "product_list_view"
        }
        b"search" | b"products_searched" | b"site_search" => "search",
        b"add_to_cart" | b"product_added" | b"cart_add" | b"addtocart" => "add_to_cart",
        b"remove_from_cart" | b"product_removed" | b"cart_remove" => "remove_from_cart",
        b"cart_view" | b"cart_viewed" | b"view_cart" => "cart_view",
        b"checkout" | b"checkout_started" | b"begin_checkout" | b"initiate_checkout" => {
            "checkout_started"
        }
        b"checkout_step"
        | b"checkout_step_completed"
        | b"checkout_step_viewed"
        | b"add_payment_info"
        | b"add_shipping_info" => "checkout_step",
        b"purchase" | b"order_completed" | b"transaction" | b"order" => "purchase",
        b"refund" | b"order_refunded" => "refund",
        b"review" | b"product_reviewed" => "review",
        b"identify" => "identify",
        _ => "custom",
    }
}

/// Normalises a device name to desktop, mobile, tablet, bot or unknown.
pub fn canonical_device(device: Option<&str>) -> &'static str {
    let Some(d) = device else { return "unknown" };
    let d = d.trim();
    if d.eq_ignore_ascii_case("desktop")
        || d.eq_ignore_ascii_case("pc")
        || d.eq_ignore_ascii_case("computer")
    {
        "desktop"
    } else if d.eq_ignore_ascii_case("mobile")
        || d.eq_ignore_ascii_case("phone")
        || d.eq_ignore_ascii_case("smartphone")
    {
        "mobile"
    } else if d.eq_ignore_ascii_case("tablet") {
        "tablet"
    } else if d.eq_ignore_ascii_case("bot") {
        "bot"
    } else {
        "unknown"
    }
}

/// Splits a URL or path into `(path, query)`: `https://x.com/a/b?c=1#f` →
/// `("/a/b", Some("c=1"))`.
pub fn split_url(url: &str) -> (&str, Option<&str>) {
    let mut rest = url;
    if let Some(i) = rest.find("://") {
        rest = &rest[i + 3..];
        rest = match rest.find(['/', '?', '#']) {
            Some(j) => &rest[j..],
            None => "",
        };
    }
    if let Some(i) = rest.find('#') {
        rest = &rest[..i];
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// The value of `key` in a query string, percent-decoded (`+` is a space).
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<Cow<'a, str>> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            if v.is_empty() {
                return None;
            }
            return Some(percent_decode(v));
        }
    }
    None
}

/// Percent-decodes a query value; invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The product id of a product page path (`/product/P123`, `/products/P123`,
/// `/p/P123`), if the path is one.
pub fn product_from_path(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/product/")
        .or_else(|| path.strip_prefix("/products/"))
        .or_else(|| path.strip_prefix("/p/"))?;
    let id = rest.split('/').next().unwrap_or("");
    (!id.is_empty()).then_some(id)
}

/// Builds `processed.events` record batches, one event at a time.
pub struct EventBatchBuilder {
    schema: SchemaRef,
    event_id: StringBuilder,
    event_type: StringBuilder,
    event_name: StringBuilder,
    event_ts: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    anonymous_id: StringBuilder,
    user_id: StringBuilder,
    session_id: StringBuilder,
    page_url: StringBuilder,
    page_path: StringBuilder,
    referrer: StringBuilder,
    utm_source: StringBuilder,
    utm_medium: StringBuilder,
    utm_campaign: StringBuilder,
    search_query: StringBuilder,
    device_type: StringBuilder,
    browser: StringBuilder,
    os: StringBuilder,
    country: StringBuilder,
    ip_anon: StringBuilder,
    is_bot: BooleanBuilder,
    order_id: StringBuilder,
    currency: StringBuilder,
    revenue: Decimal128Builder,
    products: ListBuilder<StructBuilder>,
    product_id: StringBuilder,
    properties: StringBuilder,
    source: StringBuilder,
    protocol: StringBuilder,
    date: Date32Builder,
    len: usize,
}

fn opt(b: &mut StringBuilder, v: &Option<Cow<'_, str>>) {
    match v {
        Some(s) => b.append_value(s),
        None => b.append_null(),
    }
}

impl EventBatchBuilder {
    /// A builder with room for `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let s = || StringBuilder::with_capacity(capacity, capacity * 8);
        let ts = || TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC");
        let item = StructBuilder::from_fields(line_item_fields(), 0);
        EventBatchBuilder {
            schema: schema::EVENTS.schema(),
            event_id: s(),
            event_type: s(),
            event_name: s(),
            event_ts: ts(),
            received_at: ts(),
            anonymous_id: s(),
            user_id: s(),
            session_id: s(),
            page_url: s(),
            page_path: s(),
            referrer: s(),
            utm_source: s(),
            utm_medium: s(),
            utm_campaign: s(),
            search_query: s(),
            device_type: s(),
            browser: s(),
            os: s(),
            country: s(),
            ip_anon: s(),
            is_bot: BooleanBuilder::with_capacity(capacity),
            order_id: s(),
            currency: s(),
            revenue: Decimal128Builder::with_capacity(capacity)
                .with_data_type(schema::money_type()),
            products: ListBuilder::new(item),
            product_id: s(),
            properties: s(),
            source: s(),
            protocol: s(),
            date: Date32Builder::with_capacity(capacity),
            len: 0,
        }
    }

    /// Events appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one event.
    pub fn push(&mut self, e: &Event<'_>) {
        self.event_id.append_value(&e.event_id);
        self.event_type.append_value(e.event_type);
        self.event_name.append_value(&e.event_name);
        self.event_ts.append_value(e.event_ts);
        self.received_at.append_value(e.received_at);
        opt(&mut self.anonymous_id, &e.anonymous_id);
        opt(&mut self.user_id, &e.user_id);
        opt(&mut self.session_id, &e.session_id);
        opt(&mut self.page_url, &e.page_url);
        opt(&mut self.page_path, &e.page_path);
        opt(&mut self.referrer, &e.referrer);
        opt(&mut self.utm_source, &e.utm_source);
        opt(&mut self.utm_medium, &e.utm_medium);
        opt(&mut self.utm_campaign, &e.utm_campaign);
        opt(&mut self.search_query, &e.search_query);
        self.device_type.append_value(e.device_type);
        opt(&mut self.browser, &e.browser);
        opt(&mut self.os, &e.os);
        opt(&mut self.country, &e.country);
        opt(&mut self.ip_anon, &e.ip_anon);
        self.is_bot.append_value(e.is_bot);
        opt(&mut self.order_id, &e.order_id);
        opt(&mut self.currency, &e.currency);
        self.revenue.append_option(e.revenue);
        if e.products.is_empty() {
            self.products.append_null();
        } else {
            let items = self.products.values();
            for li in &e.products {
                macro_rules! field {
                    ($i:expr, $v:expr) => {
                        opt(
                            items
                                .field_builder::<StringBuilder>($i)
                                .expect("string field"),
                            $v,
                        )
                    };
                }
                field!(0, &li.product_id);
                field!(1, &li.sku);
                field!(2, &li.name);
                field!(3, &li.category);
                field!(4, &li.brand);
                items
                    .field_builder::<Decimal128Builder>(5)
                    .expect("price field")
                    .append_option(li.price);
                items
                    .field_builder::<Int32Builder>(6)
                    .expect("quantity field")
                    .append_option(li.quantity);
                items.append(true);
            }
            self.products.append(true);
        }
        opt(&mut self.product_id, &e.product_id);
        match &e.properties {
            Some(p) => self.properties.append_value(p),
            None => self.properties.append_null(),
        }
        self.source.append_value(&e.source);
        self.protocol.append_value(e.protocol);
        self.date
            .append_value(e.event_ts.div_euclid(crate::time::MICROS_PER_DAY) as i32);
        self.len += 1;
    }

    /// The batch of everything appended; the builder is left empty.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let products = self.products.finish();
        // StructBuilder::from_fields gives decimal(38,10) for a Decimal128 field
        // unless told otherwise; cast to the declared type.
        let products: ArrayRef =
            arrow::compute::cast(&products, &schema::ColType::LineItems.arrow())?;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_name.finish()),
            Arc::new(self.event_ts.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.anonymous_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.page_url.finish()),
            Arc::new(self.page_path.finish()),
            Arc::new(self.referrer.finish()),
            Arc::new(self.utm_source.finish()),
            Arc::new(self.utm_medium.finish()),
            Arc::new(self.utm_campaign.finish()),
            Arc::new(self.search_query.finish()),
            Arc::new(self.device_type.finish()),
            Arc::new(self.browser.finish()),
            Arc::new(self.os.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.ip_anon.finish()),
            Arc::new(self.is_bot.finish()),
            Arc::new(self.order_id.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.revenue.finish()),
            products,
            Arc::new(self.product_id.finish()),
            Arc::new(self.properties.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.date.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(self.schema.clone(), cols)
    }
}

/// Whether `t` is a money type (helper for builders and casts).
pub fn is_money(t: &DataType) -> bool {
    *t == schema::money_type()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_map_from_every_dialect() {
        assert_eq!(canonical_event_type("Product Viewed"), "product_view");
        assert_eq!(canonical_event_type("add-to-cart"), "add_to_cart");
        assert_eq!(canonical_event_type("checkout"), "checkout_started");
        assert_eq!(canonical_event_type("Order Completed"), "purchase");
        assert_eq!(canonical_event_type("something else"), "custom");
        assert_eq!(canonical_event_type(&"x".repeat(100)), "custom");
    }

    #[test]
    fn urls_split_and_decode() {
        assert_eq!(
            split_url("https://shop.example/p/1?utm_source=a#x"),
            ("/p/1", Some("utm_source=a"))
        );
        assert_eq!(split_url("https://shop.example"), ("/", None));
        assert_eq!(
            split_url("/search?q=red+shoes"),
            ("/search", Some("q=red+shoes"))
        );
        assert_eq!(
            query_param("q=red+shoes%21&x=1", "q").unwrap(),
            "red shoes!"
        );
        assert_eq!(query_param("q=100%", "q").unwrap(), "100%");
        assert_eq!(query_param("a=1", "q"), None);
        assert_eq!(product_from_path("/product/P00012"), Some("P00012"));
        assert_eq!(product_from_path("/category/x"), None);
    }

    #[test]
    fn builder_matches_schema() {
        let mut b = EventBatchBuilder::new(4);
        let mut e = Event {
            event_id: "e1".into(),
            event_type: "purchase",
            event_name: "purchase".into(),
            event_ts: 1_736_936_625_000_000,
            device_type: "mobile",
            source: "test".into(),
            protocol: "file",
            revenue: Some(1999),
            ..Default::default()
        };
        b.push(&e);
        e.products.push(LineItem {
            product_id: Some("P1".into()),
            price: Some(999),
            quantity: Some(2),
            ..Default::default()
        });
        b.push(&e);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), schema::EVENTS.schema());
    }
}
