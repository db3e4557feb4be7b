//! The lake on disk: `<data>/lake/{raw,processed,curated,quarantine}/<table>/`
//! and `<data>/state/`, and the one way data enters a Delta table.
//!
//! ## Commit contract
//! Every change to a Delta table is one Delta commit, so a reader sees the
//! table before or after it, never half of it, and a process killed mid-write
//! leaves at most unreferenced Parquet files:
//! * [`WriteMode::Replace`] removes the rows matching a predicate and adds the
//!   new ones in the same commit: re-running a date replaces it atomically.
//! * [`WriteMode::Overwrite`] replaces the whole table in one commit.
//! * [`WriteMode::Append`] adds rows.
//!
//! Batches are conformed to the table's declared schema before writing: types
//! are cast and a null in a NOT NULL column is an error, not a silent write.
//!
//! ## Schema evolution
//! Raw files may carry columns a processed table does not declare (a shop
//! adds `coupon_code` to its export). [`Lake::evolve`] adds them to the Delta
//! table as nullable text columns, after the declared ones; rows written
//! before read them as null, and writes conform to declared + evolved
//! columns (a batch without an evolved column gets nulls). Only additive
//! changes evolve: a file that lacks a required column is refused whole by
//! the ETL and never reaches a table.
//!
//! Files a commit no longer references stay on disk until they are removed
//! (a later maintenance command will vacuum them); readers never see them.

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

/// Columns (in any table) whose values are (nearly) unique per row.
const HIGH_CARDINALITY: &[&str] = &[
    "event_id",
    "session_id",
    "anonymous_id",
    "page_url",
    "search_query",
    "properties",
    "transaction_id",
    "review_id",
    "review_text",
    "basket_id",
    "payload",
];

/// Columns of free-form text or JSON: no statistics (see
/// [`Lake::writer_properties`]).
const FREE_TEXT: &[&str] = &["payload", "properties", "review_text"];

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

/// The tables a stream writer (the sink of `shoplake serve`) commits to
/// about once a second; they get [`Lake::tidy_stream_table`].
pub const STREAM_TABLES: [&Table; 3] = [
    &shoplake_core::schema::RAW_EVENTS,
    &shoplake_core::schema::EVENTS,
    &shoplake_core::schema::Q_EVENTS,
];

fn is_stream_table(t: &Table) -> bool {
    STREAM_TABLES.iter().any(|s| s.qualified() == t.qualified())
}

