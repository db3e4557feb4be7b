//! The operational store: run history and alerts, in SQLite
//! (`<data>/state/shoplake.db`).
//!
//! The lake keeps the data; this keeps what shoplake did to it: every
//! pipeline run (trigger, dates, per-step status, durations, rows, errors)
//! and every alert (raised, repeated, cleared). SQLite in WAL mode lets the
//! CLI read while `shoplake serve` writes. Calls are short and synchronous;
//! async callers use them from a blocking thread or accept a few ms.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{JobError, Result};

/// The schema; `PRAGMA user_version` records how far it was applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        trigger     TEXT NOT NULL,
        status      TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        seconds     REAL,
        dates       TEXT NOT NULL DEFAULT '',
        pid         INTEGER NOT NULL,
        error       TEXT
    );
    CREATE INDEX runs_started ON runs(started_at);
    CREATE TABLE steps (
        run_id     TEXT NOT NULL REFERENCES runs(run_id),
        seq        INTEGER NOT NULL,
        name       TEXT NOT NULL,
        status     TEXT NOT NULL,
        started_at TEXT NOT NULL,
        seconds    REAL,
        rows_in    INTEGER NOT NULL DEFAULT 0,
        rows_out   INTEGER NOT NULL DEFAULT 0,
        rejected   INTEGER NOT NULL DEFAULT 0,
        attempts   INTEGER NOT NULL DEFAULT 1,
        detail     TEXT NOT NULL DEFAULT '',
        error      TEXT,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        key         TEXT NOT NULL,
        kind        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        message     TEXT NOT NULL,
        run_id      TEXT,
        raised_at   TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        repeats     INTEGER NOT NULL DEFAULT 0,
        cleared_at  TEXT,
        delivery    TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alerts_open ON alerts(key) WHERE cleared_at IS NULL;",
    // accounts (see accounts.rs)
    "CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        changed_at    TEXT NOT NULL
    );
    CREATE TABLE api_tokens (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        name         TEXT NOT NULL,
        role         TEXT NOT NULL,
        hash         TEXT NOT NULL UNIQUE,
        prefix       TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        expires_at   TEXT,
        revoked_at   TEXT,
        last_used_at TEXT
    );
    CREATE TABLE sessions (
        hash       TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );",
    // saved SQL queries of the dashboard (see accounts.rs)
    "CREATE TABLE saved_queries (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        owner      TEXT NOT NULL,
        name       TEXT NOT NULL,
        sql        TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (owner, name)
    );",
];

/// A run's or step's state.
pub mod status {
    /// Started, not finished.
    pub const RUNNING: &str = "running";
    /// Finished without error.
    pub const SUCCEEDED: &str = "succeeded";
    /// Finished with an error.
    pub const FAILED: &str = "failed";
    /// Not run: a step it depends on failed (or quality blocked it).
    pub const SKIPPED: &str = "skipped";
    /// The process died while it ran (found by the next run).
    pub const INTERRUPTED: &str = "interrupted";
}

/// The operational store of one data directory.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> JobError + '_ {
    move |e| JobError::Store(format!("{}: {e}", path.display()))
}

/// One pipeline run, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// What started it: `cli`, `schedule`, `files`, `backfill`, `demo`.
    pub trigger: String,
    /// running, succeeded, failed or interrupted.
    pub status: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once finished.
    pub finished_at: Option<String>,
    /// Wall time.
    pub seconds: Option<f64>,
    /// The dates (partitions) it processed, comma-separated.
    pub dates: String,
    /// The process that ran it.
    pub pid: u32,
    /// Why it failed.
    pub error: Option<String>,
}

/// One step of a run, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepRecord {
    /// Order in the run.
    pub seq: u32,
    /// Step name.
    pub name: String,
    /// running, succeeded, failed or skipped.
    pub status: String,
    /// RFC 3339.
    pub started_at: String,
    /// Wall time.
    pub seconds: Option<f64>,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows quarantined.
    pub rejected: u64,
    /// Tries (1 unless retried).
    pub attempts: u32,
    /// A short note.
    pub detail: String,
    /// Why it failed.
    pub error: Option<String>,
}

/// One alert, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRecord {
    /// Row id.
    pub id: i64,
    /// The condition (`quality:processed.transactions:unique(transaction_id)`).
    pub key: String,
    /// pipeline_failure, quality, freshness, anomaly or schema_drift.
    pub kind: String,
    /// warn or error.
    pub severity: String,
    /// What happened.
    pub message: String,
    /// The run that raised it.
    pub run_id: Option<String>,
    /// First seen, RFC 3339.
    pub raised_at: String,
    /// Last seen.
    pub last_seen: String,
    /// Times seen again while open (not sent again).
    pub repeats: u64,
    /// When the condition cleared; None while open.
    pub cleared_at: Option<String>,
    /// Where it was delivered, and how that went.
    pub delivery: String,
}

