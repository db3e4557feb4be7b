//! Raw landing files → typed processed rows, one date partition at a time.
//!
//! Every row goes through the same rules as `shoplake import`
//! ([`shoplake_core::sources`]); a rejected row becomes a quarantine row with
//! its file, line and reason. A row whose own date is not its folder's date is
//! rejected too (`shoplake import` routes rows by date; a hand-copied file may
//! not), so each processed partition is rebuilt from exactly one raw folder.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanArray, BooleanBuilder, Date32Builder, Decimal128Builder,
    Int32Builder, RecordBatch, StringBuilder,
};
use arrow::compute::filter_record_batch;
use shoplake_core::Rejection;
use shoplake_core::event::{
    Event, EventBatchBuilder, PageParams, canonical_device, canonical_event_type,
    product_from_path, split_url,
};
use shoplake_core::schema;
use shoplake_core::sources::{self, Format, Record, Source, Val, push_json_str};
use shoplake_core::time::{self, MICROS_PER_DAY};
use shoplake_lake::catalog::RawFile;
use shoplake_lake::files;
use shoplake_lake::quarantine::{QuarantineBuilder, Stage};

use crate::error::{JobError, Result};

/// Raw files grouped by their date partition.
pub type Partitions = [(i32, Vec<RawFile>)];

/// What the ETL needs to know besides the files.
#[derive(Debug, Clone)]
pub struct EtlContext {
    /// Lake root (source_file columns are relative to it).
    pub lake_root: std::path::PathBuf,
    /// Currency of batch amounts.
    pub currency: String,
    /// The run's start, µs (quarantine time).
    pub now_micros: i64,
    /// Largest decompressed file.
    pub max_file_bytes: u64,
    /// Worker threads.
    pub threads: usize,
}

/// Rows produced for one source and a set of dates.
#[derive(Debug, Default)]
pub struct EtlOutput {
    /// Typed rows for the processed table.
    pub batches: Vec<RecordBatch>,
    /// Rejected rows for the quarantine table.
    pub quarantine: Vec<RecordBatch>,
    /// Rows read.
    pub rows_in: u64,
    /// Rows kept (after rejection and deduplication).
    pub rows_out: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Duplicate rows dropped (same id in the partition; the later wins).
    pub duplicates: u64,
    /// Files read.
    pub files: u64,
    /// Fields the files carry beyond their source's columns, as the table
    /// columns they become (see [`column_name`]) → the first file that had
    /// each. The batches hold them after the declared columns; the table
    /// must be evolved to hold them ([`shoplake_lake::Lake::evolve`]).
    /// Clickstream keeps such fields in `properties` instead.
    pub new_columns: BTreeMap<String, String>,
    /// Extra fields that cannot become columns (their name is one the table
    /// derives itself, or has no letters) → the first file that had each.
    pub ignored_fields: BTreeMap<String, String>,
    /// Files refused whole (a required column missing, unreadable): (file,
    /// why). Each is one quarantine row too.
    pub refused: Vec<(String, String)>,
}

impl EtlOutput {
    fn absorb(&mut self, other: EtlOutput) {
        for (k, v) in other.new_columns {
            self.new_columns.entry(k).or_insert(v);
        }
        for (k, v) in other.ignored_fields {
            self.ignored_fields.entry(k).or_insert(v);
        }
        self.refused.extend(other.refused);
        self.batches.extend(other.batches);
        self.quarantine.extend(other.quarantine);
        self.rows_in += other.rows_in;
        self.rows_out += other.rows_out;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.files += other.files;
    }
}

/// A raw file read into memory and checked as a whole.
struct LoadedFile {
    rel: String,
    hash: String,
    text: String,
    format: Format,
    modified_micros: i64,
}

fn rel_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Reads and checks one file; a file refused whole becomes one quarantine
/// row and an entry of `out.refused`.
fn load(
    ctx: &EtlContext,
    f: &RawFile,
    date: i32,
    out: &mut EtlOutput,
) -> Result<Option<LoadedFile>> {
    let rel = rel_path(&ctx.lake_root, &f.path);
    let bytes = std::fs::read(&f.path).map_err(|e| JobError::Io(f.path.clone(), e))?;
    let refuse = |why: String, hash: String, out: &mut EtlOutput| {
        let mut b = QuarantineBuilder::new(ctx.now_micros, Stage::Pipeline, &rel, hash);
        b.push(0, &Rejection::row(format!("file refused: {why}")), "", date);
        out.quarantine.push(b.finish());
        out.refused.push((rel.clone(), why));
    };
    let bytes = match files::decompress(bytes, ctx.max_file_bytes) {
        Ok(b) => b,
        Err(e) => {
            refuse(e, String::new(), out);
            return Ok(None);
        }
    };
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let (text, format) = match files::into_text(&f.path, bytes) {
        Ok(t) => t,
        Err(e) => {
            refuse(e, hash, out);
            return Ok(None);
        }
    };
    Ok(Some(LoadedFile {
        rel,
        hash,
        text,
        format,
        modified_micros: f.modified_ms * 1000,
    }))
}

