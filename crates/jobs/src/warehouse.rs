//! `shoplake load postgres`: copies lake tables into PostgreSQL (the
//! seeds' "database loading" into RDS or Redshift), incrementally.
//!
//! ## Contract
//! * **One transaction per table.** Creating the target table or adding
//!   columns, deleting the rows being replaced, the binary `COPY` of the new
//!   rows and the table's state row commit together or not at all: a load
//!   that fails or is killed half-way leaves the target as the previous load
//!   left it, and the next load starts from the same state.
//! * **State.** `<schema>.shoplake_load_state` holds one row per lake table:
//!   the Delta table's id and the version loaded. Readers of the target see
//!   exactly that version of the lake table (until the next load commits).
//! * **Incremental.** When the Delta version is the one recorded, nothing
//!   is done (no write at all). Otherwise, for a table partitioned by one
//!   column (`date`), the commits since the recorded version name the
//!   partitions whose files were added or removed with a data change
//!   (compactions are not); those partitions' rows are deleted and copied
//!   again. More than [`LoadOptions::log_reads_max`] commits behind (a
//!   table written every second), the table's files at the two versions
//!   are compared instead. A table without partitions but with a `date`
//!   column is replaced by day when every commit since says which days it
//!   replaced (its predicate, as the curated day-grain models' commits do);
//!   any other table without partitions is replaced whole.
//! * **Full reload** when there is no state row, the target table is new,
//!   the Delta table was recreated (another id, or a version below the one
//!   recorded), a commit in between is gone (its log entry trimmed), a
//!   commit lacks the partition values of a file it removes, or `--full`.
//! * **Schema.** Column types follow [`PgType::for_arrow`]. A column the
//!   lake gains is added (`ALTER TABLE ADD COLUMN`); rows loaded before
//!   read it as null, as they do in the lake. A column whose type changed is
//!   an error that says to drop the target table. Columns the lake no longer
//!   has are kept (null in new rows).
//! * **Concurrency.** A transaction-level advisory lock per target table
//!   makes two loads of one table take turns; the second then sees the
//!   first's state and skips what it loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use arrow::datatypes::FieldRef;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use futures::StreamExt;
use shoplake_core::schema::{Storage, TABLES, Table, Zone};
use shoplake_lake::Lake;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::pgcopy::{CopyEncoder, HEADER, PgType, TRAILER};
use crate::pipeline::{Observer, StepReport};
use crate::{JobError, Result};

/// The target schema when none is given.
pub const DEFAULT_SCHEMA: &str = "shoplake";

/// The state table, in the target schema.
pub const STATE_TABLE: &str = "shoplake_load_state";

/// Bytes of COPY data sent to PostgreSQL at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// What to load and where.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=...]`
    pub url: String,
    /// Target schema (created if absent).
    pub schema: String,
    /// Lake tables to load (empty: [`default_tables`]).
    pub tables: Vec<&'static Table>,
    /// Reload every row, whatever the state says.
    pub full: bool,
    /// Commits read one by one to find the partitions that changed; with
    /// more since the last load, the table's files at the two versions are
    /// compared instead (which also counts compacted partitions as changed).
    pub log_reads_max: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            url: String::new(),
            schema: DEFAULT_SCHEMA.to_string(),
            tables: Vec::new(),
            full: false,
            log_reads_max: 1_000,
        }
    }
}

/// What one table's load did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The lake table was never written: nothing to load.
    Absent,
    /// The Delta version is the one loaded before: nothing done.
    Unchanged,
    /// The changed partitions were replaced.
    Partitions,
    /// Every row was replaced.
    Full,
}

/// One table's load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableLoad {
    /// The lake table, `zone.name`.
    pub table: String,
    /// The target table, `schema.name`.
    pub target: String,
    /// What was done.
    pub action: Action,
    /// Delta version loaded before (`None`: never).
    pub previous_version: Option<u64>,
    /// Delta version loaded now (`None`: the table is absent).
    pub version: Option<u64>,
    /// The column whose values were replaced (action `partitions`): the
    /// partition column, or `date` for a table replaced by day.
    pub key: Option<String>,
    /// Values of `key` whose rows were replaced (action `partitions`).
    pub partitions: Vec<String>,
    /// Rows copied in.
    pub rows: u64,
    /// Rows deleted from the target.
    pub deleted: u64,
    /// Columns added to the target.
    pub columns_added: Vec<String>,
    /// Why the load was full.
    pub reason: Option<String>,
    /// Wall time, in seconds.
    pub seconds: f64,
}

