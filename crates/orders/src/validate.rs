//! Validation of new orders, the lenient body parser that reports a problem
//! per field, and the canonical body hash used for idempotency.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::currency;
use crate::error::{OrderError, Problem};
use crate::model::{Line, NewOrder};
use crate::money::{Money, within_range};

/// Longest order id.
pub const MAX_ORDER_ID_LEN: usize = 128;
/// Most lines in one order.
pub const MAX_LINES: usize = 1000;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Most problems reported for one request; the rest are counted.
const MAX_PROBLEMS: usize = 100;
/// Longest customer id, product id, SKU, coupon, actor.
const MAX_ID_LEN: usize = 256;
/// Longest product name, category, note.
const MAX_TEXT_LEN: usize = 2000;

/// Amounts derived from a valid order's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Totals {
    pub subtotal: Money,
    pub total: Money,
}

/// Whether `id` is a valid order id.
pub fn is_valid_order_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ORDER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Every problem with `order` as of `now` (empty if it is valid).
pub fn validate(order: &NewOrder, now: DateTime<Utc>) -> Vec<Problem> {
    let mut problems = Vec::new();
    validate_fields(order, now, &mut problems);
    if problems.iter().all(|p| !p.field.starts_with("/lines"))
        && let Err(p) = totals(order)
    {
        problems.extend(p);
    }
    cap(problems)
}

/// Checks each field on its own.
fn validate_fields(o: &NewOrder, now: DateTime<Utc>, problems: &mut Vec<Problem>) {
    if o.order_id.is_empty() {
        push(problems, "/order_id", "must not be empty");
    } else if o.order_id.len() > MAX_ORDER_ID_LEN {
        push(
            problems,
            "/order_id",
            format!("must be at most {MAX_ORDER_ID_LEN} characters"),
        );
    } else if !is_valid_order_id(&o.order_id) {
        push(
            problems,
            "/order_id",
            "may contain only letters, digits and . _ : -",
        );
    }
    text_field(problems, &o.customer_id, "/customer_id", MAX_ID_LEN, true);
    if let Some(email) = &o.email
        && !plausible_email(email)
    {
        push(
            problems,
            "/email",
            format!("{email:?} is not a plausible e-mail address"),
        );
    }
    let minor_units = currency::minor_units(&o.currency);
    if minor_units.is_none() {
        let upper = o.currency.to_ascii_uppercase();
        let reason = if currency::is_iso_4217(&upper) {
            format!("must be upper case: {upper}")
        } else {
            format!(
                "{:?} is not an active ISO 4217 currency code (e.g. EUR, USD)",
                o.currency
            )
        };
        push(problems, "/currency", reason);
    }
    let whole_units_only = minor_units == Some(Some(0));
    let amounts = [
        ("/tax", Some(o.tax)),
        ("/shipping", Some(o.shipping)),
        ("/discount", Some(o.discount)),
    ];
    for (field, amount) in amounts {
        if let Some(m) = amount {
            check_amount(
                problems,
                field,
                m,
                false,
                whole_units_only.then_some(o.currency.as_str()),
            );
        }
    }
    if o.lines.is_empty() {
        push(problems, "/lines", "must contain at least one line");
    } else if o.lines.len() > MAX_LINES {
        push(
            problems,
            "/lines",
            format!(
                "must contain at most {MAX_LINES} lines, got {}",
                o.lines.len()
            ),
        );
    } else {
        for (i, line) in o.lines.iter().enumerate() {
            validate_line(
                problems,
                line,
                i,
                whole_units_only.then_some(o.currency.as_str()),
            );
        }
    }
    if let Some(coupon) = &o.coupon {
        text_field(problems, coupon, "/coupon", MAX_ID_LEN, true);
    }
    if let Some(placed_at) = o.placed_at {
        if placed_at < earliest_placed_at() {
            push(
                problems,
                "/placed_at",
                format!(
                    "must not be before 2000-01-01, got {}",
                    placed_at.to_rfc3339()
                ),
            );
        } else if placed_at > now + TimeDelta::days(1) {
            push(
                problems,
                "/placed_at",
                format!(
                    "must not be more than 1 day in the future, got {}",
                    placed_at.to_rfc3339()
                ),
            );
        }
    }
    if let Some(total) = o.total {
        check_amount(
            problems,
            "/total",
            total,
            false,
            whole_units_only.then_some(o.currency.as_str()),
        );
    }
}