/// The lake of one data directory.
#[derive(Debug, Clone)]
pub struct Lake {
    data_dir: PathBuf,
    root: PathBuf,
    cfg: LakeConfig,
    /// Tables opened before, refreshed with only the commits since: reading
    /// a Delta log from its last checkpoint costs more with every commit.
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, DeltaTable>>>,
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
            open: Default::default(),
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
        let key = t.qualified();
        if !self.table_dir(t).join("_delta_log").exists() {
            self.open.lock().expect("unpoisoned").remove(&key);
            return Ok(None);
        }
        let cached = self.open.lock().expect("unpoisoned").get(&key).cloned();
        if let Some(mut table) = cached
            && table.update_incremental(None).await.is_ok()
        {
            self.open
                .lock()
                .expect("unpoisoned")
                .insert(key, table.clone());
            return Ok(Some(table));
        }
        let table = deltalake::open_table(self.table_url(t))
            .await
            .map_err(|e| LakeError::delta(t.qualified(), e))?;
        self.open
            .lock()
            .expect("unpoisoned")
            .insert(key, table.clone());
        Ok(Some(table))
    }

    /// Creates every Delta table that does not exist yet (empty), so queries
    /// on a new lake see empty tables rather than missing ones.
    pub async fn ensure_tables(&self) -> Result<()> {
        for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
            if !self
                .table_dir(t)
                .join("_delta_log")
                .join("00000000000000000000.json")
                .exists()
            {
                self.ensure_table(t).await?;
            }
        }
        Ok(())
    }

    /// Rows of `t` matching `predicate` (0 when the table was never written).
    pub async fn count_where(
        &self,
        t: &Table,
        predicate: datafusion::prelude::Expr,
    ) -> Result<u64> {
        let Some(table) = self.load(t).await? else {
            return Ok(0);
        };
        let df_err = |e: datafusion::error::DataFusionError| LakeError::DataFusion(Box::new(e));
        let ctx = datafusion::prelude::SessionContext::new();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| LakeError::delta(t.qualified(), e))?;
        let provider = table.table_provider().await.map_err(df_err)?;
        let n = ctx
            .read_table(provider)
            .map_err(df_err)?
            .filter(predicate)
            .map_err(df_err)?
            .count()
            .await
            .map_err(df_err)?;
        Ok(n as u64)
    }

    /// Deletes the rows of `t` matching `predicate` (if any) and what Delta
    /// keeps of the past for time travel: data files no longer in the
    /// current version are deleted now (not after `vacuum_retain_hours`),
    /// and so are the log entries before it (a checkpoint takes their
    /// place), which held old files' column statistics and the deletion's
    /// own predicate. Older versions of `t` can no longer be read
    /// afterwards. Safe beside writers: the vacuum deletes only files the
    /// log has removed.
    pub async fn erase_where(
        &self,
        t: &Table,
        predicate: Option<datafusion::prelude::Expr>,
    ) -> Result<Erased> {
        let mut out = Erased {
            table: t.qualified(),
            ..Default::default()
        };
        let Some(mut table) = self.load(t).await? else {
            return Ok(out);
        };
        let err = |e| LakeError::delta(t.qualified(), e);
        if let Some(p) = predicate {
            let (t2, metrics) = table
                .delete()
                .with_predicate(p)
                .with_writer_properties(self.writer_properties())
                .await
                .map_err(err)?;
            table = t2;
            out.rows = metrics.num_deleted_rows.unwrap_or(0) as u64;
        }
        let (table, vacuumed) = table
            .vacuum()
            .with_retention_period(chrono::Duration::zero())
            .with_enforce_retention_duration(false)
            .with_mode(deltalake::operations::vacuum::VacuumMode::Lite)
            .await
            .map_err(err)?;
        out.files_deleted = vacuumed.files_deleted.len() as u64;
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(err)?;
        // every entry before the checkpoint, however recent
        let cutoff = chrono::Utc::now().timestamp_millis() + 60_000;
        out.log_entries_removed = trim_log(&table, cutoff).await.map_err(err)?;
        self.open.lock().expect("unpoisoned").remove(&t.qualified());
        tracing::debug!(table = %out.table, rows = out.rows, files_deleted = out.files_deleted, log_entries_removed = out.log_entries_removed, "erased");
        Ok(out)
    }

    /// Compacts `t` when it has more data files than `lake.compact_after_files`
    /// (each incremental run of a day-grain model adds one): small files are
    /// rewritten into few, in one commit. Returns the files removed.
    pub async fn compact_if_needed(&self, t: &Table) -> Result<u64> {
        let Some(table) = self.load(t).await? else {
            return Ok(0);
        };
        let files = table
            .snapshot()
            .map_err(|e| LakeError::delta(t.qualified(), e))?
            .log_data()
            .num_files();
        if files <= self.cfg.compact_after_files {
            return Ok(0);
        }
        let (_, metrics) = table
            .optimize()
            .with_writer_properties(self.writer_properties())
            .await
            .map_err(|e| LakeError::delta(t.qualified(), e))?;
        tracing::info!(table = %t.qualified(), files_before = files, removed = metrics.num_files_removed, added = metrics.num_files_added, "compacted");
        Ok(metrics.num_files_removed)
    }

    /// Data files `t` holds now (0 if it was never written).
    pub async fn data_files(&self, t: &Table) -> Result<u64> {
        let Some(table) = self.load(t).await? else {
            return Ok(0);
        };
        Ok(table
            .snapshot()
            .map_err(|e| LakeError::delta(t.qualified(), e))?
            .log_data()
            .num_files() as u64)
    }

    /// Upkeep of a table a stream writer commits to about once a second
    /// (one of [`STREAM_TABLES`], the sink's). Each commit adds a data file
    /// (per date) and a log entry, and each compaction leaves tombstones the
    /// checkpoints carry until they expire; a commit's snapshot, checkpoint
    /// and log listing cost in proportion to all three, so left alone every
    /// commit gets slower. This compacts the small files once there are
    /// more than `lake.compact_after_files`, deletes log entries older than
    /// `lake.stream_log_retain_minutes` that a checkpoint covers, and with
    /// `vacuum` deletes the data files no version of that period uses (the
    /// tombstones expire with it). Safe beside the writer: compaction is one
    /// commit Delta checks against concurrent appends, and rewrites no row.
    pub async fn tidy_stream_table(&self, t: &Table, vacuum: bool) -> Result<Maintained> {
        let retain = self.stream_retention();
        self.ensure_stream_retention(t).await?;
        self.maintain(
            t,
            &MaintainOptions {
                compact_above: Some(self.cfg.compact_after_files as u64),
                vacuum_retain: vacuum.then_some(retain),
                vacuum_full: true,
                log_retain: Some(retain),
                dry_run: false,
            },
        )
        .await
    }

    /// How far back time travel reaches on [`STREAM_TABLES`].
    pub fn stream_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cfg.stream_log_retain_minutes.max(1) * 60)
    }

    /// The `delta.deletedFileRetentionDuration` of a stream table: how long
    /// checkpoints carry a compacted file's tombstone (a week by Delta's
    /// default: a week of compactions of per-second commits).
    fn stream_tombstone_property(&self) -> String {
        format!(
            "interval {} minutes",
            self.cfg.stream_log_retain_minutes.max(1)
        )
    }

    /// Sets the tombstone retention of a stream table made before it was
    /// set at creation (one metadata commit, once; the writer's next commit
    /// then retries on the new metadata).
    async fn ensure_stream_retention(&self, t: &Table) -> Result<()> {
        let Some(table) = self.load(t).await? else {
            return Ok(());
        };
        let err = |e| LakeError::delta(t.qualified(), e);
        let key = deltalake::TableProperty::DeletedFileRetentionDuration.as_ref();
        let want = self.stream_tombstone_property();
        let have = table
            .snapshot()
            .map_err(err)?
            .metadata()
            .configuration()
            .get(key)
            .cloned();
        if have.as_deref() == Some(want.as_str()) {
            return Ok(());
        }
        table
            .set_tbl_properties()
            .with_properties([(key.to_string(), want.clone())].into())
            .await
            .map_err(err)?;
        self.open.lock().expect("unpoisoned").remove(&t.qualified());
        tracing::info!(table = %t.qualified(), retention = %want, "stream table: tombstone retention set");
        Ok(())
    }

    /// Delta tables whose stored schema is not the one this build declares
    /// (after an upgrade). Nested field names are ignored.
    pub async fn outdated_tables(&self) -> Result<Vec<&'static Table>> {
        use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
        let mut out = Vec::new();
        for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
            let Some(table) = self.load(t).await? else {
                continue;
            };
            let snapshot = table
                .snapshot()
                .map_err(|e| LakeError::delta(t.qualified(), e))?;
            let stored: arrow::datatypes::Schema = snapshot
                .schema()
                .as_ref()
                .try_into_arrow()
                .map_err(|e| LakeError::Internal(format!("{}: {e}", t.qualified())))?;
            let declared = t.schema();
            // declared columns first, then any evolved ones (see the module docs)
            let same = stored.fields().len() >= declared.fields().len()
                && stored.fields().iter().zip(declared.fields()).all(|(a, b)| {
                    a.name() == b.name()
                        && a.is_nullable() == b.is_nullable()
                        && a.data_type().equals_datatype(b.data_type())
                })
                && stored.fields()[declared.fields().len()..]
                    .iter()
                    .all(|f| is_evolved(t, f))
                && snapshot
                    .metadata()
                    .partition_columns()
                    .iter()
                    .map(String::as_str)
                    .eq(t.partition);
            if !same {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The `date` partitions `t` holds (from its log; no data is read).
    pub async fn partition_dates(&self, t: &Table) -> Result<Vec<i32>> {
        let Some(table) = self.load(t).await? else {
            return Ok(Vec::new());
        };
        let snapshot = table
            .snapshot()
            .map_err(|e| LakeError::delta(t.qualified(), e))?;
        let mut dates = std::collections::BTreeSet::new();
        for f in snapshot.log_data().iter() {
            if let Some(Some(d)) = f.partition_values_map().get("date")
                && let Ok(d) = shoplake_core::time::parse_date(d)
            {
                dates.insert(d);
            }
        }
        Ok(dates.into_iter().collect())
    }

    /// Adds `columns` to `t` as nullable text columns, after those it has
    /// (see "Schema evolution" in the module docs); returns the ones that
    /// were new. One commit that changes only the schema: the data commit
    /// that follows may fail and leave them empty, which is harmless.
    pub async fn evolve(&self, t: &Table, columns: &[String]) -> Result<Vec<String>> {
        use deltalake::kernel::{DataType, StructField};
        let err = |e| LakeError::delta(t.qualified(), e);
        if let Some(c) = columns.iter().find(|c| !is_column_name(c)) {
            return Err(LakeError::Internal(format!(
                "{}: {c:?} is not a column name (lowercase letters, digits and _)",
                t.qualified()
            )));
        }
        let table = self.ensure_table(t).await?;
        let stored = self.stored_schema(t, &table)?;
        let mut new: Vec<String> = columns
            .iter()
            .filter(|c| stored.field_with_name(c).is_err())
            .cloned()
            .collect();
        new.dedup();
        if new.is_empty() {
            return Ok(new);
        }
        let table = table
            .add_columns()
            .with_fields(
                new.iter()
                    .map(|c| StructField::new(c.clone(), DataType::STRING, true))
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(err)?;
        tracing::info!(table = %t.qualified(), columns = %new.join(", "), "schema evolved: new columns");
        self.open
            .lock()
            .expect("unpoisoned")
            .insert(t.qualified(), table);
        Ok(new)
    }

    /// The columns `t` holds beyond those it declares (added by
    /// [`Lake::evolve`]); empty for a table never written.
    pub async fn evolved_columns(&self, t: &Table) -> Result<Vec<String>> {
        let Some(table) = self.load(t).await? else {
            return Ok(Vec::new());
        };
        let stored = self.stored_schema(t, &table)?;
        Ok(
            stored.fields()[t.columns.len().min(stored.fields().len())..]
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        )
    }

    /// The schema `table` (which is `t`) was last committed with.
    fn stored_schema(&self, t: &Table, table: &DeltaTable) -> Result<arrow::datatypes::Schema> {
        use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
        table
            .snapshot()
            .map_err(|e| LakeError::delta(t.qualified(), e))?
            .schema()
            .as_ref()
            .try_into_arrow()
            .map_err(|e| LakeError::Internal(format!("{}: {e}", t.qualified())))
    }

    /// The schema batches for `t` are conformed to: declared, then evolved
    /// columns.
    fn write_schema(&self, t: &Table, table: &DeltaTable) -> Result<arrow::datatypes::SchemaRef> {
        let declared = t.schema();
        let stored = self.stored_schema(t, table)?;
        if stored.fields().len() <= declared.fields().len() {
            return Ok(declared);
        }
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            declared.fields().iter().cloned().collect();
        fields.extend(
            stored.fields()[declared.fields().len()..]
                .iter()
                .filter(|f| is_evolved(t, f))
                .cloned(),
        );
        Ok(Arc::new(arrow::datatypes::Schema::new(fields)))
    }

    /// Deletes a derived table's folder (it is rebuilt from the raw zone).
    pub fn drop_table(&self, t: &Table) -> Result<()> {
        self.open.lock().expect("unpoisoned").remove(&t.qualified());
        let dir = self.table_dir(t);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LakeError::io(dir, e)),
        }
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
            // a checkpoint every 10 commits keeps opening a table cheap
            .with_configuration_property(deltalake::TableProperty::CheckpointInterval, Some("10"))
            .with_save_mode(SaveMode::Ignore);
        if let Some(p) = t.partition {
            create = create.with_partition_columns(vec![p.to_string()]);
        }
        if is_stream_table(t) {
            create = create.with_configuration_property(
                deltalake::TableProperty::DeletedFileRetentionDuration,
                Some(self.stream_tombstone_property()),
            );
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
        let mut b = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.cfg.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Chunk);
        // Nearly unique columns gain nothing from a dictionary but the cost
        // of building one and falling back to plain encoding.
        for col in HIGH_CARDINALITY {
            b = b.set_column_dictionary_enabled((*col).into(), false);
        }
        // Free-form text is never a filter's bound: min/max over it costs a
        // comparison of every value and a long entry in every file's stats.
        for col in FREE_TEXT {
            b = b.set_column_statistics_enabled((*col).into(), EnabledStatistics::None);
        }
        b.build()
    }

    /// Writes `batches` to `t` in one commit.
    pub async fn write(
        &self,
        t: &Table,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
    ) -> Result<WriteStats> {
        self.write_txn(t, batches, mode, &[]).await
    }

    /// [`Lake::write`] in a commit that also records `version` as `app_id`'s
    /// transaction version (see [`Lake::append_once`]): a writer that copies
    /// a change log into the lake resumes from [`Lake::txn_version`] after a
    /// crash, and starts over when the table was rebuilt. Skipped (`None`)
    /// when `app_id` already recorded `version` or a later one. A write that
    /// changes no rows still records the version.
    pub async fn write_once(
        &self,
        t: &'static Table,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        app_id: &str,
        version: i64,
    ) -> Result<Option<WriteStats>> {
        if let Some(done) = self.txn_version(t, app_id).await?
            && done >= version
        {
            return Ok(None);
        }
        self.write_recording(t, batches, mode, &[(app_id, version)])
            .await
            .map(Some)
    }

    /// [`Lake::write`] in a commit that records every `(app_id, version)` of
    /// `txns` as that application's transaction version, without checking
    /// the versions recorded before (the caller read them). A write that
    /// changes no rows still records the versions, in an empty commit.
    pub async fn write_recording(
        &self,
        t: &'static Table,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        txns: &[(&str, i64)],
    ) -> Result<WriteStats> {
        let stats = self.write_txn(t, batches, mode, txns).await?;
        if stats.version.is_none()
            && let Some((first, rest)) = txns.split_first()
        {
            // nothing to write or delete: an empty commit records the versions
            let mut a = self.begin_append(t, first.0, first.1).await?;
            for (app, v) in rest {
                a.also_record(app, *v);
            }
            return a.commit().await;
        }
        Ok(stats)
    }

    async fn write_txn(
        &self,
        t: &Table,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        txns: &[(&str, i64)],
    ) -> Result<WriteStats> {
        use deltalake::kernel::Transaction;
        use deltalake::kernel::transaction::CommitProperties;
        let props = || {
            CommitProperties::default().with_application_transactions(
                txns.iter()
                    .map(|(app, v)| Transaction::new(*app, *v))
                    .collect(),
            )
        };
        let t0 = std::time::Instant::now();
        let table = self.ensure_table(t).await?;
        let target = self.write_schema(t, &table)?;
        let batches: Vec<RecordBatch> = batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform_to(t, &target, &b))
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
                    .with_commit_properties(props())
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
                .write(vec![RecordBatch::new_empty(target)])
                .with_save_mode(SaveMode::Overwrite)
                .with_commit_properties(props())
                .await
                .map_err(err)?,
            (mode, _) => {
                let mut w = table
                    .write(batches)
                    .with_writer_properties(self.writer_properties())
                    .with_commit_properties(props());
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

impl Lake {
    /// Replaces whole date partitions of a date-partitioned table in one
    /// commit: removes the files of `dates` (only those whose statistics show
    /// `only.0 = only.1` for every row, when `only` is given) and adds
    /// `batches`, written by several Parquet writers in parallel. Every new
    /// row's date must be one of `dates`.
    ///
    /// This is the ETL's fast path. When a file in those partitions may hold
    /// rows that must stay (statistics say `only` is not certain), it falls
    /// back to [`Lake::write`] with a row-level replace predicate.
    pub async fn replace_dates(
        &self,
        t: &Table,
        dates: &[i32],
        batches: Vec<RecordBatch>,
        only: Option<(&str, &str)>,
        threads: usize,
    ) -> Result<WriteStats> {
        use std::collections::{BTreeMap, BTreeSet};

        use deltalake::kernel::Action;
        use deltalake::kernel::transaction::CommitBuilder;
        use deltalake::protocol::DeltaOperation;
        use deltalake::writer::{DeltaWriter, RecordBatchWriter};

        assert_eq!(
            t.partition,
            Some("date"),
            "{} is not partitioned by date",
            t.qualified()
        );
        let t0 = std::time::Instant::now();
        let err = |e| LakeError::delta(t.qualified(), e);
        let mut pred = dates_predicate(dates);
        if let Some((col, val)) = only {
            pred = format!("{pred} AND {col} = '{val}'");
        }
        let table = self.ensure_table(t).await?;
        let wanted: BTreeSet<String> = dates
            .iter()
            .map(|d| shoplake_core::time::format_date(*d))
            .collect();

        // files to remove
        let snapshot = table.snapshot().map_err(err)?;
        let mut removes = Vec::new();
        for f in snapshot.log_data().iter() {
            let Some(Some(d)) = f.partition_values_map().get("date").cloned() else {
                continue;
            };
            if !wanted.contains(&d) {
                continue;
            }
            if let Some((col, val)) = only
                && !stats_prove_equal(f.stats().as_deref(), col, val)
            {
                tracing::debug!(table = %t.qualified(), file = %f.path(), "partition holds other rows: row-level replace");
                return self.write(t, batches, WriteMode::Replace(pred)).await;
            }
            removes.push(Action::Remove(f.remove_action(true)));
        }

        // new rows, grouped by date, then dealt to writers by size
        let mut by_date: BTreeMap<i32, Vec<RecordBatch>> = BTreeMap::new();
        let mut rows = 0u64;
        let target = self.write_schema(t, &table)?;
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            let b = conform_to(t, &target, b)?;
            rows += b.num_rows() as u64;
            for (d, part) in split_by_date(&b)? {
                if !dates.contains(&d) {
                    return Err(LakeError::Internal(format!(
                        "{}: a new row's date {} is not among the dates being replaced",
                        t.qualified(),
                        shoplake_core::time::format_date(d)
                    )));
                }
                by_date.entry(d).or_default().push(part);
            }
        }
        drop(batches);
        if rows == 0 && removes.is_empty() {
            return Ok(WriteStats {
                version: None,
                rows,
            });
        }
        let n = threads.clamp(1, by_date.len().max(1));
        type Group = (u64, Vec<(i32, RecordBatch)>);
        let mut groups: Vec<Group> = (0..n).map(|_| (0, Vec::new())).collect();
        let mut parts: Vec<(i32, Vec<RecordBatch>)> = by_date.into_iter().collect();
        parts
            .sort_by_key(|(_, p)| std::cmp::Reverse(p.iter().map(|b| b.num_rows()).sum::<usize>()));
        for (d, p) in parts {
            let g = groups.iter_mut().min_by_key(|g| g.0).expect("n ≥ 1");
            g.0 += p.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            g.1.extend(p.into_iter().map(|b| (d, b)));
        }
        let mut tasks = Vec::new();
        for (_, group) in groups.into_iter().filter(|g| !g.1.is_empty()) {
            let mut w = RecordBatchWriter::for_table(&table)
                .map_err(err)?
                .with_writer_properties(self.writer_properties());
            tasks.push(tokio::spawn(async move {
                for (d, b) in group {
                    // the partition is known: no need for the writer to split the batch
                    let mut pv = indexmap::IndexMap::new();
                    pv.insert(
                        "date".to_string(),
                        delta_kernel::expressions::Scalar::Date(d),
                    );
                    w.write_partition(b, &pv, deltalake::writer::WriteMode::Default)
                        .await?;
                }
                w.flush().await
            }));
        }
        let mut actions = removes;
        for task in tasks {
            let adds = task
                .await
                .map_err(|e| LakeError::Internal(format!("parquet writer task: {e}")))?
                .map_err(err)?;
            actions.extend(adds.into_iter().map(Action::Add));
        }
        let op = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec!["date".to_string()]),
            predicate: Some(pred),
        };
        let commit =
            CommitBuilder::from(deltalake::kernel::transaction::CommitProperties::default())
                .with_actions(actions)
                .build(Some(snapshot), table.log_store(), op)
                .await
                .map_err(err)?;
        tracing::debug!(table = %t.qualified(), rows, ms = t0.elapsed().as_millis() as u64, "committed (partition replace)");
        Ok(WriteStats {
            version: Some(commit.version()),
            rows,
        })
    }
}

