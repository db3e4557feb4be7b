//! The canonical behavioural event (`processed.events`), the builder that
//! turns events into Arrow columns, and the small URL and naming helpers every
//! decoder shares.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int32Builder, ListBuilder,
    StringBuilder, StructBuilder, TimestampMicrosecondBuilder, new_null_array,
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
    // most pages arrive as paths: only look for a scheme when there may be one
    if !rest.starts_with('/')
        && let Some(i) = rest.find("://")
    {
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

/// The query parameters shoplake reads from a page URL, found in one pass.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageParams<'a> {
    /// `utm_source`.
    pub utm_source: Option<Cow<'a, str>>,
    /// `utm_medium`.
    pub utm_medium: Option<Cow<'a, str>>,
    /// `utm_campaign`.
    pub utm_campaign: Option<Cow<'a, str>>,
    /// `product_id`.
    pub product_id: Option<Cow<'a, str>>,
    /// `q`, else `query` (search terms).
    pub search: Option<Cow<'a, str>>,
}

impl<'a> PageParams<'a> {
    /// Reads the parameters of a query string (the first of a repeated key wins).
    pub fn parse(query: &'a str) -> Self {
        let mut p = PageParams::default();
        let mut query_alias = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "utm_source" => &mut p.utm_source,
                "utm_medium" => &mut p.utm_medium,
                "utm_campaign" => &mut p.utm_campaign,
                "product_id" => &mut p.product_id,
                "q" => &mut p.search,
                "query" => &mut query_alias,
                _ => continue,
            };
            if slot.is_none() && !v.is_empty() {
                *slot = Some(percent_decode(v));
            }
        }
        if p.search.is_none() {
            p.search = query_alias;
        }
        p
    }
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

/// A nullable text column that allocates nothing until its first value:
/// most events leave most optional columns empty.
struct LazyText {
    b: Option<StringBuilder>,
}

impl LazyText {
    fn new() -> Self {
        LazyText { b: None }
    }

    /// Appends row `row` (rows before it that were never set are null).
    fn push(&mut self, row: usize, v: Option<&str>) {
        match (v, &mut self.b) {
            (Some(s), Some(b)) => b.append_value(s),
            (Some(s), None) => {
                let mut b = StringBuilder::with_capacity(row + 1024, (row + 1024) * 16);
                b.append_nulls(row);
                b.append_value(s);
                self.b = Some(b);
            }
            (None, Some(b)) => b.append_null(),
            (None, None) => {}
        }
    }

    fn finish(&mut self, len: usize) -> ArrayRef {
        match self.b.take() {
            Some(mut b) => Arc::new(b.finish()),
            None => new_null_array(&DataType::Utf8, len),
        }
    }
}

/// Builds `processed.events` record batches, one event at a time.
pub struct EventBatchBuilder {
    schema: SchemaRef,
    event_id: StringBuilder,
    event_type: StringBuilder,
    event_name: StringBuilder,
    event_ts: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    anonymous_id: LazyText,
    user_id: LazyText,
    session_id: LazyText,
    page_url: LazyText,
    page_path: LazyText,
    referrer: LazyText,
    utm_source: LazyText,
    utm_medium: LazyText,
    utm_campaign: LazyText,
    search_query: LazyText,
    device_type: StringBuilder,
    browser: LazyText,
    os: LazyText,
    country: LazyText,
    ip_anon: LazyText,
    is_bot: BooleanBuilder,
    order_id: LazyText,
    currency: LazyText,
    revenue: Option<Decimal128Builder>,
    products: Option<ListBuilder<StructBuilder>>,
    product_id: LazyText,
    properties: LazyText,
    source: StringBuilder,
    protocol: StringBuilder,
    date: Date32Builder,
    len: usize,
}

fn opt<'a>(v: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    v.as_deref()
}

