//! The four batch sources and their rules, shared by the file validator
//! (`shoplake import`) and the ETL, so a row the import accepts is a row the
//! pipeline can type, and a rejected row carries the same reason either way.
//!
//! A row arrives as a [`Record`]: its values in the source's column order
//! (from a CSV header or a JSON object's keys) plus any extra fields. The
//! `parse_*` functions type and check one record.

use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::Rejection;
use crate::{money, time};

/// A batch source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Order lines: `transactions.csv`.
    Transactions,
    /// The catalogue: `products.json`.
    Products,
    /// Site events: `clickstream.json` (JSON lines).
    Clickstream,
    /// Product reviews: `reviews.csv`.
    Reviews,
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// JSON lines, or one JSON array of objects.
    Json,
}

impl Format {
    /// The extension of files written in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

const TRANSACTION_COLUMNS: &[&str] = &[
    "transaction_id",
    "customer_id",
    "product_id",
    "quantity",
    "price",
    "total_amount",
    "transaction_date",
    "status",
];
const PRODUCT_COLUMNS: &[&str] = &["product_id", "name", "category", "brand", "price", "stock"];
const CLICKSTREAM_COLUMNS: &[&str] = &[
    "session_id",
    "customer_id",
    "event_type",
    "page",
    "timestamp",
    "device",
];
const REVIEW_COLUMNS: &[&str] = &[
    "review_id",
    "product_id",
    "customer_id",
    "rating",
    "review_text",
    "review_date",
];

impl Source {
    /// Every batch source, in pipeline order.
    pub const ALL: [Source; 4] = [
        Source::Products,
        Source::Transactions,
        Source::Clickstream,
        Source::Reviews,
    ];

    /// The source's name (its raw and quarantine table name).
    pub fn name(self) -> &'static str {
        match self {
            Source::Transactions => "transactions",
            Source::Products => "products",
            Source::Clickstream => "clickstream",
            Source::Reviews => "reviews",
        }
    }

    /// Parses a source name.
    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The columns of the source, in the seed schema's order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Source::Transactions => TRANSACTION_COLUMNS,
            Source::Products => PRODUCT_COLUMNS,
            Source::Clickstream => CLICKSTREAM_COLUMNS,
            Source::Reviews => REVIEW_COLUMNS,
        }
    }

    /// Columns a CSV header must name (the others may be absent).
    pub fn required_columns(self) -> &'static [&'static str] {
        match self {
            Source::Transactions => &[
                "transaction_id",
                "customer_id",
                "product_id",
                "quantity",
                "price",
                "total_amount",
                "transaction_date",
                "status",
            ],
            Source::Products => &["product_id", "name", "category", "price"],
            Source::Clickstream => &["session_id", "event_type", "timestamp"],
            Source::Reviews => &[
                "review_id",
                "product_id",
                "customer_id",
                "rating",
                "review_date",
            ],
        }
    }

    /// Index of a column in [`Source::columns`].
    pub fn column_index(self, name: &str) -> Option<usize> {
        // a match compiles to one length check and one comparison per key,
        // where scanning the column list compared up to eight strings
        let i = match (self, name) {
            (Source::Transactions, "transaction_id") => 0,
            (Source::Transactions, "customer_id") => 1,
            (Source::Transactions, "product_id") => 2,
            (Source::Transactions, "quantity") => 3,
            (Source::Transactions, "price") => 4,
            (Source::Transactions, "total_amount") => 5,
            (Source::Transactions, "transaction_date") => 6,
            (Source::Transactions, "status") => 7,
            (Source::Products, "product_id") => 0,
            (Source::Products, "name") => 1,
            (Source::Products, "category") => 2,
            (Source::Products, "brand") => 3,
            (Source::Products, "price") => 4,
            (Source::Products, "stock") => 5,
            (Source::Clickstream, "session_id") => 0,
            (Source::Clickstream, "customer_id") => 1,
            (Source::Clickstream, "event_type") => 2,
            (Source::Clickstream, "page") => 3,
            (Source::Clickstream, "timestamp") => 4,
            (Source::Clickstream, "device") => 5,
            (Source::Reviews, "review_id") => 0,
            (Source::Reviews, "product_id") => 1,
            (Source::Reviews, "customer_id") => 2,
            (Source::Reviews, "rating") => 3,
            (Source::Reviews, "review_text") => 4,
            (Source::Reviews, "review_date") => 5,
            _ => return None,
        };
        debug_assert_eq!(self.columns()[i], name);
        Some(i)
    }

    /// The format the generator writes and the file name it uses.
    pub fn default_file(self) -> (&'static str, Format) {
        match self {
            Source::Transactions => ("transactions.csv", Format::Csv),
            Source::Products => ("products.json", Format::Json),
            Source::Clickstream => ("clickstream.json", Format::Json),
            Source::Reviews => ("reviews.csv", Format::Csv),
        }
    }

    /// The column whose date routes a row to its partition (`None`: products,
    /// which are routed to the day they arrive).
    pub fn date_column(self) -> Option<usize> {
        match self {
            Source::Transactions => Some(6),
            Source::Products => None,
            Source::Clickstream => Some(4),
            Source::Reviews => Some(5),
        }
    }
}

