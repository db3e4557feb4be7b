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
//!   when `server.commit_max_events` are waiting: an event is queryable about
//!   one interval after its 2xx.

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
use shoplake_lake::Lake;
use shoplake_lake::quarantine::{QuarantineBuilder, Stage};
use shoplake_log::{EventLog, Offset};
use tokio::sync::watch;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::record::{Record, static_protocol};

/// The Delta transaction app id of the sink, before the event log's id.
pub const APP_ID: &str = "shoplake-sink";

/// Tables the sink writes, in commit order.
const TABLES: [&Table; 3] = [&schema::RAW_EVENTS, &schema::EVENTS, &schema::Q_EVENTS];

/// How the sink batches.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Commit at least this often.
    pub interval: Duration,
    /// ... or when this many events wait.
    pub max_events: usize,
    /// Remembered event ids for dedup.
    pub dedup_window: usize,
    /// The Delta transaction app id: [`APP_ID`] and the event log's id.
    pub app_id: String,
}

/// A bounded set of recent event ids (64-bit hashes; first in, first out).
#[derive(Debug)]
pub struct Dedup {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

/// The 64-bit hash of an event id.
pub fn id_hash(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Dedup {
    /// An empty window of `cap` ids.
    pub fn new(cap: usize) -> Dedup {
        Dedup {
            set: HashSet::with_capacity(cap.min(1 << 20)),
            order: VecDeque::with_capacity(cap.min(1 << 20)),
            cap: cap.max(1),
        }
    }

    /// Remembers `id`; false if it was already there (a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        let h = id_hash(id);
        if !self.set.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
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
        })
    }

    /// The offset every table holds every record below.
    pub fn committed(&self) -> Offset {
        *self.done.iter().min().expect("three tables")
    }

    /// Runs until `shutdown` turns true, then commits what the log holds and
    /// returns.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut last_commit = Instant::now();
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
                Ok(()) => last_commit = Instant::now(),
                Err(e) => {
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

    /// Reads one micro-batch from `from` and commits it.
    async fn step(&mut self, from: Offset) -> Result<()> {
        let t0 = Instant::now();
        let log = self.log.clone();
        let max_events = self.opts.max_events;
        let records = tokio::task::spawn_blocking(move || {
            log.read(from, (max_events / 10).max(64), 64 << 20)
        })
        .await
        .map_err(|e| crate::ServerError::Io(format!("sink read task: {e}")))??;
        let Some(last) = records.last().map(|(o, _)| *o) else {
            return Ok(());
        };
        let upto = last + 1;
        let mut raw = RawBuilder::default();
        let mut events = EventBatchBuilder::new(4096);
        let mut quarantine: Vec<RecordBatch> = Vec::new();
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
            let protocol = static_protocol(&rec.protocol);
            for ev in &rec.events {
                // ids are remembered once, whichever tables still need the record
                if !self.dedup.insert(&ev.id) {
                    self.metrics.duplicates.fetch_add(1, Relaxed);
                    continue;
                }
                n_events += 1;
                if *offset >= self.done[0] {
                    raw.push(ev.id.as_str(), &rec, &ev.raw, *offset);
                }
                if *offset >= self.done[1] {
                    events.push(&ev.event(rec.at, &rec.source, protocol));
                    days.insert(day_of(ev.ts));
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
                    q.push(
                        u64::from(r.idx),
                        &Rejection {
                            column: None,
                            reason: r.reason.clone(),
                        },
                        &r.raw,
                        day_of(rec.at),
                    );
                }
                quarantine.push(q.finish());
            }
        }
        if oldest != i64::MAX {
            self.metrics
                .sink_lag_micros
                .store((now_micros() - oldest).max(0) as u64, Relaxed);
        }
        let batches = [
            vec![raw.finish()],
            vec![
                events
                    .finish()
                    .map_err(|e| crate::ServerError::Io(format!("building events: {e}")))?,
            ],
            quarantine,
        ];
        for (i, b) in batches.into_iter().enumerate() {
            if self.done[i] >= upto {
                continue;
            }
            self.lake
                .append_once(TABLES[i], b, &self.opts.app_id, upto as i64)
                .await?;
            self.done[i] = upto;
        }
        // tell the pipeline which days gained events (it sessionises them)
        for d in &days {
            shoplake_lake::state::mark_collected(&self.lake, *d);
        }
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.commit(upto))
            .await
            .map_err(|e| crate::ServerError::Io(format!("log commit task: {e}")))??;
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
        Ok(())
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
    let mut ids = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| crate::ServerError::Io(e.to_string()))?;
        let col = col
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("utf8");
        ids.extend(col.iter().flatten().map(str::to_string));
    }
    // oldest first, so the newest are evicted last
    for id in ids.iter().rev() {
        dedup.insert(id);
    }
    Ok(())
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
    fn push(&mut self, id: &str, rec: &Record, payload: &str, offset: Offset) {
        self.event_id.append_value(id);
        self.received_at.push(rec.at);
        self.protocol.append_value(&rec.protocol);
        self.source.append_value(&rec.source);
        self.path.append_value(&rec.path);
        self.payload.append_value(payload);
        self.offset.append_value(offset as i64);
        self.date.append_value(day_of(rec.at));
    }

    fn finish(mut self) -> RecordBatch {
        let mut at =
            TimestampMicrosecondBuilder::with_capacity(self.received_at.len()).with_timezone("UTC");
        at.append_slice(&self.received_at);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(at.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.date.finish()),
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
    fn dedup_forgets_oldest_first() {
        let mut d = Dedup::new(3);
        assert!(d.insert("a"));
        assert!(!d.insert("a"));
        assert!(d.insert("b") && d.insert("c") && d.insert("d"));
        assert_eq!(d.len(), 3);
        assert!(d.insert("a"), "a was evicted");
        assert!(!d.insert("d"));
    }
}
