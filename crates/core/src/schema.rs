//! Every lake table, defined once: zone, name, partitioning, columns with types
//! and docs. The Arrow schemas, `shoplake catalog describe` and
//! `docs/data-dictionary.md` all come from [`TABLES`].

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::money::{PRECISION, SCALE};

/// The four zones of the lake, in data-flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Zone {
    /// Data as received: batch files and collected payloads.
    Raw,
    /// Typed, validated, deduplicated and enriched.
    Processed,
    /// Business-ready models built from the processed tables.
    Curated,
    /// Every rejected row or event, with the reason.
    Quarantine,
    /// What shoplake recorded about its own runs (data-quality results).
    Ops,
}

impl Zone {
    /// All zones, in data-flow order.
    pub const ALL: [Zone; 5] = [
        Zone::Raw,
        Zone::Processed,
        Zone::Curated,
        Zone::Quarantine,
        Zone::Ops,
    ];

    /// The zone's name: its folder under the lake root and its SQL schema.
    pub fn name(self) -> &'static str {
        match self {
            Zone::Raw => "raw",
            Zone::Processed => "processed",
            Zone::Curated => "curated",
            Zone::Quarantine => "quarantine",
            Zone::Ops => "ops",
        }
    }

    /// Parses a zone name.
    pub fn parse(s: &str) -> Option<Zone> {
        Zone::ALL.into_iter().find(|z| z.name() == s)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A column's logical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// UTF-8 text.
    Text,
    /// 32-bit integer.
    Int,
    /// 64-bit integer (counts).
    BigInt,
    /// 64-bit float (rates and ratios only, never money).
    Float,
    /// Boolean.
    Bool,
    /// Calendar date (UTC).
    Date,
    /// Microsecond timestamp in UTC.
    Timestamp,
    /// `decimal(18,2)` money.
    Money,
    /// Line items: `list<struct<product_id, sku, name, category, brand, price, quantity>>`.
    LineItems,
}

impl ColType {
    /// The Arrow type of the column.
    pub fn arrow(self) -> DataType {
        match self {
            ColType::Text => DataType::Utf8,
            ColType::Int => DataType::Int32,
            ColType::BigInt => DataType::Int64,
            ColType::Float => DataType::Float64,
            ColType::Bool => DataType::Boolean,
            ColType::Date => DataType::Date32,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColType::Money => money_type(),
            ColType::LineItems => DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(line_item_fields()),
                true,
            ))),
        }
    }

    /// The SQL spelling shown in docs.
    pub fn sql(self) -> &'static str {
        match self {
            ColType::Text => "string",
            ColType::Int => "int",
            ColType::BigInt => "bigint",
            ColType::Float => "double",
            ColType::Bool => "boolean",
            ColType::Date => "date",
            ColType::Timestamp => "timestamp(µs, UTC)",
            ColType::Money => "decimal(18,2)",
            ColType::LineItems => {
                "list<struct<product_id, sku, name, category, brand, price decimal(18,2), quantity int>>"
            }
        }
    }
}

/// The Arrow type of money.
pub fn money_type() -> DataType {
    DataType::Decimal128(PRECISION, SCALE)
}

/// The fields of one line item in an event's `products` list.
pub fn line_item_fields() -> Fields {
    Fields::from(vec![
        Field::new("product_id", DataType::Utf8, true),
        Field::new("sku", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("brand", DataType::Utf8, true),
        Field::new("price", money_type(), true),
        Field::new("quantity", DataType::Int32, true),
    ])
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name.
    pub name: &'static str,
    /// Logical type.
    pub ty: ColType,
    /// Whether nulls are allowed.
    pub nullable: bool,
    /// What the column means.
    pub doc: &'static str,
}

const fn c(name: &'static str, ty: ColType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        doc,
    }
}

const fn n(name: &'static str, ty: ColType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        doc,
    }
}

/// How a table is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A Delta table.
    Delta,
    /// Landing files (CSV or JSON lines) under Hive-style date partitions.
    Files,
}

/// One table of the lake.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Zone.
    pub zone: Zone,
    /// Name within the zone.
    pub name: &'static str,
    /// What one row is and where it comes from.
    pub doc: &'static str,
    /// How it is stored.
    pub storage: Storage,
    /// The partition column (`date`), if any.
    pub partition: Option<&'static str>,
    /// Columns, partition column included (last).
    pub columns: &'static [Column],
}

impl Table {
    /// `zone.name`, as written in SQL.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.zone.name(), self.name)
    }

    /// The table's folder relative to the lake root: `zone/name`.
    pub fn rel_path(&self) -> String {
        format!("{}/{}", self.zone.name(), self.name)
    }

    /// The Arrow schema (partition column included).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

use ColType::*;