/// 2000-01-01T00:00:00Z, the earliest `placed_at` accepted.
fn earliest_placed_at() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

fn push(problems: &mut Vec<Problem>, field: impl Into<String>, reason: impl Into<String>) {
    problems.push(Problem::new(field, reason));
}

/// Checks the sign of an amount, and that it is whole if `whole_units_of`
/// names a currency without minor units.
fn check_amount(
    problems: &mut Vec<Problem>,
    field: &str,
    m: Money,
    positive: bool,
    whole_units_of: Option<&str>,
) {
    if positive && m.cents() <= 0 {
        push(problems, field, format!("must be more than zero, got {m}"));
    } else if m.cents() < 0 {
        push(problems, field, format!("must not be negative, got {m}"));
    } else if let Some(currency) = whole_units_of.filter(|_| m.cents() % 100 != 0) {
        push(
            problems,
            field,
            format!("{currency} has no minor unit; use whole amounts, got {m}"),
        );
    }
}

fn validate_line(problems: &mut Vec<Problem>, line: &Line, i: usize, whole_units_of: Option<&str>) {
    let at = |name: &str| format!("/lines/{i}/{name}");
    text_field(
        problems,
        &line.product_id,
        &at("product_id"),
        MAX_ID_LEN,
        true,
    );
    if let Some(sku) = &line.sku {
        text_field(problems, sku, &at("sku"), MAX_ID_LEN, false);
    }
    if let Some(name) = &line.name {
        text_field(problems, name, &at("name"), MAX_TEXT_LEN, false);
    }
    if let Some(category) = &line.category {
        text_field(problems, category, &at("category"), MAX_TEXT_LEN, false);
    }
    if line.quantity <= 0 {
        push(
            problems,
            at("quantity"),
            format!("must be more than zero, got {}", line.quantity),
        );
    } else if line.quantity > MAX_QUANTITY {
        push(
            problems,
            at("quantity"),
            format!("must be at most {MAX_QUANTITY}, got {}", line.quantity),
        );
    }
    check_amount(
        problems,
        &at("unit_price"),
        line.unit_price,
        true,
        whole_units_of,
    );
}

/// Checks a free-text field: no control characters, not too long, and
/// non-blank if `required`.
fn text_field(problems: &mut Vec<Problem>, value: &str, field: &str, max: usize, required: bool) {
    if required && value.trim().is_empty() {
        push(problems, field, "must not be empty");
    } else if value.chars().count() > max {
        push(problems, field, format!("must be at most {max} characters"));
    } else if value.chars().any(char::is_control) {
        push(problems, field, "must not contain control characters");
    }
}

/// A loose check that catches typos and garbage, not an RFC 5322 parser.
fn plausible_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

/// Subtotal and total of `o`, or the problems with its amounts as a whole
/// (the fields must already be valid on their own).
pub(crate) fn totals(o: &NewOrder) -> Result<Totals, Vec<Problem>> {
    let subtotal: i128 = o
        .lines
        .iter()
        .map(|l| i128::from(l.quantity) * i128::from(l.unit_price.cents()))
        .sum();
    let Some(subtotal) = within_range(subtotal) else {
        return Err(vec![Problem::new(
            "/lines",
            "the sum of the lines is larger than the largest amount stored (decimal(18,2))",
        )]);
    };
    let mut problems = Vec::new();
    if o.discount > subtotal {
        problems.push(Problem::new(
            "/discount",
            format!(
                "must not exceed the sum of the lines ({subtotal}), got {}",
                o.discount
            ),
        ));
    }
    let total = subtotal
        .checked_add(o.tax)
        .and_then(|t| t.checked_add(o.shipping))
        .and_then(|t| t.checked_sub(o.discount));
    let Some(total) = total else {
        problems.push(Problem::new(
            "/total",
            "the order total is larger than the largest amount stored (decimal(18,2))",
        ));
        return Err(problems);
    };
    if let Some(given) = o.total
        && given != total
    {
        problems.push(Problem::new(
            "/total",
            format!(
                "does not add up: lines {subtotal} + tax {} + shipping {} - discount {} = {total}, got {given}",
                o.tax, o.shipping, o.discount
            ),
        ));
    }
    if problems.is_empty() {
        Ok(Totals { subtotal, total })
    } else {
        Err(problems)
    }
}

