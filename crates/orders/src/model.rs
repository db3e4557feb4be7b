//! The order types, as the API reads and writes them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// An order as a shop backend submits it (`POST /api/orders`).
///
/// Money fields accept JSON numbers or decimal strings (see [`Money`]).
/// `tax`, `shipping` and `discount` default to zero; `placed_at` defaults to
/// the time of creation. `total`, if given, is checked against the lines and
/// otherwise computed. Use [`NewOrder::from_json`] to parse a request body
/// with a problem listed per field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The shop's order id: 1 to 128 characters of `[A-Za-z0-9._:-]`.
    pub order_id: String,
    /// The shop's customer id.
    pub customer_id: String,
    /// The customer's e-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// An active ISO 4217 code, upper case (`EUR`).
    pub currency: String,
    /// Tax on top of the lines.
    #[serde(default)]
    pub tax: Money,
    /// Shipping on top of the lines.
    #[serde(default)]
    pub shipping: Money,
    /// Discount off the lines (at most their sum).
    #[serde(default)]
    pub discount: Money,
    /// The coupon code used, if any.
    #[serde(default)]
    pub coupon: Option<String>,
    /// When the customer placed the order (RFC 3339); default: now.
    #[serde(default)]
    pub placed_at: Option<DateTime<Utc>>,
    /// What was bought: 1 to 1000 lines.
    pub lines: Vec<Line>,
    /// `sum(quantity × unit_price) + tax + shipping − discount`, if the shop
    /// wants it checked.
    #[serde(default)]
    pub total: Option<Money>,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The product id.
    pub product_id: String,
    /// The stock-keeping unit.
    #[serde(default)]
    pub sku: Option<String>,
    /// The product name (searchable).
    #[serde(default)]
    pub name: Option<String>,
    /// The product category.
    #[serde(default)]
    pub category: Option<String>,
    /// How many: 1 to 1,000,000.
    pub quantity: i64,
    /// Price of one unit, more than zero.
    pub unit_price: Money,
}

/// The status of an order. See the [crate docs](crate#status-machine) for the
/// transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created; not paid yet.
    Placed,
    /// Payment captured.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Arrived.
    Delivered,
    /// Sent back by the customer (a refund usually follows).
    Returned,
    /// Money given back. Terminal.
    Refunded,
    /// Called off before shipping. Terminal.
    Cancelled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 7] = [
        Status::Placed,
        Status::Paid,
        Status::Shipped,
        Status::Delivered,
        Status::Returned,
        Status::Refunded,
        Status::Cancelled,
    ];

    /// The name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Returned => "returned",
            Status::Refunded => "refunded",
            Status::Cancelled => "cancelled",
        }
    }

    /// The statuses an order in this status may move to.
    pub fn allowed_next(self) -> &'static [Status] {
        match self {
            Status::Placed => &[Status::Paid, Status::Cancelled],
            Status::Paid => &[Status::Shipped, Status::Refunded, Status::Cancelled],
            Status::Shipped => &[Status::Delivered, Status::Refunded],
            Status::Delivered => &[Status::Returned, Status::Refunded],
            Status::Returned => &[Status::Refunded],
            Status::Refunded | Status::Cancelled => &[],
        }
    }

    /// Whether `self → to` is a transition of the status machine.
    pub fn can_become(self, to: Status) -> bool {
        self.allowed_next().contains(&to)
    }

    /// Whether no transition leaves this status.
    pub fn is_terminal(self) -> bool {
        self.allowed_next().is_empty()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Status, String> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status {s:?}; one of {}", names.join(", "))
            })
    }
}

/// One entry of an order's audit trail: a status change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The status before.
    pub from: Status,
    /// The status after.
    pub to: Status,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, as the caller put it.
    pub note: Option<String>,
    /// Who: the API token's or user's name, as the server passes it.
    pub actor: String,
    /// The order's version after this change.
    pub version: i64,
}