const DATE_PART: Column = c(
    "date",
    Date,
    "Partition column: the row's business date (UTC).",
);

const RAW_NOTE: &str = "As received, every value as text";

/// `raw.transactions`
pub const RAW_TRANSACTIONS: Table = Table {
    zone: Zone::Raw,
    name: "transactions",
    doc: "Transaction files as they landed (`transactions.csv`), one folder per date.",
    storage: Storage::Files,
    partition: Some("date"),
    columns: &[
        n("transaction_id", Text, RAW_NOTE),
        n("customer_id", Text, RAW_NOTE),
        n("product_id", Text, RAW_NOTE),
        n("quantity", Text, RAW_NOTE),
        n("price", Text, RAW_NOTE),
        n("total_amount", Text, RAW_NOTE),
        n("transaction_date", Text, RAW_NOTE),
        n("status", Text, RAW_NOTE),
        DATE_PART,
    ],
};

/// `raw.products`
pub const RAW_PRODUCTS: Table = Table {
    zone: Zone::Raw,
    name: "products",
    doc: "Product catalogue files as they landed (`products.json`, JSON lines), one folder per date.",
    storage: Storage::Files,
    partition: Some("date"),
    columns: &[
        n("product_id", Text, RAW_NOTE),
        n("name", Text, RAW_NOTE),
        n("category", Text, RAW_NOTE),
        n("brand", Text, RAW_NOTE),
        n("price", Text, RAW_NOTE),
        n("stock", Text, RAW_NOTE),
        DATE_PART,
    ],
};

/// `raw.clickstream`
pub const RAW_CLICKSTREAM: Table = Table {
    zone: Zone::Raw,
    name: "clickstream",
    doc: "Clickstream files as they landed (`clickstream.json`, JSON lines), one folder per date.",
    storage: Storage::Files,
    partition: Some("date"),
    columns: &[
        n("session_id", Text, RAW_NOTE),
        n("customer_id", Text, RAW_NOTE),
        n("event_type", Text, RAW_NOTE),
        n("page", Text, RAW_NOTE),
        n("timestamp", Text, RAW_NOTE),
        n("device", Text, RAW_NOTE),
        DATE_PART,
    ],
};

/// `raw.reviews`
pub const RAW_REVIEWS: Table = Table {
    zone: Zone::Raw,
    name: "reviews",
    doc: "Review files as they landed (`reviews.csv`), one folder per date.",
    storage: Storage::Files,
    partition: Some("date"),
    columns: &[
        n("review_id", Text, RAW_NOTE),
        n("product_id", Text, RAW_NOTE),
        n("customer_id", Text, RAW_NOTE),
        n("rating", Text, RAW_NOTE),
        n("review_text", Text, RAW_NOTE),
        n("review_date", Text, RAW_NOTE),
        DATE_PART,
    ],
};

/// `raw.events`
pub const RAW_EVENTS: Table = Table {
    zone: Zone::Raw,
    name: "events",
    doc: "Every collected event as received by `shoplake serve`, one row per event, with its payload (IP addresses already anonymised).",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c(
            "event_id",
            Text,
            "The event's id (the dedup key, as in `processed.events`).",
        ),
        c("received_at", Timestamp, "Server time the request arrived."),
        c(
            "protocol",
            Text,
            "Wire format: native, segment, snowplow, ga4, posthog or aws_clickstream.",
        ),
        c(
            "source",
            Text,
            "Name of the write key (source) that sent it.",
        ),
        c("path", Text, "Request path it arrived on."),
        c(
            "payload",
            Text,
            "The event as received (JSON), full IP addresses anonymised.",
        ),
        c(
            "log_offset",
            BigInt,
            "Offset of the request in the event log.",
        ),
        c(
            "date",
            Date,
            "Partition column: the day the event was received (UTC).",
        ),
    ],
};

/// `processed.transactions`
pub const TRANSACTIONS: Table = Table {
    zone: Zone::Processed,
    name: "transactions",
    doc: "The shop's book of record: one row per order line, from transaction files and the orders API (lines of cancelled orders are left out). Deduplicated by `transaction_id` within each date partition (the later row wins).",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c(
            "transaction_id",
            Text,
            "Unique id of the line (the source's transaction id).",
        ),
        n(
            "order_id",
            Text,
            "The order this line belongs to; null for transaction files, where a basket is a customer's lines of one day.",
        ),
        c("customer_id", Text, "Customer id."),
        c("product_id", Text, "Product id."),
        c("quantity", Int, "Units, > 0."),
        c("price", Money, "Unit price, > 0."),
        c(
            "total_amount",
            Money,
            "Line total as recorded (≤ quantity × price).",
        ),
        c(
            "currency",
            Text,
            "ISO 4217 code; transaction files use the configured `currency`.",
        ),
        c("transaction_date", Date, "Day of the transaction (UTC)."),
        c("status", Text, "completed, returned or refunded."),
        c(
            "source",
            Text,
            "Where the row came from: `file` or `orders_api`.",
        ),
        n(
            "source_file",
            Text,
            "Raw file the row was read from, relative to the lake root.",
        ),
        DATE_PART,
    ],
};