/// The column an extra field becomes: lowercase ASCII, runs of anything
/// but letters and digits as one `_` (`"Coupon Code"` → `coupon_code`), a
/// leading digit prefixed with `c_`, at most 64 bytes. `None` when nothing
/// is left.
pub fn column_name(field: &str) -> Option<String> {
    let mut s = String::with_capacity(field.len());
    for ch in field.trim().chars() {
        if ch.is_ascii_alphanumeric() {
            s.push(ch.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('_') {
            s.push('_');
        }
    }
    while s.ends_with('_') {
        s.pop();
    }
    if s.is_empty() {
        return None;
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "c_");
    }
    s.truncate(64);
    while s.ends_with('_') {
        s.pop();
    }
    Some(s)
}

/// The values of fields a source's files carry beyond the source's own
/// columns: one nullable text column per field, aligned with the rows kept.
struct Extras {
    table: &'static schema::Table,
    cols: Vec<(String, StringBuilder)>,
    /// field as received → its column (`None`: ignored).
    index: HashMap<String, Option<usize>>,
    rows: usize,
}

impl Extras {
    fn new(table: &'static schema::Table) -> Self {
        Extras {
            table,
            cols: Vec::new(),
            index: HashMap::new(),
            rows: 0,
        }
    }

    /// Adds one kept row's extra fields (from `file`); new columns and
    /// ignored fields are noted in `out`.
    fn push<'v>(
        &mut self,
        fields: impl IntoIterator<Item = (&'v str, Option<&'v str>)>,
        file: &str,
        out: &mut EtlOutput,
    ) {
        for (field, val) in fields {
            let i = match self.index.get(field) {
                Some(i) => *i,
                None => {
                    let col = column_name(field)
                        .filter(|c| !self.table.columns.iter().any(|d| d.name == c.as_str()));
                    let i = match col {
                        Some(c) => match self.cols.iter().position(|(n, _)| *n == c) {
                            // two fields named alike ("Gift Wrap", "gift_wrap"): the first wins
                            Some(_) => None,
                            None => {
                                let mut b = StringBuilder::new();
                                b.append_nulls(self.rows);
                                out.new_columns
                                    .entry(c.clone())
                                    .or_insert_with(|| file.to_string());
                                self.cols.push((c, b));
                                Some(self.cols.len() - 1)
                            }
                        },
                        None => None,
                    };
                    if i.is_none() {
                        out.ignored_fields
                            .entry(field.to_string())
                            .or_insert_with(|| file.to_string());
                    }
                    self.index.insert(field.to_string(), i);
                    i
                }
            };
            if let Some(i) = i {
                let b = &mut self.cols[i].1;
                if b.len() == self.rows {
                    b.append_option(val);
                }
            }
        }
        self.rows += 1;
        for (_, b) in &mut self.cols {
            if b.len() < self.rows {
                b.append_null();
            }
        }
    }

    /// `batch` (the declared columns, one row per pushed row) with the extra
    /// columns after them.
    fn finish(self, batch: RecordBatch) -> Result<RecordBatch> {
        if self.cols.is_empty() {
            return Ok(batch);
        }
        debug_assert_eq!(self.rows, batch.num_rows());
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            batch.schema().fields().iter().cloned().collect();
        let mut cols = batch.columns().to_vec();
        for (name, mut b) in self.cols {
            fields.push(Arc::new(arrow::datatypes::Field::new(
                name,
                arrow::datatypes::DataType::Utf8,
                true,
            )));
            cols.push(Arc::new(b.finish()));
        }
        Ok(RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            cols,
        )?)
    }
}

/// A record's extra fields as (name, text) pairs.
fn extra_texts<'a>(
    extra: &'a [(Cow<'_, str>, Val<'_>)],
) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
    extra.iter().map(|(k, v)| (k.as_ref(), v.as_text()))
}