/// Whether a file's Delta statistics prove every row has `col = val`.
fn stats_prove_equal(stats: Option<&str>, col: &str, val: &str) -> bool {
    let Some(v) = stats.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return false;
    };
    let is = |k: &str| v.get(k).and_then(|m| m.get(col)).and_then(|x| x.as_str()) == Some(val);
    let no_nulls = v
        .get("nullCount")
        .and_then(|m| m.get(col))
        .and_then(|x| x.as_i64())
        == Some(0);
    is("minValues") && is("maxValues") && no_nulls
}

/// Splits a batch by its `date` column (one slice when it holds one date).
fn split_by_date(b: &RecordBatch) -> Result<Vec<(i32, RecordBatch)>> {
    use arrow::array::{Date32Array, UInt32Array};
    let dates = b
        .column_by_name("date")
        .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
        .ok_or_else(|| LakeError::Internal("batch lacks a date32 `date` column".into()))?;
    let first = dates.value(0);
    if dates.values().iter().all(|d| *d == first) {
        return Ok(vec![(first, b.clone())]);
    }
    let mut idx: std::collections::BTreeMap<i32, Vec<u32>> = std::collections::BTreeMap::new();
    for (i, d) in dates.values().iter().enumerate() {
        idx.entry(*d).or_default().push(i as u32);
    }
    idx.into_iter()
        .map(|(d, rows)| {
            let take = UInt32Array::from(rows);
            let cols = b
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &take, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok((d, RecordBatch::try_new(b.schema(), cols)?))
        })
        .collect()
}

