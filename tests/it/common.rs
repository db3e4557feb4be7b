//! Shared helpers of the integration tests: a small generated data set in a
//! temporary data directory, running the pipeline and reports in-process,
//! reading query results cell by cell, and comparing them to expected values
//! with failure messages that say which report, row and column differ.
//!
//! [`model`] recomputes every report independently from the raw files.

#![allow(dead_code)]

pub mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int8Array, Int16Array, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    StringViewArray, TimestampMicrosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::NaiveDate;
use shoplake_core::config::Config;
use shoplake_core::schema::{Storage, TABLES, Zone};
use shoplake_gen::{GenConfig, GenSummary, generate};
use shoplake_jobs::pipeline::{PipelineOptions, Quiet, RunSummary, run};
use shoplake_lake::Lake;
use shoplake_lake::import::ImportOptions;
use shoplake_query::QueryEngine;
use shoplake_query::reports::{self, Report};
use tempfile::TempDir;

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn day(s: &str) -> i32 {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("{s:?}: {e}"));
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

/// `YYYY-MM-DD` of days since 1970-01-01.
pub fn ymd(d: i32) -> String {
    (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(i64::from(d)))
        .format("%Y-%m-%d")
        .to_string()
}

/// The first day of the generated window.
pub const START: &str = "2025-01-22";
/// Days in the generated window (it crosses into February on purpose: two
/// months, several weeks).
pub const DAYS: u32 = 16;

/// The small data set every test generates.
pub fn gen_config() -> GenConfig {
    GenConfig {
        customers: 300,
        products: 120,
        transactions: 3_000,
        clickstream: 30_000,
        reviews: 300,
        days: DAYS,
        start_date: day(START),
        seed: 7,
    }
}

/// A smaller data set over the same window, for tests that run the pipeline
/// several times.
pub fn small_config() -> GenConfig {
    GenConfig {
        customers: 200,
        products: 80,
        transactions: 1_500,
        clickstream: 12_000,
        reviews: 150,
        ..gen_config()
    }
}

/// A data directory with generated raw files.
pub struct Fixture {
    /// Keeps the directory alive.
    pub dir: TempDir,
    /// The lake in it.
    pub lake: Lake,
    /// The configuration used (defaults, one worker thread pool per core).
    pub cfg: Config,
    /// What the generator wrote.
    pub generated: GenSummary,
}

impl Fixture {
    /// Generates [`gen_config`] into a new temporary data directory.
    pub fn new() -> Fixture {
        Fixture::with(&gen_config())
    }

    /// Generates `gen` into a new temporary data directory.
    pub fn with(config: &GenConfig) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config::default();
        let lake = Lake::open(dir.path(), &cfg.lake).expect("open lake");
        let generated = generate(config, &lake.root().join("raw"), &|_, _| {}).expect("generate");
        Fixture {
            dir,
            lake,
            cfg,
            generated,
        }
    }

    /// The lake's raw zone.
    pub fn raw_root(&self) -> PathBuf {
        self.lake.root().join("raw")
    }

    /// A query engine over the lake.
    pub fn engine(&self) -> QueryEngine {
        QueryEngine::new(&self.lake, &self.cfg.query).expect("query engine")
    }

    /// Runs the pipeline.
    pub async fn run(&self, opts: &PipelineOptions) -> RunSummary {
        run(&self.lake, &self.cfg, opts, &Quiet)
            .await
            .unwrap_or_else(|e| panic!("pipeline run {opts:?} failed: {e}"))
    }

    /// Import options with a fixed "now".
    pub fn import_options(&self, now: &str) -> ImportOptions {
        ImportOptions {
            max_file_bytes: self.cfg.import.max_file_size_mb << 20,
            max_bad_ratio: self.cfg.import.max_bad_row_ratio,
            now_micros: chrono::DateTime::parse_from_rfc3339(now)
                .expect("rfc3339")
                .timestamp_micros(),
        }
    }

    /// Runs a read-only query.
    pub async fn query(&self, sql: &str) -> Rows {
        query(&self.engine(), sql).await
    }

    /// Rows of every Delta table, counted with SQL.
    /// (`ops.quality` is left out: every run appends its check results.)
    pub async fn delta_row_counts(&self) -> BTreeMap<String, i64> {
        let engine = self.engine();
        let mut out = BTreeMap::new();
        for t in TABLES
            .iter()
            .filter(|t| t.storage == Storage::Delta && t.zone != Zone::Ops)
        {
            let rows = query(
                &engine,
                &format!("SELECT COUNT(*) AS n FROM {}", t.qualified()),
            )
            .await;
            out.insert(t.qualified(), rows.row(0).i64("n"));
        }
        out
    }

    /// Every file under the raw zone: relative path → bytes.
    pub fn raw_files(&self) -> BTreeMap<String, Vec<u8>> {
        files_under(&self.raw_root())
    }

    /// The import manifest's text (empty if none).
    pub fn manifest(&self) -> String {
        std::fs::read_to_string(self.lake.state_dir().join("imports.json")).unwrap_or_default()
    }
}