fn outside(date: i32, row_date: i32, col: &'static str) -> Rejection {
    Rejection::column(
        col,
        format!(
            "the row's date {} is outside its folder date={} (`shoplake import` routes rows to their date)",
            time::format_date(row_date),
            time::format_date(date)
        ),
    )
}

/// Runs `work` over `items` on up to `threads` threads, keeping input order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 || threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let r = work(&items[i]);
                    results.lock().expect("no panics while locked")[i] = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|r| r.expect("every item done"))
        .collect()
}

/// Keeps the last row of each id; returns the batch and how many were dropped.
fn dedup_last(batch: RecordBatch, ids: &[String]) -> Result<(RecordBatch, u64)> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        last.insert(id.as_str(), i);
    }
    let dropped = (ids.len() - last.len()) as u64;
    if dropped == 0 {
        return Ok((batch, 0));
    }
    let mask: BooleanArray = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Some(last[id.as_str()] == i))
        .collect();
    Ok((filter_record_batch(&batch, &mask)?, dropped))
}

// ---------------------------------------------------------------------------
// transactions

/// processed.transactions rows for the given partitions.
pub fn transactions(ctx: &EtlContext, parts: &Partitions) -> Result<EtlOutput> {
    let outs = par_map(parts, ctx.threads, |(date, files)| {
        transactions_date(ctx, *date, files)
    });
    let mut all = EtlOutput::default();
    for o in outs {
        all.absorb(o?);
    }
    Ok(all)
}

fn transactions_date(ctx: &EtlContext, date: i32, files: &[RawFile]) -> Result<EtlOutput> {
    let mut out = EtlOutput::default();
    let mut ids: Vec<String> = Vec::new();
    let mut b_tid = StringBuilder::new();
    let mut b_cust = StringBuilder::new();
    let mut b_prod = StringBuilder::new();
    let mut b_qty = Int32Builder::new();
    let mut b_price = Decimal128Builder::new().with_data_type(schema::money_type());
    let mut b_total = Decimal128Builder::new().with_data_type(schema::money_type());
    let mut b_tdate = Date32Builder::new();
    let mut b_status = StringBuilder::new();
    let mut b_file = StringBuilder::new();
    let mut extras = Extras::new(&schema::TRANSACTIONS);
    for f in files {
        let Some(file) = load(ctx, f, date, &mut out)? else {
            out.rejected += 1;
            continue;
        };
        out.files += 1;
        let mut q = QuarantineBuilder::new(ctx.now_micros, Stage::Pipeline, &file.rel, &file.hash);
        let shape = files::for_each_row(
            Source::Transactions,
            file.format,
            &file.text,
            1,
            |row, rec| {
                out.rows_in += 1;
                let mut extra = Vec::new();
                let t = rec.and_then(|mut r| {
                    extra = std::mem::take(&mut r.extra);
                    sources::parse_transaction(&r).map(|t| (t, ()))
                });
                let t = match t {
                    Ok((t, ())) if t.transaction_date != date => {
                        Err(outside(date, t.transaction_date, "transaction_date"))
                    }
                    other => other.map(|(t, ())| t),
                };
                match t {
                    Ok(t) => {
                        ids.push(t.transaction_id.to_string());
                        b_tid.append_value(&t.transaction_id);
                        b_cust.append_value(&t.customer_id);
                        b_prod.append_value(&t.product_id);
                        b_qty.append_value(t.quantity);
                        b_price.append_value(t.price);
                        b_total.append_value(t.total_amount);
                        b_tdate.append_value(t.transaction_date);
                        b_status.append_value(t.status.name());
                        b_file.append_value(&file.rel);
                        extras.push(extra_texts(&extra), &file.rel, &mut out);
                    }
                    Err(why) => q.push(row.line, &why, row.raw, date),
                }
            },
        );
        if let Err(why) = shape {
            q.push(0, &Rejection::row(format!("file refused: {why}")), "", date);
            out.refused.push((file.rel.clone(), why));
        }
        out.rejected += q.len() as u64;
        out.quarantine.push(q.finish());
    }
    let n = ids.len();
    if n == 0 {
        return Ok(out);
    }
    let mut order_id = StringBuilder::new();
    let mut currency = StringBuilder::new();
    let mut src = StringBuilder::new();
    let mut part = Date32Builder::new();
    for _ in 0..n {
        order_id.append_null();
        currency.append_value(&ctx.currency);
        src.append_value("file");
        part.append_value(date);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(b_tid.finish()),
        Arc::new(order_id.finish()),
        Arc::new(b_cust.finish()),
        Arc::new(b_prod.finish()),
        Arc::new(b_qty.finish()),
        Arc::new(b_price.finish()),
        Arc::new(b_total.finish()),
        Arc::new(currency.finish()),
        Arc::new(b_tdate.finish()),
        Arc::new(b_status.finish()),
        Arc::new(src.finish()),
        Arc::new(b_file.finish()),
        Arc::new(part.finish()),
    ];
    let batch = extras.finish(RecordBatch::try_new(schema::TRANSACTIONS.schema(), cols)?)?;
    let (batch, dups) = dedup_last(batch, &ids)?;
    out.duplicates += dups;
    out.rows_out += batch.num_rows() as u64;
    out.batches.push(batch);
    Ok(out)
}