/// One value as received.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// The column is absent from the header or the object.
    Missing,
    /// JSON `null` or an empty CSV field.
    Null,
    /// Text (JSON escapes resolved).
    Str(Cow<'a, str>),
    /// A JSON number, as written.
    Num(&'a str),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON object or array, as written.
    Complex(&'a str),
}

impl Val<'_> {
    /// The value as text, for messages and payloads.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Num(s) | Val::Complex(s) => Some(s),
            Val::Bool(true) => Some("true"),
            Val::Bool(false) => Some("false"),
            Val::Missing | Val::Null => None,
        }
    }

    /// Writes the value as JSON.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Val::Missing | Val::Null => out.push_str("null"),
            Val::Str(s) => push_json_str(out, s),
            Val::Num(s) | Val::Complex(s) => out.push_str(s),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One row: values in the source's column order, plus fields the source does
/// not define (kept, e.g. in an event's `properties`).
#[derive(Debug, Clone, Default)]
pub struct Record<'a> {
    /// Values, indexed like [`Source::columns`].
    pub vals: Vec<Val<'a>>,
    /// Other fields, in the order received.
    pub extra: Vec<(Cow<'a, str>, Val<'a>)>,
}

impl<'a> Record<'a> {
    /// A record of `n` missing values.
    pub fn missing(n: usize) -> Self {
        Record {
            vals: vec![Val::Missing; n],
            extra: Vec::new(),
        }
    }

    /// Reads one JSON object into a record for `source`.
    pub fn from_json(source: Source, text: &'a str) -> Result<Record<'a>, Rejection> {
        if let Some(rec) = flat_object(source, text) {
            return Ok(rec);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let rec = (&mut de)
            .deserialize_map(RecordVisitor { source })
            .map_err(|e| Rejection::row(json_reason(&e)))?;
        de.end().map_err(|e| Rejection::row(json_reason(&e)))?;
        Ok(rec)
    }

    /// Reads one JSON object (already split out of an array) into a record.
    pub fn from_raw_json(source: Source, raw: &'a RawValue) -> Result<Record<'a>, Rejection> {
        Record::from_json(source, raw.get())
    }
}

/// The fast path of [`Record::from_json`]: a flat object whose strings have
/// no escapes, the shape of nearly every line a tracker or an export writes.
/// Gives `None` for anything else (escapes, nested values, odd numbers,
/// anything malformed), which then takes the full JSON parser, so the result
/// is always what the full parser would give.
fn flat_object<'a>(source: Source, text: &'a str) -> Option<Record<'a>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut rec = Record::missing(source.columns().len());
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(rec);
    }
    loop {
        let (key, next) = plain_string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (val, next) = match *b.get(i)? {
            b'"' => {
                let (s, next) = plain_string(text, i)?;
                (Val::Str(Cow::Borrowed(s)), next)
            }
            b'n' if b[i..].starts_with(b"null") => (Val::Null, i + 4),
            b't' if b[i..].starts_with(b"true") => (Val::Bool(true), i + 4),
            b'f' if b[i..].starts_with(b"false") => (Val::Bool(false), i + 5),
            b'-' | b'0'..=b'9' => {
                let end = number_end(b, i)?;
                (Val::Num(&text[i..end]), end)
            }
            _ => return None,
        };
        match source.column_index(key) {
            Some(c) => rec.vals[c] = val,
            None => rec.extra.push((Cow::Borrowed(key), val)),
        }
        i = skip_ws(b, next);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return (skip_ws(b, i + 1) == b.len()).then_some(rec),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string at `b[i] == '"'` with no escape and no control character:
/// its contents and the index after the closing quote.
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    // one pass: values are short, a byte loop beats searching twice
    for (n, &c) in b[start..].iter().enumerate() {
        match c {
            b'"' => return Some((&text[start..start + n], start + n + 1)),
            b'\\' => return None,
            c if c < 0x20 => return None,
            _ => {}
        }
    }
    None
}

/// The end of a JSON number at `i` (strict grammar: no leading zeros, a
/// digit after `.` and after the exponent sign).
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], mut i: usize| {
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i > s).then_some(i)
    };
    if b[i] == b'-' {
        i += 1;
    }
    if b.get(i) == Some(&b'0') {
        i += 1;
    } else {
        i = digits(b, i)?;
    }
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Some(i)
}