/// Every file under `root` (recursively): relative path → bytes.
pub fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Runs a read-only query through [`QueryEngine::query`].
/// Drops a schema of the machine's PostgreSQL test database (with `psql`),
/// if it exists; errors are ignored (a test cleaning up after itself).
pub fn drop_pg_schema(name: &str) {
    let _ = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-c",
        ])
        .arg(format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .status();
}

pub async fn query(engine: &QueryEngine, sql: &str) -> Rows {
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("query failed: {e}\n{sql}"));
    Rows::from_batches(&batches)
}

/// Finds a built-in report.
pub fn builtin(name: &str) -> Report {
    let (_, text) = reports::BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no built-in report {name}"));
    Report::parse(text, "built-in").expect("built-in report parses")
}

/// Renders a built-in report with `params` and runs it.
pub async fn run_report(engine: &QueryEngine, name: &str, params: &[(&str, &str)]) -> Rows {
    let r = builtin(name);
    let given: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sql = r
        .render(&given)
        .unwrap_or_else(|e| panic!("report {name} {params:?}: render: {e}"));
    let batches = engine
        .query(&sql)
        .await
        .unwrap_or_else(|e| panic!("report {name} {params:?}: query failed: {e}\n{sql}"));
    Rows::from_batches(&batches)
}

// ---------------------------------------------------------------------------
// query results, cell by cell

/// One cell of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Any integer type.
    Int(i64),
    /// A float.
    Float(f64),
    /// A decimal: unscaled value and scale.
    Dec(i128, i8),
    /// Text.
    Str(String),
    /// A date (days since the epoch).
    Date(i32),
    /// A boolean.
    Bool(bool),
    /// A timestamp (µs).
    Ts(i64),
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v}"),
            Cell::Dec(v, s) => write!(f, "{v}e-{s}"),
            Cell::Str(s) => write!(f, "{s:?}"),
            Cell::Date(d) => f.write_str(&ymd(*d)),
            Cell::Bool(b) => write!(f, "{b}"),
            Cell::Ts(t) => write!(f, "ts {t}"),
        }
    }
}

/// A query result as rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Data types (as Arrow reported them).
    pub types: Vec<DataType>,
    /// Rows.
    pub rows: Vec<Vec<Cell>>,
}