impl TableLoad {
    /// What the load did, in words (`3 partitions (2025-01-01 … 2025-01-03)`).
    pub fn describe(&self) -> String {
        let mut s = match self.action {
            Action::Absent => "not in the lake yet".to_string(),
            Action::Unchanged => "unchanged".to_string(),
            Action::Full => format!("full: {}", self.reason.as_deref().unwrap_or("asked")),
            Action::Partitions => {
                let (one, many) = match self.key.as_deref() {
                    Some("date") => ("day", "days"),
                    _ => ("partition", "partitions"),
                };
                match self.partitions.as_slice() {
                    [] => format!("no {one} changed"),
                    [only] => format!("1 {one} ({only})"),
                    [first, .., last] => {
                        format!("{} {many} ({first} … {last})", self.partitions.len())
                    }
                }
            }
        };
        if !self.columns_added.is_empty() {
            s.push_str(&format!("; new columns: {}", self.columns_added.join(", ")));
        }
        s
    }
}

/// What [`load_postgres`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Target schema.
    pub schema: String,
    /// One entry per table, in the order asked.
    pub tables: Vec<TableLoad>,
    /// Rows copied in, over all tables.
    pub rows: u64,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// The tables loaded by default: every Delta table of the curated zone.
pub fn default_tables() -> Vec<&'static Table> {
    TABLES
        .iter()
        .filter(|t| t.zone == Zone::Curated && t.storage == Storage::Delta)
        .collect()
}

/// The target table's name: a curated table's own name, `zone_name` for
/// the others (`processed.events` → `processed_events`).
pub fn target_name(t: &Table) -> String {
    match t.zone {
        Zone::Curated => t.name.to_string(),
        zone => format!("{}_{}", zone.name(), t.name),
    }
}

/// Whether `s` is a schema name the load accepts: 1 to 63 lower-case
/// letters, digits and `_`, not starting with a digit.
pub fn is_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// `"name"`: an identifier quoted for PostgreSQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`: a string literal quoted for PostgreSQL (and DataFusion).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A PostgreSQL error with what the server said about it.
fn pg_err(what: &str, e: sqlx::Error) -> JobError {
    let msg = match &e {
        sqlx::Error::Database(db) => {
            let mut m = db.message().to_string();
            if let Some(code) = db.code() {
                m.push_str(&format!(" (code {code})"));
            }
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                for extra in [pg.detail(), pg.hint(), pg.r#where()].into_iter().flatten() {
                    m.push_str("; ");
                    m.push_str(extra);
                }
            }
            m
        }
        other => other.to_string(),
    };
    JobError::Warehouse(format!("{what}: {msg}"))
}

/// Connects to `url`; an unreachable server fails at once.
pub async fn connect(url: &str) -> Result<PgConnection> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| JobError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
    PgConnection::connect_with(&options).await.map_err(|e| {
        pg_err(
            &format!(
                "cannot connect to {}:{}/{} as {}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or(options.get_username()),
                options.get_username()
            ),
            e,
        )
    })
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<u64> {
    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| pg_err(&sql, e))
}

