//! `shoplake export`: one table (or a date range of it) as one Parquet, CSV
//! or JSON-lines file, in a local folder or an object store (`s3://`,
//! `gs://`, `az://`), for tools that want files rather than a connection.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use shoplake_core::schema::{self, ColType, TABLES, Table};
use url::Url;

use crate::QueryEngine;
use crate::error::{QueryError, Result};

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Apache Parquet (zstd), types kept exactly.
    Parquet,
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl ExportFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// `zone.name`, or a bare name when it is unique (`daily_kpis`).
    pub table: String,
    /// A folder (the file is named after the table), a file path ending in
    /// the format's extension, or an object-store URL of either.
    pub dest: String,
    /// The format.
    pub format: ExportFormat,
    /// First day kept (on the table's date column), inclusive.
    pub from: Option<NaiveDate>,
    /// Last day kept, inclusive.
    pub until: Option<NaiveDate>,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// `zone.name`.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// The file written (a path or a URL).
    pub location: String,
}

/// The column `--from`/`--until` filter on: the partition column, else the
/// first date column.
fn date_column(t: &Table) -> Option<&'static str> {
    t.partition.or_else(|| {
        t.columns
            .iter()
            .find(|c| matches!(c.ty, ColType::Date))
            .map(|c| c.name)
    })
}

fn resolve(name: &str) -> Result<&'static Table> {
    schema::find(name).ok_or_else(|| {
        let tables: Vec<String> = TABLES.iter().map(Table::qualified).collect();
        QueryError::Plan(format!(
            "no table {name:?} (a bare name must be unique)\navailable tables: {}",
            tables.join(", ")
        ))
    })
}

/// Where the file goes: `(location, object-store URL to register)`.
fn destination(req: &ExportRequest, t: &Table) -> Result<(String, Option<Url>)> {
    let ext = req.format.extension();
    let file_name = format!("{}.{}.{ext}", t.zone.name(), t.name);
    let dest = req.dest.trim();
    if dest.is_empty() {
        return Err(QueryError::Plan("--to: give a folder, file or URL".into()));
    }
    let is_file = dest.to_ascii_lowercase().ends_with(&format!(".{ext}"));
    if let Some((scheme, _)) = dest.split_once("://") {
        if !matches!(scheme, "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss") {
            return Err(QueryError::Plan(format!(
                "--to {dest}: {scheme}:// is not supported; use a local folder, s3://, gs:// or az://"
            )));
        }
        let location = if is_file {
            dest.to_string()
        } else {
            format!("{}/{file_name}", dest.trim_end_matches('/'))
        };
        let url =
            Url::parse(&location).map_err(|e| QueryError::Plan(format!("--to {dest}: {e}")))?;
        return Ok((location, Some(url)));
    }
    let path = std::path::Path::new(dest);
    let path = if is_file {
        path.to_path_buf()
    } else {
        path.join(&file_name)
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| QueryError::Plan(format!("--to {}: {e}", parent.display())))?;
    }
    let abs = std::path::absolute(&path)
        .map_err(|e| QueryError::Plan(format!("--to {}: {e}", path.display())))?;
    Ok((abs.to_string_lossy().into_owned(), None))
}

/// Credentials and endpoints come from the standard environment of each
/// store (`AWS_*`, `GOOGLE_*`, `AZURE_*`), as in their own tools.
fn object_store(url: &Url) -> Result<Arc<dyn object_store::ObjectStore>> {
    let bucket = url.host_str().unwrap_or_default();
    let err = |e: object_store::Error| QueryError::Plan(format!("--to {url}: {e}"));
    Ok(match url.scheme() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(err)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(err)?,
        ),
        _ => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(err)?,
        ),
    })
}

impl QueryEngine {
    /// Writes `req.table` (its days `from..=until`) to one file.
    pub async fn export(&self, req: &ExportRequest) -> Result<Exported> {
        let t = resolve(&req.table)?;
        let mut sql = format!("SELECT * FROM {}.{}", t.zone.name(), t.name);
        if req.from.is_some() || req.until.is_some() {
            let Some(col) = date_column(t) else {
                return Err(QueryError::Plan(format!(
                    "{} has no date column: --from/--until cannot apply",
                    t.qualified()
                )));
            };
            let mut conds = Vec::new();
            if let Some(d) = req.from {
                conds.push(format!("\"{col}\" >= DATE '{d}'"));
            }
            if let Some(d) = req.until {
                conds.push(format!("\"{col}\" <= DATE '{d}'"));
            }
            sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
        }
        if let Some(col) = date_column(t) {
            sql.push_str(&format!(" ORDER BY \"{col}\""));
        }
        let (location, store) = destination(req, t)?;
        if let Some(url) = &store {
            let root = Url::parse(&format!(
                "{}://{}",
                url.scheme(),
                url.host_str().unwrap_or("")
            ))
            .map_err(|e| QueryError::Plan(format!("--to {url}: {e}")))?;
            self.ctx().register_object_store(&root, object_store(url)?);
        }
        let df = self.plan(&sql).await?;
        let opts = DataFrameWriteOptions::new().with_single_file_output(true);
        let written = match req.format {
            ExportFormat::Parquet => {
                let mut p = TableParquetOptions::default();
                p.global.compression = Some("zstd(3)".into());
                df.write_parquet(&location, opts, Some(p)).await
            }
            ExportFormat::Csv => df.write_csv(&location, opts, None).await,
            ExportFormat::Jsonl => df.write_json(&location, opts, None).await,
        }
        .map_err(|e| QueryError::Plan(format!("writing {location}: {e}")))?;
        let rows = written
            .first()
            .and_then(|b| b.column_by_name("count"))
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .map_or(0, |a| a.value(0));
        Ok(Exported {
            table: t.qualified(),
            rows,
            location,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dest: &str, format: ExportFormat) -> ExportRequest {
        ExportRequest {
            table: "curated.daily_kpis".into(),
            dest: dest.into(),
            format,
            from: None,
            until: None,
        }
    }

    #[test]
    fn a_folder_gets_a_file_named_after_the_table_and_a_file_path_is_kept() {
        let t = resolve("daily_kpis").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("out");
        let (loc, store) = destination(&req(d.to_str().unwrap(), ExportFormat::Csv), t).unwrap();
        assert!(loc.ends_with("out/curated.daily_kpis.csv"), "{loc}");
        assert!(store.is_none() && d.is_dir());
        let f = dir.path().join("k.parquet");
        let (loc, _) = destination(&req(f.to_str().unwrap(), ExportFormat::Parquet), t).unwrap();
        assert!(loc.ends_with("/k.parquet"), "{loc}");
        let (loc, store) =
            destination(&req("s3://bucket/exports/", ExportFormat::Jsonl), t).unwrap();
        assert_eq!(loc, "s3://bucket/exports/curated.daily_kpis.jsonl");
        assert_eq!(store.unwrap().host_str(), Some("bucket"));
        assert!(destination(&req("ftp://x/y", ExportFormat::Csv), t).is_err());
    }

    #[test]
    fn the_date_filter_uses_the_partition_or_the_first_date_column() {
        assert_eq!(
            date_column(resolve("processed.events").unwrap()),
            Some("date")
        );
        assert_eq!(
            date_column(resolve("curated.daily_kpis").unwrap()),
            Some("date")
        );
        assert!(resolve("no_such_table").is_err());
    }
}