// ---------------------------------------------------------------------------
// reviews

/// processed.reviews rows for the given partitions.
pub fn reviews(ctx: &EtlContext, parts: &Partitions) -> Result<EtlOutput> {
    let outs = par_map(parts, ctx.threads, |(date, files)| {
        reviews_date(ctx, *date, files)
    });
    let mut all = EtlOutput::default();
    for o in outs {
        all.absorb(o?);
    }
    Ok(all)
}

fn sentiment(rating: i32) -> &'static str {
    match rating {
        4..=5 => "positive",
        3 => "neutral",
        _ => "negative",
    }
}

fn reviews_date(ctx: &EtlContext, date: i32, files: &[RawFile]) -> Result<EtlOutput> {
    let mut out = EtlOutput::default();
    let mut ids: Vec<String> = Vec::new();
    let mut b_id = StringBuilder::new();
    let mut b_prod = StringBuilder::new();
    let mut b_cust = StringBuilder::new();
    let mut b_rating = Int32Builder::new();
    let mut b_text = StringBuilder::new();
    let mut b_date = Date32Builder::new();
    let mut b_len = Int32Builder::new();
    let mut b_sent = StringBuilder::new();
    let mut b_file = StringBuilder::new();
    let mut extras = Extras::new(&schema::REVIEWS);
    for f in files {
        let Some(file) = load(ctx, f, date, &mut out)? else {
            out.rejected += 1;
            continue;
        };
        out.files += 1;
        let mut q = QuarantineBuilder::new(ctx.now_micros, Stage::Pipeline, &file.rel, &file.hash);
        let shape = files::for_each_row(Source::Reviews, file.format, &file.text, 1, |row, rec| {
            out.rows_in += 1;
            let mut extra = Vec::new();
            let r = rec
                .and_then(|mut r| {
                    extra = std::mem::take(&mut r.extra);
                    sources::parse_review(&r)
                })
                .and_then(|r| {
                    if r.review_date == date {
                        Ok(r)
                    } else {
                        Err(outside(date, r.review_date, "review_date"))
                    }
                });
            match r {
                Ok(r) => {
                    ids.push(r.review_id.to_string());
                    b_id.append_value(&r.review_id);
                    b_prod.append_value(&r.product_id);
                    b_cust.append_value(&r.customer_id);
                    b_rating.append_value(r.rating);
                    b_text.append_option(r.review_text.as_deref());
                    b_date.append_value(r.review_date);
                    b_len.append_value(
                        r.review_text
                            .as_deref()
                            .map_or(0, |t| t.chars().count() as i32),
                    );
                    b_sent.append_value(sentiment(r.rating));
                    b_file.append_value(&file.rel);
                    extras.push(extra_texts(&extra), &file.rel, &mut out);
                }
                Err(why) => q.push(row.line, &why, row.raw, date),
            }
        });
        if let Err(why) = shape {
            q.push(0, &Rejection::row(format!("file refused: {why}")), "", date);
            out.refused.push((file.rel.clone(), why));
        }
        out.rejected += q.len() as u64;
        out.quarantine.push(q.finish());
    }
    if ids.is_empty() {
        return Ok(out);
    }
    let mut part = Date32Builder::new();
    part.append_value_n(date, ids.len());
    let cols: Vec<ArrayRef> = vec![
        Arc::new(b_id.finish()),
        Arc::new(b_prod.finish()),
        Arc::new(b_cust.finish()),
        Arc::new(b_rating.finish()),
        Arc::new(b_text.finish()),
        Arc::new(b_date.finish()),
        Arc::new(b_len.finish()),
        Arc::new(b_sent.finish()),
        Arc::new(b_file.finish()),
        Arc::new(part.finish()),
    ];
    let batch = extras.finish(RecordBatch::try_new(schema::REVIEWS.schema(), cols)?)?;
    let (batch, dups) = dedup_last(batch, &ids)?;
    out.duplicates += dups;
    out.rows_out += batch.num_rows() as u64;
    out.batches.push(batch);
    Ok(out)
}