/// `processed.orders`
pub const ORDERS: Table = Table {
    zone: Zone::Processed,
    name: "orders",
    doc: "Orders from the orders API, one row per order as its latest version left it (its lines are in processed.transactions with source `orders_api`). Written by `shoplake serve` within seconds of each change; the order database is the truth.",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c("order_id", Text, "Order id."),
        c("customer_id", Text, "Customer id."),
        c(
            "status",
            Text,
            "placed, paid, shipped, delivered, returned, refunded or cancelled.",
        ),
        c("currency", Text, "ISO 4217 code."),
        c(
            "subtotal",
            Money,
            "Sum of the lines (quantity × unit price).",
        ),
        c("discount", Money, "Discount."),
        c("tax", Money, "Tax."),
        c("shipping", Money, "Shipping."),
        c("total", Money, "subtotal − discount + tax + shipping."),
        n("coupon", Text, "Coupon code."),
        c("lines", Int, "Order lines."),
        c("units", BigInt, "Units over all lines."),
        c("placed_at", Timestamp, "When the order was placed."),
        c("updated_at", Timestamp, "Its last change."),
        c("version", BigInt, "1 when created, +1 per status change."),
        DATE_PART,
    ],
};

/// `processed.products`
pub const PRODUCTS: Table = Table {
    zone: Zone::Processed,
    name: "products",
    doc: "The product catalogue, latest version of each product (the newest file wins), enriched with stock and price-band flags.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("product_id", Text, "Product id."),
        c("name", Text, "Product name."),
        c("category", Text, "Category."),
        n("brand", Text, "Brand, if any."),
        c("price", Money, "Current list price, > 0."),
        c("stock", Int, "Units in stock, ≥ 0."),
        c("in_stock", Bool, "stock > 0."),
        c(
            "price_band",
            Text,
            "budget (< 0.67 × its category's median price), premium (> 1.5 ×) or mid.",
        ),
        c(
            "updated_date",
            Date,
            "Date partition of the file that supplied this version.",
        ),
        n(
            "source_file",
            Text,
            "Raw file of this version, relative to the lake root.",
        ),
    ],
};

/// `processed.reviews`
pub const REVIEWS: Table = Table {
    zone: Zone::Processed,
    name: "reviews",
    doc: "Product reviews, deduplicated by `review_id` within each date partition (the later row wins).",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c("review_id", Text, "Review id."),
        c("product_id", Text, "Product id."),
        c("customer_id", Text, "Customer id."),
        c("rating", Int, "Stars, 1–5."),
        n("review_text", Text, "Text, if any."),
        c("review_date", Date, "Day of the review."),
        c("text_length", Int, "Characters of text."),
        c(
            "sentiment",
            Text,
            "positive (4–5 stars), neutral (3) or negative (1–2).",
        ),
        n("source_file", Text, "Raw file, relative to the lake root."),
        DATE_PART,
    ],
};

/// `processed.events`
pub const EVENTS: Table = Table {
    zone: Zone::Processed,
    name: "events",
    doc: "The canonical behavioural event: collected events after decode/validate/enrich, and clickstream files mapped into the same columns.",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c(
            "event_id",
            Text,
            "Client id of the event or one derived from file and line; the dedup key.",
        ),
        c(
            "event_type",
            Text,
            "page_view, product_view, product_list_view, search, add_to_cart, remove_from_cart, cart_view, checkout_started, checkout_step, purchase, refund, review, identify or custom.",
        ),
        c("event_name", Text, "The name as sent."),
        c(
            "event_ts",
            Timestamp,
            "Client time, corrected for clock skew.",
        ),
        c(
            "received_at",
            Timestamp,
            "Server time (for files: the file's modification time, when it landed).",
        ),
        n(
            "anonymous_id",
            Text,
            "Device/browser id (for files: the customer id, else the session id).",
        ),
        n("user_id", Text, "Customer id, when known."),
        n("session_id", Text, "Session id sent by the client."),
        n("page_url", Text, "Full page URL or path as sent."),
        n("page_path", Text, "Path part of the page URL."),
        n("referrer", Text, "Referrer URL."),
        n("utm_source", Text, "utm_source of the page URL."),
        n("utm_medium", Text, "utm_medium of the page URL."),
        n("utm_campaign", Text, "utm_campaign of the page URL."),
        n("search_query", Text, "Search terms (`q` of a search page)."),
        c(
            "device_type",
            Text,
            "desktop, mobile, tablet, bot or unknown.",
        ),
        n("browser", Text, "Browser family."),
        n("os", Text, "Operating system family."),
        n("country", Text, "ISO 3166 country code."),
        n("ip_anon", Text, "Anonymised IP (never the full address)."),
        c("is_bot", Bool, "Whether the client is a known bot."),
        n("order_id", Text, "Order id of purchase/refund events."),
        n("currency", Text, "ISO 4217 code of `revenue`."),
        n("revenue", Money, "Order revenue of purchase events."),
        n("products", LineItems, "Line items of the event."),
        n(
            "product_id",
            Text,
            "The first line item's product id, or the product of a product page (denormalised for fast product analytics).",
        ),
        n(
            "properties",
            Text,
            "Everything else that was sent, as JSON.",
        ),
        c(
            "source",
            Text,
            "Write-key name, or the batch source for files.",
        ),
        c(
            "protocol",
            Text,
            "native, segment, snowplow, ga4, posthog, aws_clickstream, or file.",
        ),
        DATE_PART,
    ],
};

