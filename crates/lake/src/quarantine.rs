//! Rows for the `quarantine.<source>` tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use shoplake_core::Rejection;
use shoplake_core::schema::{self, Table};
use shoplake_core::sources::Source;

/// The quarantine table of a source.
pub fn table(source: Source) -> &'static Table {
    match source {
        Source::Transactions => &schema::Q_TRANSACTIONS,
        Source::Products => &schema::Q_PRODUCTS,
        Source::Clickstream => &schema::Q_CLICKSTREAM,
        Source::Reviews => &schema::Q_REVIEWS,
    }
}

/// Which part of shoplake rejected a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `shoplake import`.
    Import,
    /// The pipeline, reading files found in the raw zone.
    Pipeline,
    /// `shoplake serve`, validating collected events.
    Collect,
}

impl Stage {
    /// The `stage` column value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Import => "import",
            Stage::Pipeline => "pipeline",
            Stage::Collect => "collect",
        }
    }
}

/// Collects rejected rows of one file.
pub struct QuarantineBuilder {
    at: i64,
    stage: Stage,
    file: String,
    hash: String,
    line: Int64Builder,
    column: StringBuilder,
    reason: StringBuilder,
    payload: StringBuilder,
    date: Date32Builder,
    len: usize,
}

/// Longest payload kept per rejected row; longer ones are cut (and say so).
pub const MAX_PAYLOAD: usize = 64 * 1024;

impl QuarantineBuilder {
    /// Rows rejected at `at` (µs) by `stage` from `file` (with content hash `hash`).
    pub fn new(at: i64, stage: Stage, file: impl Into<String>, hash: impl Into<String>) -> Self {
        QuarantineBuilder {
            at,
            stage,
            file: file.into(),
            hash: hash.into(),
            line: Int64Builder::new(),
            column: StringBuilder::new(),
            reason: StringBuilder::new(),
            payload: StringBuilder::new(),
            date: Date32Builder::new(),
            len: 0,
        }
    }

    /// Adds one rejected row, partitioned under `date`.
    pub fn push(&mut self, line: u64, why: &Rejection, payload: &str, date: i32) {
        self.line.append_value(line as i64);
        self.column.append_option(why.column);
        self.reason.append_value(&why.reason);
        if payload.len() > MAX_PAYLOAD {
            let mut cut = MAX_PAYLOAD;
            while !payload.is_char_boundary(cut) {
                cut -= 1;
            }
            self.payload
                .append_value(format!("{}… [cut at {MAX_PAYLOAD} bytes]", &payload[..cut]));
        } else {
            self.payload.append_value(payload);
        }
        self.date.append_value(date);
        self.len += 1;
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row was rejected.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch (for `quarantine.<source>`).
    pub fn finish(mut self) -> RecordBatch {
        let n = self.len;
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut stage = StringBuilder::new();
        let mut file = StringBuilder::new();
        let mut hash = StringBuilder::new();
        for _ in 0..n {
            at.append_value(self.at);
            stage.append_value(self.stage.name());
            file.append_value(&self.file);
            hash.append_value(&self.hash);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(at.finish()),
            Arc::new(stage.finish()),
            Arc::new(file.finish()),
            Arc::new(hash.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.column.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.date.finish()),
        ];
        RecordBatch::try_new(schema::Q_TRANSACTIONS.schema(), cols).expect("quarantine schema")
    }
}