// ---------------------------------------------------------------------------
// products

/// processed.products from every product file: the newest version of each
/// product wins (files in partition-date then name order, rows in file order).
pub fn products(ctx: &EtlContext, parts: &Partitions) -> Result<EtlOutput> {
    struct P {
        name: String,
        category: String,
        brand: Option<String>,
        price: i128,
        stock: i32,
        updated: i32,
        file: Arc<str>,
        extra: Vec<(String, Option<String>)>,
    }
    let mut out = EtlOutput::default();
    let mut latest: HashMap<String, P> = HashMap::new();
    let mut seen_hashes = HashSet::new();
    for (date, files) in parts {
        for f in files {
            let Some(file) = load(ctx, f, *date, &mut out)? else {
                out.rejected += 1;
                continue;
            };
            out.files += 1;
            if !seen_hashes.insert(file.hash.clone()) {
                continue; // the same content twice: nothing new
            }
            let rel: Arc<str> = Arc::from(file.rel.as_str());
            let mut q =
                QuarantineBuilder::new(ctx.now_micros, Stage::Pipeline, &file.rel, &file.hash);
            let shape =
                files::for_each_row(Source::Products, file.format, &file.text, 1, |row, rec| {
                    out.rows_in += 1;
                    let mut extra = Vec::new();
                    let p = rec.and_then(|mut r| {
                        extra = std::mem::take(&mut r.extra);
                        sources::parse_product(&r)
                    });
                    match p {
                        Ok(p) => {
                            let prev = latest.insert(
                                p.product_id.to_string(),
                                P {
                                    name: p.name.into_owned(),
                                    category: p.category.into_owned(),
                                    brand: p.brand.map(|b| b.into_owned()),
                                    price: p.price,
                                    stock: p.stock,
                                    updated: *date,
                                    file: rel.clone(),
                                    extra: extra
                                        .iter()
                                        .map(|(k, v)| {
                                            (k.to_string(), v.as_text().map(str::to_string))
                                        })
                                        .collect(),
                                },
                            );
                            if prev.is_some() {
                                out.duplicates += 1;
                            }
                        }
                        Err(why) => q.push(row.line, &why, row.raw, *date),
                    }
                });
            if let Err(why) = shape {
                q.push(
                    0,
                    &Rejection::row(format!("file refused: {why}")),
                    "",
                    *date,
                );
                out.refused.push((file.rel.clone(), why));
            }
            out.rejected += q.len() as u64;
            out.quarantine.push(q.finish());
        }
    }
    // price bands relative to the category's median price
    let mut by_cat: HashMap<&str, Vec<i128>> = HashMap::new();
    for p in latest.values() {
        by_cat.entry(p.category.as_str()).or_default().push(p.price);
    }
    let medians: HashMap<&str, i128> = by_cat
        .into_iter()
        .map(|(c, mut v)| {
            v.sort_unstable();
            (c, v[v.len() / 2])
        })
        .collect();
    let mut ids: Vec<&String> = latest.keys().collect();
    ids.sort();
    let n = ids.len();
    let mut b = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Decimal128Builder::with_capacity(n).with_data_type(schema::money_type()),
        Int32Builder::new(),
        BooleanBuilder::new(),
        StringBuilder::new(),
        Date32Builder::new(),
        StringBuilder::new(),
    );
    let mut extras = Extras::new(&schema::PRODUCTS);
    for id in ids {
        let p = &latest[id];
        extras.push(
            p.extra.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            &p.file,
            &mut out,
        );
        let median = medians[p.category.as_str()];
        let band = if p.price * 3 < median * 2 {
            "budget"
        } else if p.price * 2 > median * 3 {
            "premium"
        } else {
            "mid"
        };
        b.0.append_value(id);
        b.1.append_value(&p.name);
        b.2.append_value(&p.category);
        b.3.append_option(p.brand.as_deref());
        b.4.append_value(p.price);
        b.5.append_value(p.stock);
        b.6.append_value(p.stock > 0);
        b.7.append_value(band);
        b.8.append_value(p.updated);
        b.9.append_value(&*p.file);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(b.0.finish()),
        Arc::new(b.1.finish()),
        Arc::new(b.2.finish()),
        Arc::new(b.3.finish()),
        Arc::new(b.4.finish()),
        Arc::new(b.5.finish()),
        Arc::new(b.6.finish()),
        Arc::new(b.7.finish()),
        Arc::new(b.8.finish()),
        Arc::new(b.9.finish()),
    ];
    out.rows_out = n as u64;
    out.batches
        .push(extras.finish(RecordBatch::try_new(schema::PRODUCTS.schema(), cols)?)?);
    Ok(out)
}