/// Loads `opts.tables` from `lake` into PostgreSQL, one transaction per
/// table (see the module docs). `observer` hears of each table as a step
/// named after it.
pub async fn load_postgres(
    lake: &Lake,
    opts: &LoadOptions,
    observer: &dyn Observer,
) -> Result<LoadReport> {
    let t0 = Instant::now();
    if !is_schema_name(&opts.schema) {
        return Err(JobError::Invalid(format!(
            "schema {:?}: use 1 to 63 lower-case letters, digits and _, not starting with a digit",
            opts.schema
        )));
    }
    let tables = if opts.tables.is_empty() {
        default_tables()
    } else {
        opts.tables.clone()
    };
    if let Some(t) = tables.iter().find(|t| t.storage != Storage::Delta) {
        return Err(JobError::Invalid(format!(
            "{} is landing files, not a Delta table: it cannot be loaded",
            t.qualified()
        )));
    }
    let mut conn = connect(&opts.url).await?;
    let schema = ident(&opts.schema);
    exec(&mut conn, format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await?;
    exec(
        &mut conn,
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.{STATE_TABLE} (
                lake_table text PRIMARY KEY,
                target_table text NOT NULL,
                delta_table_id text NOT NULL,
                delta_version bigint NOT NULL,
                mode text NOT NULL,
                partitions text[],
                rows_copied bigint NOT NULL,
                rows_deleted bigint NOT NULL,
                loaded_at timestamptz NOT NULL DEFAULT now()
            )"
        ),
    )
    .await?;
    let mut report = LoadReport {
        schema: opts.schema.clone(),
        tables: Vec::new(),
        rows: 0,
        seconds: 0.0,
    };
    for t in tables {
        observer.step_started(&t.qualified());
        let done = load_table(lake, &mut conn, opts, t).await?;
        report.rows += done.rows;
        observer.step_finished(&StepReport {
            name: done.table.clone(),
            rows_in: done.rows,
            rows_out: done.rows,
            rejected: 0,
            seconds: done.seconds,
            detail: format!("→ {}: {}", done.target, done.describe()),
        });
        report.tables.push(done);
    }
    let _ = conn.close().await;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// What the state table says about a lake table.
struct State {
    table_id: String,
    version: u64,
}

/// What a load must do.
enum Plan {
    Unchanged,
    /// Replace the rows with these values of `column` (NULL: `None`).
    Replace {
        column: String,
        values: BTreeSet<Option<String>>,
    },
    Full(String),
}

/// Where the values a commit changed are read.
#[derive(Clone, Copy)]
enum Key<'a> {
    /// The partition values of the files it adds and removes.
    Partition(&'a str),
    /// The predicate of the rows it replaced or deleted, a `date` column's
    /// days (a table without partitions whose rows are replaced by day).
    Days(&'a str),
}

async fn load_table(
    lake: &Lake,
    conn: &mut PgConnection,
    opts: &LoadOptions,
    t: &'static Table,
) -> Result<TableLoad> {
    let t0 = Instant::now();
    let name = target_name(t);
    let target = format!("{}.{}", ident(&opts.schema), ident(&name));
    let mut out = TableLoad {
        table: t.qualified(),
        target: format!("{}.{name}", opts.schema),
        action: Action::Absent,
        previous_version: None,
        version: None,
        key: None,
        partitions: Vec::new(),
        rows: 0,
        deleted: 0,
        columns_added: Vec::new(),
        reason: None,
        seconds: 0.0,
    };
    // the version loaded is this one, whatever is committed meanwhile
    let Some(table) = lake.load(t).await? else {
        out.seconds = t0.elapsed().as_secs_f64();
        return Ok(out);
    };
    let delta_err = |e| JobError::Lake(shoplake_lake::LakeError::delta(t.qualified(), e));
    let snapshot = table.snapshot().map_err(delta_err)?;
    let version = snapshot.version();
    let table_id = snapshot.metadata().id().to_string();
    let partition_cols: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let arrow_schema: arrow::datatypes::Schema = snapshot
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e| JobError::Internal(format!("{}: {e}", t.qualified())))?;
    let fields: Vec<FieldRef> = arrow_schema.fields().iter().cloned().collect();
    out.version = Some(version);

    let mut tx = conn.begin().await.map_err(|e| pg_err("BEGIN", e))?;
    // The state row commits with the data: a commit PostgreSQL loses in a
    // crash before its WAL is flushed is loaded again by the next run, so
    // this transaction need not wait for the flush.
    exec(&mut tx, "SET LOCAL synchronous_commit = off".into()).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&target)
        .execute(&mut *tx)
        .await
        .map_err(|e| pg_err("taking the load lock", e))?;
    let state: Option<State> = sqlx::query(AssertSqlSafe(format!(
        "SELECT delta_table_id, delta_version FROM {}.{STATE_TABLE} WHERE lake_table = $1",
        ident(&opts.schema)
    )))
    .bind(t.qualified())
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| pg_err("reading the load state", e))?
    .map(|r| State {
        table_id: r.get(0),
        version: r.get::<i64, _>(1) as u64,
    });
    out.previous_version = state.as_ref().map(|s| s.version);
    let existing = existing_columns(&mut tx, &target).await?;

    let plan = match (&state, &existing) {
        _ if opts.full => Plan::Full("--full".into()),
        (None, _) => Plan::Full("first load".into()),
        (Some(_), None) => Plan::Full("the target table is new".into()),
        (Some(s), _) if s.table_id != table_id => {
            Plan::Full("the Delta table was recreated (new table id)".into())
        }
        (Some(s), _) if s.version == version => Plan::Unchanged,
        (Some(s), _) if s.version > version => Plan::Full(format!(
            "the Delta table is at version {version}, below the {} loaded",
            s.version
        )),
        (Some(s), _) => {
            let behind = version - s.version;
            let by_day = fields
                .iter()
                .any(|f| f.name() == "date" && PgType::for_arrow(f.data_type()) == PgType::Date);
            match partition_cols.as_slice() {
                [col] if behind > opts.log_reads_max => diff_files(&table, s.version, col).await?,
                [col] => changed(&table, s.version, version, Key::Partition(col)).await?,
                [] if by_day && behind <= opts.log_reads_max => {
                    changed(&table, s.version, version, Key::Days("date")).await?
                }
                [] if by_day => Plan::Full(format!(
                    "{behind} commits behind, more than are read to find the days"
                )),
                [] => Plan::Full("not partitioned".into()),
                _ => Plan::Full("partitioned by several columns".into()),
            }
        }
    };
    let replace = match plan {
        Plan::Unchanged => {
            tx.rollback().await.map_err(|e| pg_err("ROLLBACK", e))?;
            out.action = Action::Unchanged;
            out.seconds = t0.elapsed().as_secs_f64();
            return Ok(out);
        }
        Plan::Replace { column, values } => {
            out.action = Action::Partitions;
            out.key = Some(column.clone());
            Some((column, values))
        }
        Plan::Full(reason) => {
            out.action = Action::Full;
            out.reason = Some(reason);
            None
        }
    };

    // the target table and its columns
    match &existing {
        None => {
            create_table(&mut tx, &target, t, &fields, &partition_cols).await?;
        }
        Some(cols) => {
            out.columns_added = reconcile_columns(&mut tx, &target, &fields, cols).await?;
        }
    }

    // what is replaced goes, what replaces it comes, in this transaction
    let filter = match &replace {
        None => {
            out.deleted = exec(&mut tx, format!("DELETE FROM {target}")).await?;
            None
        }
        Some((col, parts)) => {
            let ty = fields
                .iter()
                .find(|f| f.name() == col)
                .map(|f| PgType::for_arrow(f.data_type()))
                .ok_or_else(|| JobError::Internal(format!("{}: no column {col}", t.qualified())))?;
            let values: Vec<String> = parts.iter().flatten().cloned().collect();
            let has_null = parts.contains(&None);
            out.partitions = values.clone();
            if has_null {
                out.partitions.push("(null)".into());
            }
            let null_sql = if has_null {
                format!(" OR {} IS NULL", ident(col))
            } else {
                String::new()
            };
            let sql = format!(
                "DELETE FROM {target} WHERE {} = ANY(CAST($1 AS {}[])){null_sql}",
                ident(col),
                ty.ddl()
            );
            out.deleted = sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(&values)
                .execute(&mut *tx)
                .await
                .map_err(|e| pg_err(&sql, e))?
                .rows_affected();
            let mut terms: Vec<String> = Vec::new();
            if !values.is_empty() {
                terms.push(format!(
                    "{} IN ({})",
                    ident(col),
                    values
                        .iter()
                        .map(|v| literal(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if has_null {
                terms.push(format!("{} IS NULL", ident(col)));
            }
            Some(if terms.is_empty() {
                "false".to_string()
            } else {
                terms.join(" OR ")
            })
        }
    };
    out.rows = copy_rows(&mut tx, &table, &target, &fields, filter.as_deref(), t).await?;

    let partitions: Option<Vec<String>> = replace.as_ref().map(|_| out.partitions.clone());
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {}.{STATE_TABLE} AS s
            (lake_table, target_table, delta_table_id, delta_version, mode, partitions, rows_copied, rows_deleted, loaded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
         ON CONFLICT (lake_table) DO UPDATE SET
            target_table = EXCLUDED.target_table, delta_table_id = EXCLUDED.delta_table_id,
            delta_version = EXCLUDED.delta_version, mode = EXCLUDED.mode,
            partitions = EXCLUDED.partitions, rows_copied = EXCLUDED.rows_copied,
            rows_deleted = EXCLUDED.rows_deleted, loaded_at = EXCLUDED.loaded_at",
        ident(&opts.schema)
    )))
    .bind(t.qualified())
    .bind(&out.target)
    .bind(&table_id)
    .bind(version as i64)
    .bind(if replace.is_some() { "partitions" } else { "full" })
    .bind(partitions)
    .bind(out.rows as i64)
    .bind(out.deleted as i64)
    .execute(&mut *tx)
    .await
    .map_err(|e| pg_err("recording the load state", e))?;
    tx.commit().await.map_err(|e| pg_err("COMMIT", e))?;
    // Fresh planner statistics for the queries that follow, when the load
    // changed a tenth of the table or more (autovacuum's own threshold);
    // below that, statistics of the whole table hardly move and ANALYZE
    // would cost more than the load.
    let changed = (out.rows + out.deleted) as f64;
    if changed > 0.0 {
        let known: f32 =
            sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
                .bind(&target)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| pg_err("reading the target table's size", e))?
                .unwrap_or(-1.0);
        if known < 0.0 || changed >= 0.1 * f64::from(known) {
            exec(conn, format!("ANALYZE {target}")).await?;
        }
    }
    out.seconds = t0.elapsed().as_secs_f64();
    tracing::debug!(table = %out.table, target = %out.target, action = ?out.action, rows = out.rows, deleted = out.deleted, partitions = out.partitions.len(), version, ms = (out.seconds * 1000.0) as u64, "loaded");
    Ok(out)
}

/// An existing target's columns: name, `format_type`, NOT NULL. `None`: no
/// such table.
async fn existing_columns(
    conn: &mut PgConnection,
    target: &str,
) -> Result<Option<Vec<(String, String, bool)>>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(target)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| pg_err("looking up the target table", e))?;
    if !exists {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull
         FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
         ORDER BY attnum",
    )
    .bind(target)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| pg_err("reading the target table's columns", e))?;
    Ok(Some(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    ))
}