fn cell(a: &dyn Array, i: usize) -> Cell {
    if a.is_null(i) {
        return Cell::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            Cell::Int(a.as_any().downcast_ref::<$t>().unwrap().value(i) as i64)
        };
    }
    match a.data_type() {
        DataType::Int8 => int!(Int8Array),
        DataType::Int16 => int!(Int16Array),
        DataType::Int32 => int!(Int32Array),
        DataType::Int64 => int!(Int64Array),
        DataType::UInt8 => int!(UInt8Array),
        DataType::UInt16 => int!(UInt16Array),
        DataType::UInt32 => int!(UInt32Array),
        DataType::UInt64 => int!(UInt64Array),
        DataType::Float32 => Cell::Float(f64::from(
            a.as_any().downcast_ref::<Float32Array>().unwrap().value(i),
        )),
        DataType::Float64 => {
            Cell::Float(a.as_any().downcast_ref::<Float64Array>().unwrap().value(i))
        }
        DataType::Decimal128(_, s) => Cell::Dec(
            a.as_any()
                .downcast_ref::<Decimal128Array>()
                .unwrap()
                .value(i),
            *s,
        ),
        DataType::Utf8 => Cell::Str(
            a.as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(i)
                .into(),
        ),
        DataType::LargeUtf8 => Cell::Str(
            a.as_any()
                .downcast_ref::<LargeStringArray>()
                .unwrap()
                .value(i)
                .into(),
        ),
        DataType::Utf8View => Cell::Str(
            a.as_any()
                .downcast_ref::<StringViewArray>()
                .unwrap()
                .value(i)
                .into(),
        ),
        DataType::Date32 => Cell::Date(a.as_any().downcast_ref::<Date32Array>().unwrap().value(i)),
        DataType::Boolean => {
            Cell::Bool(a.as_any().downcast_ref::<BooleanArray>().unwrap().value(i))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => Cell::Ts(
            a.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .value(i),
        ),
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let k = d.normalized_keys()[i];
            cell(d.values().as_ref(), k)
        }
        other => panic!("unexpected column type {other} in a query result"),
    }
}

impl Rows {
    /// Flattens record batches.
    pub fn from_batches(batches: &[RecordBatch]) -> Rows {
        let Some(first) = batches.first() else {
            return Rows {
                columns: Vec::new(),
                types: Vec::new(),
                rows: Vec::new(),
            };
        };
        let schema = first.schema();
        let mut rows = Vec::new();
        for b in batches {
            for i in 0..b.num_rows() {
                rows.push(b.columns().iter().map(|c| cell(c.as_ref(), i)).collect());
            }
        }
        Rows {
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            types: schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            rows,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Index of a column; panics listing the columns.
    pub fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name:?}; columns: {:?}", self.columns))
    }

    /// One row.
    pub fn row(&self, i: usize) -> RowRef<'_> {
        assert!(i < self.rows.len(), "row {i} of {}", self.rows.len());
        RowRef { rows: self, i }
    }

    /// Every row.
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        (0..self.rows.len()).map(move |i| RowRef { rows: self, i })
    }

    /// The result as text, for failure messages.
    pub fn dump(&self, max: usize) -> String {
        let mut s = self.columns.join(" | ");
        for r in self.rows.iter().take(max) {
            s.push('\n');
            s.push_str(
                &r.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
        if self.rows.len() > max {
            s.push_str(&format!("\n… {} more rows", self.rows.len() - max));
        }
        s
    }
}

/// One row of a [`Rows`].
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    rows: &'a Rows,
    i: usize,
}

impl<'a> RowRef<'a> {
    /// The cell of `col`.
    pub fn get(&self, col: &str) -> &'a Cell {
        &self.rows.rows[self.i][self.rows.col(col)]
    }

    fn bad(&self, col: &str, want: &str) -> ! {
        panic!(
            "row {} column {col}: expected {want}, got {} ({})",
            self.i,
            self.get(col),
            self.rows.types[self.rows.col(col)]
        )
    }

    /// An integer cell.
    pub fn i64(&self, col: &str) -> i64 {
        match self.get(col) {
            Cell::Int(v) => *v,
            _ => self.bad(col, "an integer"),
        }
    }

    /// A text cell.
    pub fn str(&self, col: &str) -> &'a str {
        match self.get(col) {
            Cell::Str(s) => s,
            _ => self.bad(col, "text"),
        }
    }

    /// A nullable text cell.
    pub fn opt_str(&self, col: &str) -> Option<&'a str> {
        match self.get(col) {
            Cell::Null => None,
            Cell::Str(s) => Some(s),
            _ => self.bad(col, "text or NULL"),
        }
    }

    /// A money cell in cents (must be a decimal of scale 2).
    pub fn cents(&self, col: &str) -> i128 {
        match self.get(col) {
            Cell::Dec(v, 2) => *v,
            _ => self.bad(col, "a decimal(_, 2)"),
        }
    }

    /// A date cell.
    pub fn date(&self, col: &str) -> i32 {
        match self.get(col) {
            Cell::Date(d) => *d,
            _ => self.bad(col, "a date"),
        }
    }

    /// A number cell as f64.
    pub fn f64(&self, col: &str) -> f64 {
        match self.get(col) {
            Cell::Float(v) => *v,
            Cell::Int(v) => *v as f64,
            Cell::Dec(v, s) => *v as f64 / 10f64.powi(i32::from(*s)),
            _ => self.bad(col, "a number"),
        }
    }
}