/// An order as stored (`GET /api/orders/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The shop's order id.
    pub order_id: String,
    /// The shop's customer id.
    pub customer_id: String,
    /// The customer's e-mail address.
    pub email: Option<String>,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The current status.
    pub status: Status,
    /// What was bought.
    pub lines: Vec<Line>,
    /// `sum(quantity × unit_price)`.
    pub subtotal: Money,
    /// Tax.
    pub tax: Money,
    /// Shipping.
    pub shipping: Money,
    /// Discount.
    pub discount: Money,
    /// `subtotal + tax + shipping − discount`.
    pub total: Money,
    /// The coupon code used.
    pub coupon: Option<String>,
    /// When the customer placed the order.
    pub placed_at: DateTime<Utc>,
    /// When the store recorded it.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// 1 at creation, +1 on each change.
    pub version: i64,
    /// The status changes, oldest first (empty for a new order).
    pub history: Vec<HistoryEntry>,
}

impl Order {
    /// The order without its lines and history.
    pub fn summary(&self) -> OrderSummary {
        OrderSummary {
            order_id: self.order_id.clone(),
            customer_id: self.customer_id.clone(),
            email: self.email.clone(),
            currency: self.currency.clone(),
            status: self.status,
            subtotal: self.subtotal,
            tax: self.tax,
            shipping: self.shipping,
            discount: self.discount,
            total: self.total,
            coupon: self.coupon.clone(),
            placed_at: self.placed_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

/// An order without lines and history: one row of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    /// The shop's order id.
    pub order_id: String,
    /// The shop's customer id.
    pub customer_id: String,
    /// The customer's e-mail address.
    pub email: Option<String>,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The current status.
    pub status: Status,
    /// `sum(quantity × unit_price)`.
    pub subtotal: Money,
    /// Tax.
    pub tax: Money,
    /// Shipping.
    pub shipping: Money,
    /// Discount.
    pub discount: Money,
    /// `subtotal + tax + shipping − discount`.
    pub total: Money,
    /// The coupon code used.
    pub coupon: Option<String>,
    /// When the customer placed the order.
    pub placed_at: DateTime<Utc>,
    /// When the store recorded it.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// 1 at creation, +1 on each change.
    pub version: i64,
}

/// The result of [`OrderStore::create`](crate::OrderStore::create).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// The order as stored now (for a replay: its current state, which may
    /// have moved on since the first request).
    pub order: Order,
    /// `false` if this call created the order (HTTP 201); `true` if it was
    /// already there with the same body (HTTP 200, a retry).
    pub replayed: bool,
}

/// What an outbox row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The order was created.
    Created,
    /// The order's status changed.
    Status,
}

impl ChangeKind {
    /// The name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Status => "status",
        }
    }
}

/// One row of the outbox (`order_changes`): an order change to append to the
/// event log. See [`OrderStore::changes_after`](crate::OrderStore::changes_after).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChange {
    /// Position in the outbox: increasing, with gaps (rolled-back writes).
    pub seq: i64,
    /// The order changed.
    pub order_id: String,
    /// The order's version after the change.
    pub version: i64,
    /// Creation or status change.
    pub kind: ChangeKind,
    /// The full [`Order`] after the change, as JSON text.
    pub payload: String,
    /// When the change was made.
    pub at: DateTime<Utc>,
}

impl OrderChange {
    /// Parses [`payload`](Self::payload).
    pub fn order(&self) -> Result<Order, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

/// A listing request (`GET /api/orders?...`); every field is optional.
///
/// Deserializes from a query string. Strings are validated by
/// [`OrderStore::list`](crate::OrderStore::list), which reports every bad
/// parameter at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderQuery {
    /// Only this customer's orders.
    pub customer_id: Option<String>,
    /// Only orders in this status (`paid`, ...).
    pub status: Option<String>,
    /// Placed at or after: an RFC 3339 timestamp or a date (`2024-05-01`,
    /// midnight UTC).
    pub from: Option<String>,
    /// Placed before: an RFC 3339 timestamp (exclusive) or a date (the whole
    /// day included).
    pub to: Option<String>,
    /// Full-text search over the order id, customer id, e-mail, product
    /// names, SKUs and product ids; every word must match, the last one as a
    /// prefix. Punctuation only separates words, so any text is safe; a
    /// query without any word does not filter.
    pub q: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size: default 50, at most 500.
    pub limit: Option<usize>,
}

/// One page of a listing, newest placed first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The orders, by `placed_at` then `order_id`, both descending.
    pub orders: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
