//! The lake on disk: `<data>/lake/{raw,processed,curated,quarantine}/<table>/`
//! and `<data>/state/`, and the one way data enters a Delta table.
//!
//! ## Commit contract
//! Every change to a Delta table is one Delta commit, so a reader sees the
//! table before or after it, never half of it, and a process killed mid-write
//! leaves at most unreferenced Parquet files (which `vacuum` removes):
//! * [`WriteMode::Replace`] removes the rows matching a predicate and adds the
//!   new ones in the same commit: re-running a date replaces it atomically.
//! * [`WriteMode::Overwrite`] replaces the whole table in one commit.
//! * [`WriteMode::Append`] adds rows.
//!
//! Batches are conformed to the table's declared schema before writing: types
//! are cast and a null in a NOT NULL column is an error, not a silent write.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use deltalake::DeltaTable;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::parquet::basic::{Compression as PqCompression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::protocol::SaveMode;
use shoplake_core::config::{Compression, LakeConfig};
use shoplake_core::schema::{Storage, TABLES, Table};
use shoplake_core::sources::Source;
use url::Url;

use crate::error::{LakeError, Result};

/// How a write changes a table.
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace every row.
    Overwrite,
    /// Replace the rows matching this SQL predicate (every new row must match it).
    Replace(String),
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Table version after the commit (`None`: nothing was committed).
    pub version: Option<u64>,
    /// Rows written.
    pub rows: u64,
}

/// The lake of one data directory.
#[derive(Debug, Clone)]
pub struct Lake {
    data_dir: PathBuf,
    root: PathBuf,
    cfg: LakeConfig,
}