async fn create_table(
    conn: &mut PgConnection,
    target: &str,
    t: &Table,
    fields: &[FieldRef],
    partition_cols: &[String],
) -> Result<()> {
    let cols: Vec<String> = fields
        .iter()
        .map(|f| {
            format!(
                "{} {}{}",
                ident(f.name()),
                PgType::for_arrow(f.data_type()).ddl(),
                if f.is_nullable() { "" } else { " NOT NULL" }
            )
        })
        .collect();
    exec(
        conn,
        format!("CREATE TABLE {target} (\n  {}\n)", cols.join(",\n  ")),
    )
    .await?;
    exec(
        conn,
        format!(
            "COMMENT ON TABLE {target} IS {}",
            literal(&format!(
                "{} Loaded from the lake table {} by `shoplake load postgres`.",
                t.doc,
                t.qualified()
            ))
        ),
    )
    .await?;
    // a partition's (or a day's) rows are deleted by value on every reload
    // of it; a BRIN index finds them for a fraction of a B-tree's upkeep
    let key = match partition_cols {
        [] => fields
            .iter()
            .find(|f| f.name() == "date" && PgType::for_arrow(f.data_type()) == PgType::Date)
            .map(|f| f.name().as_str()),
        [col] => Some(col.as_str()),
        _ => None,
    };
    if let Some(col) = key {
        exec(
            conn,
            format!("CREATE INDEX ON {target} USING brin ({})", ident(col)),
        )
        .await?;
    }
    Ok(())
}