fn json_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("invalid type") {
        "not a JSON object".to_string()
    } else {
        format!("invalid JSON: {msg}")
    }
}

struct RecordVisitor {
    source: Source,
}

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rec = Record::missing(self.source.columns().len());
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let val = raw_to_val(raw).map_err(serde::de::Error::custom)?;
            match self.source.column_index(&key) {
                Some(i) => rec.vals[i] = val,
                None => rec.extra.push((key, val)),
            }
        }
        Ok(rec)
    }
}

/// Converts one raw JSON value.
pub fn raw_to_val(raw: &RawValue) -> Result<Val<'_>, serde_json::Error> {
    let s = raw.get();
    Ok(match s.as_bytes().first() {
        Some(b'"') => {
            let inner = &s[1..s.len() - 1];
            if inner.contains('\\') {
                Val::Str(Cow::Owned(serde_json::from_str::<String>(s)?))
            } else {
                Val::Str(Cow::Borrowed(inner))
            }
        }
        Some(b't') => Val::Bool(true),
        Some(b'f') => Val::Bool(false),
        Some(b'n') => Val::Null,
        Some(b'{') | Some(b'[') => Val::Complex(s),
        _ => Val::Num(s),
    })
}

// ---------------------------------------------------------------------------
// value rules

const MAX_ID_LEN: usize = 128;

fn text<'a>(
    v: &[Val<'a>],
    i: usize,
    col: &'static str,
    required: bool,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    let out = match &v[i] {
        Val::Str(s) => {
            let t = s.trim();
            if t.is_empty() {
                None
            } else if t.len() == s.len() {
                Some(s.clone())
            } else {
                Some(Cow::Owned(t.to_string()))
            }
        }
        Val::Num(n) => Some(Cow::Borrowed(*n)),
        Val::Missing | Val::Null => None,
        Val::Bool(_) | Val::Complex(_) => {
            return Err(Rejection::column(col, "expected text"));
        }
    };
    match out {
        None if required => Err(Rejection::column(
            col,
            if matches!(v[i], Val::Missing) {
                "missing"
            } else {
                "empty"
            },
        )),
        o => Ok(o),
    }
}