fn cap(mut problems: Vec<Problem>) -> Vec<Problem> {
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(Problem::new("", format!("{more} more problems not listed")));
    }
    problems
}

/// Problems with an idempotency key: 1 to 255 printable ASCII characters.
pub(crate) fn check_idempotency_key(key: &str) -> Option<Problem> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(Problem::new(
            "Idempotency-Key",
            "must be 1 to 255 printable ASCII characters without spaces",
        ));
    }
    None
}

/// Problems with the actor and note of a status change.
pub(crate) fn check_change(actor: &str, note: Option<&str>) -> Vec<Problem> {
    let mut problems = Vec::new();
    text_field(&mut problems, actor, "actor", MAX_ID_LEN, true);
    if let Some(note) = note {
        text_field(&mut problems, note, "/note", MAX_TEXT_LEN, false);
    }
    problems
}

/// The canonical hash of a new order: blake3 over a fixed serialization of
/// the parsed values, so `"19.99"` and `19.99`, key order, whitespace and
/// equivalent time zones do not matter. `total` is left out: it is derived
/// from the other fields (and checked), so sending it or not is the same
/// order.
pub(crate) fn body_hash(o: &NewOrder) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        v: u8,
        order_id: &'a str,
        customer_id: &'a str,
        email: Option<&'a str>,
        currency: &'a str,
        tax: i64,
        shipping: i64,
        discount: i64,
        coupon: Option<&'a str>,
        placed_at_us: Option<i64>,
        lines: Vec<CanonicalLine<'a>>,
    }
    #[derive(Serialize)]
    struct CanonicalLine<'a> {
        product_id: &'a str,
        sku: Option<&'a str>,
        name: Option<&'a str>,
        category: Option<&'a str>,
        quantity: i64,
        unit_price: i64,
    }
    let canonical = Canonical {
        v: 1,
        order_id: &o.order_id,
        customer_id: &o.customer_id,
        email: o.email.as_deref(),
        currency: &o.currency,
        tax: o.tax.cents(),
        shipping: o.shipping.cents(),
        discount: o.discount.cents(),
        coupon: o.coupon.as_deref(),
        placed_at_us: o.placed_at.map(|t| t.timestamp_micros()),
        lines: o
            .lines
            .iter()
            .map(|l| CanonicalLine {
                product_id: &l.product_id,
                sku: l.sku.as_deref(),
                name: l.name.as_deref(),
                category: l.category.as_deref(),
                quantity: l.quantity,
                unit_price: l.unit_price.cents(),
            })
            .collect(),
    };
    // Serializing plain strings and integers cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    blake3::hash(&bytes).to_hex().to_string()
}

// ---------------------------------------------------------------------------
// Lenient parsing: a problem per field instead of serde's first error.

/// The top level of a body, every field kept as raw JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrder<'a> {
    #[serde(default, borrow)]
    order_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    customer_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    email: Option<&'a RawValue>,
    #[serde(default, borrow)]
    currency: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tax: Option<&'a RawValue>,
    #[serde(default, borrow)]
    shipping: Option<&'a RawValue>,
    #[serde(default, borrow)]
    discount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    coupon: Option<&'a RawValue>,
    #[serde(default, borrow)]
    placed_at: Option<&'a RawValue>,
    #[serde(default, borrow)]
    lines: Option<&'a RawValue>,
    #[serde(default, borrow)]
    total: Option<&'a RawValue>,
}