/// The clock, RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (creating and migrating) the store at `<state_dir>/shoplake.db`.
    pub fn open(state_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(state_dir).map_err(|e| JobError::Io(state_dir.into(), e))?;
        let path = state_dir.join("shoplake.db");
        let err = db_err(&path);
        let mut conn = Connection::open(&path).map_err(&err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(&err)?;
        let applied: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&err)?;
        let applied = applied.max(0) as usize;
        if applied > MIGRATIONS.len() {
            return Err(JobError::Store(format!(
                "{}: written by a newer shoplake (schema {applied}, this build knows {})",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction().map_err(&err)?;
            tx.execute_batch(m).map_err(&err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(&err)?;
            tx.commit().map_err(&err)?;
        }
        drop(err);
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(db_err(&self.path))
    }

    /// Marks runs still `running` as interrupted: the caller holds the
    /// pipeline lock, so their process is gone. Returns their ids.
    pub fn interrupt_stale_runs(&self) -> Result<Vec<String>> {
        let now = now_rfc3339();
        self.with(|c| {
            let ids: Vec<String> = c
                .prepare("SELECT run_id FROM runs WHERE status = 'running' ORDER BY started_at")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            c.execute(
                "UPDATE steps SET status = 'interrupted', error = 'the process died during this step'
                 WHERE status = 'running'",
                [],
            )?;
            c.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ?1,
                 error = 'the process died during the run; the next run reprocessed its partitions'
                 WHERE status = 'running'",
                params![now],
            )?;
            Ok(ids)
        })
    }

    /// Records the start of a run.
    pub fn start_run(&self, run_id: &str, trigger: &str, started_at: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (run_id, trigger, status, started_at, pid) VALUES (?1, ?2, 'running', ?3, ?4)",
                params![run_id, trigger, started_at, std::process::id()],
            )
            .map(drop)
        })
    }

    /// Records the dates a run processes (known after its first step).
    pub fn set_run_dates(&self, run_id: &str, dates: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET dates = ?2 WHERE run_id = ?1",
                params![run_id, dates],
            )
            .map(drop)
        })
    }

    /// Records the end of a run.
    pub fn finish_run(
        &self,
        run_id: &str,
        status: &str,
        seconds: f64,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_rfc3339();
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, seconds = ?4, error = ?5 WHERE run_id = ?1",
                params![run_id, status, now, seconds, error],
            )
            .map(drop)
        })
    }

    /// Records a step (inserted when it starts, replaced when it ends).
    pub fn put_step(&self, run_id: &str, s: &StepRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO steps
                 (run_id, seq, name, status, started_at, seconds, rows_in, rows_out, rejected, attempts, detail, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run_id,
                    s.seq,
                    s.name,
                    s.status,
                    s.started_at,
                    s.seconds,
                    s.rows_in as i64,
                    s.rows_out as i64,
                    s.rejected as i64,
                    s.attempts,
                    s.detail,
                    s.error
                ],
            )
            .map(drop)
        })
    }

    /// The latest `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            c.prepare(
                "SELECT run_id, trigger, status, started_at, finished_at, seconds, dates, pid, error
                 FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?1",
            )?
            .query_map(params![limit as i64], run_row)?
            .collect()
        })
    }

    /// One run and its steps; `None` if unknown. `latest` is the newest run.
    pub fn run(&self, run_id: &str) -> Result<Option<(RunRecord, Vec<StepRecord>)>> {
        self.with(|c| {
            let run = if run_id == "latest" {
                c.query_row(
                    "SELECT run_id, trigger, status, started_at, finished_at, seconds, dates, pid, error
                     FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1",
                    [],
                    run_row,
                )
            } else {
                c.query_row(
                    "SELECT run_id, trigger, status, started_at, finished_at, seconds, dates, pid, error
                     FROM runs WHERE run_id = ?1",
                    params![run_id],
                    run_row,
                )
            }
            .optional()?;
            let Some(run) = run else { return Ok(None) };
            let steps = c
                .prepare(
                    "SELECT seq, name, status, started_at, seconds, rows_in, rows_out, rejected, attempts, detail, error
                     FROM steps WHERE run_id = ?1 ORDER BY seq",
                )?
                .query_map(params![run.run_id], |r| {
                    Ok(StepRecord {
                        seq: r.get(0)?,
                        name: r.get(1)?,
                        status: r.get(2)?,
                        started_at: r.get(3)?,
                        seconds: r.get(4)?,
                        rows_in: r.get::<_, i64>(5)? as u64,
                        rows_out: r.get::<_, i64>(6)? as u64,
                        rejected: r.get::<_, i64>(7)? as u64,
                        attempts: r.get(8)?,
                        detail: r.get(9)?,
                        error: r.get(10)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((run, steps)))
        })
    }

    /// The open alert of `key`, if any.
    pub fn open_alert(&self, key: &str) -> Result<Option<AlertRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("{ALERT_SELECT} WHERE key = ?1 AND cleared_at IS NULL"),
                params![key],
                alert_row,
            )
            .optional()
        })
    }

    /// Records a new open alert; returns its id.
    pub fn insert_alert(
        &self,
        key: &str,
        kind: &str,
        severity: &str,
        message: &str,
        run_id: Option<&str>,
    ) -> Result<i64> {
        let now = now_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT INTO alerts (key, kind, severity, message, run_id, raised_at, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![key, kind, severity, message, run_id, now],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Counts one more sighting of an open alert.
    pub fn repeat_alert(&self, id: i64, message: &str) -> Result<()> {
        let now = now_rfc3339();
        self.with(|c| {
            c.execute(
                "UPDATE alerts SET repeats = repeats + 1, last_seen = ?2, message = ?3 WHERE id = ?1",
                params![id, now, message],
            )
            .map(drop)
        })
    }

    /// Records how an alert's delivery went.
    pub fn set_delivery(&self, id: i64, delivery: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE alerts SET delivery = ?2 WHERE id = ?1",
                params![id, delivery],
            )
            .map(drop)
        })
    }

    /// Clears the open alert of `key`; returns it if there was one.
    pub fn clear_alert(&self, key: &str) -> Result<Option<AlertRecord>> {
        let Some(open) = self.open_alert(key)? else {
            return Ok(None);
        };
        let now = now_rfc3339();
        self.with(|c| {
            c.execute(
                "UPDATE alerts SET cleared_at = ?2 WHERE id = ?1",
                params![open.id, now],
            )
            .map(drop)
        })?;
        Ok(Some(open))
    }

    /// Open alerts whose key starts with `prefix`.
    pub fn open_alerts(&self, prefix: &str) -> Result<Vec<AlertRecord>> {
        self.with(|c| {
            c.prepare(&format!(
                "{ALERT_SELECT} WHERE cleared_at IS NULL AND substr(key, 1, length(?1)) = ?1 ORDER BY id"
            ))?
            .query_map(params![prefix], alert_row)?
            .collect()
        })
    }

    /// The latest `limit` alerts, newest first.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>> {
        self.with(|c| {
            c.prepare(&format!("{ALERT_SELECT} ORDER BY id DESC LIMIT ?1"))?
                .query_map(params![limit as i64], alert_row)?
                .collect()
        })
    }
}