fn id<'a>(v: &[Val<'a>], i: usize, col: &'static str) -> Result<Cow<'a, str>, Rejection> {
    let s = text(v, i, col, true)?.expect("required");
    if s.len() > MAX_ID_LEN {
        return Err(Rejection::column(
            col,
            format!("longer than {MAX_ID_LEN} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Rejection::column(col, "contains control characters"));
    }
    Ok(s)
}

fn raw_text<'b>(v: &'b Val<'_>, col: &'static str) -> Result<&'b str, Rejection> {
    match v {
        Val::Str(s) => Ok(s.trim()),
        Val::Num(n) => Ok(n),
        Val::Missing => Err(Rejection::column(col, "missing")),
        Val::Null => Err(Rejection::column(col, "empty")),
        _ => Err(Rejection::column(col, "expected a number")),
    }
}

fn int(v: &[Val<'_>], i: usize, col: &'static str) -> Result<i64, Rejection> {
    let s = raw_text(&v[i], col)?;
    if s.is_empty() {
        return Err(Rejection::column(col, "empty"));
    }
    s.parse::<i64>()
        .or_else(|_| {
            // JSON writers sometimes print integers as 3.0
            match s.strip_suffix(".0") {
                Some(t) => t.parse::<i64>(),
                None => Err("x".parse::<i64>().unwrap_err()),
            }
        })
        .map_err(|_| Rejection::column(col, format!("not an integer: {s:?}")))
}

fn amount(v: &[Val<'_>], i: usize, col: &'static str) -> Result<i128, Rejection> {
    let s = raw_text(&v[i], col)?;
    if s.is_empty() {
        return Err(Rejection::column(col, "empty"));
    }
    money::parse_column(col, s)
}

/// Earliest and latest plausible business dates (1990-01-01 .. 2100-12-31).
const MIN_DAY: i32 = 7305;
const MAX_DAY: i32 = 47_846;

fn date(v: &[Val<'_>], i: usize, col: &'static str) -> Result<i32, Rejection> {
    let s = raw_text(&v[i], col)?;
    let d = time::parse_date(s).map_err(|e| Rejection::column(col, e))?;
    check_day(d, col, s)
}

fn check_day(d: i32, col: &'static str, s: &str) -> Result<i32, Rejection> {
    if !(MIN_DAY..=MAX_DAY).contains(&d) {
        return Err(Rejection::column(
            col,
            format!("implausible date {s:?} (expected 1990–2100)"),
        ));
    }
    Ok(d)
}

fn timestamp(v: &[Val<'_>], i: usize, col: &'static str) -> Result<i64, Rejection> {
    let s = raw_text(&v[i], col)?;
    let us = time::parse_ts(s).map_err(|e| Rejection::column(col, e))?;
    check_day(us.div_euclid(time::MICROS_PER_DAY) as i32, col, s)?;
    Ok(us)
}

/// The date that routes a record to its partition, if the source has one.
pub fn record_date(source: Source, rec: &Record<'_>) -> Result<Option<i32>, Rejection> {
    let Some(i) = source.date_column() else {
        return Ok(None);
    };
    let col = source.columns()[i];
    match source {
        Source::Clickstream => {
            timestamp(&rec.vals, i, col).map(|us| Some(us.div_euclid(time::MICROS_PER_DAY) as i32))
        }
        _ => date(&rec.vals, i, col).map(Some),
    }
}

/// Checks one record of `source` against every rule.
pub fn validate(source: Source, rec: &Record<'_>) -> Result<(), Rejection> {
    match source {
        Source::Transactions => parse_transaction(rec).map(drop),
        Source::Products => parse_product(rec).map(drop),
        Source::Clickstream => parse_click(rec).map(drop),
        Source::Reviews => parse_review(rec).map(drop),
    }
}

// ---------------------------------------------------------------------------
// typed rows

/// Status of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Sold and kept.
    Completed,
    /// Sent back.
    Returned,
    /// Money given back.
    Refunded,
}

impl Status {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Returned => "returned",
            Status::Refunded => "refunded",
        }
    }
}

/// A typed transaction line.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionRow<'a> {
    /// Line id.
    pub transaction_id: Cow<'a, str>,
    /// Customer id.
    pub customer_id: Cow<'a, str>,
    /// Product id.
    pub product_id: Cow<'a, str>,
    /// Units, > 0.
    pub quantity: i32,
    /// Unit price in hundredths, > 0.
    pub price: i128,
    /// Line total in hundredths.
    pub total_amount: i128,
    /// Days since the epoch.
    pub transaction_date: i32,
    /// Status.
    pub status: Status,
}

/// Types and checks a transaction record.
pub fn parse_transaction<'a>(rec: &Record<'a>) -> Result<TransactionRow<'a>, Rejection> {
    let v = &rec.vals;
    let transaction_id = id(v, 0, "transaction_id")?;
    let customer_id = id(v, 1, "customer_id")?;
    let product_id = id(v, 2, "product_id")?;
    let quantity = int(v, 3, "quantity")?;
    if quantity <= 0 {
        return Err(Rejection::column(
            "quantity",
            format!("must be > 0, got {quantity}"),
        ));
    }
    if quantity > 100_000 {
        return Err(Rejection::column(
            "quantity",
            format!("implausibly large: {quantity}"),
        ));
    }
    let price = amount(v, 4, "price")?;
    if price <= 0 {
        return Err(Rejection::column(
            "price",
            format!("must be > 0, got {}", money::format_cents(price)),
        ));
    }
    let total_amount = amount(v, 5, "total_amount")?;
    if total_amount < 0 {
        return Err(Rejection::column("total_amount", "must be ≥ 0"));
    }
    let expected = price * i128::from(quantity);
    if total_amount > expected + 1 {
        return Err(Rejection::column(
            "total_amount",
            format!(
                "{} exceeds quantity × price = {}",
                money::format_cents(total_amount),
                money::format_cents(expected)
            ),
        ));
    }
    let transaction_date = date(v, 6, "transaction_date")?;
    let status_text = text(v, 7, "status", true)?.expect("required");
    let status = match status_text.to_ascii_lowercase().as_str() {
        "completed" => Status::Completed,
        "returned" => Status::Returned,
        "refunded" => Status::Refunded,
        other => {
            return Err(Rejection::column(
                "status",
                format!("{other:?} is not one of completed, returned, refunded"),
            ));
        }
    };
    Ok(TransactionRow {
        transaction_id,
        customer_id,
        product_id,
        quantity: quantity as i32,
        price,
        total_amount,
        transaction_date,
        status,
    })
}

