//! The sink: reads the event log in micro-batches and commits them to
//! `raw.events`, `processed.events` and `quarantine.events`, exactly once.
//!
//! ## Contract
//! * Every commit to one of the three tables carries a Delta transaction
//!   identifier (`txn`, app id [`APP_ID`] and the log's id) whose version is the log offset
//!   the commit covers up to (exclusive). After a crash the sink reads the
//!   three versions back and resumes each table right after its own, so a
//!   record is in each table once whatever moment the process died.
//! * Records are released from the log ([`EventLog::commit`]) only once all
//!   three tables hold them.
//! * A client retry (same `event_id`) within the last
//!   `server.dedup_window_events` events is dropped from both event tables;
//!   the window is refilled from `processed.events` at start, so it holds
//!   across restarts.
//! * At most one commit per table per `server.commit_interval_ms`, sooner
//!   when `server.commit_max_events` are waiting, and at once while the sink
//!   is behind (its last micro-batch stopped at `server.commit_max_mb`): an
//!   event is queryable about one interval after its 2xx.
//! * Memory is bounded by the micro-batch: the records read, plus one chunk
//!   of Arrow rows per table and the Parquet pages of the open files.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Date32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use shoplake_core::Rejection;
use shoplake_core::event::EventBatchBuilder;
use shoplake_core::schema::{self, Table};
use shoplake_lake::quarantine::{QuarantineBuilder, Stage};
use shoplake_lake::{Appender, Lake, STREAM_TABLES};
use shoplake_log::{EventLog, Offset};
use tokio::sync::watch;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::record::Record;

/// The Delta transaction app id of the sink, before the event log's id.
pub const APP_ID: &str = "shoplake-sink";

/// Tables the sink writes, in commit order.
const TABLES: [&Table; 3] = STREAM_TABLES;

/// How the sink batches.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Commit at least this often.
    pub interval: Duration,
    /// ... or when this many events wait.
    pub max_events: usize,
    /// Record bytes read into one micro-batch at most (bounds the sink's
    /// memory: the Arrow columns and Parquet pages built from them are of
    /// the same order).
    pub max_bytes: usize,
    /// Remembered event ids for dedup.
    pub dedup_window: usize,
    /// The Delta transaction app id: [`APP_ID`] and the event log's id.
    pub app_id: String,
}

/// A bounded set of recent event ids (64-bit hashes), forgetting the oldest
/// first. The ids live in a ring of generations: new ids go into the newest;
/// when it is full the oldest generation is dropped whole. That remembers at
/// least the last `cap` ids with no per-id queue, and each generation's hash
/// table is sized once, so the window costs about 14 bytes per id.
#[derive(Debug)]
pub struct Dedup {
    gens: VecDeque<HashSet<u64>>,
    /// Ids per generation: 7/8 of a power of two, the most a hash table of
    /// that many buckets holds before it grows.
    per_gen: usize,
    /// Full generations kept besides the one filling.
    full_gens: usize,
    cap: usize,
}