/// Adds the lake's new columns to the target; relaxes NOT NULL where the
/// lake allows nulls (or no longer has the column). Returns the columns added.
async fn reconcile_columns(
    conn: &mut PgConnection,
    target: &str,
    fields: &[FieldRef],
    existing: &[(String, String, bool)],
) -> Result<Vec<String>> {
    let mut added = Vec::new();
    for f in fields {
        let ty = PgType::for_arrow(f.data_type());
        match existing.iter().find(|(n, _, _)| n == f.name()) {
            None => {
                exec(
                    conn,
                    format!(
                        "ALTER TABLE {target} ADD COLUMN {} {}",
                        ident(f.name()),
                        ty.ddl()
                    ),
                )
                .await?;
                added.push(f.name().clone());
            }
            Some((_, have, not_null)) => {
                if *have != ty.format_type() {
                    return Err(JobError::Warehouse(format!(
                        "{target}.{} is {have} in PostgreSQL, but the lake's column loads as {}: \
                         drop the table (DROP TABLE {target}) and load again",
                        ident(f.name()),
                        ty.ddl()
                    )));
                }
                if *not_null && f.is_nullable() {
                    exec(
                        conn,
                        format!(
                            "ALTER TABLE {target} ALTER COLUMN {} DROP NOT NULL",
                            ident(f.name())
                        ),
                    )
                    .await?;
                }
            }
        }
    }
    for (name, _, not_null) in existing {
        if *not_null && !fields.iter().any(|f| f.name() == name) {
            exec(
                conn,
                format!(
                    "ALTER TABLE {target} ALTER COLUMN {} DROP NOT NULL",
                    ident(name)
                ),
            )
            .await?;
        }
    }
    if !added.is_empty() {
        tracing::info!(target = %target, columns = %added.join(", "), "new columns added");
    }
    Ok(added)
}