// ---------------------------------------------------------------------------
// expected values

/// What a cell must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// NULL.
    Null,
    /// This integer.
    Int(i64),
    /// Exactly these cents (a decimal of scale 2).
    Cents(i128),
    /// These cents ± 1: the result of a division that may round either way.
    CentsAbout(i128),
    /// A number within the tolerance.
    Num(f64, f64),
    /// A number within a relative tolerance.
    Rel(f64, f64),
    /// This text.
    Str(String),
    /// This date.
    Date(i32),
    /// This boolean.
    Bool(bool),
}

impl Want {
    /// Text.
    pub fn s(s: impl Into<String>) -> Want {
        Want::Str(s.into())
    }

    /// Text or NULL.
    pub fn opt_s(s: Option<impl Into<String>>) -> Want {
        s.map_or(Want::Null, |s| Want::Str(s.into()))
    }

    /// A number or NULL.
    pub fn opt_num(v: Option<f64>, tol: f64) -> Want {
        v.map_or(Want::Null, |v| Want::Num(v, tol))
    }

    /// A value of `ROUND(x, 2)`.
    pub fn r2(v: f64) -> Want {
        Want::Num(v, 0.006)
    }

    /// A value of `ROUND(x, 2)` or NULL.
    pub fn opt_r2(v: Option<f64>) -> Want {
        Want::opt_num(v, 0.006)
    }

    /// A value of `ROUND(x, 1)`.
    pub fn r1(v: f64) -> Want {
        Want::Num(v, 0.051)
    }

