//! Printing rows: an aligned table for people, CSV or JSON for programs.

use std::io::Write;

use arrow::record_batch::RecordBatch;

use crate::error::Result;

/// An output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

impl OutputFormat {
    /// Parses `table`, `csv` or `json`.
    pub fn parse(s: &str) -> Option<OutputFormat> {
        match s {
            "table" => Some(OutputFormat::Table),
            "csv" => Some(OutputFormat::Csv),
            "json" => Some(OutputFormat::Json),
            _ => None,
        }
    }
}

/// Writes `batches` to `out` in `format`.
pub fn write_batches(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}").map_err(arrow::error::ArrowError::from)?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(&flatten_nested(b)?)?;
            }
        }
        OutputFormat::Json => {
            // ArrayWriter writes `[]` for no rows by itself
            let mut w = arrow::json::ArrayWriter::new(out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            w.into_inner()
                .write_all(b"\n")
                .map_err(arrow::error::ArrowError::from)?;
        }
    }
    Ok(())
}

/// CSV has no nested values: lists and structs become their display text.
fn flatten_nested(b: &RecordBatch) -> Result<RecordBatch> {
    use arrow::array::{Array, ArrayRef, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if f.data_type().is_nested() {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())?;
            let mut s = StringBuilder::new();
            for i in 0..c.len() {
                if c.is_null(i) {
                    s.append_null();
                } else {
                    s.append_value(fmt.value(i).to_string());
                }
            }
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(std::sync::Arc::new(s.finish()));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        cols,
    )?)
}

/// `batches` formatted as a string.
pub fn to_string(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    let mut buf = Vec::new();
    write_batches(&mut buf, batches, format)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