/// `processed.sessions`
pub const SESSIONS: Table = Table {
    zone: Zone::Processed,
    name: "sessions",
    doc: "One row per session and day: the client's session id, or 30 minutes of inactivity for events without one. Sessions are cut at midnight UTC.",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c("session_id", Text, "Session id."),
        n("anonymous_id", Text, "Device/browser id."),
        n(
            "user_id",
            Text,
            "Customer id, if the session was identified.",
        ),
        c("session_start", Timestamp, "First event."),
        c("session_end", Timestamp, "Last event."),
        c("duration_s", BigInt, "Seconds from first to last event."),
        c("events", BigInt, "Events in the session."),
        c("page_views", BigInt, "page_view events."),
        c("product_views", BigInt, "product_view events."),
        c("add_to_carts", BigInt, "add_to_cart events."),
        c(
            "checkouts",
            BigInt,
            "checkout_started and checkout_step events.",
        ),
        c("purchases", BigInt, "purchase events."),
        c(
            "funnel_stage",
            Int,
            "Furthest funnel step reached: 1 page_view, 2 product_view, 3 add_to_cart, 4 checkout, 5 purchase (0: none).",
        ),
        c("is_bounce", Bool, "A single event."),
        c("converted", Bool, "At least one purchase."),
        c("device_type", Text, "Device of the first event."),
        n("browser", Text, "Browser family of the first event."),
        n("landing_page", Text, "Path of the first event."),
        n("exit_page", Text, "Path of the last event."),
        c(
            "traffic_source",
            Text,
            "utm_source of the landing page, else `direct`.",
        ),
        c(
            "traffic_medium",
            Text,
            "utm_medium of the landing page; `unknown` when it has a utm_source but no medium, else `none`.",
        ),
        n("campaign", Text, "utm_campaign of the landing page."),
        n(
            "referrer_host",
            Text,
            "Host of the first event's referrer, without `www.`; null without one, or when it is the shop's own host.",
        ),
        n("country", Text, "Country of the first event."),
        DATE_PART,
    ],
};

/// `processed.product_activity`
pub const PRODUCT_ACTIVITY: Table = Table {
    zone: Zone::Processed,
    name: "product_activity",
    doc: "One row per day and product: the events that name the product, counted when the day's events are sessionised (so product analytics never rescan the events).",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c("product_id", Text, "Product id."),
        c("views", BigInt, "product_view events."),
        c("carts", BigInt, "add_to_cart events."),
        c("cart_removals", BigInt, "remove_from_cart events."),
        c("events", BigInt, "All events naming the product."),
        DATE_PART,
    ],
};

/// `curated.order_lines`
pub const ORDER_LINES: Table = Table {
    zone: Zone::Curated,
    name: "order_lines",
    doc: "Every order line with the product's current attributes and its net value after returns.",
    storage: Storage::Delta,
    partition: Some("date"),
    columns: &[
        c("transaction_id", Text, "Line id."),
        n("order_id", Text, "Order id (orders API)."),
        c(
            "basket_id",
            Text,
            "order_id, else customer_id and date: the lines bought together.",
        ),
        c("customer_id", Text, "Customer id."),
        c("product_id", Text, "Product id."),
        n(
            "product_name",
            Text,
            "Product name (null if the product is not in the catalogue).",
        ),
        c(
            "category",
            Text,
            "Category (`unknown` if not in the catalogue).",
        ),
        n("brand", Text, "Brand."),
        n("price_band", Text, "budget, mid or premium."),
        c("quantity", Int, "Units."),
        c("unit_price", Money, "Unit price."),
        c("line_total", Money, "Gross line value."),
        c(
            "net_amount",
            Money,
            "line_total for completed lines, 0 for returned or refunded ones.",
        ),
        c("status", Text, "completed, returned or refunded."),
        c("is_returned", Bool, "status is returned or refunded."),
        c("currency", Text, "ISO 4217 code."),
        DATE_PART,
    ],
};