    fn check(&self, c: &Cell) -> bool {
        match (self, c) {
            (Want::Null, Cell::Null) => true,
            (Want::Int(w), Cell::Int(g)) => w == g,
            (Want::Cents(w), Cell::Dec(g, 2)) => w == g,
            (Want::CentsAbout(w), Cell::Dec(g, 2)) => (w - g).abs() <= 1,
            (Want::Num(w, tol), _) | (Want::Rel(w, tol), _) => {
                let g = match c {
                    Cell::Float(v) => *v,
                    Cell::Int(v) => *v as f64,
                    Cell::Dec(v, s) => *v as f64 / 10f64.powi(i32::from(*s)),
                    _ => return false,
                };
                let tol = match self {
                    Want::Rel(..) => tol * w.abs().max(1e-12),
                    _ => *tol,
                };
                (w - g).abs() <= tol
            }
            (Want::Str(w), Cell::Str(g)) => w == g,
            (Want::Date(w), Cell::Date(g)) => w == g,
            (Want::Bool(w), Cell::Bool(g)) => w == g,
            _ => false,
        }
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::Null => f.write_str("NULL"),
            Want::Int(v) => write!(f, "{v}"),
            Want::Cents(c) => write!(f, "{c} cents (exact, decimal scale 2)"),
            Want::CentsAbout(c) => write!(f, "{c} ± 1 cents (decimal scale 2)"),
            Want::Num(v, t) => write!(f, "{v} ± {t}"),
            Want::Rel(v, t) => write!(f, "{v} ± {t} relative"),
            Want::Str(s) => write!(f, "{s:?}"),
            Want::Date(d) => f.write_str(&ymd(*d)),
            Want::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One expected row: column → value.
pub type WantRow = Vec<(&'static str, Want)>;

/// Compares a result with the expected rows (same order, same count); panics
/// with every difference found (up to 30).
pub fn assert_rows(what: &str, got: &Rows, want: &[WantRow]) {
    if let Err(e) = diff_rows(what, got, want) {
        panic!("{e}");
    }
}

/// [`assert_rows`] as a result: `Err` says every difference (up to 30).
pub fn diff_rows(what: &str, got: &Rows, want: &[WantRow]) -> Result<(), String> {
    let mut errs = Vec::new();
    if got.len() != want.len() {
        errs.push(format!(
            "row count: expected {}, got {}",
            want.len(),
            got.len()
        ));
    }
    for (i, w) in want.iter().enumerate().take(got.len()) {
        for (col, v) in w {
            let Some(ci) = got.columns.iter().position(|c| c == col) else {
                errs.push(format!("no column {col:?} (columns: {:?})", got.columns));
                continue;
            };
            let c = &got.rows[i][ci];
            if !v.check(c) {
                errs.push(format!(
                    "row {i} ({}) column {col}: expected {v}, got {c} ({})",
                    row_key(w),
                    got.types[ci]
                ));
            }
        }
    }
    if !errs.is_empty() {
        let n = errs.len();
        errs.truncate(30);
        return Err(format!(
            "{what}: {n} difference(s) from the independent computation:\n  {}\n-- got:\n{}\n-- expected:\n{}",
            errs.join("\n  "),
            got.dump(40),
            want.iter()
                .take(40)
                .map(|r| r
                    .iter()
                    .map(|(c, v)| format!("{c}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(())
}

/// The first two expected values of a row, to say which row differs.
fn row_key(w: &WantRow) -> String {
    w.iter()
        .take(2)
        .map(|(c, v)| format!("{c}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// every report against the model

/// First day of the sub-range the reports are also run on.
pub const SUB_FROM: &str = "2025-01-25";
/// Last day of that sub-range (it crosses a month and a week boundary).
pub const SUB_TO: &str = "2025-02-01";

/// Runs every built-in report (defaults, the sub-range, other grains and
/// thresholds) and compares each with the model; fails, listing every report
/// that differs, or if a built-in report is not covered.
pub async fn assert_reports_match(engine: &QueryEngine, m: &model::Model) {
    let failures = reports_differences(engine, m).await;
    if !failures.is_empty() {
        panic!(
            "{} report run(s) differ from the independent computation:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

/// What [`assert_reports_match`] checks: one message per report run that
/// differs from the model.
pub async fn reports_differences(engine: &QueryEngine, m: &model::Model) -> Vec<String> {
    use model::Range;
    let all = Range::ALL;
    let sub = Range::new(SUB_FROM, SUB_TO);
    let sub_p: &[(&str, &str)] = &[("from", SUB_FROM), ("to", SUB_TO)];
    let mut covered = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let mut check = async |name: &'static str, params: &[(&str, &str)], want: Vec<WantRow>| {
        covered.insert(name);
        let got = run_report(engine, name, params).await;
        if let Err(e) = diff_rows(&format!("report {name} {params:?}"), &got, &want) {
            failures.push(e);
        }
        got
    };

    let days = m.kpi_dates().len();
    let got = check("daily_kpis", &[], m.daily_kpis(all)).await;
    assert_eq!(got.len(), days, "daily_kpis: one row per day");
    check("daily_kpis", sub_p, m.daily_kpis(sub)).await;

    check("revenue_trends", &[], m.revenue_trends(all, "week")).await;
    let months: std::collections::BTreeSet<String> = m
        .kpi_dates()
        .into_iter()
        .map(|d| ymd(d)[..7].to_string())
        .collect();
    let got = check(
        "revenue_trends",
        &[("grain", "month")],
        m.revenue_trends(all, "month"),
    )
    .await;
    assert_eq!(got.len(), months.len(), "revenue_trends: one row per month");
    let got = check(
        "revenue_trends",
        &[("grain", "day")],
        m.revenue_trends(all, "day"),
    )
    .await;
    assert_eq!(got.len(), days);
    check(
        "revenue_trends",
        &[("from", SUB_FROM), ("to", SUB_TO), ("grain", "week")],
        m.revenue_trends(sub, "week"),
    )
    .await;

    check("top_products", &[], m.top_products(all, 20)).await;
    check("top_products", sub_p, m.top_products(sub, 20)).await;
    check(
        "top_products",
        &[("limit", "200")],
        m.top_products(all, 200),
    )
    .await;

    let categories: std::collections::BTreeSet<&str> =
        m.products.values().map(|p| p.category.as_str()).collect();
    let got = check("revenue_by_category", &[], m.revenue_by_category(all)).await;
    assert_eq!(got.len(), categories.len(), "one row per category sold");
    check("revenue_by_category", sub_p, m.revenue_by_category(sub)).await;

    let devices: std::collections::BTreeSet<&str> =
        m.sessions.iter().map(|s| s.device.as_str()).collect();
    let got = check("conversion_funnel", &[], m.conversion_funnel(all)).await;
    assert_eq!(
        got.len(),
        5 * (1 + devices.len()),
        "5 steps × (all + each device)"
    );
    check("conversion_funnel", sub_p, m.conversion_funnel(sub)).await;

    let cohorts: std::collections::BTreeSet<String> = m
        .customers()
        .values()
        .map(|c| ymd(c.first)[..7].to_string())
        .collect();
    let got = check("customer_ltv", &[], m.customer_ltv(all)).await;
    assert_eq!(
        got.len(),
        cohorts.len(),
        "customer_ltv: one row per cohort month"
    );
    check("customer_ltv", sub_p, m.customer_ltv(sub)).await;

    check("top_customers", &[], m.top_customers(20)).await;
    check("top_customers", &[("limit", "1000")], m.top_customers(1000)).await;

    check("customer_segments", &[], m.customer_segments()).await;

    check("return_rate", &[], m.return_rate(all, 20, 10)).await;
    check("return_rate", sub_p, m.return_rate(sub, 20, 10)).await;
    check(
        "return_rate",
        &[("min_lines", "3"), ("limit", "50")],
        m.return_rate(all, 50, 3),
    )
    .await;

    check("product_affinity", &[], m.product_affinity(all, 20, 5)).await;
    let got = check(
        "product_affinity",
        &[("min_baskets", "2"), ("limit", "15")],
        m.product_affinity(all, 15, 2),
    )
    .await;
    assert!(
        !got.is_empty(),
        "product_affinity: no pair in 2+ baskets, the data set is too small"
    );
    check(
        "product_affinity",
        &[
            ("from", SUB_FROM),
            ("to", SUB_TO),
            ("min_baskets", "1"),
            ("limit", "25"),
        ],
        m.product_affinity(sub, 25, 1),
    )
    .await;

    check("traffic_sources", &[], m.traffic_sources(all)).await;
    check("traffic_sources", sub_p, m.traffic_sources(sub)).await;

    // files carry no orders-API orders and no order ids on browser
    // purchases: nothing to reconcile (tests/it/orders.rs checks the outcomes)
    check("order_reconciliation", &[], Vec::new()).await;

    let builtin: std::collections::BTreeSet<&str> =
        reports::BUILTIN.iter().map(|(n, _)| *n).collect();
    assert_eq!(covered, builtin, "every built-in report must be checked");
    failures
}

/// Every built-in report with its default parameters, as rows.
pub async fn all_reports(engine: &QueryEngine) -> BTreeMap<&'static str, Rows> {
    let mut out = BTreeMap::new();
    for (name, _) in reports::BUILTIN {
        out.insert(*name, run_report(engine, name, &[]).await);
    }
    out
}
