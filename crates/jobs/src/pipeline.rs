//! `shoplake pipeline run`: validate → catalog → ETL (products,
//! transactions, clickstream + sessions, reviews, in parallel) → curated models
//! → summary. Incremental: a raw partition is processed when its files
//! changed since the last successful run (or when forced).
//!
//! ## Crash safety
//! Every table changes by one atomic Delta commit that replaces exactly the
//! dates being processed, and the bookmarks (`state/pipeline.json`) are
//! written only after every commit of the run. A run killed at any point
//! leaves each table as it was before or after one of its commits; the next
//! run finds the same partitions unprocessed and replaces them again, so the
//! tables end up exactly as if the first run had finished.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoplake_core::config::Config;
use shoplake_core::schema::{self, Table};
use shoplake_core::sources::Source;
use shoplake_core::time;
use shoplake_lake::catalog::{RawFile, list_raw_files};
use shoplake_lake::{Lake, WriteMode, dates_predicate, quarantine, state};
use shoplake_query::QueryEngine;

use crate::alerts::{Alert, Alerter, Kind};
use crate::curate;
use crate::error::{JobError, Result};
use crate::etl::{self, EtlContext, EtlOutput};
use crate::quality;
use crate::sessions;
use crate::store::{self, StepRecord, Store};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    /// First date to consider (inclusive).
    pub from: Option<i32>,
    /// Last date to consider (inclusive).
    pub to: Option<i32>,
    /// Reprocess partitions even when unchanged.
    pub force: bool,
    /// What started the run, as recorded in the run history: `cli` (the
    /// default), `schedule`, `files`, `demo`, ...
    pub trigger: String,
    /// Faults to inject into steps' attempts (tests of retries and timeouts).
    pub faults: Option<FaultInjector>,
}

/// A fault injected into one attempt of a step.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The attempt fails with this (passing) error.
    Fail(String),
    /// The attempt hangs this long first (to run past the step timeout).
    Stall(Duration),
}

/// Decides, per (step, attempt number from 1), whether to inject a fault.
pub type FaultFn = dyn Fn(&str, u32) -> Option<Fault> + Send + Sync;

/// A shareable [`FaultFn`].
#[derive(Clone)]
pub struct FaultInjector(pub std::sync::Arc<FaultFn>);

impl std::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultInjector")
    }
}

/// How a step's attempts are made: each within the step timeout; a passing
/// failure is retried after a backoff that doubles.
struct Retry {
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    faults: Option<FaultInjector>,
}

impl Retry {
    /// Runs `f` until it succeeds, fails for good, or the retries are
    /// spent; returns the result and the attempts made. `f` must be
    /// idempotent (every step commit replaces whole partitions).
    async fn run<T, F, Fut>(&self, step: &str, mut f: F) -> (Result<T>, u32)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fault = self.faults.as_ref().and_then(|h| (h.0)(step, attempt));
            let fut = async {
                match fault {
                    Some(Fault::Fail(m)) => return Err(JobError::Transient(m)),
                    Some(Fault::Stall(d)) => tokio::time::sleep(d).await,
                    None => {}
                }
                f().await
            };
            let r = match tokio::time::timeout(self.timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(JobError::Timeout(step.to_string(), self.timeout.as_secs())),
            };
            match r {
                Err(e) if e.is_transient() && attempt <= self.retries => {
                    tracing::warn!(step, attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "step attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                r => return (r, attempt),
            }
        }
    }
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Step name.
    pub name: String,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows quarantined.
    pub rejected: u64,
    /// Wall time.
    pub seconds: f64,
    /// A short note.
    pub detail: String,
}

/// Hears about progress (the CLI draws it; libraries never print).
pub trait Observer: Send + Sync {
    /// A step began.
    fn step_started(&self, _name: &str) {}
    /// A step ended.
    fn step_finished(&self, _report: &StepReport) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// Wall time.
    pub seconds: f64,
    /// Steps in order.
    pub steps: Vec<StepReport>,
    /// Dates (re)processed.
    pub dates: Vec<String>,
    /// Whether the catalogue was rebuilt.
    pub products_rebuilt: bool,
    /// Clickstream events processed (for throughput).
    pub events: u64,
    /// Rows per processed and curated table after the run.
    pub tables: Vec<(String, u64)>,
    /// What the quality step found (empty when it did not run).
    pub quality: Vec<quality::CheckResult>,
}