impl Lake {
    /// Opens (creating folders as needed) the lake of `data_dir`.
    pub fn open(data_dir: &Path, cfg: &LakeConfig) -> Result<Lake> {
        let root = match &cfg.root {
            Some(r) if r.contains("://") && !r.starts_with("file://") => {
                return Err(LakeError::Internal(format!(
                    "lake.root {r:?}: only local lakes are supported by this build"
                )));
            }
            Some(r) => PathBuf::from(r.strip_prefix("file://").unwrap_or(r)),
            None => data_dir.join("lake"),
        };
        for dir in [&root, &data_dir.join("state")] {
            std::fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
        }
        let root = root.canonicalize().map_err(|e| LakeError::io(&root, e))?;
        Ok(Lake {
            data_dir: data_dir.to_path_buf(),
            root,
            cfg: cfg.clone(),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The lake root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<data>/state`: WAL, operational database, bookmarks.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }

    /// The raw landing folder of a batch source.
    pub fn raw_dir(&self, source: Source) -> PathBuf {
        self.root.join("raw").join(source.name())
    }

    /// A table's folder.
    pub fn table_dir(&self, t: &Table) -> PathBuf {
        self.root.join(t.zone.name()).join(t.name)
    }

    /// A table's URL (what delta-rs and DataFusion take).
    pub fn table_url(&self, t: &Table) -> Url {
        Url::from_directory_path(self.table_dir(t)).expect("absolute lake root")
    }

    /// The lake's configuration.
    pub fn config(&self) -> &LakeConfig {
        &self.cfg
    }

    /// Loads a Delta table; `None` if it was never written.
    pub async fn load(&self, t: &Table) -> Result<Option<DeltaTable>> {
        debug_assert_eq!(t.storage, Storage::Delta);
        if !self.table_dir(t).join("_delta_log").exists() {
            return Ok(None);
        }
        let table = deltalake::open_table(self.table_url(t))
            .await
            .map_err(|e| LakeError::delta(t.qualified(), e))?;
        Ok(Some(table))
    }

    /// Creates every Delta table that does not exist yet (empty), so queries
    /// on a new lake see empty tables rather than missing ones.
    pub async fn ensure_tables(&self) -> Result<()> {
        for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
            self.ensure_table(t).await?;
        }
        Ok(())
    }

    /// Creates `t` (empty) if it does not exist; returns it.
    pub async fn ensure_table(&self, t: &Table) -> Result<DeltaTable> {
        if let Some(table) = self.load(t).await? {
            return Ok(table);
        }
        let dir = self.table_dir(t);
        std::fs::create_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
        let schema: StructType = t
            .schema()
            .as_ref()
            .try_into_kernel()
            .map_err(|e| LakeError::Internal(format!("{}: {e}", t.qualified())))?;
        let table = deltalake::DeltaTableBuilder::from_url(self.table_url(t))
            .and_then(|b| b.build())
            .map_err(|e| LakeError::delta(t.qualified(), e))?;
        let mut create = table
            .create()
            .with_columns(schema.fields().cloned())
            .with_table_name(t.name)
            .with_comment(t.doc)
            .with_save_mode(SaveMode::Ignore);
        if let Some(p) = t.partition {
            create = create.with_partition_columns(vec![p.to_string()]);
        }
        create.await.map_err(|e| LakeError::delta(t.qualified(), e))
    }

    /// Parquet writer settings for lake files.
    pub fn writer_properties(&self) -> WriterProperties {
        let compression = match self.cfg.compression {
            Compression::Zstd => PqCompression::ZSTD(ZstdLevel::try_new(1).expect("valid level")),
            Compression::Snappy => PqCompression::SNAPPY,
            Compression::Lz4 => PqCompression::LZ4_RAW,
            Compression::None => PqCompression::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.cfg.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .build()
    }

    /// Writes `batches` to `t` in one commit.
    pub async fn write(
        &self,
        t: &Table,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
    ) -> Result<WriteStats> {
        let t0 = std::time::Instant::now();
        let table = self.ensure_table(t).await?;
        let batches: Vec<RecordBatch> = batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(t, &b))
            .collect::<Result<_>>()?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let err = |e| LakeError::delta(t.qualified(), e);
        let table = match (&mode, rows) {
            (WriteMode::Append, 0) => {
                return Ok(WriteStats {
                    version: None,
                    rows,
                });
            }
            (WriteMode::Replace(pred), 0) => {
                let (table, metrics) = table
                    .delete()
                    .with_predicate(pred.as_str())
                    .await
                    .map_err(err)?;
                if metrics.num_removed_files == 0 {
                    return Ok(WriteStats {
                        version: None,
                        rows,
                    });
                }
                table
            }
            (WriteMode::Overwrite, 0) => table
                .write(vec![RecordBatch::new_empty(t.schema())])
                .with_save_mode(SaveMode::Overwrite)
                .await
                .map_err(err)?,
            (mode, _) => {
                let mut w = table
                    .write(batches)
                    .with_writer_properties(self.writer_properties());
                w = match mode {
                    WriteMode::Append => w.with_save_mode(SaveMode::Append),
                    WriteMode::Overwrite => w.with_save_mode(SaveMode::Overwrite),
                    WriteMode::Replace(pred) => w
                        .with_save_mode(SaveMode::Overwrite)
                        .with_replace_where(pred.as_str()),
                };
                w.await.map_err(err)?
            }
        };
        tracing::debug!(table = %t.qualified(), rows, ms = t0.elapsed().as_millis() as u64, "committed");
        Ok(WriteStats {
            version: table.version(),
            rows,
        })
    }
}

/// Casts `batch` to `t`'s declared schema (by column name); a missing
/// column or a null in a NOT NULL column is an error.
pub fn conform(t: &Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = t.schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let col = batch.column_by_name(f.name()).ok_or_else(|| {
            LakeError::Internal(format!(
                "{}: batch lacks column {}",
                t.qualified(),
                f.name()
            ))
        })?;
        let col = if col.data_type() == f.data_type() {
            col.clone()
        } else {
            cast(col, f.data_type())?
        };
        if !f.is_nullable() && col.null_count() > 0 {
            return Err(LakeError::Internal(format!(
                "{}.{}: {} nulls in a NOT NULL column",
                t.qualified(),
                f.name(),
                col.null_count()
            )));
        }
        cols.push(col);
    }
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(schema.fields().clone())),
        cols,
    )?)
}

/// A SQL predicate selecting the given dates of a `date` column.
pub fn dates_predicate(dates: &[i32]) -> String {
    let list: Vec<String> = dates
        .iter()
        .map(|d| format!("'{}'", shoplake_core::time::format_date(*d)))
        .collect();
    if list.len() == 1 {
        format!("date = {}", list[0])
    } else {
        format!("date IN ({})", list.join(", "))
    }
}