/// One line, every field kept as raw JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine<'a> {
    #[serde(default, borrow)]
    product_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sku: Option<&'a RawValue>,
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    category: Option<&'a RawValue>,
    #[serde(default, borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(default, borrow)]
    unit_price: Option<&'a RawValue>,
}

/// Collects the problems of one body.
struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    fn bad(&mut self, field: &str, reason: impl Into<String>) {
        self.problems.push(Problem::new(field, reason));
    }

    /// `raw`, or `None` and a problem if the field is missing (or null).
    fn required<'a>(&mut self, raw: Option<&'a RawValue>, field: &str) -> Option<&'a RawValue> {
        if raw.is_none() {
            self.bad(field, "is required");
        }
        raw
    }

    fn string(&mut self, raw: Option<&RawValue>, field: &str) -> Option<String> {
        let raw = raw?;
        match serde_json::from_str::<String>(raw.get()) {
            Ok(s) => Some(s),
            Err(_) => {
                self.bad(field, "must be a string");
                None
            }
        }
    }

    fn money(&mut self, raw: Option<&RawValue>, field: &str) -> Option<Money> {
        match Money::from_json_text(raw?.get()) {
            Ok(m) => Some(m),
            Err(e) => {
                self.bad(field, e);
                None
            }
        }
    }

    fn integer(&mut self, raw: Option<&RawValue>, field: &str) -> Option<i64> {
        let text = raw?.get();
        match text.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.bad(field, format!("must be a whole number, got {text}"));
                None
            }
        }
    }

    fn timestamp(&mut self, raw: Option<&RawValue>, field: &str) -> Option<DateTime<Utc>> {
        let text = self.string(raw, field)?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                self.bad(
                    field,
                    format!(
                        "must be an RFC 3339 timestamp such as 2024-05-01T12:30:00Z, got {text:?}"
                    ),
                );
                None
            }
        }
    }

    fn line(&mut self, raw: &RawValue, i: usize) -> Line {
        let at = |name: &str| format!("/lines/{i}/{name}");
        let placeholder = Line {
            product_id: "?".into(),
            sku: None,
            name: None,
            category: None,
            quantity: 1,
            unit_price: Money::from_cents(1),
        };
        let rl: RawLine<'_> = match serde_json::from_str(raw.get()) {
            Ok(rl) => rl,
            Err(e) => {
                self.bad(
                    &format!("/lines/{i}"),
                    serde_message(&e, "must be an object"),
                );
                return placeholder;
            }
        };
        let product_id = self.required(rl.product_id, &at("product_id"));
        let product_id = self.string(product_id, &at("product_id"));
        let sku = self.string(rl.sku, &at("sku"));
        let name = self.string(rl.name, &at("name"));
        let category = self.string(rl.category, &at("category"));
        let quantity = self.required(rl.quantity, &at("quantity"));
        let quantity = self.integer(quantity, &at("quantity"));
        let unit_price = self.required(rl.unit_price, &at("unit_price"));
        let unit_price = self.money(unit_price, &at("unit_price"));
        Line {
            product_id: product_id.unwrap_or(placeholder.product_id),
            sku,
            name,
            category,
            quantity: quantity.unwrap_or(placeholder.quantity),
            unit_price: unit_price.unwrap_or(placeholder.unit_price),
        }
    }
}

/// serde's message without the " at line 1 column 42" suffix.
fn serde_message(e: &serde_json::Error, fallback: &str) -> String {
    if e.is_data() {
        let text = e.to_string();
        match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    } else {
        fallback.to_string()
    }
}

impl NewOrder {
    /// Parses a request body, reporting every problem at once with a JSON
    /// pointer (wrong types, missing fields, bad amounts, unknown fields) —
    /// including the rule violations [`validate`] finds — instead of stopping
    /// at the first. Returns [`OrderError::Invalid`] on any problem.
    pub fn from_json(body: &[u8]) -> Result<NewOrder, OrderError> {
        Self::from_json_at(body, Utc::now())
    }