/// `curated.daily_kpis`
pub const DAILY_KPIS: Table = Table {
    zone: Zone::Curated,
    name: "daily_kpis",
    doc: "One row per day: revenue, orders, AOV, customers, sessions and conversion.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("date", Date, "Day (UTC)."),
        c("gross_revenue", Money, "Sum of line totals."),
        c(
            "refunded_revenue",
            Money,
            "Line totals of returned or refunded lines.",
        ),
        c("net_revenue", Money, "gross_revenue − refunded_revenue."),
        c("orders", BigInt, "Baskets (distinct basket_id)."),
        c("order_lines", BigInt, "Lines."),
        c("units", BigInt, "Units sold."),
        c("aov", Money, "Average order value: gross_revenue / orders."),
        c("customers", BigInt, "Distinct buying customers."),
        c(
            "new_customers",
            BigInt,
            "Customers whose first purchase was this day.",
        ),
        c("returned_lines", BigInt, "Lines returned or refunded."),
        c("return_rate", Float, "returned_lines / order_lines."),
        c("sessions", BigInt, "Sessions."),
        c("converted_sessions", BigInt, "Sessions with a purchase."),
        c("conversion_rate", Float, "converted_sessions / sessions."),
        c("bounce_rate", Float, "Single-event sessions / sessions."),
        c("avg_session_seconds", Float, "Mean session duration."),
        c("page_views", BigInt, "page_view events."),
        c("product_views", BigInt, "product_view events."),
        c("add_to_carts", BigInt, "add_to_cart events."),
        c("checkouts", BigInt, "Checkout events."),
        c(
            "purchase_events",
            BigInt,
            "purchase events (browser side; orders are the truth).",
        ),
    ],
};

/// `curated.product_performance`
pub const PRODUCT_PERFORMANCE: Table = Table {
    zone: Zone::Curated,
    name: "product_performance",
    doc: "One row per product and day: views, carts, sales, returns and reviews.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("date", Date, "Day (UTC)."),
        c("product_id", Text, "Product id."),
        n("product_name", Text, "Product name."),
        c("category", Text, "Category."),
        n("brand", Text, "Brand."),
        c("views", BigInt, "product_view events."),
        c("carts", BigInt, "add_to_cart events."),
        c("orders", BigInt, "Baskets containing the product."),
        c("order_lines", BigInt, "Lines."),
        c("units", BigInt, "Units sold."),
        c("gross_revenue", Money, "Sum of line totals."),
        c("net_revenue", Money, "Line totals of lines not returned."),
        c("returned_lines", BigInt, "Lines returned or refunded."),
        c("returned_units", BigInt, "Units returned or refunded."),
        c(
            "refunded_amount",
            Money,
            "Line totals of returned or refunded lines.",
        ),
        c("reviews", BigInt, "Reviews written this day."),
        c(
            "rating_sum",
            BigInt,
            "Sum of their stars (rating_sum / reviews = mean rating).",
        ),
    ],
};

/// `curated.product_pairs`
pub const PRODUCT_PAIRS: Table = Table {
    zone: Zone::Curated,
    name: "product_pairs",
    doc: "One row per day and pair of products bought in the same basket (product_a < product_b); the base of affinity and lift.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("date", Date, "Day (UTC)."),
        c("product_a", Text, "The smaller product id of the pair."),
        c("product_b", Text, "The larger product id of the pair."),
        c("baskets", BigInt, "Baskets holding both."),
    ],
};

/// `curated.customers`
pub const CUSTOMERS: Table = Table {
    zone: Zone::Curated,
    name: "customers",
    doc: "One row per buying customer: lifetime value, RFM scores and segment, as of the newest transaction date.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("customer_id", Text, "Customer id."),
        c("first_purchase_date", Date, "Day of the first purchase."),
        c("last_purchase_date", Date, "Day of the latest purchase."),
        c("orders", BigInt, "Baskets."),
        c("order_lines", BigInt, "Lines."),
        c("units", BigInt, "Units."),
        c("gross_revenue", Money, "Sum of line totals."),
        c(
            "refunded_revenue",
            Money,
            "Returned or refunded line totals.",
        ),
        c("lifetime_value", Money, "Net revenue: gross − refunded."),
        c("avg_order_value", Money, "gross_revenue / orders."),
        c("return_rate", Float, "Returned lines / lines."),
        c(
            "recency_days",
            Int,
            "Days from the last purchase to as_of_date.",
        ),
        c(
            "tenure_days",
            Int,
            "Days from the first purchase to as_of_date.",
        ),
        c("r_score", Int, "Recency quintile, 5 = most recent."),
        c("f_score", Int, "Frequency quintile, 5 = most orders."),
        c(
            "m_score",
            Int,
            "Monetary quintile, 5 = highest lifetime value.",
        ),
        c(
            "rfm_segment",
            Text,
            "champions, loyal, potential_loyalists, new, promising, need_attention, at_risk, cant_lose, hibernating or lost.",
        ),
        c("reviews", BigInt, "Reviews written."),
        n("avg_rating", Float, "Mean stars given."),
        c("as_of_date", Date, "Newest transaction date in the lake."),
    ],
};