/// The partitions of the files `table` (as loaded) and its version `from`
/// do not share; a full reload when version `from` cannot be read back.
async fn diff_files(table: &DeltaTable, from: u64, col: &str) -> Result<Plan> {
    let mut old = table.clone();
    if let Err(e) = old.load_version(from).await {
        return Ok(Plan::Full(format!(
            "version {from} cannot be read back to compare with ({e})"
        )));
    }
    let files = |t: &DeltaTable| -> Result<BTreeMap<String, Option<String>>> {
        let snapshot = t.snapshot().map_err(|e| {
            JobError::Lake(shoplake_lake::LakeError::delta(t.log_store().name(), e))
        })?;
        Ok(snapshot
            .log_data()
            .iter()
            .map(|f| {
                let part = f.partition_values_map().remove(col).flatten();
                (f.path().into_owned(), part)
            })
            .collect())
    };
    let (before, now) = (files(&old)?, files(table)?);
    let parts = before
        .iter()
        .filter(|(path, _)| !now.contains_key(*path))
        .chain(now.iter().filter(|(path, _)| !before.contains_key(*path)))
        .map(|(_, part)| part.clone())
        .collect();
    Ok(Plan::Replace {
        column: col.to_string(),
        values: parts,
    })
}

/// The values of `key`'s column whose rows the commits after `from` up to
/// `to` changed: for a partition column, the partitions of the files they
/// added or removed with a change of data (a compaction changes none); for
/// days, the days their predicates replaced or deleted. A full reload when
/// the commits cannot say.
async fn changed(table: &DeltaTable, from: u64, to: u64, key: Key<'_>) -> Result<Plan> {
    let store = table.log_store();
    let mut parts = BTreeSet::new();
    let (Key::Partition(col) | Key::Days(col)) = key;
    for v in from + 1..=to {
        let Some(bytes) = store.read_commit_entry(v).await.map_err(|e| {
            JobError::Lake(shoplake_lake::LakeError::delta(table.log_store().name(), e))
        })?
        else {
            return Ok(Plan::Full(format!(
                "the Delta log entry of version {v} is gone (trimmed); cannot tell what changed since {from}"
            )));
        };
        let (mut data_change, mut info) = (false, None);
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| JobError::Internal(format!("Delta log entry {v}: not JSON: {e}")))?;
            if let Some(meta) = action.get("metaData") {
                let cols = meta.get("partitionColumns").and_then(|c| c.as_array());
                let same = match key {
                    Key::Partition(col) => {
                        cols.is_none_or(|c| c.len() == 1 && c[0].as_str() == Some(col))
                    }
                    Key::Days(_) => cols.is_none_or(Vec::is_empty),
                };
                if !same {
                    return Ok(Plan::Full(format!(
                        "version {v} changed the partition columns"
                    )));
                }
            }
            if let Some(i) = action.get("commitInfo") {
                info = Some(i.clone());
            }
            for kind in ["add", "remove"] {
                let Some(file) = action.get(kind) else {
                    continue;
                };
                if file.get("dataChange").and_then(|d| d.as_bool()) == Some(false) {
                    continue; // compaction: the same rows in other files
                }
                data_change = true;
                let Key::Partition(col) = key else {
                    continue;
                };
                let Some(values) = file.get("partitionValues").and_then(|p| p.as_object()) else {
                    return Ok(Plan::Full(format!(
                        "version {v} {kind}s a file without its partition values"
                    )));
                };
                parts.insert(values.get(col).and_then(|x| x.as_str()).map(str::to_string));
            }
        }
        if let (Key::Days(_), true) = (key, data_change) {
            let Some(days) = info.as_ref().and_then(replaced_days) else {
                let param = |k: &str| {
                    let i = info.as_ref()?;
                    i.get("operationParameters")?
                        .get(k)?
                        .as_str()
                        .map(str::to_string)
                };
                let op = info
                    .as_ref()
                    .and_then(|i| i.get("operation")?.as_str().map(str::to_string))
                    .unwrap_or_else(|| "?".into());
                return Ok(Plan::Full(
                    if op == "WRITE"
                        && param("mode").as_deref() == Some("Overwrite")
                        && param("predicate").is_none()
                    {
                        format!("version {v} rewrote the whole table")
                    } else {
                        format!("version {v} ({op}) does not say which days it changed")
                    },
                ));
            };
            parts.extend(days.into_iter().map(Some));
        }
    }
    Ok(Plan::Replace {
        column: col.to_string(),
        values: parts,
    })
}