/// A typed product.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRow<'a> {
    /// Product id.
    pub product_id: Cow<'a, str>,
    /// Name.
    pub name: Cow<'a, str>,
    /// Category.
    pub category: Cow<'a, str>,
    /// Brand.
    pub brand: Option<Cow<'a, str>>,
    /// Price in hundredths, > 0.
    pub price: i128,
    /// Stock, ≥ 0 (0 when absent).
    pub stock: i32,
}

/// Types and checks a product record.
pub fn parse_product<'a>(rec: &Record<'a>) -> Result<ProductRow<'a>, Rejection> {
    let v = &rec.vals;
    let product_id = id(v, 0, "product_id")?;
    let name = text(v, 1, "name", true)?.expect("required");
    let category = text(v, 2, "category", true)?.expect("required");
    let brand = text(v, 3, "brand", false)?;
    let price = amount(v, 4, "price")?;
    if price <= 0 {
        return Err(Rejection::column(
            "price",
            format!("must be > 0, got {}", money::format_cents(price)),
        ));
    }
    let stock = match &v[5] {
        Val::Missing | Val::Null => 0,
        _ => int(v, 5, "stock")?,
    };
    if !(0..=i64::from(i32::MAX)).contains(&stock) {
        return Err(Rejection::column(
            "stock",
            format!("must be ≥ 0, got {stock}"),
        ));
    }
    Ok(ProductRow {
        product_id,
        name,
        category,
        brand,
        price,
        stock: stock as i32,
    })
}

/// A typed clickstream event.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickRow<'a> {
    /// Session id.
    pub session_id: Cow<'a, str>,
    /// Customer id, when the visitor is known.
    pub customer_id: Option<Cow<'a, str>>,
    /// Event type as sent, trimmed.
    pub event_type: Cow<'a, str>,
    /// Page URL or path.
    pub page: Option<Cow<'a, str>>,
    /// Microseconds since the epoch.
    pub timestamp: i64,
    /// Device as sent.
    pub device: Option<Cow<'a, str>>,
}

/// Types and checks a clickstream record.
pub fn parse_click<'a>(rec: &Record<'a>) -> Result<ClickRow<'a>, Rejection> {
    let v = &rec.vals;
    let session_id = id(v, 0, "session_id")?;
    let customer_id = text(v, 1, "customer_id", false)?;
    if customer_id.as_ref().is_some_and(|c| c.len() > MAX_ID_LEN) {
        return Err(Rejection::column(
            "customer_id",
            format!("longer than {MAX_ID_LEN} characters"),
        ));
    }
    let event_type = text(v, 2, "event_type", true)?.expect("required");
    if event_type.len() > 64 {
        return Err(Rejection::column("event_type", "longer than 64 characters"));
    }
    let page = text(v, 3, "page", false)?;
    let timestamp = timestamp(v, 4, "timestamp")?;
    let device = text(v, 5, "device", false)?;
    Ok(ClickRow {
        session_id,
        customer_id,
        event_type,
        page,
        timestamp,
        device,
    })
}