    pub(crate) fn from_json_at(body: &[u8], now: DateTime<Utc>) -> Result<NewOrder, OrderError> {
        let raw: RawOrder<'_> = serde_json::from_slice(body).map_err(|e| {
            let reason = if e.is_data() {
                serde_message(&e, "")
            } else {
                format!("the body is not a JSON object: {e}")
            };
            OrderError::invalid("", reason)
        })?;
        let mut r = Reader {
            problems: Vec::new(),
        };
        let order_id = r.required(raw.order_id, "/order_id");
        let order_id = r.string(order_id, "/order_id");
        let customer_id = r.required(raw.customer_id, "/customer_id");
        let customer_id = r.string(customer_id, "/customer_id");
        let email = r.string(raw.email, "/email");
        let currency = r.required(raw.currency, "/currency");
        let currency = r.string(currency, "/currency");
        let tax = r.money(raw.tax, "/tax");
        let shipping = r.money(raw.shipping, "/shipping");
        let discount = r.money(raw.discount, "/discount");
        let coupon = r.string(raw.coupon, "/coupon");
        let placed_at = r.timestamp(raw.placed_at, "/placed_at");
        let total = r.money(raw.total, "/total");
        let mut lines = Vec::new();
        match raw.lines {
            None => r.bad("/lines", "is required"),
            Some(raw_lines) => match serde_json::from_str::<Vec<&RawValue>>(raw_lines.get()) {
                Ok(items) if items.len() > MAX_LINES => r.bad(
                    "/lines",
                    format!(
                        "must contain at most {MAX_LINES} lines, got {}",
                        items.len()
                    ),
                ),
                Ok(items) => {
                    lines = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| r.line(item, i))
                        .collect()
                }
                Err(_) => r.bad("/lines", "must be an array of lines"),
            },
        }
        let order = NewOrder {
            order_id: order_id.unwrap_or_default(),
            customer_id: customer_id.unwrap_or_default(),
            email,
            currency: currency.unwrap_or_default(),
            tax: tax.unwrap_or_default(),
            shipping: shipping.unwrap_or_default(),
            discount: discount.unwrap_or_default(),
            coupon,
            placed_at,
            lines,
            total,
        };
        let structural = r.problems;
        if structural.is_empty() {
            let problems = validate(&order, now);
            return if problems.is_empty() {
                Ok(order)
            } else {
                Err(OrderError::Invalid(problems))
            };
        }
        // Add the rule violations of the fields that did parse; skip the
        // cross-field checks, which would only echo the placeholders.
        let mut problems = structural;
        let mut more = Vec::new();
        validate_fields(&order, now, &mut more);
        for p in more {
            let covered = problems.iter().any(|s| {
                p.field == s.field
                    || p.field.starts_with(&format!("{}/", s.field))
                    || s.field.is_empty()
            });
            if !covered {
                problems.push(p);
            }
        }
        problems.sort_by_key(|p| field_rank(&p.field));
        Err(OrderError::Invalid(cap(problems)))
    }
}