// ---------------------------------------------------------------------------
// clickstream → processed.events

/// One unit of clickstream work: a chunk of a file.
struct ClickUnit<'a> {
    date: i32,
    file: &'a LoadedFile,
    first_line: u64,
    text: &'a str,
}

/// processed.events rows for the given clickstream partitions.
pub fn clickstream(ctx: &EtlContext, parts: &Partitions) -> Result<EtlOutput> {
    let mut out = EtlOutput::default();
    // Load every file (parallel), skipping same-content copies in a partition.
    let flat: Vec<(i32, &RawFile)> = parts
        .iter()
        .flat_map(|(d, fs)| fs.iter().map(move |f| (*d, f)))
        .collect();
    let loaded = par_map(&flat, ctx.threads, |(date, f)| {
        let mut o = EtlOutput::default();
        let l = load(ctx, f, *date, &mut o);
        (l, o)
    });
    let mut files: Vec<(i32, LoadedFile)> = Vec::new();
    let mut seen: HashSet<(i32, String)> = HashSet::new();
    for ((date, _), (l, o)) in flat.iter().zip(loaded) {
        out.absorb(o);
        match l? {
            Some(file) => {
                out.files += 1;
                if seen.insert((*date, file.hash.clone())) {
                    files.push((*date, file));
                }
            }
            None => out.rejected += 1,
        }
    }
    // Split big JSON-lines files into chunks so both cores parse.
    let target_chunks = ctx.threads.max(1) * 4;
    let total: usize = files.iter().map(|(_, f)| f.text.len()).sum();
    let chunk_bytes = (total / target_chunks).max(1 << 20);
    let mut units = Vec::new();
    for (date, file) in &files {
        let array = files::is_json_array(&file.text);
        if file.format == Format::Json && !array && file.text.len() > chunk_bytes {
            let n = file.text.len().div_ceil(chunk_bytes);
            for (first_line, text) in files::split_lines(&file.text, n) {
                units.push(ClickUnit {
                    date: *date,
                    file,
                    first_line,
                    text,
                });
            }
        } else {
            units.push(ClickUnit {
                date: *date,
                file,
                first_line: 1,
                text: &file.text,
            });
        }
    }
    let results = par_map(&units, ctx.threads, |u| click_unit(ctx, u));
    for r in results {
        out.absorb(r?);
    }
    Ok(out)
}

fn click_unit(ctx: &EtlContext, u: &ClickUnit<'_>) -> Result<EtlOutput> {
    let mut out = EtlOutput::default();
    let mut b = EventBatchBuilder::new(u.text.len() / 120 + 16);
    let mut q = QuarantineBuilder::new(ctx.now_micros, Stage::Pipeline, &u.file.rel, &u.file.hash);
    let id_prefix = format!("cs-{}-", &u.file.hash[..16]);
    let mut id = String::with_capacity(id_prefix.len() + 12);
    let mut props = String::new();
    let shape = files::for_each_row(
        Source::Clickstream,
        u.file.format,
        u.text,
        u.first_line,
        |row, rec| {
            out.rows_in += 1;
            let mapped = rec.and_then(|r| {
                let c = sources::parse_click(&r)?;
                let d = c.timestamp.div_euclid(MICROS_PER_DAY) as i32;
                if d != u.date {
                    return Err(outside(u.date, d, "timestamp"));
                }
                Ok((c, r))
            });
            match mapped {
                Ok((c, r)) => {
                    id.clear();
                    id.push_str(&id_prefix);
                    id.push_str(shoplake_core::u64_digits(row.line, &mut [0; 20]));
                    let e = click_event(&c, &r, &id, u.file.modified_micros, &mut props);
                    b.push(&e);
                }
                Err(why) => q.push(row.line, &why, row.raw, u.date),
            }
        },
    );
    if let Err(why) = shape {
        q.push(
            0,
            &Rejection::row(format!("file refused: {why}")),
            "",
            u.date,
        );
        out.refused.push((u.file.rel.clone(), why));
    }
    out.rejected += q.len() as u64;
    if !q.is_empty() {
        out.quarantine.push(q.finish());
    }
    out.rows_out += b.len() as u64;
    if !b.is_empty() {
        out.batches.push(b.finish()?);
    }
    Ok(out)
}