/// Casts `batch` to `t`'s declared schema (by column name); a missing
/// column or a null in a NOT NULL column is an error.
pub fn conform(t: &Table, batch: &RecordBatch) -> Result<RecordBatch> {
    conform_to(t, &t.schema(), batch)
}

/// Whether `f`, stored in `t` beyond its declared columns, is one
/// [`Lake::evolve`] added.
fn is_evolved(t: &Table, f: &arrow::datatypes::Field) -> bool {
    f.is_nullable()
        && *f.data_type() == arrow::datatypes::DataType::Utf8
        && is_column_name(f.name())
        && !t.columns.iter().any(|c| c.name == f.name())
}

/// Whether `name` may be an evolved column: lowercase ASCII letters, digits
/// and `_`, starting with a letter, at most 64 bytes.
pub fn is_column_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// [`conform`] to `schema`: `t`'s declared columns and its evolved ones;
/// an evolved column the batch lacks is null, a column the batch has that
/// `schema` lacks is an error (evolve the table first).
fn conform_to(
    t: &Table,
    schema: &arrow::datatypes::SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    if let Some(f) = batch
        .schema()
        .fields()
        .iter()
        .find(|f| schema.field_with_name(f.name()).is_err())
    {
        return Err(LakeError::Internal(format!(
            "{}: the batch has column {}, which the table does not (evolve it first)",
            t.qualified(),
            f.name()
        )));
    }
    let declared = t.columns.len();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let col = match batch.column_by_name(f.name()) {
            Some(c) => c,
            None if i >= declared => {
                cols.push(arrow::array::new_null_array(
                    f.data_type(),
                    batch.num_rows(),
                ));
                continue;
            }
            None => {
                return Err(LakeError::Internal(format!(
                    "{}: batch lacks column {}",
                    t.qualified(),
                    f.name()
                )));
            }
        };
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

impl Lake {
    /// The last version an application (`app_id`) recorded on `t` with
    /// [`Lake::append_once`]; `None` if it never did (or the table is new).
    pub async fn txn_version(&self, t: &Table, app_id: &str) -> Result<Option<i64>> {
        match self.load(t).await? {
            Some(table) => table_txn_version(t, &table, app_id).await,
            None => Ok(None),
        }
    }

    /// Appends `batches` to `t` in one commit that also records `version` as
    /// `app_id`'s transaction version (a Delta `txn` action). A stream
    /// consumer passes the log offset it has consumed up to: after a crash it
    /// reads [`Lake::txn_version`] and resumes right after, so every record
    /// lands exactly once. Commits with a version not above the recorded one
    /// are skipped (already done) and return `None`.
    pub async fn append_once(
        &self,
        t: &'static Table,
        batches: Vec<RecordBatch>,
        app_id: &str,
        version: i64,
    ) -> Result<Option<WriteStats>> {
        let Some(mut a) = self.begin_append_once(t, app_id, version).await? else {
            return Ok(None);
        };
        for b in batches {
            a.write(b).await?;
        }
        a.commit().await.map(Some)
    }

    /// Starts an [`Lake::append_once`] whose rows arrive in pieces: each
    /// [`Appender::write`] encodes its batch into the open Parquet file at
    /// once, so a caller building a large commit keeps only one piece of it
    /// in memory. `None` if `app_id` already committed `version`.
    pub async fn begin_append_once(
        &self,
        t: &'static Table,
        app_id: &str,
        version: i64,
    ) -> Result<Option<Appender>> {
        let table = self.ensure_table(t).await?;
        if let Some(done) = table_txn_version(t, &table, app_id).await?
            && done >= version
        {
            return Ok(None);
        }
        Ok(Some(self.appender(t, table, app_id, version)))
    }

    /// [`Lake::begin_append_once`] for a writer that knows `app_id`'s
    /// recorded version is below `version`: it read it, and every commit
    /// since was its own and succeeded. Skips reading the version back (a
    /// replay of the log since its checkpoint) and starts from the table as
    /// the last commit left it, without listing the log again. A commit
    /// that lands in between (another writer's) is merged by Delta's
    /// conflict check, as for any append.
    pub async fn begin_append(
        &self,
        t: &'static Table,
        app_id: &str,
        version: i64,
    ) -> Result<Appender> {
        let cached = self
            .open
            .lock()
            .expect("unpoisoned")
            .get(&t.qualified())
            .cloned();
        let table = match cached {
            Some(table) => table,
            None => self.ensure_table(t).await?,
        };
        Ok(self.appender(t, table, app_id, version))
    }

    fn appender(
        &self,
        t: &'static Table,
        table: DeltaTable,
        app_id: &str,
        version: i64,
    ) -> Appender {
        Appender {
            t,
            table,
            props: self.writer_properties(),
            writer: None,
            rows: 0,
            txns: vec![(app_id.to_string(), version)],
            started: std::time::Instant::now(),
            open: Arc::clone(&self.open),
        }
    }
}

/// `app_id`'s last transaction version recorded in `table` (a `txn` action).
async fn table_txn_version(t: &Table, table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    table
        .snapshot()
        .map_err(|e| LakeError::delta(t.qualified(), e))?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| LakeError::delta(t.qualified(), e))
}