/// `curated.funnel_daily`
pub const FUNNEL_DAILY: Table = Table {
    zone: Zone::Curated,
    name: "funnel_daily",
    doc: "Sessions reaching each funnel step, by day, device and traffic source (a session reaching a step counts at every earlier step).",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("date", Date, "Day (UTC)."),
        c("device_type", Text, "Device."),
        c("traffic_source", Text, "utm_source or `direct`."),
        c("sessions", BigInt, "Sessions."),
        c(
            "page_view_sessions",
            BigInt,
            "Sessions that reached the first funnel step (any page, product, cart, checkout or purchase event).",
        ),
        c(
            "product_view_sessions",
            BigInt,
            "Sessions that reached a product view.",
        ),
        c(
            "cart_sessions",
            BigInt,
            "Sessions that reached add to cart.",
        ),
        c(
            "checkout_sessions",
            BigInt,
            "Sessions that reached checkout.",
        ),
        c("purchase_sessions", BigInt, "Sessions with a purchase."),
    ],
};

/// `curated.sessions_daily`
pub const SESSIONS_DAILY: Table = Table {
    zone: Zone::Curated,
    name: "sessions_daily",
    doc: "Sessions by day, device and traffic source/medium/campaign, with engagement and conversion.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("date", Date, "Day (UTC)."),
        c("device_type", Text, "Device."),
        c("traffic_source", Text, "utm_source or `direct`."),
        c(
            "traffic_medium",
            Text,
            "utm_medium, `unknown` or `none` (as in processed.sessions).",
        ),
        n("campaign", Text, "utm_campaign."),
        c("sessions", BigInt, "Sessions."),
        c("bounces", BigInt, "Single-event sessions."),
        c("converted_sessions", BigInt, "Sessions with a purchase."),
        c("page_views", BigInt, "page_view events."),
        c("events", BigInt, "Events."),
        c("duration_s", BigInt, "Total seconds."),
        c(
            "identified_sessions",
            BigInt,
            "Sessions with a known customer.",
        ),
    ],
};

const QUARANTINE_COLUMNS: &[Column] = &[
    c("quarantined_at", Timestamp, "When the row was rejected."),
    c(
        "stage",
        Text,
        "`import` (the file validator), `pipeline` (files found in the raw zone) or `collect` (events sent to `shoplake serve`).",
    ),
    c(
        "source_file",
        Text,
        "The file the row came from (collected events: `<source>:<protocol>:<request path>`).",
    ),
    c(
        "file_hash",
        Text,
        "BLAKE3 of the file's content after decompression (collected events: the request's event-log offset).",
    ),
    c(
        "line",
        BigInt,
        "1-based physical line where the row starts (0: the whole file was refused; collected events: the item's 1-based position in the request).",
    ),
    n("column", Text, "The column at fault, if one is."),
    c("reason", Text, "Why the row was rejected."),
    c("payload", Text, "The row as received."),
    c(
        "date",
        Date,
        "Partition: the raw partition's date, or the day of the import.",
    ),
];

macro_rules! quarantine {
    ($ident:ident, $name:literal) => {
        #[doc = concat!("`quarantine.", $name, "`")]
        pub const $ident: Table = Table {
            zone: Zone::Quarantine,
            name: $name,
            doc: concat!("Rejected ", $name, " rows, with file, line and reason."),
            storage: Storage::Delta,
            partition: Some("date"),
            columns: QUARANTINE_COLUMNS,
        };
    };
}
quarantine!(Q_TRANSACTIONS, "transactions");
quarantine!(Q_PRODUCTS, "products");
quarantine!(Q_CLICKSTREAM, "clickstream");
quarantine!(Q_REVIEWS, "reviews");
quarantine!(Q_EVENTS, "events");