/// The days a commit replaced or deleted, from its `commitInfo`: a write
/// that overwrote the rows of a predicate, or a delete, whose predicate is
/// `date = '2025-01-05'::date` or `date IN ('2025-01-05'::date, …)` (as
/// delta-rs records shoplake's `date` predicates). `None` for anything else.
fn replaced_days(info: &serde_json::Value) -> Option<Vec<String>> {
    let params = info.get("operationParameters")?;
    let overwrite = match info.get("operation")?.as_str()? {
        "WRITE" => params.get("mode")?.as_str()? == "Overwrite",
        "DELETE" => true,
        _ => false,
    };
    if !overwrite {
        return None;
    }
    predicate_days(params.get("predicate")?.as_str()?)
}

/// The days `pred` selects, if it is `date = 'YYYY-MM-DD'` or
/// `date IN ('YYYY-MM-DD', …)` (each value may end in `::date`, the column
/// may be quoted); `None` for any other predicate.
pub fn predicate_days(pred: &str) -> Option<Vec<String>> {
    let rest = pred.trim();
    let rest = rest
        .strip_prefix("\"date\"")
        .or_else(|| rest.strip_prefix("date"))?
        .trim_start();
    let day = |v: &str| -> Option<String> {
        let v = v.trim();
        let v = v.strip_suffix("::date").unwrap_or(v).trim_end();
        let d = v.strip_prefix('\'')?.strip_suffix('\'')?;
        shoplake_core::time::parse_date(d).ok()?;
        (d.len() == 10).then(|| d.to_string())
    };
    if let Some(v) = rest.strip_prefix('=') {
        return day(v).map(|d| vec![d]);
    }
    let list = rest
        .strip_prefix("IN")
        .or_else(|| rest.strip_prefix("in"))?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    list.split(',').map(day).collect()
}