impl EventBatchBuilder {
    /// A builder with room for `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let s = |bytes: usize| StringBuilder::with_capacity(capacity, capacity * bytes);
        let ts = || TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC");
        EventBatchBuilder {
            schema: schema::EVENTS.schema(),
            event_id: s(32),
            event_type: s(12),
            event_name: s(12),
            event_ts: ts(),
            received_at: ts(),
            anonymous_id: LazyText::new(),
            user_id: LazyText::new(),
            session_id: LazyText::new(),
            page_url: LazyText::new(),
            page_path: LazyText::new(),
            referrer: LazyText::new(),
            utm_source: LazyText::new(),
            utm_medium: LazyText::new(),
            utm_campaign: LazyText::new(),
            search_query: LazyText::new(),
            device_type: s(7),
            browser: LazyText::new(),
            os: LazyText::new(),
            country: LazyText::new(),
            ip_anon: LazyText::new(),
            is_bot: BooleanBuilder::with_capacity(capacity),
            order_id: LazyText::new(),
            currency: LazyText::new(),
            revenue: None,
            products: None,
            product_id: LazyText::new(),
            properties: LazyText::new(),
            source: s(12),
            protocol: s(8),
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
        let row = self.len;
        self.event_id.append_value(&e.event_id);
        self.event_type.append_value(e.event_type);
        self.event_name.append_value(&e.event_name);
        self.event_ts.append_value(e.event_ts);
        self.received_at.append_value(e.received_at);
        self.anonymous_id.push(row, opt(&e.anonymous_id));
        self.user_id.push(row, opt(&e.user_id));
        self.session_id.push(row, opt(&e.session_id));
        self.page_url.push(row, opt(&e.page_url));
        self.page_path.push(row, opt(&e.page_path));
        self.referrer.push(row, opt(&e.referrer));
        self.utm_source.push(row, opt(&e.utm_source));
        self.utm_medium.push(row, opt(&e.utm_medium));
        self.utm_campaign.push(row, opt(&e.utm_campaign));
        self.search_query.push(row, opt(&e.search_query));
        self.device_type.append_value(e.device_type);
        self.browser.push(row, opt(&e.browser));
        self.os.push(row, opt(&e.os));
        self.country.push(row, opt(&e.country));
        self.ip_anon.push(row, opt(&e.ip_anon));
        self.is_bot.append_value(e.is_bot);
        self.order_id.push(row, opt(&e.order_id));
        self.currency.push(row, opt(&e.currency));
        match (e.revenue, &mut self.revenue) {
            (v, Some(b)) => b.append_option(v),
            (Some(v), None) => {
                let mut b = Decimal128Builder::with_capacity(row + 1024)
                    .with_data_type(schema::money_type());
                b.append_nulls(row);
                b.append_value(v);
                self.revenue = Some(b);
            }
            (None, None) => {}
        }
        if !e.products.is_empty() && self.products.is_none() {
            let mut b = ListBuilder::new(StructBuilder::from_fields(line_item_fields(), 0));
            for _ in 0..row {
                b.append_null();
            }
            self.products = Some(b);
        }
        if let Some(products) = &mut self.products {
            if e.products.is_empty() {
                products.append_null();
            } else {
                let items = products.values();
                for li in &e.products {
                    let text = |items: &mut StructBuilder, i: usize, v: &Option<Cow<'_, str>>| {
                        items
                            .field_builder::<StringBuilder>(i)
                            .expect("string field")
                            .append_option(v.as_deref())
                    };
                    text(items, 0, &li.product_id);
                    text(items, 1, &li.sku);
                    text(items, 2, &li.name);
                    text(items, 3, &li.category);
                    text(items, 4, &li.brand);
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
                products.append(true);
            }
        }
        self.product_id.push(row, opt(&e.product_id));
        self.properties.push(row, e.properties.as_deref());
        self.source.append_value(&e.source);
        self.protocol.append_value(e.protocol);
        self.date
            .append_value(e.event_ts.div_euclid(crate::time::MICROS_PER_DAY) as i32);
        self.len += 1;
    }

    /// The batch of everything appended; the builder is left empty.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let n = self.len;
        let line_items = schema::ColType::LineItems.arrow();
        let products: ArrayRef = match self.products.take() {
            // StructBuilder::from_fields gives decimal(38,10) for a Decimal128
            // field unless told otherwise; cast to the declared type.
            Some(mut b) => arrow::compute::cast(&b.finish(), &line_items)?,
            None => new_null_array(&line_items, n),
        };
        let revenue: ArrayRef = match self.revenue.take() {
            Some(mut b) => Arc::new(b.finish()),
            None => new_null_array(&schema::money_type(), n),
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_name.finish()),
            Arc::new(self.event_ts.finish()),
            Arc::new(self.received_at.finish()),
            self.anonymous_id.finish(n),
            self.user_id.finish(n),
            self.session_id.finish(n),
            self.page_url.finish(n),
            self.page_path.finish(n),
            self.referrer.finish(n),
            self.utm_source.finish(n),
            self.utm_medium.finish(n),
            self.utm_campaign.finish(n),
            self.search_query.finish(n),
            Arc::new(self.device_type.finish()),
            self.browser.finish(n),
            self.os.finish(n),
            self.country.finish(n),
            self.ip_anon.finish(n),
            Arc::new(self.is_bot.finish()),
            self.order_id.finish(n),
            self.currency.finish(n),
            revenue,
            products,
            self.product_id.finish(n),
            self.properties.finish(n),
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
        let p = PageParams::parse(
            "utm_source=google&x=1&utm_medium=cpc&utm_source=bing&query=red%20shoes&product_id=",
        );
        assert_eq!(p.utm_source.as_deref(), Some("google"));
        assert_eq!(p.utm_medium.as_deref(), Some("cpc"));
        assert_eq!(p.utm_campaign, None);
        assert_eq!(p.product_id, None);
        assert_eq!(p.search.as_deref(), Some("red shoes"));
        assert_eq!(
            split_url("shop.example/no-scheme?x=1"),
            ("shop.example/no-scheme", Some("x=1"))
        );
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