const ALERT_SELECT: &str = "SELECT id, key, kind, severity, message, run_id, raised_at, last_seen, repeats, cleared_at, delivery FROM alerts";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        run_id: r.get(0)?,
        trigger: r.get(1)?,
        status: r.get(2)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        seconds: r.get(5)?,
        dates: r.get(6)?,
        pid: r.get(7)?,
        error: r.get(8)?,
    })
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRecord> {
    Ok(AlertRecord {
        id: r.get(0)?,
        key: r.get(1)?,
        kind: r.get(2)?,
        severity: r.get(3)?,
        message: r.get(4)?,
        run_id: r.get(5)?,
        raised_at: r.get(6)?,
        last_seen: r.get(7)?,
        repeats: r.get::<_, i64>(8)? as u64,
        cleared_at: r.get(9)?,
        delivery: r.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_steps_and_interrupted_runs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.start_run("r1", "cli", "2026-01-01T00:00:00.000Z")
            .unwrap();
        let step = StepRecord {
            seq: 0,
            name: "validate".into(),
            status: status::SUCCEEDED.into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            seconds: Some(0.5),
            rows_in: 3,
            rows_out: 2,
            rejected: 1,
            attempts: 1,
            detail: "d".into(),
            error: None,
        };
        s.put_step("r1", &step).unwrap();
        s.finish_run("r1", status::SUCCEEDED, 1.0, None).unwrap();
        s.start_run("r2", "schedule", "2026-01-01T01:00:00.000Z")
            .unwrap();
        // reopening migrates nothing twice and sees the same rows
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.interrupt_stale_runs().unwrap(), vec!["r2".to_string()]);
        let runs = s.runs(10).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run_id, "r2");
        assert_eq!(runs[0].status, status::INTERRUPTED);
        let (r1, steps) = s.run("r1").unwrap().unwrap();
        assert_eq!(r1.status, status::SUCCEEDED);
        assert_eq!(steps, vec![step]);
        assert_eq!(s.run("latest").unwrap().unwrap().0.run_id, "r2");
        assert!(s.run("nope").unwrap().is_none());
    }

    #[test]
    fn alerts_open_repeat_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.open_alert("k").unwrap().is_none());
        let id = s.insert_alert("k", "quality", "error", "m", None).unwrap();
        s.repeat_alert(id, "m2").unwrap();
        let open = s.open_alert("k").unwrap().unwrap();
        assert_eq!((open.repeats, open.message.as_str()), (1, "m2"));
        assert_eq!(s.open_alerts("k").unwrap().len(), 1);
        assert!(s.clear_alert("k").unwrap().is_some());
        assert!(s.open_alert("k").unwrap().is_none());
        assert!(s.clear_alert("k").unwrap().is_none());
        assert_eq!(s.alerts(10).unwrap().len(), 1);
    }
}