/// One commit to a table being written piece by piece
/// ([`Lake::begin_append_once`]). Dropping it without [`Appender::commit`]
/// commits nothing (the Parquet it wrote is never referenced).
pub struct Appender {
    t: &'static Table,
    table: DeltaTable,
    props: WriterProperties,
    writer: Option<deltalake::writer::RecordBatchWriter>,
    rows: u64,
    /// The transaction versions the commit records: `(app_id, version)`.
    txns: Vec<(String, i64)>,
    started: std::time::Instant,
    /// The lake's open tables: the commit leaves its new state there.
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, DeltaTable>>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("table", &self.t.qualified())
            .field("rows", &self.rows)
            .field("txns", &self.txns)
            .finish_non_exhaustive()
    }
}

impl Appender {
    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Makes the commit record `version` as `app_id`'s transaction version
    /// too.
    pub fn also_record(&mut self, app_id: &str, version: i64) {
        self.txns.push((app_id.to_string(), version));
    }

    /// Encodes `batch` (conformed to the table's schema) into the commit.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        use deltalake::writer::{DeltaWriter, RecordBatchWriter};
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let t = self.t;
        let err = |e| LakeError::delta(t.qualified(), e);
        let batch = conform(t, &batch)?;
        let w = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(
                RecordBatchWriter::for_table(&self.table)
                    .map_err(err)?
                    .with_writer_properties(self.props.clone()),
            ),
        };
        self.rows += batch.num_rows() as u64;
        w.write(batch).await.map_err(err)
    }

    /// Commits what was written, with the transaction version (also when
    /// nothing was written: the version still advances).
    pub async fn commit(self) -> Result<WriteStats> {
        use deltalake::kernel::Action;
        use deltalake::kernel::Transaction;
        use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
        use deltalake::protocol::DeltaOperation;
        use deltalake::writer::DeltaWriter;

        let t = self.t;
        let err = |e| LakeError::delta(t.qualified(), e);
        let mut actions = Vec::new();
        if let Some(mut w) = self.writer {
            actions.extend(w.flush().await.map_err(err)?.into_iter().map(Action::Add));
        }
        let op = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: t.partition.map(|p| vec![p.to_string()]),
            predicate: None,
        };
        // not the log cleanup Delta runs after every commit by default: it
        // lists the whole log each time (a stream writer's log grows by
        // thousands of entries an hour); the writer's upkeep
        // ([`Lake::tidy_stream_table`]) and maintenance trim the log instead
        let props = CommitProperties::default()
            .with_application_transactions(
                self.txns
                    .iter()
                    .map(|(app, v)| Transaction::new(app, *v))
                    .collect(),
            )
            .with_cleanup_expired_logs(Some(false));
        let snapshot = self.table.snapshot().map_err(err)?;
        let commit = CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(snapshot), self.table.log_store(), op)
            .await
            .map_err(err)?;
        tracing::debug!(table = %t.qualified(), rows = self.rows, txns = ?self.txns, ms = self.started.elapsed().as_millis() as u64, "committed (stream)");
        let version = commit.version();
        // the commit read the log up to its own version: keep that state,
        // so the next load need not list the log again
        let mut table = self.table;
        table.state = Some(commit.snapshot);
        let mut open = self.open.lock().expect("unpoisoned");
        let newer = open
            .get(&t.qualified())
            .and_then(DeltaTable::version)
            .is_some_and(|v| v > version);
        if !newer {
            open.insert(t.qualified(), table);
        }
        Ok(WriteStats {
            version: Some(version),
            rows: self.rows,
        })
    }
}