/// Maps one clickstream row to the canonical event.
fn click_event<'a>(
    c: &'a sources::ClickRow<'a>,
    r: &'a Record<'a>,
    event_id: &'a str,
    received_at: i64,
    props: &mut String,
) -> Event<'a> {
    let page = c.page.as_deref();
    let (path, query) = page.map(split_url).unwrap_or(("/", None));
    let params = query.map(PageParams::parse).unwrap_or_default();
    let event_type = canonical_event_type(&c.event_type);
    let product_id = product_from_path(path)
        .map(std::borrow::Cow::Borrowed)
        .or(params.product_id);
    let search_query = if path.starts_with("/search") || event_type == "search" {
        params.search
    } else {
        None
    };
    let properties = if r.extra.is_empty() {
        None
    } else {
        props.clear();
        props.push('{');
        for (i, (k, v)) in r.extra.iter().enumerate() {
            if i > 0 {
                props.push(',');
            }
            push_json_str(props, k);
            props.push(':');
            v.write_json(props);
        }
        props.push('}');
        Some(props.clone())
    };
    let device_type = canonical_device(c.device.as_deref());
    Event {
        event_id: event_id.into(),
        event_type,
        event_name: c.event_type.as_ref().into(),
        event_ts: c.timestamp,
        received_at,
        anonymous_id: Some(
            c.customer_id
                .clone()
                .unwrap_or_else(|| c.session_id.clone()),
        ),
        user_id: c.customer_id.clone(),
        session_id: Some(c.session_id.clone()),
        page_url: page.map(Into::into),
        page_path: page.map(|_| path.into()),
        referrer: None,
        utm_source: params.utm_source,
        utm_medium: params.utm_medium,
        utm_campaign: params.utm_campaign,
        search_query,
        device_type,
        is_bot: device_type == "bot",
        product_id,
        properties,
        source: "clickstream".into(),
        protocol: "file",
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    fn ctx(root: &Path) -> EtlContext {
        EtlContext {
            lake_root: root.to_path_buf(),
            currency: "USD".into(),
            now_micros: 0,
            max_file_bytes: 1 << 30,
            threads: 2,
        }
    }

    #[test]
    fn extra_fields_become_column_names() {
        assert_eq!(column_name("Coupon Code").as_deref(), Some("coupon_code"));
        assert_eq!(column_name("  gift-wrap?? ").as_deref(), Some("gift_wrap"));
        assert_eq!(column_name("2nd address").as_deref(), Some("c_2nd_address"));
        assert_eq!(column_name("Ünïcode").as_deref(), Some("n_code"));
        assert_eq!(column_name("--").as_deref(), None);
        let long = column_name(&"a_".repeat(100)).unwrap();
        assert!(long.len() <= 64 && !long.ends_with('_'), "{long}");
        for name in ["Coupon Code", "2nd address", "x"] {
            assert!(shoplake_lake::is_column_name(&column_name(name).unwrap()));
        }
    }

    #[test]
    fn extras_stay_aligned_with_rows_whichever_row_brings_a_field() {
        let mut out = EtlOutput::default();
        let mut x = Extras::new(&schema::REVIEWS);
        x.push([], "a.csv", &mut out);
        x.push(
            [("Color", Some("red")), ("rating", Some("5"))],
            "b.csv",
            &mut out,
        );
        x.push(
            [("size", Some("L")), ("colour!", Some("x"))],
            "b.csv",
            &mut out,
        );
        x.push([("Color", None)], "c.csv", &mut out);
        let ids = arrow::array::Int32Array::from(vec![1, 2, 3, 4]);
        let base = RecordBatch::try_from_iter([("id", Arc::new(ids) as ArrayRef)]).unwrap();
        let b = x.finish(base).unwrap();
        let col = |n: &str| {
            let c = b.column_by_name(n).unwrap();
            let c = c
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            (0..c.len())
                .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(col("color"), [None, Some("red".into()), None, None]);
        assert_eq!(col("size"), [None, None, Some("L".into()), None]);
        assert_eq!(col("colour"), [None, None, Some("x".into()), None]);
        assert_eq!(
            out.new_columns.keys().collect::<Vec<_>>(),
            ["color", "colour", "size"]
        );
        assert_eq!(out.new_columns["color"], "b.csv");
        // `rating` is one of processed.reviews' own columns
        assert_eq!(out.ignored_fields.keys().collect::<Vec<_>>(), ["rating"]);
    }

    fn raw(dir: &Path, date: &str, name: &str, text: &str) -> RawFile {
        let d = dir.join(format!("date={date}"));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        RawFile {
            partition: date.into(),
            path: p,
            size: text.len() as u64,
            modified_ms: 1_000,
        }
    }

    #[test]
    fn transactions_are_typed_deduplicated_and_quarantined() {
        let tmp = tempfile::tempdir().unwrap();
        let d = time::parse_date("2025-01-15").unwrap();
        let f = raw(
            tmp.path(),
            "2025-01-15",
            "t.csv",
            "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status\n\
             T1,C1,P1,2,5.00,10.00,2025-01-15,completed\n\
             T2,C1,P2,1,abc,1.00,2025-01-15,completed\n\
             T1,C1,P1,3,5.00,15.00,2025-01-15,returned\n\
             T3,C2,P1,1,5.00,5.00,2025-01-16,completed\n",
        );
        let out = transactions(&ctx(tmp.path()), &[(d, vec![f])]).unwrap();
        assert_eq!(
            (out.rows_in, out.rows_out, out.rejected, out.duplicates),
            (4, 1, 2, 1)
        );
        let b = &out.batches[0];
        let qty = b
            .column_by_name("quantity")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap();
        assert_eq!(qty.value(0), 3, "the later T1 wins");
        let q =
            arrow::compute::concat_batches(&out.quarantine[0].schema(), &out.quarantine).unwrap();
        let reasons = q
            .column_by_name("reason")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(reasons.value(0), "not a decimal number: \"abc\"");
        assert!(
            reasons
                .value(1)
                .contains("outside its folder date=2025-01-15")
        );
    }

    #[test]
    fn clickstream_maps_to_canonical_events_with_stable_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let d = time::parse_date("2025-01-15").unwrap();
        let text = "{\"session_id\":\"S1\",\"customer_id\":\"C1\",\"event_type\":\"product_view\",\"page\":\"/product/P9?utm_source=google&utm_medium=cpc\",\"timestamp\":\"2025-01-15T10:00:00Z\",\"device\":\"Mobile\",\"ab\":\"x\"}\n\
                    {\"session_id\":\"S1\",\"customer_id\":\"\",\"event_type\":\"search\",\"page\":\"/search?q=red+shoes\",\"timestamp\":\"2025-01-15T10:01:00Z\",\"device\":\"mobile\"}\n\
                    {\"session_id\":\"S1\"}\n";
        let f = raw(tmp.path(), "2025-01-15", "c.json", text);
        let out = clickstream(&ctx(tmp.path()), &[(d, vec![f.clone(), f])]).unwrap();
        assert_eq!(
            (out.rows_in, out.rows_out, out.rejected),
            (3, 2, 1),
            "the second copy is skipped"
        );
        let b = &out.batches[0];
        let s = |c: &str, i: usize| {
            let a = b
                .column_by_name(c)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            if a.is_null(i) {
                None
            } else {
                Some(a.value(i).to_string())
            }
        };
        assert_eq!(s("event_type", 0).as_deref(), Some("product_view"));
        assert_eq!(s("product_id", 0).as_deref(), Some("P9"));
        assert_eq!(s("utm_source", 0).as_deref(), Some("google"));
        assert_eq!(s("device_type", 0).as_deref(), Some("mobile"));
        assert_eq!(s("properties", 0).as_deref(), Some("{\"ab\":\"x\"}"));
        assert_eq!(s("search_query", 1).as_deref(), Some("red shoes"));
        assert_eq!(s("user_id", 1), None);
        assert_eq!(s("anonymous_id", 1).as_deref(), Some("S1"));
        let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
        assert_eq!(s("event_id", 1).unwrap(), format!("cs-{}-2", &hash[..16]));
    }
}