/// `ops.quality`
pub const QUALITY: Table = Table {
    zone: Zone::Ops,
    name: "quality",
    doc: "One row per data-quality check per run: what was checked, the outcome and why. Appended by the pipeline's quality step and `shoplake quality check`.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c(
            "run_id",
            Text,
            "The pipeline run (or `check-…` for `shoplake quality check`).",
        ),
        c("checked_at", Timestamp, "When the check ran."),
        c("table_name", Text, "The table checked, `zone.name`."),
        c("check_name", Text, "The check's name, unique per table."),
        c(
            "check_kind",
            Text,
            "row_count, not_null, unique, accepted_values, range, references, freshness, anomaly or schema.",
        ),
        c("severity", Text, "error (blocks curated tables) or warn."),
        c(
            "status",
            Text,
            "pass, fail, skipped (nothing to check) or error (the check itself failed).",
        ),
        n(
            "scope",
            Text,
            "The dates checked (`2025-01-01..2025-01-31`); null: the whole table.",
        ),
        c("failing", BigInt, "Rows (or days) that failed."),
        n(
            "observed",
            Float,
            "The measured value (rows, hours, the metric).",
        ),
        n("expected", Text, "What was expected."),
        c("message", Text, "A sentence saying what was found."),
        n("sample", Text, "Up to five offending values."),
    ],
};

/// `curated.customer_segments`
pub const CUSTOMER_SEGMENTS: Table = Table {
    zone: Zone::Curated,
    name: "customer_segments",
    doc: "Each buying customer's segment from `shoplake ml train segments`: k-means on recency, frequency and lifetime value (k chosen by silhouette), clusters named from their RFM profile.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("customer_id", Text, "Customer id."),
        c(
            "segment",
            Text,
            "champions, loyal, promising, new, needs_attention, at_risk or hibernating.",
        ),
        c("cluster", Int, "The k-means cluster (0-based)."),
        c(
            "recency_days",
            Int,
            "Days since the last purchase, as of as_of_date.",
        ),
        c("orders", BigInt, "Baskets."),
        c("lifetime_value", Money, "Net revenue."),
        c(
            "rfm_code",
            Text,
            "Recency, frequency and monetary quintiles (5 best), e.g. `545`.",
        ),
        c(
            "as_of_date",
            Date,
            "The newest purchase date the model saw.",
        ),
        c(
            "model_version",
            BigInt,
            "The model under `<data>/models/segments/`.",
        ),
    ],
};

/// `curated.churn_scores`
pub const CHURN_SCORES: Table = Table {
    zone: Zone::Curated,
    name: "churn_scores",
    doc: "Each buying customer's probability of buying nothing in the next `ml.churn_days` days, from `shoplake ml train churn`.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("customer_id", Text, "Customer id."),
        c(
            "churn_probability",
            Float,
            "Probability of no purchase in the horizon.",
        ),
        c(
            "risk_decile",
            Int,
            "1 = the riskiest tenth of customers … 10 = the safest.",
        ),
        c("recency_days", Int, "Days since the last purchase."),
        c(
            "lifetime_value",
            Money,
            "Net revenue so far (what is at stake).",
        ),
        c("horizon_days", Int, "The horizon (`ml.churn_days`)."),
        c(
            "as_of_date",
            Date,
            "The newest purchase date the model saw.",
        ),
        c(
            "model",
            Text,
            "logistic or gbt: the classifier that won on validation.",
        ),
        c(
            "model_version",
            BigInt,
            "The model under `<data>/models/churn/`.",
        ),
    ],
};

/// `curated.customer_ltv_forecast`
pub const LTV_FORECAST: Table = Table {
    zone: Zone::Curated,
    name: "customer_ltv_forecast",
    doc: "Each buying customer's predicted spend in the next `ml.ltv_days` days (BG/NBD purchases × Gamma-Gamma order value), from `shoplake ml train ltv`.",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("customer_id", Text, "Customer id."),
        c("expected_orders", Float, "Expected orders in the horizon."),
        c("expected_order_value", Float, "Expected value of an order."),
        c(
            "predicted_spend",
            Float,
            "expected_orders × expected_order_value.",
        ),
        c(
            "p_alive",
            Float,
            "Probability the customer is still active.",
        ),
        c("horizon_days", Int, "The horizon (`ml.ltv_days`)."),
        c(
            "as_of_date",
            Date,
            "The newest purchase date the model saw.",
        ),
        c(
            "model_version",
            BigInt,
            "The model under `<data>/models/ltv/`.",
        ),
    ],
};