impl RunSummary {
    /// True when nothing needed processing.
    pub fn nothing_to_do(&self) -> bool {
        self.dates.is_empty() && !self.products_rebuilt
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Bookmarks {
    /// source → partition date → fingerprint of its files.
    sources: BTreeMap<String, BTreeMap<String, String>>,
    /// [`schema::layout_fingerprint`] of the build that last completed a run:
    /// while it is unchanged, stored tables need no schema check.
    #[serde(default)]
    layout: u64,
}

fn bookmarks_path(lake: &Lake) -> std::path::PathBuf {
    lake.state_dir().join("pipeline.json")
}

fn fingerprint(files: &[RawFile]) -> String {
    let mut h = blake3::Hasher::new();
    for f in files {
        h.update(
            f.path
                .file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update(&f.size.to_le_bytes());
        h.update(&f.modified_ms.to_le_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}

/// Partitions of one source that need processing.
struct SourcePlan {
    /// (date, files) to process; files may be empty (a partition that vanished).
    parts: Vec<(i32, Vec<RawFile>)>,
    /// New fingerprints to record after success.
    marks: BTreeMap<String, String>,
    /// Every partition date present in raw.
    all_dates: BTreeSet<i32>,
}

fn plan_source(
    lake: &Lake,
    source: Source,
    marks: &BTreeMap<String, String>,
    opts: &PipelineOptions,
) -> Result<SourcePlan> {
    let files = list_raw_files(&lake.raw_dir(source))?;
    let mut by_part: BTreeMap<String, Vec<RawFile>> = BTreeMap::new();
    for f in files {
        by_part.entry(f.partition.clone()).or_default().push(f);
    }
    let in_range = |d: i32| opts.from.is_none_or(|f| d >= f) && opts.to.is_none_or(|t| d <= t);
    let mut plan = SourcePlan {
        parts: Vec::new(),
        marks: marks.clone(),
        all_dates: BTreeSet::new(),
    };
    for (part, files) in by_part {
        let d = time::parse_date(&part).map_err(JobError::Invalid)?;
        plan.all_dates.insert(d);
        if !in_range(d) {
            continue;
        }
        let fp = fingerprint(&files);
        if opts.force || marks.get(&part) != Some(&fp) {
            plan.marks.insert(part, fp);
            plan.parts.push((d, files));
        }
    }
    // partitions processed before whose files are gone: empty them (not
    // those the raw-zone retention retired: their rows stay)
    for (part, mark) in marks {
        let d = time::parse_date(part).map_err(JobError::Invalid)?;
        if in_range(d) && !plan.all_dates.contains(&d) && mark != RETIRED {
            plan.marks.remove(part);
            plan.parts.push((d, Vec::new()));
        }
    }
    plan.parts.sort_by_key(|(d, _)| *d);
    Ok(plan)
}

/// The bookmark of a raw partition deleted by retention
/// ([`retire_raw_partitions`]): its processed rows are kept.
const RETIRED: &str = "retired";

/// Takes the pipeline lock of `lake` (one run, or maintenance, at a time
/// per data directory), waiting for the holder.
pub(crate) fn lock(lake: &Lake) -> Result<std::fs::File> {
    let lock_path = lake.state_dir().join("pipeline.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| JobError::Io(lock_path.clone(), e))?;
    if lock.try_lock().is_err() {
        tracing::info!(
            "another pipeline run holds {}; waiting for it",
            lock_path.display()
        );
        lock.lock()
            .map_err(|e| JobError::Io(lock_path.clone(), e))?;
    }
    Ok(lock)
}

/// Deletes the raw partitions of batch sources dated before `before`
/// (days since the epoch) and bookmarks them as retired, so the pipeline
/// keeps their processed rows instead of emptying those dates. Returns the
/// `source/date` partitions and bytes removed. The caller holds [`lock`].
pub(crate) fn retire_raw_partitions(
    lake: &Lake,
    before: i32,
    dry_run: bool,
) -> Result<(Vec<String>, u64)> {
    let mut marks: Bookmarks = state::read_json(&bookmarks_path(lake))?;
    let mut removed = Vec::new();
    let mut bytes = 0u64;
    for s in Source::ALL {
        let files = list_raw_files(&lake.raw_dir(s))?;
        let mut parts: BTreeMap<String, Vec<RawFile>> = BTreeMap::new();
        for f in files {
            parts.entry(f.partition.clone()).or_default().push(f);
        }
        for (part, files) in parts {
            let Ok(d) = time::parse_date(&part) else {
                continue;
            };
            let processed = marks
                .sources
                .get(s.name())
                .and_then(|m| m.get(&part))
                .is_some_and(|fp| *fp == fingerprint(&files));
            // never delete what was not processed yet
            if d >= before || !processed {
                continue;
            }
            bytes += files.iter().map(|f| f.size).sum::<u64>();
            removed.push(format!("{}/{part}", s.name()));
            if dry_run {
                continue;
            }
            let dir = lake.raw_dir(s).join(format!("date={part}"));
            std::fs::remove_dir_all(&dir).map_err(|e| JobError::Io(dir.clone(), e))?;
            marks
                .sources
                .entry(s.name().to_string())
                .or_default()
                .insert(part, RETIRED.to_string());
        }
    }
    if !dry_run && !removed.is_empty() {
        state::write_json(&bookmarks_path(lake), &marks)?;
    }
    Ok((removed, bytes))
}

fn failpoint(step: &str) {
    if std::env::var("SHOPLAKE_FAILPOINT").is_ok_and(|v| v == step) {
        // Simulates a crash (kill -9) right after `step` committed.
        std::process::abort();
    }
}

struct Runner<'a> {
    obs: &'a dyn Observer,
    steps: Vec<StepReport>,
    store: Store,
    run_id: String,
    /// Steps under way (independent ones run side by side): their records,
    /// kept to mark them failed.
    current: Vec<StepRecord>,
    /// Steps started or skipped so far (the next one's sequence number).
    seq: u32,
}

impl Runner<'_> {
    fn start(&mut self, name: &str) -> Instant {
        self.obs.step_started(name);
        let rec = StepRecord {
            seq: self.seq,
            name: name.to_string(),
            status: store::status::RUNNING.into(),
            started_at: store::now_rfc3339(),
            seconds: None,
            rows_in: 0,
            rows_out: 0,
            rejected: 0,
            attempts: 1,
            detail: String::new(),
            error: None,
        };
        self.seq += 1;
        self.record(&rec);
        self.current.push(rec);
        Instant::now()
    }

    /// Records a step; the history is a report, so failing to write it
    /// is logged, not fatal.
    fn record(&self, rec: &StepRecord) {
        if let Err(e) = self.store.put_step(&self.run_id, rec) {
            tracing::warn!(error = %e, "run history not recorded");
        }
    }

    /// Records a step that did not run, and why.
    fn skip(&mut self, name: &str, why: &str) {
        let rec = StepRecord {
            seq: self.seq,
            name: name.to_string(),
            status: store::status::SKIPPED.into(),
            started_at: store::now_rfc3339(),
            seconds: Some(0.0),
            rows_in: 0,
            rows_out: 0,
            rejected: 0,
            attempts: 0,
            detail: why.to_string(),
            error: None,
        };
        self.seq += 1;
        self.record(&rec);
        self.steps.push(StepReport {
            name: name.to_string(),
            rows_in: 0,
            rows_out: 0,
            rejected: 0,
            seconds: 0.0,
            detail: format!("skipped: {why}"),
        });
    }

    fn take(&mut self, name: &str) -> Option<StepRecord> {
        let i = self.current.iter().position(|r| r.name == name)?;
        Some(self.current.remove(i))
    }

    /// Marks every step under way failed.
    fn fail(&mut self, error: &str) {
        for mut rec in std::mem::take(&mut self.current) {
            rec.status = store::status::FAILED.into();
            rec.error = Some(error.to_string());
            self.record(&rec);
        }
    }

    /// Marks the step `name` failed.
    fn fail_step(&mut self, name: &str, error: &str) {
        if let Some(mut rec) = self.take(name) {
            rec.status = store::status::FAILED.into();
            rec.error = Some(error.to_string());
            self.record(&rec);
        }
    }

    /// Notes the attempts the step `name` took.
    fn attempts(&mut self, name: &str, n: u32) {
        if let Some(rec) = self.current.iter_mut().find(|r| r.name == name) {
            rec.attempts = rec.attempts.max(n);
        }
    }

    fn finish(
        &mut self,
        name: &str,
        t0: Instant,
        rows_in: u64,
        rows_out: u64,
        rejected: u64,
        detail: String,
    ) {
        let r = StepReport {
            name: name.to_string(),
            rows_in,
            rows_out,
            rejected,
            seconds: t0.elapsed().as_secs_f64(),
            detail,
        };
        if let Some(mut rec) = self.take(name) {
            rec.status = store::status::SUCCEEDED.into();
            rec.seconds = Some(r.seconds);
            rec.rows_in = rows_in;
            rec.rows_out = rows_out;
            rec.rejected = rejected;
            rec.detail = r.detail.clone();
            self.record(&rec);
        }
        self.obs.step_finished(&r);
        self.steps.push(r);
        failpoint(name);
    }
}

/// Writes an ETL output: the processed rows replace the `dates` partitions
/// (only rows with `only`, when given), the pipeline's quarantine rows those of
/// the same dates.
async fn commit_etl(
    lake: &Lake,
    table: &Table,
    source: Source,
    out: &EtlOutput,
    dates: &[i32],
    only: Option<(&str, &str)>,
    threads: usize,
) -> Result<()> {
    // cloned (Arc'd columns), not taken: a retried attempt writes them again
    let batches = out.batches.clone();
    lake.replace_dates(table, dates, batches, only, threads)
        .await?;
    let q = out.quarantine.clone();
    lake.replace_dates(
        quarantine::table(source),
        dates,
        q,
        Some(("stage", "pipeline")),
        threads,
    )
    .await?;
    Ok(())
}

fn spawn_etl(
    ctx: EtlContext,
    parts: Vec<(i32, Vec<RawFile>)>,
    f: fn(&EtlContext, &etl::Partitions) -> Result<EtlOutput>,
) -> tokio::task::JoinHandle<Result<EtlOutput>> {
    tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let r = f(&ctx, &parts);
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            rows = r.as_ref().map_or(0, |o| o.rows_out),
            "ETL parse finished"
        );
        r
    })
}

async fn join(h: tokio::task::JoinHandle<Result<EtlOutput>>) -> Result<EtlOutput> {
    h.await
        .map_err(|e| JobError::Internal(format!("ETL task failed: {e}")))?
}

/// Raw bytes of clickstream processed at once (about 1.5M events).
const CLICKSTREAM_GROUP_BYTES: u64 = 256 << 20;

/// Consecutive partitions grouped so each group's files add up to about
/// `max_bytes` (a single bigger partition is a group of its own).
fn date_groups(parts: &etl::Partitions, max_bytes: u64) -> Vec<Vec<(i32, Vec<RawFile>)>> {
    let mut groups = Vec::new();
    let mut cur: Vec<(i32, Vec<RawFile>)> = Vec::new();
    let mut bytes = 0u64;
    for (d, files) in parts {
        let size: u64 = files.iter().map(|f| f.size).sum();
        if !cur.is_empty() && bytes + size > max_bytes {
            groups.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push((*d, files.clone()));
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

/// Commits one group of clickstream partitions and sessionises its days;
/// returns the number of sessions.
async fn clickstream_group(
    engine: &QueryEngine,
    lake: &Lake,
    cfg: &Config,
    group: &etl::Partitions,
    out: &EtlOutput,
    threads: usize,
) -> Result<u64> {
    let dates: Vec<i32> = group.iter().map(|(d, _)| *d).collect();
    let dp = dates_predicate(&dates);
    let timeout = cfg.pipeline.session_timeout_minutes;
    // The new events are in memory: when the days hold no events from other
    // sources (the collector), sessionise them while they are written.
    let others = engine
        .run_internal(&format!(
            "SELECT 1 FROM processed.events WHERE {dp} AND protocol <> 'file' LIMIT 1"
        ))
        .await?;
    let in_memory = others
        .iter()
        .all(|b| b.num_rows() == 0)
        .then(|| derive_sessions(out.batches.clone(), timeout));
    commit_etl(
        lake,
        &schema::EVENTS,
        Source::Clickstream,
        out,
        &dates,
        Some(("protocol", "file")),
        threads,
    )
    .await?;
    match in_memory {
        Some(task) => write_sessions(lake, &dates, task, threads).await,
        None => Ok(sessions_from_table(lake, cfg, &dates, threads).await?.0),
    }
}

/// Sessions and product activity derived from one set of events.
type Derived = (
    Option<arrow::array::RecordBatch>,
    Option<arrow::array::RecordBatch>,
);

/// Sessionises `evs` and counts their product activity on a blocking thread.
fn derive_sessions(
    evs: Vec<arrow::array::RecordBatch>,
    timeout_minutes: u32,
) -> tokio::task::JoinHandle<Result<Derived>> {
    tokio::task::spawn_blocking(move || {
        Ok((
            sessions::sessionise(&evs, timeout_minutes)?,
            sessions::product_activity(&evs)?,
        ))
    })
}

/// Replaces `dates` of `processed.sessions` and `processed.product_activity`
/// with what `task` derived; returns the sessions written.
async fn write_sessions(
    lake: &Lake,
    dates: &[i32],
    task: tokio::task::JoinHandle<Result<Derived>>,
    threads: usize,
) -> Result<u64> {
    let (sess, activity) = task
        .await
        .map_err(|e| JobError::Internal(format!("sessionisation failed: {e}")))??;
    let n = sess.as_ref().map_or(0, |b| b.num_rows() as u64);
    lake.replace_dates(
        &schema::SESSIONS,
        dates,
        sess.into_iter().collect(),
        None,
        threads,
    )
    .await?;
    lake.replace_dates(
        &schema::PRODUCT_ACTIVITY,
        dates,
        activity.into_iter().collect(),
        None,
        threads,
    )
    .await?;
    Ok(n)
}

/// Sessionises days from `processed.events` as stored (days holding events
/// from the collector, not only from files); returns the sessions and the
/// most a day's sort spilled to disk (bytes).
///
/// One day at a time, its events streamed in session order into a
/// [`sessions::Sessioniser`]: the sort spills to disk past
/// `pipeline.memory_limit_mb`, so memory stays bounded however many events a
/// day collected and however long its sessions are (the day's sessions,
/// far fewer than its events, are written in one commit).
async fn sessions_from_table(
    lake: &Lake,
    cfg: &Config,
    dates: &[i32],
    threads: usize,
) -> Result<(u64, u64)> {
    let timeout = cfg.pipeline.session_timeout_minutes;
    let engine = spilling_engine(lake, cfg)?;
    let (mut n, mut spilled) = (0, 0);
    for &day in dates {
        let DaySessions {
            sessions,
            activity,
            spilled_bytes,
        } = sessionise_day(&engine, day, timeout).await?;
        spilled = spilled.max(spilled_bytes);
        n += sessions.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        lake.replace_dates(&schema::SESSIONS, &[day], sessions, None, threads)
            .await?;
        lake.replace_dates(
            &schema::PRODUCT_ACTIVITY,
            &[day],
            activity.into_iter().collect(),
            None,
            threads,
        )
        .await?;
    }
    Ok((n, spilled))
}

/// An engine for the pipeline's scans of whole days: its sorts and
/// aggregates spill to disk past `pipeline.memory_limit_mb` (or the query
/// limit, if lower), so a day of any size fits.
fn spilling_engine(lake: &Lake, cfg: &Config) -> Result<QueryEngine> {
    let limit = match cfg.query.memory_limit_mb {
        0 => cfg.pipeline.memory_limit_mb,
        q => q.min(cfg.pipeline.memory_limit_mb),
    };
    Ok(QueryEngine::spilling(lake, &cfg.query, limit)?)
}

/// A day's sessions and product activity, and the most its sort spilled.
struct DaySessions {
    sessions: Vec<arrow::array::RecordBatch>,
    activity: Option<arrow::array::RecordBatch>,
    spilled_bytes: u64,
}

/// The sessions and product activity of `day` from `processed.events`,
/// read in session order a batch at a time.
async fn sessionise_day(engine: &QueryEngine, day: i32, timeout: u32) -> Result<DaySessions> {
    use futures::StreamExt;
    // plain strings, not views: a view costs 16 bytes a value, which for
    // short values more than doubles what the sort spills
    let columns: Vec<String> = sessions::EVENT_COLUMNS
        .split(',')
        .map(str::trim)
        .map(|c| match c {
            "event_ts" | "date" => c.to_string(),
            _ => format!("arrow_cast({c}, 'Utf8') AS {c}"),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM processed.events WHERE {} ORDER BY {}",
        columns.join(", "),
        dates_predicate(&[day]),
        sessions::SESSION_ORDER
    );
    let mut events = engine.stream_internal(&sql).await?;
    let mut folder = sessions::Sessioniser::new(timeout);
    let mut activity = sessions::ProductCounts::default();
    let mut sessions = Vec::new();
    let disk = engine.ctx().runtime_env().disk_manager.clone();
    let (mut spilled_bytes, mut n) = (0, 0u64);
    while let Some(batch) = events.next().await {
        let batch = batch?;
        // the sort's spill files are all there once the first rows come out
        spilled_bytes = spilled_bytes.max(disk.used_disk_space());
        n += batch.num_rows() as u64;
        folder.push_sorted(&batch)?;
        activity.add(std::slice::from_ref(&batch))?;
        if folder.ready() >= 65_536 {
            sessions.extend(folder.take()?);
        }
    }
    sessions.extend(folder.finish()?);
    tracing::debug!(
        date = %time::format_date(day),
        events = n,
        spilled_mb = spilled_bytes >> 20,
        "sessionised"
    );
    Ok(DaySessions {
        sessions,
        activity: activity.finish()?,
        spilled_bytes,
    })
}

/// Runs the pipeline once, recording it in the run history
/// (`shoplake pipeline runs`) and alerting when it fails.
///
/// A run that finds error-severity quality failures stops before the
/// curated models (they keep their last good state), records itself failed
/// and returns [`JobError::QualityBlocked`]; its partitions stay
/// unprocessed, so the next run checks them again.
pub async fn run(
    lake: &Lake,
    cfg: &Config,
    opts: &PipelineOptions,
    obs: &dyn Observer,
) -> Result<RunSummary> {
    let t_run = Instant::now();
    if let (Some(f), Some(t)) = (opts.from, opts.to)
        && f > t
    {
        return Err(JobError::Invalid(format!(
            "--from {} is after --to {}",
            time::format_date(f),
            time::format_date(t)
        )));
    }
    // One run at a time per data directory: a second run waits, then finds
    // what the first did in the bookmarks.
    let _lock = lock(lake)?;
    let store = Store::open(&lake.state_dir())?;
    // holding the lock, no run is under way: one still `running` died
    for id in store.interrupt_stale_runs()? {
        tracing::warn!(run = %id, "run {id} was interrupted (the process died); this run reprocesses its partitions");
    }
    let started = chrono::Utc::now();
    let run_id = format!("run-{}", started.format("%Y%m%dT%H%M%S%.3f"));
    let trigger = if opts.trigger.is_empty() {
        "cli"
    } else {
        opts.trigger.as_str()
    };
    store.start_run(&run_id, trigger, &store::now_rfc3339())?;
    let engine = QueryEngine::new(lake, &cfg.query)?;
    let mut r = Runner {
        obs,
        steps: Vec::new(),
        store: store.clone(),
        run_id: run_id.clone(),
        current: Vec::new(),
        seq: 0,
    };
    let alerter = Alerter::new(store.clone(), &cfg.alerts);
    let result = run_steps(
        lake,
        &engine,
        cfg,
        opts,
        &mut r,
        &alerter,
        started.timestamp_micros(),
    )
    .await;
    let seconds = t_run.elapsed().as_secs_f64();
    match result {
        Ok(mut summary) => {
            summary.seconds = seconds;
            store.set_run_dates(&run_id, &summary.dates.join(","))?;
            store.finish_run(&run_id, store::status::SUCCEEDED, seconds, None)?;
            alerter.clear("pipeline").await?;
            Ok(summary)
        }
        Err(e) => {
            let msg = e.to_string();
            r.fail(&msg);
            store.finish_run(&run_id, store::status::FAILED, seconds, Some(&msg))?;
            let alert = Alert {
                key: "pipeline".into(),
                kind: Kind::PipelineFailure,
                severity: shoplake_core::config::Severity::Error,
                message: format!("pipeline run {run_id} failed: {msg}"),
                run_id: Some(run_id.clone()),
            };
            if let Err(ae) = alerter.raise(&alert).await {
                tracing::warn!(error = %ae, "the failure could not be alerted");
            }
            Err(e)
        }
    }
}

/// What one source's ETL found about its files' shape this run: the
/// schema-drift checks.
struct Drift {
    source: Source,
    table: &'static Table,
    /// The run's dates of this source.
    scope: Option<String>,
    /// Columns the table gained this run → the first file with each.
    added: BTreeMap<String, String>,
    /// Fields that could not become columns → the first file with each.
    ignored: BTreeMap<String, String>,
    /// Files refused whole: (file, why).
    refused: Vec<(String, String)>,
}

impl Drift {
    fn new(source: Source, table: &'static Table, dates: &[i32], out: &EtlOutput) -> Drift {
        Drift {
            source,
            table,
            scope: (!dates.is_empty()).then(|| {
                let first = time::format_date(dates[0]);
                let last = time::format_date(*dates.last().expect("not empty"));
                if first == last {
                    first
                } else {
                    format!("{first}..{last}")
                }
            }),
            added: BTreeMap::new(),
            ignored: out.ignored_fields.clone(),
            refused: out.refused.clone(),
        }
    }

    /// Checks of kind `schema` (severity warn; a failure alerts as schema
    /// drift): `raw.<source> file_schema` fails when a file was refused
    /// whole (an incompatible change: a required column missing);
    /// `<table> new_columns` when the table gained columns this run (an
    /// additive change); `raw.<source> ignored_fields` while files carry
    /// fields that cannot become columns.
    fn results(&self) -> Vec<quality::CheckResult> {
        let result = |table: String,
                      check: &str,
                      failing: usize,
                      message: String,
                      sample: Option<String>| {
            quality::CheckResult {
                table,
                check: check.to_string(),
                kind: "schema".into(),
                severity: shoplake_core::config::Severity::Warn,
                status: if failing > 0 { "fail" } else { "pass" }.into(),
                scope: self.scope.clone(),
                failing: failing as u64,
                observed: Some(failing as f64),
                expected: Some("0".into()),
                message,
                sample,
                seconds: 0.0,
            }
        };
        let refused = if self.refused.is_empty() {
            result(
                format!("raw.{}", self.source.name()),
                "file_schema",
                0,
                "every file has the source's required columns".into(),
                None,
            )
        } else {
            let list: Vec<String> = self
                .refused
                .iter()
                .take(5)
                .map(|(f, why)| format!("{f}: {why}"))
                .collect();
            result(
                format!("raw.{}", self.source.name()),
                "file_schema",
                self.refused.len(),
                format!(
                    "{} file(s) refused whole and quarantined: {}",
                    self.refused.len(),
                    list.join("; ")
                ),
                Some(
                    self.refused
                        .iter()
                        .map(|(f, _)| f.as_str())
                        .take(20)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            )
        };
        if matches!(self.source, Source::Clickstream) {
            // extra clickstream fields are kept in `properties`: no new columns
            return vec![refused];
        }
        let columns = if self.added.is_empty() {
            result(
                self.table.qualified(),
                "new_columns",
                0,
                "the table gained no columns".into(),
                None,
            )
        } else {
            let cols: Vec<String> = self
                .added
                .iter()
                .map(|(c, f)| format!("{c} (first in {f})"))
                .collect();
            result(
                self.table.qualified(),
                "new_columns",
                self.added.len(),
                format!(
                    "the raw files gained fields; the table now has them as nullable text columns: {}",
                    cols.join(", ")
                ),
                Some(self.added.keys().cloned().collect::<Vec<_>>().join(", ")),
            )
        };
        let ignored = if self.ignored.is_empty() {
            result(
                format!("raw.{}", self.source.name()),
                "ignored_fields",
                0,
                "every field is kept".into(),
                None,
            )
        } else {
            let fields: Vec<String> = self
                .ignored
                .iter()
                .map(|(c, f)| format!("{c:?} (in {f})"))
                .collect();
            result(
                format!("raw.{}", self.source.name()),
                "ignored_fields",
                self.ignored.len(),
                format!(
                    "fields dropped: their name is one {} derives itself, or has no letters: {}",
                    self.table.qualified(),
                    fields.join(", ")
                ),
                Some(self.ignored.keys().cloned().collect::<Vec<_>>().join(", ")),
            )
        };
        vec![refused, columns, ignored]
    }
}

/// The ETL steps, run side by side: each records its own start and end.
struct Steps<'a, 'r> {
    lake: &'a Lake,
    engine: &'a QueryEngine,
    cfg: &'a Config,
    ctx: &'a EtlContext,
    retry: &'a Retry,
    threads: usize,
    rec: std::sync::Mutex<&'a mut Runner<'r>>,
}

impl<'a, 'r> Steps<'a, 'r> {
    fn runner(&self) -> std::sync::MutexGuard<'_, &'a mut Runner<'r>> {
        self.rec.lock().expect("unpoisoned")
    }

    /// Runs step `name` (`work` gives the rows in, out, rejected and the
    /// detail, with what it found about the files), recording its end or
    /// failure.
    async fn step<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = Result<(u64, u64, u64, String, T)>>,
    ) -> Result<T> {
        let t0 = self.runner().start(name);
        match work.await {
            Ok((rows_in, rows_out, rejected, detail, t)) => {
                self.runner()
                    .finish(name, t0, rows_in, rows_out, rejected, detail);
                Ok(t)
            }
            Err(e) => {
                self.runner().fail_step(name, &e.to_string());
                Err(e)
            }
        }
    }

    /// Adds the columns `out` found beyond the declared ones to `table`;
    /// returns the new ones → the first file with each.
    async fn evolve(
        &self,
        table: &'static Table,
        out: &EtlOutput,
    ) -> Result<BTreeMap<String, String>> {
        if out.new_columns.is_empty() {
            return Ok(BTreeMap::new());
        }
        let cols: Vec<String> = out.new_columns.keys().cloned().collect();
        let added = self.lake.evolve(table, &cols).await?;
        Ok(added
            .into_iter()
            .map(|c| {
                let f = out.new_columns[&c].clone();
                (c, f)
            })
            .collect())
    }

    /// product_enrichment: the whole catalogue (it is small and latest-wins).
    async fn products(&self) -> Result<Drift> {
        self.step("product_enrichment", async {
            let all: Vec<(i32, Vec<RawFile>)> = {
                let files = list_raw_files(&self.lake.raw_dir(Source::Products))?;
                let mut m: BTreeMap<i32, Vec<RawFile>> = BTreeMap::new();
                for f in files {
                    m.entry(time::parse_date(&f.partition).map_err(JobError::Invalid)?)
                        .or_default()
                        .push(f);
                }
                m.into_iter().collect()
            };
            let dates: Vec<i32> = all.iter().map(|(d, _)| *d).collect();
            let mut out = join(spawn_etl(self.ctx.clone(), all, etl::products)).await?;
            let mut drift = Drift::new(Source::Products, &schema::PRODUCTS, &dates, &out);
            drift.added = self.evolve(&schema::PRODUCTS, &out).await?;
            let batches = std::mem::take(&mut out.batches);
            self.lake
                .write(&schema::PRODUCTS, batches, WriteMode::Overwrite)
                .await?;
            let q = std::mem::take(&mut out.quarantine);
            self.lake
                .write(
                    &schema::Q_PRODUCTS,
                    q,
                    WriteMode::Replace("stage = 'pipeline'".into()),
                )
                .await?;
            let detail = with_new_columns(format!("{} products", out.rows_out), &drift);
            Ok((out.rows_in, out.rows_out, out.rejected, detail, drift))
        })
        .await
    }

    /// transactions_etl or reviews_etl: replaces the partitions `parts`
    /// (rows with `only`, when given) of `table`.
    async fn dated(
        &self,
        name: &str,
        source: Source,
        table: &'static Table,
        parts: Vec<(i32, Vec<RawFile>)>,
        f: fn(&EtlContext, &etl::Partitions) -> Result<EtlOutput>,
        only: Option<(&str, &str)>,
    ) -> Result<Drift> {
        self.step(name, async {
            let dates: Vec<i32> = parts.iter().map(|(d, _)| *d).collect();
            let out = join(spawn_etl(self.ctx.clone(), parts, f)).await?;
            let mut drift = Drift::new(source, table, &dates, &out);
            if !dates.is_empty() {
                drift.added = self.evolve(table, &out).await?;
                let (res, n) = self
                    .retry
                    .run(name, || {
                        commit_etl(self.lake, table, source, &out, &dates, only, self.threads)
                    })
                    .await;
                self.runner().attempts(name, n);
                res?;
            }
            let detail = with_new_columns(
                format!(
                    "{} dates, {} duplicates dropped",
                    dates.len(),
                    out.duplicates
                ),
                &drift,
            );
            Ok((out.rows_in, out.rows_out, out.rejected, detail, drift))
        })
        .await
    }

    /// clickstream_sessions (then collected_sessions for days with only
    /// collected events); returns the events processed too.
    async fn clickstream(
        &self,
        parts: &etl::Partitions,
        dates: &[i32],
        collected_only: &[i32],
    ) -> Result<(Drift, u64)> {
        // Clickstream is most of the volume: it is processed in groups of days
        // of bounded size, so memory stays flat however many days a run
        // covers; each group's parse starts while the previous is written.
        let groups = date_groups(parts, CLICKSTREAM_GROUP_BYTES);
        let parse = |i: usize| {
            groups
                .get(i)
                .map(|g| spawn_etl(self.ctx.clone(), g.clone(), etl::clickstream))
        };
        let name = "clickstream_sessions";
        let (drift, events) = self
            .step(name, async {
                let mut next = parse(0);
                let mut totals = EtlOutput::default();
                let mut n_sessions = 0u64;
                for (i, group) in groups.iter().enumerate() {
                    let out = join(next.take().expect("spawned")).await?;
                    // parse the next group while this one is written
                    next = parse(i + 1);
                    let (res, n) = self
                        .retry
                        .run(name, || {
                            clickstream_group(
                                self.engine,
                                self.lake,
                                self.cfg,
                                group,
                                &out,
                                self.threads,
                            )
                        })
                        .await;
                    self.runner().attempts(name, n);
                    n_sessions += res?;
                    totals.rows_in += out.rows_in;
                    totals.rows_out += out.rows_out;
                    totals.rejected += out.rejected;
                    totals.refused.extend(out.refused.iter().cloned());
                }
                let drift = Drift::new(Source::Clickstream, &schema::EVENTS, dates, &totals);
                Ok((
                    totals.rows_in,
                    totals.rows_out,
                    totals.rejected,
                    format!("{} dates, {n_sessions} sessions", dates.len()),
                    (drift, totals.rows_out),
                ))
            })
            .await?;
        if !collected_only.is_empty() {
            self.step("collected_sessions", async {
                let (n, spilled) =
                    sessions_from_table(self.lake, self.cfg, collected_only, self.threads).await?;
                let spilled = if spilled > 0 {
                    format!(
                        " (the sort spilled up to {} MiB)",
                        spilled.div_ceil(1 << 20)
                    )
                } else {
                    String::new()
                };
                Ok((
                    0,
                    n,
                    0,
                    format!(
                        "{} days with collected events, {n} sessions{spilled}",
                        collected_only.len()
                    ),
                    (),
                ))
            })
            .await?;
        }
        Ok((drift, events))
    }
}

/// A step's detail, with the columns its table gained.
fn with_new_columns(detail: String, drift: &Drift) -> String {
    if drift.added.is_empty() {
        detail
    } else {
        let cols: Vec<&str> = drift.added.keys().map(String::as_str).collect();
        format!("{detail}, new columns: {}", cols.join(", "))
    }
}

async fn run_steps(
    lake: &Lake,
    engine: &QueryEngine,
    cfg: &Config,
    opts: &PipelineOptions,
    r: &mut Runner<'_>,
    alerter: &Alerter,
    now_micros: i64,
) -> Result<RunSummary> {
    let run_id = r.run_id.clone();
    let retry = Retry {
        timeout: Duration::from_secs(cfg.pipeline.step_timeout_secs),
        retries: cfg.pipeline.step_retries,
        backoff: Duration::from_millis(cfg.pipeline.retry_backoff_ms),
        faults: opts.faults.clone(),
    };
    let threads = match cfg.pipeline.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let ctx = EtlContext {
        lake_root: lake.root().to_path_buf(),
        currency: cfg.currency.clone(),
        now_micros,
        max_file_bytes: cfg.import.max_file_size_mb << 20,
        threads,
    };

    // validate: what changed in the raw zone
    let t0 = r.start("validate");
    let mut marks: Bookmarks = state::read_json(&bookmarks_path(lake))?;
    let mut plans = BTreeMap::new();
    let mut files_seen = 0u64;
    for s in Source::ALL {
        let p = plan_source(
            lake,
            s,
            marks.sources.get(s.name()).unwrap_or(&BTreeMap::new()),
            opts,
        )?;
        files_seen += p.parts.iter().map(|(_, f)| f.len() as u64).sum::<u64>();
        plans.insert(s, p);
    }
    let mut etl_dates = BTreeSet::new();
    for s in [Source::Transactions, Source::Clickstream, Source::Reviews] {
        etl_dates.extend(plans[&s].parts.iter().map(|(d, _)| *d));
    }
    // days that gained events from the collector (`shoplake serve`)
    let run_started = std::time::SystemTime::now();
    let collected: Vec<i32> = state::collected_days(lake)
        .into_iter()
        .map(|(d, _)| d)
        .filter(|d| opts.from.is_none_or(|f| *d >= f) && opts.to.is_none_or(|t| *d <= t))
        .collect();
    // days whose orders changed through the orders API: checked and curated
    let order_days: Vec<i32> = state::marked_days(lake, state::Marks::Orders)
        .into_iter()
        .map(|(d, _)| d)
        .filter(|d| opts.from.is_none_or(|f| *d >= f) && opts.to.is_none_or(|t| *d <= t))
        .collect();
    etl_dates.extend(order_days.iter().copied());
    let click_dates: BTreeSet<i32> = plans[&Source::Clickstream]
        .parts
        .iter()
        .map(|(d, _)| *d)
        .collect();
    // days with new clickstream files are sessionised with them
    let mut collected_only: Vec<i32> = collected
        .iter()
        .copied()
        .filter(|d| !click_dates.contains(d))
        .collect();
    etl_dates.extend(collected.iter().copied());
    let detail = format!(
        "{files_seen} files in {} partitions to process{}{}",
        etl_dates.len(),
        if collected.is_empty() {
            String::new()
        } else {
            format!(", {} days with collected events", collected.len())
        } + &if order_days.is_empty() {
            String::new()
        } else {
            format!(", {} days with changed orders", order_days.len())
        },
        if !plans[&Source::Products].parts.is_empty() {
            ", catalogue changed"
        } else {
            ""
        }
    );
    r.finish("validate", t0, files_seen, 0, 0, detail);
    let planned: Vec<String> = etl_dates.iter().map(|d| time::format_date(*d)).collect();
    if let Err(e) = r.store.set_run_dates(&run_id, &planned.join(",")) {
        tracing::warn!(error = %e, "run history not recorded");
    }

    // catalog: every table exists (empty) so queries never miss one
    let t0 = r.start("catalog");
    // An upgrade may change a table's columns: derived tables are rebuilt
    // from the raw zone; quarantine (which holds rejected imports) is not
    // derived and must be migrated by hand.
    let mut rebuilt = Vec::new();
    let mut curate_all = false;
    let layout = schema::layout_fingerprint();
    let outdated = if marks.layout == layout {
        Vec::new()
    } else {
        let mut t = lake.outdated_tables().await?;
        if !marks.sources.is_empty() {
            // a table this build adds must be filled for the days already processed
            t.extend(schema::TABLES.iter().filter(|t| {
                t.storage == schema::Storage::Delta
                    && matches!(t.zone, schema::Zone::Processed | schema::Zone::Curated)
                    && !lake.table_dir(t).join("_delta_log").exists()
            }));
        }
        t
    };
    // quarantine and collected events cannot be rebuilt from files: refuse
    // before deleting anything
    // (raw.events is created empty with every table: a second commit means the
    // collector wrote to it)
    let has_collected = lake
        .table_dir(&schema::RAW_EVENTS)
        .join("_delta_log")
        .join("00000000000000000001.json")
        .exists();
    if let Some(t) = outdated.iter().find(|t| {
        matches!(
            t.zone,
            schema::Zone::Quarantine | schema::Zone::Raw | schema::Zone::Ops
        ) || (has_collected && t.zone == schema::Zone::Processed && t.name == "events")
    }) {
        return Err(JobError::Invalid(format!(
            "{} was written by another version of shoplake with other columns; \
             export it, delete its folder {} and run again",
            t.qualified(),
            lake.table_dir(t).display()
        )));
    }
    for t in outdated {
        let source = match (t.zone, t.name) {
            (schema::Zone::Curated, _) => None,
            (schema::Zone::Processed, "events" | "sessions" | "product_activity") => {
                Some(Source::Clickstream)
            }
            (schema::Zone::Processed, name) => Source::parse(name),
            _ => unreachable!("quarantine, raw and ops tables were checked above"),
        };
        tracing::warn!(table = %t.qualified(), "the table's columns changed (or it is new): rebuilding it");
        lake.drop_table(t)?;
        rebuilt.push(t.qualified());
        curate_all = true;
        if let Some(s) = source {
            let everything = PipelineOptions {
                force: true,
                ..Default::default()
            };
            let p = plan_source(lake, s, &BTreeMap::new(), &everything)?;
            plans.insert(s, p);
        }
    }
    // The partitions about to change lose their bookmarks first: a run that
    // stops after committing some of them (a failed step, failed quality
    // checks) leaves them to be processed again, even if the raw files go
    // back to what the bookmarks last saw.
    let mut unmarked = Bookmarks {
        sources: marks.sources.clone(),
        layout: marks.layout,
    };
    let mut touched = false;
    for (s, p) in &plans {
        if let Some(m) = unmarked.sources.get_mut(s.name()) {
            for (d, _) in &p.parts {
                touched |= m.remove(&time::format_date(*d)).is_some();
            }
        }
    }
    if touched {
        state::write_json(&bookmarks_path(lake), &unmarked)?;
    }
    let products_changed = !plans[&Source::Products].parts.is_empty();
    for s in [Source::Transactions, Source::Clickstream, Source::Reviews] {
        etl_dates.extend(plans[&s].parts.iter().map(|(d, _)| *d));
    }
    // Rebuilt session tables need every day of the events, collected ones
    // included (clickstream files cover only theirs): those without files
    // are sessionised from processed.events.
    if rebuilt
        .iter()
        .any(|t| *t == schema::SESSIONS.qualified() || *t == schema::PRODUCT_ACTIVITY.qualified())
    {
        let click: BTreeSet<i32> = plans[&Source::Clickstream]
            .parts
            .iter()
            .map(|(d, _)| *d)
            .collect();
        let mut days: BTreeSet<i32> = collected_only.iter().copied().collect();
        days.extend(
            lake.partition_dates(&schema::EVENTS)
                .await?
                .into_iter()
                .filter(|d| !click.contains(d)),
        );
        collected_only = days.into_iter().collect();
        etl_dates.extend(collected_only.iter().copied());
    }
    lake.ensure_tables().await?;
    r.finish(
        "catalog",
        t0,
        0,
        0,
        0,
        if rebuilt.is_empty() {
            format!("{} tables", schema::TABLES.len())
        } else {
            format!(
                "{} tables; rebuilt after a layout change: {}",
                schema::TABLES.len(),
                rebuilt.join(", ")
            )
        },
    );

    // ETL: product enrichment, transactions, clickstream (+ sessions) and
    // reviews are independent (each writes its own tables): they run side by
    // side, and a failed one stops only the steps after them.
    let mut events = 0u64;
    let mut drift = Vec::new();
    let run_etl = !etl_dates.is_empty();
    if products_changed || run_etl {
        let steps = Steps {
            lake,
            engine,
            cfg,
            ctx: &ctx,
            retry: &retry,
            threads,
            rec: std::sync::Mutex::new(&mut *r),
        };
        let date_list = |s: Source| plans[&s].parts.iter().map(|(d, _)| *d).collect::<Vec<_>>();
        let parts = |s: Source| plans[&s].parts.clone();
        let pe = async {
            if products_changed {
                steps.products().await.map(Some)
            } else {
                Ok(None)
            }
        };
        let tx = async {
            if run_etl {
                let p = parts(Source::Transactions);
                steps
                    .dated(
                        "transactions_etl",
                        Source::Transactions,
                        &schema::TRANSACTIONS,
                        p,
                        etl::transactions,
                        Some(("source", "file")),
                    )
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        };
        let rv = async {
            if run_etl {
                let p = parts(Source::Reviews);
                steps
                    .dated(
                        "reviews_etl",
                        Source::Reviews,
                        &schema::REVIEWS,
                        p,
                        etl::reviews,
                        None,
                    )
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        };
        let cs = async {
            if run_etl {
                steps
                    .clickstream(
                        &plans[&Source::Clickstream].parts,
                        &date_list(Source::Clickstream),
                        &collected_only,
                    )
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        };
        let (pe, tx, rv, cs) = tokio::join!(pe, tx, rv, cs);
        let mut failed = Vec::new();
        for res in [pe, tx, rv] {
            match res {
                Ok(d) => drift.extend(d),
                Err(e) => failed.push(e),
            }
        }
        match cs {
            Ok(Some((d, n))) => {
                drift.push(d);
                events = n;
            }
            Ok(None) => {}
            Err(e) => failed.push(e),
        }
        if let Some(e) = failed.into_iter().next() {
            let why = "a step it depends on failed";
            r.skip("quality", why);
            r.skip("curate", why);
            return Err(e);
        }
    }
    let drift_results: Vec<quality::CheckResult> = drift.iter().flat_map(|d| d.results()).collect();

    // quality: the processed tables as this run left them
    let mut quality_results = Vec::new();
    if cfg.quality.enabled && (!etl_dates.is_empty() || products_changed) {
        let t0 = r.start("quality");
        let checks = quality::checks(&cfg.quality)?;
        let scope = quality::Scope {
            dates: Some(etl_dates.iter().copied().collect()),
            tables: Vec::new(),
            now_micros,
        };
        let mut results = drift_results;
        // the checks scan whole days (a unique key's every value): they spill
        let spilling = spilling_engine(lake, cfg)?;
        results.extend(quality::run_checks(lake, &spilling, &cfg.quality, &checks, &scope).await?);
        quality::record(lake, &run_id, now_micros, &results).await?;
        quality::alert(alerter, &run_id, &results).await?;
        let failed: Vec<&quality::CheckResult> = results.iter().filter(|c| c.failed()).collect();
        let blocking: Vec<String> = results
            .iter()
            .filter(|c| c.blocks())
            .map(|c| format!("{} {}: {}", c.table, c.check, c.message))
            .collect();
        r.finish(
            "quality",
            t0,
            results.len() as u64,
            0,
            failed.len() as u64,
            format!(
                "{} checks, {} failed ({} blocking)",
                results.len(),
                failed.len(),
                blocking.len()
            ),
        );
        quality_results = results;
        if !blocking.is_empty() {
            r.skip("curate", "quality checks of severity error failed");
            return Err(JobError::QualityBlocked(format!(
                "{} error check(s) failed, so the curated tables were left as they were: {}",
                blocking.len(),
                blocking.join("; ")
            )));
        }
    } else if !drift_results.is_empty() {
        // quality checks are off; schema drift is still recorded and alerted
        quality::record(lake, &run_id, now_micros, &drift_results).await?;
        quality::alert(alerter, &run_id, &drift_results).await?;
        quality_results = drift_results;
    }

    // curated models
    let mut curate_dates = etl_dates.clone();
    if products_changed || curate_all {
        // names and categories changed: every day's product attributes too
        for s in [Source::Transactions, Source::Clickstream, Source::Reviews] {
            curate_dates.extend(plans[&s].all_dates.iter().copied());
        }
    }
    let curate_dates: Vec<i32> = curate_dates.into_iter().collect();
    if !curate_dates.is_empty() {
        let t0 = r.start("curate");
        let mut rows = 0u64;
        let mut built = Vec::new();
        // models of one stage are independent: build them side by side
        for stage in curate::STAGES {
            let (res, n) = retry
                .run("curate", || async {
                    let results = futures::future::join_all(
                        stage
                            .iter()
                            .map(|m| curate::build(lake, engine, m, &curate_dates, threads)),
                    )
                    .await;
                    results.into_iter().collect::<Result<Vec<u64>>>()
                })
                .await;
            r.attempts("curate", n);
            for (m, n) in stage.iter().zip(res?) {
                rows += n;
                built.push(format!("{} {n}", m.table.name));
            }
        }
        // day-grain models gain a file per incremental run: keep them compact
        let mut compacted = 0;
        for stage in curate::STAGES {
            for m in stage.iter().filter(|m| m.table.partition.is_none()) {
                compacted += lake.compact_if_needed(m.table).await?;
            }
        }
        if compacted > 0 {
            built.push(format!("{compacted} small files compacted"));
        }
        r.finish("curate", t0, 0, rows, 0, built.join(", "));
    }

    // bookmarks: only now is the run complete
    for (s, p) in &plans {
        marks.sources.insert(s.name().to_string(), p.marks.clone());
    }
    marks.layout = layout;
    state::write_json(&bookmarks_path(lake), &marks)?;
    for d in &collected {
        state::unmark_collected(lake, *d, run_started);
    }
    for d in &order_days {
        state::unmark_day(lake, state::Marks::Orders, *d, run_started);
    }

    let mut tables = Vec::new();
    for t in schema::TABLES
        .iter()
        .filter(|t| matches!(t.zone, schema::Zone::Processed | schema::Zone::Curated))
    {
        let info = shoplake_lake::catalog::describe(lake, t).await?;
        tables.push((t.qualified(), info.rows.unwrap_or(0)));
    }
    Ok(RunSummary {
        run_id,
        started_at: time::format_ts(now_micros),
        seconds: 0.0,
        steps: std::mem::take(&mut r.steps),
        dates: curate_dates.iter().map(|d| time::format_date(*d)).collect(),
        products_rebuilt: products_changed,
        events,
        tables,
        quality: quality_results,
    })
}

/// Seconds as a short human string.
pub fn fmt_secs(s: f64) -> String {
    let d = Duration::from_secs_f64(s);
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{s:.2}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use shoplake_core::event::{Event, EventBatchBuilder};

    /// Sessions as comparable rows: id, events, page views, stage.
    fn rows(batches: &[arrow::array::RecordBatch]) -> Vec<(String, i64, i64, i32)> {
        let mut out = Vec::new();
        for b in batches {
            let b = arrow::compute::concat_batches(&b.schema(), [b]).unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            let ids = arrow::compute::cast(&col("session_id"), &arrow::datatypes::DataType::Utf8)
                .unwrap();
            let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
            let events = col("events");
            let events = events.as_any().downcast_ref::<Int64Array>().unwrap();
            let pv = col("page_views");
            let pv = pv.as_any().downcast_ref::<Int64Array>().unwrap();
            let stage = col("funnel_stage");
            let stage = stage
                .as_any()
                .downcast_ref::<arrow::array::Int32Array>()
                .unwrap();
            for i in 0..b.num_rows() {
                out.push((
                    ids.value(i).to_string(),
                    events.value(i),
                    pv.value(i),
                    stage.value(i),
                ));
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_day_sessionised_through_a_spilling_sort_gives_the_sessions_of_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), &Default::default()).unwrap();
        let day0 = 1_736_899_200_000_000i64; // 2025-01-15T00:00:00Z
        let types = ["page_view", "product_view", "add_to_cart", "purchase"];
        let mut batches = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for part in 0..4u64 {
            let mut b = EventBatchBuilder::new(50_000);
            for i in 0..50_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // a third with a client session id (a few of them long), the
                // rest cut by inactivity
                let device = x % 4_001;
                let session = x.is_multiple_of(3).then(|| format!("S{}", x % 211));
                b.push(&Event {
                    event_id: format!("e{part}-{i}").into(),
                    event_type: types[(x >> 8) as usize % 4],
                    event_name: "x".into(),
                    event_ts: day0 + ((x >> 16) % 86_000) as i64 * 1_000_000,
                    received_at: day0,
                    anonymous_id: Some(format!("A{device}").into()),
                    user_id: (x % 5 == 1).then(|| format!("U{device}").into()),
                    session_id: session.map(Into::into),
                    page_path: Some(format!("/p/{}", x % 17).into()),
                    utm_source: x.is_multiple_of(7).then(|| "news".into()),
                    product_id: Some(format!("P{}", x % 13).into()),
                    device_type: "mobile",
                    source: "t".into(),
                    protocol: "segment",
                    ..Default::default()
                });
            }
            let b = b.finish().unwrap();
            // each part its own commit, so the sort reads several files
            lake.write(&schema::EVENTS, vec![b.clone()], WriteMode::Append)
                .await
                .unwrap();
            batches.push(b);
        }
        let day = (day0 / 86_400_000_000) as i32;
        // a sort allowed 16 MiB for 200,000 events must spill (keeping a
        // small reserve for its merge)
        let engine = QueryEngine::spilling(&lake, &Default::default(), 16).unwrap();
        for set in [
            "SET datafusion.execution.batch_size = 1024",
            "SET datafusion.execution.target_partitions = 1",
            "SET datafusion.execution.sort_spill_reservation_bytes = 1048576",
        ] {
            engine.run_internal(set).await.unwrap();
        }
        let streamed = sessionise_day(&engine, day, 30).await.unwrap();
        assert!(streamed.spilled_bytes > 0, "the sort spilled to disk");
        let whole_batch = sessions::sessionise(&batches, 30).unwrap().unwrap();
        let whole = rows(std::slice::from_ref(&whole_batch));
        assert!(whole.len() > 1_000, "{} sessions", whole.len());
        assert_eq!(rows(&streamed.sessions), whole);
        assert_eq!(
            rows(&streamed.sessions).iter().map(|r| r.1).sum::<i64>(),
            200_000,
            "every event in one session"
        );
        let act_whole = sessions::product_activity(&batches).unwrap();
        let act_parts = streamed.activity;
        let sorted = |b: Option<arrow::array::RecordBatch>| {
            let b = b.unwrap();
            let mut v: Vec<String> = (0..b.num_rows())
                .map(|i| {
                    (0..b.num_columns())
                        .map(|c| {
                            arrow::util::display::array_value_to_string(b.column(c), i).unwrap()
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(sorted(act_parts), sorted(act_whole));
        let streamed =
            arrow::compute::concat_batches(&whole_batch.schema(), &streamed.sessions).unwrap();
        assert_eq!(
            sorted(Some(streamed)),
            sorted(Some(whole_batch)),
            "every column of every session"
        );
    }
}