/// A typed review.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRow<'a> {
    /// Review id.
    pub review_id: Cow<'a, str>,
    /// Product id.
    pub product_id: Cow<'a, str>,
    /// Customer id.
    pub customer_id: Cow<'a, str>,
    /// Stars, 1–5.
    pub rating: i32,
    /// Text.
    pub review_text: Option<Cow<'a, str>>,
    /// Days since the epoch.
    pub review_date: i32,
}

/// Types and checks a review record.
pub fn parse_review<'a>(rec: &Record<'a>) -> Result<ReviewRow<'a>, Rejection> {
    let v = &rec.vals;
    let review_id = id(v, 0, "review_id")?;
    let product_id = id(v, 1, "product_id")?;
    let customer_id = id(v, 2, "customer_id")?;
    let rating = int(v, 3, "rating")?;
    if !(1..=5).contains(&rating) {
        return Err(Rejection::column(
            "rating",
            format!("must be 1–5, got {rating}"),
        ));
    }
    let review_text = text(v, 4, "review_text", false)?;
    let review_date = date(v, 5, "review_date")?;
    Ok(ReviewRow {
        review_id,
        product_id,
        customer_id,
        rating: rating as i32,
        review_text,
        review_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csvish(source: Source, vals: &[&'static str]) -> Record<'static> {
        let mut r = Record::missing(source.columns().len());
        for (i, v) in vals.iter().enumerate() {
            r.vals[i] = if v.is_empty() {
                Val::Null
            } else {
                Val::Str(Cow::Borrowed(v))
            };
        }
        r
    }

    #[test]
    fn column_index_agrees_with_columns() {
        for s in Source::ALL {
            for (i, c) in s.columns().iter().enumerate() {
                assert_eq!(s.column_index(c), Some(i));
            }
            assert_eq!(s.column_index("nope"), None);
        }
    }

    #[test]
    fn transaction_rules() {
        let ok = csvish(
            Source::Transactions,
            &[
                "T1",
                "C1",
                "P1",
                "2",
                "9.99",
                "19.98",
                "2025-01-15",
                "Completed",
            ],
        );
        let t = parse_transaction(&ok).unwrap();
        assert_eq!((t.quantity, t.price, t.total_amount), (2, 999, 1998));
        assert_eq!(t.status, Status::Completed);

        let cases = [
            (
                [
                    "T1",
                    "C1",
                    "P1",
                    "0",
                    "9.99",
                    "0",
                    "2025-01-15",
                    "completed",
                ],
                "quantity: must be > 0, got 0",
            ),
            (
                [
                    "T1",
                    "C1",
                    "P1",
                    "x",
                    "9.99",
                    "0",
                    "2025-01-15",
                    "completed",
                ],
                "quantity: not an integer: \"x\"",
            ),
            (
                ["T1", "C1", "P1", "1", "-1", "0", "2025-01-15", "completed"],
                "price: must be > 0, got -1.00",
            ),
            (
                [
                    "T1",
                    "C1",
                    "P1",
                    "1",
                    "1.00",
                    "5.00",
                    "2025-01-15",
                    "completed",
                ],
                "total_amount: 5.00 exceeds quantity × price = 1.00",
            ),
            (
                [
                    "T1",
                    "C1",
                    "P1",
                    "1",
                    "1.00",
                    "1.00",
                    "2025-13-15",
                    "completed",
                ],
                "transaction_date: not a date (YYYY-MM-DD): \"2025-13-15\"",
            ),
            (
                [
                    "T1",
                    "C1",
                    "P1",
                    "1",
                    "1.00",
                    "1.00",
                    "1900-01-01",
                    "completed",
                ],
                "transaction_date: implausible date \"1900-01-01\" (expected 1990–2100)",
            ),
            (
                ["T1", "C1", "P1", "1", "1.00", "1.00", "2025-01-15", "lost"],
                "status: \"lost\" is not one of completed, returned, refunded",
            ),
            (
                [
                    "",
                    "C1",
                    "P1",
                    "1",
                    "1.00",
                    "1.00",
                    "2025-01-15",
                    "completed",
                ],
                "transaction_id: empty",
            ),
        ];
        for (vals, want) in cases {
            let err = parse_transaction(&csvish(Source::Transactions, &vals)).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn json_records_keep_extras_and_accept_numbers() {
        let line = r#"{"product_id": 17, "name": "Lamp \"Nova\"", "category":"home","price": 24.5,"stock":3,"color":"red"}"#;
        let rec = Record::from_json(Source::Products, line).unwrap();
        let p = parse_product(&rec).unwrap();
        assert_eq!(p.product_id, "17");
        assert_eq!(p.name, "Lamp \"Nova\"");
        assert_eq!(p.price, 2450);
        assert_eq!(p.brand, None);
        assert_eq!(rec.extra.len(), 1);
        assert_eq!(rec.extra[0].0, "color");
    }

    type Owned = (Vec<Val<'static>>, Vec<(String, Val<'static>)>);

    fn owned(rec: &Record<'_>) -> Owned {
        let own = |v: &Val<'_>| match v {
            Val::Str(c) => Val::Str(Cow::Owned(c.to_string())),
            Val::Num(n) => Val::Str(Cow::Owned(format!("#{n}"))),
            Val::Complex(c) => Val::Str(Cow::Owned(format!("@{c}"))),
            Val::Missing => Val::Missing,
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(*b),
        };
        (
            rec.vals.iter().map(own).collect(),
            rec.extra
                .iter()
                .map(|(k, v)| (k.to_string(), own(v)))
                .collect(),
        )
    }

    /// The fast path must give exactly what the full parser gives, or step aside.
    #[test]
    fn flat_fast_path_agrees_with_serde() {
        let slow = |t: &str| -> Option<Owned> {
            let mut de = serde_json::Deserializer::from_str(t);
            let rec = (&mut de)
                .deserialize_map(RecordVisitor {
                    source: Source::Clickstream,
                })
                .ok()?;
            de.end().ok()?;
            Some(owned(&rec))
        };
        let cases = [
            r#"{"session_id":"S1","customer_id":"","event_type":"page_view","page":"/a?b=c","timestamp":"2025-01-15T10:00:00Z","device":"mobile"}"#,
            r#" { "session_id" : "S1" , "n": -12.5e+3, "ok": true, "no": false, "x": null } "#,
            r#"{}"#,
            r#"{"a":"b","a":"c"}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":"x\"y"}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1,2]}"#,
            r#"{"a":"b",}"#,
            r#"{"a":"b"} x"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":"é ü"}"#,
            r#"{"a" "b"}"#,
            r#"[1]"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
        ];
        for t in cases {
            if let Some(rec) = flat_object(Source::Clickstream, t) {
                assert_eq!(Some(owned(&rec)), slow(t), "{t}");
            }
        }
        assert!(
            flat_object(Source::Clickstream, cases[0]).is_some(),
            "the common shape takes the fast path"
        );
        assert!(
            flat_object(Source::Clickstream, cases[6]).is_none(),
            "escapes take the full parser"
        );
        assert!(
            flat_object(Source::Clickstream, cases[11]).is_none(),
            "control characters take the full parser"
        );
    }

    #[test]
    fn json_errors_are_clear() {
        let e = Record::from_json(Source::Products, "[1,2]").unwrap_err();
        assert_eq!(e.reason, "not a JSON object");
        let e = Record::from_json(Source::Products, "{\"a\": ").unwrap_err();
        assert!(e.reason.starts_with("invalid JSON"), "{}", e.reason);
        let e = Record::from_json(Source::Products, "{} x").unwrap_err();
        assert!(e.reason.starts_with("invalid JSON"), "{}", e.reason);
    }

    #[test]
    fn click_and_review_rules() {
        let line = r#"{"session_id":"S1","customer_id":"","event_type":"page_view","page":"/","timestamp":"2025-01-15T10:00:00Z","device":"mobile"}"#;
        let c = parse_click(&Record::from_json(Source::Clickstream, line).unwrap()).unwrap();
        assert_eq!(c.customer_id, None);
        assert_eq!(
            record_date(
                Source::Clickstream,
                &Record::from_json(Source::Clickstream, line).unwrap()
            )
            .unwrap(),
            Some(20_103)
        );
        let bad = csvish(
            Source::Reviews,
            &["R1", "P1", "C1", "6", "meh", "2025-01-15"],
        );
        assert_eq!(
            parse_review(&bad).unwrap_err().to_string(),
            "rating: must be 1–5, got 6"
        );
    }
}