/// Deletes `table`'s log entries written before `cutoff_ms` and older than
/// its newest checkpoint (the checkpoint stands for them); entries removed.
async fn trim_log(table: &DeltaTable, cutoff_ms: i64) -> deltalake::DeltaResult<u64> {
    let n = deltalake::protocol::checkpoints::cleanup_expired_logs_for(
        table.version().unwrap_or(0),
        table.log_store().as_ref(),
        cutoff_ms,
        None,
    )
    .await?;
    Ok(n as u64)
}

/// What [`Lake::erase_where`] did to one table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Erased {
    /// `zone.name`.
    pub table: String,
    /// Rows deleted.
    pub rows: u64,
    /// Data files that held them, deleted from storage.
    pub files_deleted: u64,
    /// Delta log entries before the deletion, deleted.
    pub log_entries_removed: u64,
}

/// What [`Lake::maintain`] did to one table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Maintained {
    /// `zone.name`.
    pub table: String,
    /// Data files before.
    pub files_before: u64,
    /// Small files compacted away.
    pub compacted: u64,
    /// Files the compaction wrote.
    pub written: u64,
    /// Unreferenced data files deleted (or that would be, in a dry run).
    pub vacuumed: u64,
    /// Delta log entries deleted.
    pub log_entries_removed: u64,
}

