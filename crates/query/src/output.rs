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
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            // ArrayWriter writes nothing for zero rows
            if batches.iter().all(|b| b.num_rows() == 0) {
                w.into_inner()
                    .write_all(b"[]")
                    .map_err(arrow::error::ArrowError::from)?;
            } else {
                let inner = w.into_inner();
                inner
                    .write_all(b"\n")
                    .map_err(arrow::error::ArrowError::from)?;
            }
        }
    }
    Ok(())
}

/// `batches` formatted as a string.
pub fn to_string(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    let mut buf = Vec::new();
    write_batches(&mut buf, batches, format)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