/// Streams the rows of `table` (its loaded version) matching `filter` into
/// `target` with one binary COPY; returns the rows copied. Reading and
/// encoding run in a task of their own, so PostgreSQL ingests one chunk
/// while the next is encoded.
async fn copy_rows(
    conn: &mut PgConnection,
    table: &DeltaTable,
    target: &str,
    fields: &[FieldRef],
    filter: Option<&str>,
    t: &Table,
) -> Result<u64> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(threads));
    let df_err = |e: datafusion::error::DataFusionError| {
        JobError::Internal(format!("reading {}: {e}", t.qualified()))
    };
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| JobError::Lake(shoplake_lake::LakeError::delta(t.qualified(), e)))?;
    let provider = table.table_provider().await.map_err(df_err)?;
    ctx.register_table("t", provider).map_err(df_err)?;
    let cols: Vec<String> = fields.iter().map(|f| ident(f.name())).collect();
    let mut sql = format!("SELECT {} FROM t", cols.join(", "));
    if let Some(f) = filter {
        sql.push_str(&format!(" WHERE {f}"));
    }
    let mut stream = ctx
        .sql(&sql)
        .await
        .map_err(df_err)?
        .execute_stream()
        .await
        .map_err(df_err)?;
    let mut encoder = CopyEncoder::new(fields)?;

    // full chunks go to the sender; sent ones come back to be filled again
    // (fresh 1 MiB buffers cost the kernel a page zeroing each)
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let (back, mut free) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let table_name = t.qualified();
    let producer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 2);
        buf.extend_from_slice(HEADER);
        let mut rows = 0u64;
        let (mut read, mut encode) = (Duration::ZERO, Duration::ZERO);
        let mut t = Instant::now();
        while let Some(batch) = stream.next().await {
            let batch =
                batch.map_err(|e| JobError::Internal(format!("reading {table_name}: {e}")))?;
            read += t.elapsed();
            t = Instant::now();
            rows += batch.num_rows() as u64;
            encoder.encode(&batch, &mut buf)?;
            encode += t.elapsed();
            if buf.len() >= CHUNK_BYTES {
                let next = free
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 2));
                let full = std::mem::replace(&mut buf, next);
                if tx.send(full).await.is_err() {
                    return Ok((rows, encoder.nul_dropped())); // the COPY failed; it reports why
                }
            }
            t = Instant::now();
        }
        buf.extend_from_slice(TRAILER);
        let _ = tx.send(buf).await;
        tracing::debug!(table = %table_name, rows, read_ms = read.as_millis() as u64, encode_ms = encode.as_millis() as u64, "COPY data produced");
        Ok::<_, JobError>((rows, encoder.nul_dropped()))
    });

    let columns = cols.join(", ");
    let copy_sql = format!("COPY {target} ({columns}) FROM STDIN (FORMAT binary)");
    let mut copy = conn
        .copy_in_raw(&copy_sql)
        .await
        .map_err(|e| pg_err(&copy_sql, e))?;
    let mut send_err = None;
    let (mut bytes, mut sending) = (0usize, Duration::ZERO);
    while let Some(mut chunk) = rx.recv().await {
        let t = Instant::now();
        bytes += chunk.len();
        if let Err(e) = copy.send(chunk.as_slice()).await {
            send_err = Some(e);
            break;
        }
        sending += t.elapsed();
        chunk.clear();
        let _ = back.try_send(chunk);
    }
    drop(rx);
    let produced = producer
        .await
        .map_err(|e| JobError::Internal(format!("COPY encoder task: {e}")));
    let (rows, nul_dropped) = match (produced, send_err) {
        (Ok(Ok(done)), None) => done,
        (Ok(Err(e)) | Err(e), _) => {
            let _ = copy.abort(e.to_string()).await;
            return Err(e);
        }
        (Ok(Ok(_)), Some(e)) => {
            // the server's own error, if it sent one, says more
            return Err(match copy.finish().await {
                Err(server) => pg_err(&format!("COPY into {target}"), server),
                Ok(_) => pg_err(&format!("COPY into {target}"), e),
            });
        }
    };
    let t_finish = Instant::now();
    let copied = copy
        .finish()
        .await
        .map_err(|e| pg_err(&format!("COPY into {target}"), e))?;
    tracing::debug!(table = %t.qualified(), bytes, send_ms = sending.as_millis() as u64, finish_ms = t_finish.elapsed().as_millis() as u64, "COPY sent");
    if copied != rows {
        return Err(JobError::Internal(format!(
            "COPY into {target}: {copied} rows arrived of {rows} sent"
        )));
    }
    if nul_dropped > 0 {
        tracing::warn!(table = %t.qualified(), nul_dropped, "NUL characters dropped from text values (PostgreSQL text cannot hold them)");
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_name_their_days_or_nothing() {
        let days = |p: &str| predicate_days(p);
        assert_eq!(
            days("date = '2025-02-15'::date"),
            Some(vec!["2025-02-15".into()])
        );
        assert_eq!(days("date = '2025-02-15'"), Some(vec!["2025-02-15".into()]));
        assert_eq!(
            days("date IN ('2025-01-01'::date, '2025-01-02'::date)"),
            Some(vec!["2025-01-01".into(), "2025-01-02".into()])
        );
        assert_eq!(
            days("\"date\" IN ('2025-01-01')"),
            Some(vec!["2025-01-01".into()])
        );
        for other in [
            "date = '2025-02-15'::date AND source = 'file'",
            "date >= '2025-02-15'",
            "date = '2025-02-31'",
            "date = 2025",
            "dates = '2025-02-15'",
            "date IN ('2025-01-01', x)",
            "true",
        ] {
            assert_eq!(days(other), None, "{other}");
        }
    }
}