/// `curated.product_recommendations`
pub const RECOMMENDATIONS: Table = Table {
    zone: Zone::Curated,
    name: "product_recommendations",
    doc: "Recommendations from `shoplake ml train recs`: for each product, the products most often bought or viewed with it (`kind = 'product'`), and for each customer, products they have not bought (`kind = 'customer'`).",
    storage: Storage::Delta,
    partition: None,
    columns: &[
        c("kind", Text, "product or customer."),
        c(
            "key",
            Text,
            "The product id or customer id recommended for.",
        ),
        c("rank", Int, "1 = best."),
        c("product_id", Text, "The recommended product."),
        c(
            "score",
            Float,
            "Summed similarity (higher is better); popularity fill-ups score 0.",
        ),
        c(
            "source",
            Text,
            "similar (item-to-item) or popular (cold-start fill).",
        ),
        c(
            "model_version",
            BigInt,
            "The model under `<data>/models/recs/`.",
        ),
    ],
};

/// Every table of the lake.
pub const TABLES: &[Table] = &[
    RAW_TRANSACTIONS,
    RAW_PRODUCTS,
    RAW_CLICKSTREAM,
    RAW_REVIEWS,
    RAW_EVENTS,
    TRANSACTIONS,
    ORDERS,
    PRODUCTS,
    REVIEWS,
    EVENTS,
    SESSIONS,
    PRODUCT_ACTIVITY,
    ORDER_LINES,
    DAILY_KPIS,
    PRODUCT_PERFORMANCE,
    PRODUCT_PAIRS,
    CUSTOMERS,
    FUNNEL_DAILY,
    SESSIONS_DAILY,
    CUSTOMER_SEGMENTS,
    CHURN_SCORES,
    LTV_FORECAST,
    RECOMMENDATIONS,
    Q_TRANSACTIONS,
    Q_PRODUCTS,
    Q_CLICKSTREAM,
    Q_REVIEWS,
    Q_EVENTS,
    QUALITY,
];

/// A fingerprint of every table's declared layout (names, types,
/// nullability, partitioning): when it changes, stored tables may be outdated.
pub fn layout_fingerprint() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for t in TABLES {
        eat(&t.qualified());
        eat(t.partition.unwrap_or("-"));
        for c in t.columns {
            eat(c.name);
            eat(&format!("{:?}{}", c.ty, c.nullable));
        }
    }
    h
}

/// Finds a table by `zone.name` (or a bare name, if unique).
pub fn find(name: &str) -> Option<&'static Table> {
    let name = name.trim().to_ascii_lowercase();
    if let Some((zone, table)) = name.split_once('.') {
        return TABLES
            .iter()
            .find(|t| t.zone.name() == zone && t.name == table);
    }
    let mut it = TABLES.iter().filter(|t| t.name == name);
    match (it.next(), it.next()) {
        (Some(t), None) => Some(t),
        _ => None,
    }
}

/// The data dictionary as Markdown (what `docs/data-dictionary.md` holds).
pub fn data_dictionary_markdown() -> String {
    let mut out = String::from(
        "# Data dictionary\n\n\
         Generated from `crates/core/src/schema.rs` by `shoplake catalog dictionary`; \
         a test fails when this file and the code disagree.\n\n\
         Money is `decimal(18,2)`, never a float; timestamps are UTC. Partitioned \
         tables use Hive-style `date=YYYY-MM-DD` folders.\n",
    );
    for zone in Zone::ALL {
        out.push_str(&format!("\n## {zone}\n"));
        for t in TABLES.iter().filter(|t| t.zone == zone) {
            let storage = match t.storage {
                Storage::Delta => "Delta table",
                Storage::Files => "landing files",
            };
            let part = t
                .partition
                .map(|p| format!(", partitioned by `{p}`"))
                .unwrap_or_default();
            out.push_str(&format!(
                "\n### `{}`\n\n{} ({storage}{part})\n\n| column | type | null | meaning |\n| --- | --- | --- | --- |\n",
                t.qualified(),
                t.doc
            ));
            for col in t.columns {
                out.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    col.name,
                    col.ty.sql(),
                    if col.nullable { "yes" } else { "no" },
                    col.doc
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_partition_columns_exist() {
        let mut seen = std::collections::HashSet::new();
        for t in TABLES {
            assert!(seen.insert(t.qualified()), "duplicate {}", t.qualified());
            if let Some(p) = t.partition {
                assert_eq!(t.columns.last().unwrap().name, p, "{}", t.qualified());
            }
            let mut cols = std::collections::HashSet::new();
            for col in t.columns {
                assert!(cols.insert(col.name), "{}.{}", t.qualified(), col.name);
            }
        }
    }

    #[test]
    fn find_resolves_qualified_and_unique_names() {
        assert_eq!(find("curated.daily_kpis").unwrap().name, "daily_kpis");
        assert_eq!(find("daily_kpis").unwrap().zone, Zone::Curated);
        assert!(find("transactions").is_none(), "ambiguous across zones");
        assert!(find("nope.nothing").is_none());
    }
}