/// What maintenance does.
#[derive(Debug, Clone, Copy)]
pub struct MaintainOptions {
    /// Compact when the table has more data files than this (`None`: never).
    pub compact_above: Option<u64>,
    /// Vacuum files no version of this period uses (`None`: no vacuum).
    pub vacuum_retain: Option<std::time::Duration>,
    /// Vacuum also files the log no longer mentions (their tombstones
    /// expired), listing the whole table folder; else only tombstoned ones.
    pub vacuum_full: bool,
    /// Remove log entries older than this, up to the last checkpoint.
    pub log_retain: Option<std::time::Duration>,
    /// Report only.
    pub dry_run: bool,
}

impl Lake {
    /// Compacts, vacuums and trims the log of `t`; a table never written is
    /// left alone. Safe beside writers: compaction is one commit that Delta
    /// checks against concurrent appends; vacuum deletes only files no
    /// version within the retention period uses.
    pub async fn maintain(&self, t: &Table, opts: &MaintainOptions) -> Result<Maintained> {
        let mut out = Maintained {
            table: t.qualified(),
            ..Default::default()
        };
        let Some(mut table) = self.load(t).await? else {
            return Ok(out);
        };
        let err = |e| LakeError::delta(t.qualified(), e);
        out.files_before = table.snapshot().map_err(err)?.log_data().num_files() as u64;
        if let Some(above) = opts.compact_above
            && out.files_before > above
        {
            if opts.dry_run {
                out.compacted = out.files_before;
            } else {
                let (t2, metrics) = table
                    .optimize()
                    .with_writer_properties(self.writer_properties())
                    .await
                    .map_err(err)?;
                table = t2;
                out.compacted = metrics.num_files_removed;
                out.written = metrics.num_files_added;
            }
        }
        if let Some(keep) = opts.vacuum_retain {
            let (t2, metrics) = table
                .vacuum()
                .with_retention_period(
                    chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7)),
                )
                .with_enforce_retention_duration(false)
                .with_mode(if opts.vacuum_full {
                    deltalake::operations::vacuum::VacuumMode::Full
                } else {
                    deltalake::operations::vacuum::VacuumMode::Lite
                })
                .with_dry_run(opts.dry_run)
                .await
                .map_err(err)?;
            table = t2;
            out.vacuumed = metrics.files_deleted.len() as u64;
        }
        if let Some(keep) = opts.log_retain
            && !opts.dry_run
        {
            let cutoff = chrono::Utc::now().timestamp_millis() - keep.as_millis() as i64;
            out.log_entries_removed = trim_log(&table, cutoff).await.map_err(err)?;
        }
        self.open.lock().expect("unpoisoned").remove(&t.qualified());
        if out.compacted + out.vacuumed + out.log_entries_removed > 0 {
            tracing::info!(table = %out.table, compacted = out.compacted, written = out.written, vacuumed = out.vacuumed, log_entries_removed = out.log_entries_removed, dry_run = opts.dry_run, "maintained");
        }
        Ok(out)
    }
}