/// Orders problems as the fields appear in a body.
fn field_rank(field: &str) -> (usize, usize, String) {
    const ORDER: [&str; 11] = [
        "/order_id",
        "/customer_id",
        "/email",
        "/currency",
        "/tax",
        "/shipping",
        "/discount",
        "/coupon",
        "/placed_at",
        "/lines",
        "/total",
    ];
    let top = ORDER
        .iter()
        .position(|f| field == *f || field.starts_with(&format!("{f}/")))
        .unwrap_or(ORDER.len());
    let line = field
        .strip_prefix("/lines/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (top, line, field.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fields(e: OrderError) -> Vec<String> {
        match e {
            OrderError::Invalid(p) => p.into_iter().map(|p| p.field).collect(),
            other => panic!("expected Invalid, got {other}"),
        }
    }

    const GOOD: &str = r#"{"order_id": "A-1", "customer_id": "c1", "email": "a@b.co", "currency": "EUR",
        "tax": "1.00", "shipping": 2, "lines": [{"product_id": "p", "quantity": 2, "unit_price": "0.10"},
        {"product_id": "q", "quantity": 1, "unit_price": 0.20}], "total": 3.40}"#;

    #[test]
    fn parses_a_good_body() {
        let o = NewOrder::from_json_at(GOOD.as_bytes(), now()).unwrap();
        assert_eq!(
            totals(&o).unwrap(),
            Totals {
                subtotal: Money::from_cents(40),
                total: Money::from_cents(340)
            }
        );
    }

    #[test]
    fn lists_every_problem_with_a_pointer() {
        let body = r#"{"order_id": "", "customer_id": 5, "email": "nope", "currency": "usd", "tax": -1,
            "discount": "1.999", "placed_at": "1999-12-31T23:59:59Z",
            "lines": [{"product_id": "p", "quantity": 1.5, "unit_price": "0"}, {"quantity": 0, "unit_price": 1e2}, 7]}"#;
        let got = fields(NewOrder::from_json_at(body.as_bytes(), now()).unwrap_err());
        let want = [
            "/order_id",
            "/customer_id",
            "/email",
            "/currency",
            "/tax",
            "/discount",
            "/placed_at",
            "/lines/0/quantity",
            "/lines/0/unit_price",
            "/lines/1/product_id",
            "/lines/1/quantity",
            "/lines/1/unit_price",
            "/lines/2",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn checks_totals_and_dates() {
        let mut o = NewOrder::from_json_at(GOOD.as_bytes(), now()).unwrap();
        o.total = Some(Money::from_cents(341));
        o.discount = Money::from_cents(41);
        o.placed_at = Some(now() + TimeDelta::days(2));
        let got: Vec<String> = validate(&o, now()).into_iter().map(|p| p.field).collect();
        assert_eq!(got, ["/placed_at", "/discount", "/total"]);
    }

    #[test]
    fn unknown_fields_and_non_objects_are_reported() {
        let e = NewOrder::from_json_at(br#"{"order_id": "a", "discont": 1}"#, now()).unwrap_err();
        assert!(e.to_string().contains("discont"), "{e}");
        let e = NewOrder::from_json_at(b"[1]", now()).unwrap_err();
        assert!(matches!(e, OrderError::Invalid(_)));
        let e = NewOrder::from_json_at(b"{", now()).unwrap_err();
        assert!(matches!(e, OrderError::Invalid(_)));
    }

    #[test]
    fn currencies_without_minor_units_take_whole_amounts() {
        let body = GOOD.replace("EUR", "JPY");
        let got = fields(NewOrder::from_json_at(body.as_bytes(), now()).unwrap_err());
        assert_eq!(
            got,
            ["/lines/0/unit_price", "/lines/1/unit_price", "/total"]
        );
    }

    #[test]
    fn hash_ignores_number_format_and_total() {
        let a = NewOrder::from_json_at(GOOD.as_bytes(), now()).unwrap();
        let b_text = GOOD
            .replace("\"0.10\"", "0.1")
            .replace(", \"total\": 3.40", "");
        let b = NewOrder::from_json_at(b_text.as_bytes(), now()).unwrap();
        assert_eq!(body_hash(&a), body_hash(&b));
        let mut c = b.clone();
        c.lines[0].quantity = 3;
        assert_ne!(body_hash(&a), body_hash(&c));
    }

    #[test]
    fn order_ids_and_emails() {
        assert!(is_valid_order_id("ORD-2024:0001_a.b"));
        assert!(!is_valid_order_id("a b"));
        assert!(!is_valid_order_id(&"x".repeat(129)));
        assert!(plausible_email("first.last+tag@mail.example.com"));
        assert!(!plausible_email("a@b"));
        assert!(!plausible_email("@b.com"));
        assert!(!plausible_email("a b@c.com"));
    }
}