/// The 64-bit hash of an event id.
pub fn id_hash(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// The dedup hash of a rejected item: its source and its bytes.
pub fn rejection_hash(source: &str, raw: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    ("rejected", source, raw).hash(&mut h);
    h.finish()
}

impl Dedup {
    /// An empty window of (at least) `cap` ids.
    pub fn new(cap: usize) -> Dedup {
        let cap = cap.max(1);
        // four to six generations (every insert looks in each: a cache miss
        // apiece), each filling its table exactly
        let buckets = (cap * 2 / 7).max(8);
        let buckets = if buckets.is_power_of_two() {
            buckets
        } else {
            buckets.next_power_of_two() / 2
        };
        let per_gen = buckets / 8 * 7;
        let full_gens = cap.div_ceil(per_gen);
        let mut gens = VecDeque::with_capacity(full_gens + 1);
        gens.push_back(HashSet::with_capacity(per_gen));
        Dedup {
            gens,
            per_gen,
            full_gens,
            cap,
        }
    }

    /// Remembers `id`; false if it was already there (a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        self.insert_hash(id_hash(id))
    }

    fn insert_hash(&mut self, h: u64) -> bool {
        if self.gens.iter().any(|g| g.contains(&h)) {
            return false;
        }
        if self.gens.back().is_some_and(|g| g.len() >= self.per_gen) {
            if self.gens.len() > self.full_gens {
                // reuse the oldest generation's table for the newest
                let mut old = self.gens.pop_front().expect("generations");
                old.clear();
                self.gens.push_back(old);
            } else {
                self.gens.push_back(HashSet::with_capacity(self.per_gen));
            }
        }
        self.gens.back_mut().expect("generations").insert(h);
        true
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.gens.iter().map(HashSet::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sink task.
pub struct Sink {
    lake: Lake,
    log: Arc<dyn EventLog>,
    metrics: Arc<Metrics>,
    opts: SinkOptions,
    dedup: Dedup,
    /// Per table: the log offset it holds every record below.
    done: [Offset; 3],
    /// Whether `done` is known to be each table's recorded version: true
    /// after reading them and after every commit that succeeded; false
    /// after a failure (a commit whose answer was lost may have landed).
    known: bool,
}

impl Sink {
    /// Prepares the sink: reads where each table stopped and refills the
    /// dedup window. Returns the sink and the offset it resumes from.
    pub async fn open(
        lake: Lake,
        log: Arc<dyn EventLog>,
        metrics: Arc<Metrics>,
        opts: SinkOptions,
    ) -> Result<Sink> {
        let mut done = [0; 3];
        for (i, t) in TABLES.iter().enumerate() {
            done[i] = lake.txn_version(t, &opts.app_id).await?.unwrap_or(0).max(0) as u64;
        }
        let mut dedup = Dedup::new(opts.dedup_window);
        seed_dedup(&lake, &mut dedup).await?;
        tracing::info!(
            raw = done[0],
            processed = done[1],
            quarantine = done[2],
            remembered_ids = dedup.len(),
            "sink resuming"
        );
        Ok(Sink {
            lake,
            log,
            metrics,
            opts,
            dedup,
            done,
            known: true,
        })
    }

    /// The offset every table holds every record below.
    pub fn committed(&self) -> Offset {
        *self.done.iter().min().expect("three tables")
    }

    /// Runs the sink on a runtime of its own (one thread, `shoplake-sink`),
    /// so encoding Parquet never delays a request handler.
    /// The receiver gets what [`Sink::run`] returned.
    pub fn spawn(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<tokio::sync::oneshot::Receiver<Result<()>>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(4)
            .thread_name("shoplake-sink")
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("shoplake-sink".into())
            .spawn(move || {
                let _ = tx.send(rt.block_on(self.run(shutdown)));
            })?;
        Ok(rx)
    }

    /// Tidies the sink's tables every `every` ([`Lake::tidy_stream_table`]:
    /// compaction and log trimming each round, a vacuum once per
    /// `lake.stream_log_retain_minutes`; so a commit costs the same after a
    /// week of them as after the first) on a thread of its own, beside the
    /// sink. Stops when `shutdown` turns true.
    pub fn spawn_upkeep(
        lake: Lake,
        metrics: Arc<Metrics>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(2)
            .thread_name("shoplake-upkeep")
            .enable_all()
            .build()?;
        let every = every.max(Duration::from_secs(1));
        let vacuum_every = (lake.stream_retention().as_secs() / every.as_secs()).max(1);
        std::thread::Builder::new()
            .name("shoplake-upkeep".into())
            .spawn(move || {
                rt.block_on(async move {
                    for round in 1u64.. {
                        tokio::select! {
                            _ = tokio::time::sleep(every) => {}
                            _ = shutdown.changed() => {}
                        }
                        if *shutdown.borrow() {
                            return;
                        }
                        let vacuum = round % vacuum_every == 0;
                        for t in TABLES {
                            match lake.tidy_stream_table(t, vacuum).await {
                                Ok(m) => {
                                    metrics.upkeep_compacted.fetch_add(m.compacted, Relaxed);
                                }
                                Err(e) => {
                                    metrics.upkeep_errors.fetch_add(1, Relaxed);
                                    tracing::warn!(table = %t.qualified(), error = %e, "upkeep of a sink table failed; trying again next round");
                                }
                            }
                        }
                    }
                })
            })
    }

    /// Runs until `shutdown` turns true, then commits what the log holds and
    /// returns.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut last_commit = Instant::now();
        // whether the last micro-batch stopped at its size limit: then more
        // is waiting and the next one starts at once
        let mut behind = false;
        loop {
            let stopping = *shutdown.borrow();
            let from = self.committed();
            let end = self.log.end_offset();
            if end <= from {
                self.metrics.sink_lag_micros.store(0, Relaxed);
                if stopping {
                    return Ok(());
                }
                tokio::select! {
                    _ = self.log.wait_for(from, self.opts.interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let since = last_commit.elapsed();
            if !stopping
                && !behind
                && since < self.opts.interval
                && ((end - from) as usize) < self.opts.max_events / 8
            {
                // let a micro-batch gather (requests carry many events each)
                tokio::select! {
                    _ = tokio::time::sleep(self.opts.interval - since) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            match self.step(from).await {
                Ok(full) => {
                    behind = full;
                    last_commit = Instant::now();
                }
                Err(e) => {
                    self.known = false;
                    self.metrics.sink_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "sink commit failed; retrying in 1 s");
                    if stopping {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    // the dedup window may hold ids of the failed batch: refill it
                    self.dedup = Dedup::new(self.opts.dedup_window);
                    seed_dedup(&self.lake, &mut self.dedup).await.ok();
                }
            }
        }
    }

    /// Reads one micro-batch from `from` and commits it. Returns whether
    /// the batch stopped at its size limit (more is waiting).
    async fn step(&mut self, from: Offset) -> Result<bool> {
        let t0 = Instant::now();
        let max_records = (self.opts.max_events / 10).max(64);
        let max_bytes = self.opts.max_bytes;
        // the sink's runtime is its own: blocking it on the read (page-cached
        // data, milliseconds) delays no request, and the records are then
        // allocated and freed on one thread
        let records = self.log.read(from, max_records, max_bytes)?;
        let Some(last) = records.last().map(|(o, _)| *o) else {
            return Ok(false);
        };
        let full = records.len() >= max_records
            || records.iter().map(|(_, b)| b.len()).sum::<usize>() >= max_bytes / 10 * 9;
        let upto = last + 1;
        // one open commit per table that still lacks part of this batch; rows
        // go to it in chunks, so only a chunk per table is held as Arrow
        let mut apps: [Option<Appender>; 3] = [None, None, None];
        for (i, app) in apps.iter_mut().enumerate() {
            if self.done[i] >= upto {
                continue;
            }
            if self.known {
                // every commit since the versions were read was ours: no
                // need to read them back (a log replay per table)
                *app = Some(
                    self.lake
                        .begin_append(TABLES[i], &self.opts.app_id, upto as i64)
                        .await?,
                );
                continue;
            }
            *app = self
                .lake
                .begin_append_once(TABLES[i], &self.opts.app_id, upto as i64)
                .await?;
            if app.is_none() {
                // the table recorded this batch already (a commit whose answer was lost)
                self.done[i] = upto;
            }
        }
        let mut raw = RawBuilder::new();
        let mut events = EventBatchBuilder::new(CHUNK_ROWS);
        let mut quarantine = Vec::new();
        let mut oldest = i64::MAX;
        let mut n_events = 0u64;
        let mut days = std::collections::BTreeSet::new();
        for (offset, bytes) in &records {
            let rec = match Record::decode(bytes) {
                Ok(r) => r,
                Err(e) => {
                    // a record this build cannot read: keep it, never drop it
                    tracing::error!(offset, error = %e, "unreadable event-log record: quarantined");
                    let mut q = QuarantineBuilder::new(
                        now_micros(),
                        Stage::Collect,
                        "event-log",
                        offset.to_string(),
                    );
                    q.push(
                        0,
                        &Rejection {
                            column: None,
                            reason: format!("unreadable event-log record: {e}"),
                        },
                        &String::from_utf8_lossy(bytes),
                        day_of(now_micros()),
                    );
                    if *offset >= self.done[2] {
                        quarantine.push(q.finish());
                    }
                    continue;
                }
            };
            oldest = oldest.min(rec.at);
            for (ev, payload) in &rec.events {
                // ids are remembered once, whichever tables still need the record
                if !self.dedup.insert(&ev.event_id) {
                    self.metrics.duplicates.fetch_add(1, Relaxed);
                    continue;
                }
                n_events += 1;
                if *offset >= self.done[0] {
                    raw.push(&ev.event_id, &rec, payload, *offset);
                }
                if *offset >= self.done[1] {
                    events.push(ev);
                    days.insert(day_of(ev.event_ts));
                }
            }
            if !rec.rejected.is_empty() && *offset >= self.done[2] {
                let mut q = QuarantineBuilder::new(
                    rec.at,
                    Stage::Collect,
                    format!("{}:{}:{}", rec.source, rec.protocol, rec.path),
                    offset.to_string(),
                );
                for r in &rec.rejected {
                    // a retried request brings its bad items again: same
                    // source, same bytes is the same item, quarantined once
                    if !self.dedup.insert_hash(rejection_hash(rec.source, r.raw)) {
                        continue;
                    }
                    q.push(
                        u64::from(r.idx),
                        &Rejection {
                            column: None,
                            reason: r.reason.to_string(),
                        },
                        r.raw,
                        day_of(rec.at),
                    );
                }
                if !q.is_empty() {
                    quarantine.push(q.finish());
                }
            }
            if raw.len() >= CHUNK_ROWS
                && let Some(a) = &mut apps[0]
            {
                a.write(raw.finish()).await?;
            }
            if events.len() >= CHUNK_ROWS
                && let Some(a) = &mut apps[1]
            {
                a.write(finish_events(&mut events)?).await?;
            }
        }
        if oldest != i64::MAX {
            self.metrics
                .sink_lag_micros
                .store((now_micros() - oldest).max(0) as u64, Relaxed);
        }
        if let Some(a) = &mut apps[0] {
            a.write(raw.finish()).await?;
        }
        if let Some(a) = &mut apps[1] {
            a.write(finish_events(&mut events)?).await?;
        }
        if let Some(a) = &mut apps[2] {
            for q in quarantine {
                a.write(q).await?;
            }
        }
        // the three commits are independent: make them concurrently (on the
        // sink's one thread, their file and log I/O overlap)
        let mut commits = Vec::new();
        for (i, app) in apps.into_iter().enumerate() {
            if let Some(app) = app {
                commits.push((i, tokio::spawn(app.commit())));
            }
        }
        let mut failed = None;
        for (i, task) in commits {
            match task.await {
                Ok(Ok(_)) => self.done[i] = upto,
                Ok(Err(e)) => failed = Some(e.into()),
                Err(e) => failed = Some(crate::ServerError::Io(format!("sink commit task: {e}"))),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.known = true;
        // tell the pipeline which days gained events (it sessionises them)
        for d in &days {
            shoplake_lake::state::mark_collected(&self.lake, *d);
        }
        self.log.commit(upto)?;
        self.metrics.committed.fetch_add(n_events, Relaxed);
        self.metrics
            .commit_seconds
            .observe_micros(t0.elapsed().as_micros() as u64);
        self.metrics.sink_lag_micros.store(0, Relaxed);
        tracing::debug!(
            records = records.len(),
            events = n_events,
            upto,
            ms = t0.elapsed().as_millis() as u64,
            "sink committed"
        );
        Ok(full)
    }
}

/// Refills the dedup window with the ids of recently collected events.
async fn seed_dedup(lake: &Lake, dedup: &mut Dedup) -> Result<()> {
    if lake.load(&schema::EVENTS).await?.is_none() {
        return Ok(());
    }
    let engine = shoplake_query::QueryEngine::new(lake, &Default::default())
        .map_err(|e| crate::ServerError::Io(format!("dedup window: {e}")))?;
    let since = day_of(now_micros()) - 3;
    let sql = format!(
        "SELECT event_id FROM processed.events \
         WHERE protocol <> 'file' AND date >= to_date('{}') \
         ORDER BY received_at DESC LIMIT {}",
        shoplake_core::time::format_date(since),
        dedup.cap
    );
    let batches = engine
        .run_internal(&sql)
        .await
        .map_err(|e| crate::ServerError::Io(format!("dedup window: {e}")))?;
    let mut ids: Vec<u64> = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| crate::ServerError::Io(e.to_string()))?;
        let col = col
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("utf8");
        ids.extend(col.iter().flatten().map(id_hash));
    }
    drop(batches);
    // oldest first, so the newest are evicted last
    for h in ids.into_iter().rev() {
        dedup.insert_hash(h);
    }
    Ok(())
}

/// Rows per Arrow batch handed to a table's open commit.
const CHUNK_ROWS: usize = 8192;

fn finish_events(b: &mut EventBatchBuilder) -> Result<RecordBatch> {
    b.finish()
        .map_err(|e| crate::ServerError::Io(format!("building events: {e}")))
}

/// Rows of `raw.events`.
#[derive(Default)]
struct RawBuilder {
    event_id: StringBuilder,
    received_at: Vec<i64>,
    protocol: StringBuilder,
    source: StringBuilder,
    path: StringBuilder,
    payload: StringBuilder,
    offset: Int64Builder,
    date: Date32Builder,
}

impl RawBuilder {
    fn new() -> RawBuilder {
        RawBuilder {
            payload: StringBuilder::with_capacity(CHUNK_ROWS, CHUNK_ROWS * 1024),
            ..Default::default()
        }
    }

    fn len(&self) -> usize {
        self.received_at.len()
    }

    fn push(&mut self, id: &str, rec: &Record<'_>, payload: &str, offset: Offset) {
        self.event_id.append_value(id);
        self.received_at.push(rec.at);
        self.protocol.append_value(rec.protocol);
        self.source.append_value(rec.source);
        self.path.append_value(rec.path);
        self.payload.append_value(payload);
        self.offset.append_value(offset as i64);
        self.date.append_value(day_of(rec.at));
    }

    /// The rows so far as a batch; the builder starts over.
    fn finish(&mut self) -> RecordBatch {
        let mut this = std::mem::replace(self, RawBuilder::new());
        let mut at =
            TimestampMicrosecondBuilder::with_capacity(this.received_at.len()).with_timezone("UTC");
        at.append_slice(&this.received_at);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(this.event_id.finish()),
            Arc::new(at.finish()),
            Arc::new(this.protocol.finish()),
            Arc::new(this.source.finish()),
            Arc::new(this.path.finish()),
            Arc::new(this.payload.finish()),
            Arc::new(this.offset.finish()),
            Arc::new(this.date.finish()),
        ];
        RecordBatch::try_new(schema::RAW_EVENTS.schema(), cols).expect("raw.events schema")
    }
}

/// Days since 1970-01-01 (UTC) of a µs timestamp.
pub fn day_of(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

/// The clock, µs since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_remembers_the_window_and_forgets_oldest_first() {
        let mut d = Dedup::new(1000);
        assert!(d.insert("a"));
        assert!(!d.insert("a"));
        for i in 0u32..5000 {
            assert!(d.insert(&i.to_string()));
            // everything of the last `cap` ids is still a duplicate
            let back = i.saturating_sub(999);
            assert!(!d.insert(&back.to_string()), "{back} forgotten at {i}");
        }
        assert!(
            d.len() >= 1000 && d.len() <= 1000 + d.per_gen * 2,
            "{}",
            d.len()
        );
        assert!(d.insert("a"), "a was evicted");
        assert!(d.insert("0"), "the oldest went first");
        assert!(!d.insert("4999"));
    }
}
