//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4): plain
//! atomics, no registry, so counting costs a few nanoseconds per request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Protocols, in label order.
pub const PROTOCOLS: [&str; 6] = [
    "native",
    "segment",
    "snowplow",
    "ga4",
    "posthog",
    "aws_clickstream",
];

/// Why a request or an event was refused, in label order.
pub const REASONS: [&str; 7] = [
    "invalid",
    "bad_request",
    "unauthorized",
    "too_large",
    "rate_limited",
    "backpressure",
    "forbidden_origin",
];

/// Index of a protocol label.
pub fn protocol_index(p: &str) -> usize {
    PROTOCOLS.iter().position(|x| *x == p).unwrap_or(1)
}

/// A refusal reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Reason {
    Invalid = 0,
    BadRequest = 1,
    Unauthorized = 2,
    TooLarge = 3,
    RateLimited = 4,
    Backpressure = 5,
    ForbiddenOrigin = 6,
}

/// Cumulative histogram with fixed bucket bounds (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// Bounds for latencies from 100 µs to 10 s.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

impl Histogram {
    /// An empty histogram.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe_micros(&self, micros: u64) {
        let secs = micros as f64 / 1e6;
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add(micros, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// An upper bound of the `q` quantile (0..1) from the buckets.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Relaxed);
            if seen >= want {
                return self.bounds[i];
            }
        }
        f64::INFINITY
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    /// Events accepted (durably logged), by protocol.
    pub accepted: [AtomicU64; 6],
    /// Events or requests refused, by protocol and reason.
    pub rejected: [[AtomicU64; 7]; 6],
    /// Requests answered, by protocol.
    pub requests: [AtomicU64; 6],
    /// Request latency.
    pub request_seconds: Histogram,
    /// Event-log append latency (write + fsync, shared by a group).
    pub append_seconds: Histogram,
    /// Sink commit latency (all tables of one micro-batch).
    pub commit_seconds: Histogram,
    /// `GET /api/recommendations` latency (authentication included).
    pub recs_seconds: Histogram,
    /// Events committed to the lake.
    pub committed: AtomicU64,
    /// Client retries dropped by `event_id`.
    pub duplicates: AtomicU64,
    /// Sink errors (each retried).
    pub sink_errors: AtomicU64,
    /// Age of the oldest event not yet in the lake, µs (0: none waiting).
    pub sink_lag_micros: AtomicU64,
    /// Small files of the sink's tables compacted away by their upkeep.
    pub upkeep_compacted: AtomicU64,
    /// Failed upkeep rounds (each tried again a round later).
    pub upkeep_errors: AtomicU64,
    /// Report and SQL answers served from the cache.
    pub cache_hits: AtomicU64,
    /// ... and computed (then cached).
    pub cache_misses: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: Default::default(),
            rejected: Default::default(),
            requests: Default::default(),
            request_seconds: Histogram::new(LATENCY_BOUNDS),
            append_seconds: Histogram::new(LATENCY_BOUNDS),
            commit_seconds: Histogram::new(LATENCY_BOUNDS),
            recs_seconds: Histogram::new(LATENCY_BOUNDS),
            committed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            sink_lag_micros: AtomicU64::new(0),
            upkeep_compacted: AtomicU64::new(0),
            upkeep_errors: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        }
    }
}

/// Log figures included in the exposition.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogFigures {
    /// Bytes of the event log on disk.
    pub disk_bytes: u64,
    /// Records appended and not yet committed to the lake.
    pub lag_records: u64,
    /// fsyncs so far.
    pub fsyncs: u64,
    /// Mean fsync latency, µs.
    pub fsync_avg_micros: u64,
    /// Last fsync latency, µs.
    pub fsync_last_micros: u64,
}

impl Metrics {
    /// Counts refused events or requests.
    pub fn reject(&self, protocol: usize, reason: Reason, n: u64) {
        self.rejected[protocol][reason as usize].fetch_add(n, Relaxed);
    }

    /// Events accepted so far, all protocols.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.iter().map(|a| a.load(Relaxed)).sum()
    }

    /// The text exposition.
    pub fn render(&self, log: LogFigures) -> String {
        let mut o = String::with_capacity(8 * 1024);
        o.push_str("# HELP shoplake_events_accepted_total Events durably accepted into the event log.\n# TYPE shoplake_events_accepted_total counter\n");
        for (i, p) in PROTOCOLS.iter().enumerate() {
            let _ = writeln!(
                o,
                "shoplake_events_accepted_total{{protocol=\"{p}\"}} {}",
                self.accepted[i].load(Relaxed)
            );
        }
        o.push_str("# HELP shoplake_events_rejected_total Events (invalid: quarantined) or whole requests refused, by reason.\n# TYPE shoplake_events_rejected_total counter\n");
        for (i, p) in PROTOCOLS.iter().enumerate() {
            for (j, r) in REASONS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "shoplake_events_rejected_total{{protocol=\"{p}\",reason=\"{r}\"}} {}",
                    self.rejected[i][j].load(Relaxed)
                );
            }
        }
        o.push_str("# HELP shoplake_requests_total Collection requests answered.\n# TYPE shoplake_requests_total counter\n");
        for (i, p) in PROTOCOLS.iter().enumerate() {
            let _ = writeln!(
                o,
                "shoplake_requests_total{{protocol=\"{p}\"}} {}",
                self.requests[i].load(Relaxed)
            );
        }
        o.push_str("# HELP shoplake_request_duration_seconds Collection request latency.\n# TYPE shoplake_request_duration_seconds histogram\n");
        self.request_seconds
            .render(&mut o, "shoplake_request_duration_seconds", "");
        o.push_str("# HELP shoplake_wal_append_seconds Event-log append latency (write and fsync of a group).\n# TYPE shoplake_wal_append_seconds histogram\n");
        self.append_seconds
            .render(&mut o, "shoplake_wal_append_seconds", "");
        o.push_str("# HELP shoplake_recommendation_seconds Latency of GET /api/recommendations.\n# TYPE shoplake_recommendation_seconds histogram\n");
        self.recs_seconds
            .render(&mut o, "shoplake_recommendation_seconds", "");
        let gauges = [
            (
                "shoplake_wal_bytes",
                "gauge",
                "Bytes of the event log on disk.",
                log.disk_bytes as f64,
            ),
            (
                "shoplake_wal_fsyncs_total",
                "counter",
                "fsyncs of the event log.",
                log.fsyncs as f64,
            ),
            (
                "shoplake_wal_fsync_seconds_avg",
                "gauge",
                "Mean fsync latency of the event log.",
                log.fsync_avg_micros as f64 / 1e6,
            ),
            (
                "shoplake_wal_fsync_seconds_last",
                "gauge",
                "Latency of the last fsync of the event log.",
                log.fsync_last_micros as f64 / 1e6,
            ),
            (
                "shoplake_sink_lag_records",
                "gauge",
                "Event-log records not yet committed to the lake.",
                log.lag_records as f64,
            ),
            (
                "shoplake_sink_lag_seconds",
                "gauge",
                "Age of the oldest accepted event not yet committed to the lake.",
                self.sink_lag_micros.load(Relaxed) as f64 / 1e6,
            ),
            (
                "shoplake_cache_hits_total",
                "counter",
                "Report and SQL answers served from the answer cache.",
                self.cache_hits.load(Relaxed) as f64,
            ),
            (
                "shoplake_cache_misses_total",
                "counter",
                "Report and SQL answers computed, then kept in the answer cache.",
                self.cache_misses.load(Relaxed) as f64,
            ),
            (
                "shoplake_sink_events_committed_total",
                "counter",
                "Events committed to the lake by the sink.",
                self.committed.load(Relaxed) as f64,
            ),
            (
                "shoplake_sink_duplicates_total",
                "counter",
                "Client retries dropped by event_id.",
                self.duplicates.load(Relaxed) as f64,
            ),
            (
                "shoplake_sink_errors_total",
                "counter",
                "Failed sink commits (each is retried).",
                self.sink_errors.load(Relaxed) as f64,
            ),
            (
                "shoplake_sink_files_compacted_total",
                "counter",
                "Small files of the sink's tables compacted away by their upkeep (lake.stream_upkeep_secs).",
                self.upkeep_compacted.load(Relaxed) as f64,
            ),
            (
                "shoplake_sink_upkeep_errors_total",
                "counter",
                "Failed upkeep rounds of the sink's tables (each tried again a round later).",
                self.upkeep_errors.load(Relaxed) as f64,
            ),
        ];
        for (name, ty, help, v) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {v}");
        }
        o.push_str("# HELP shoplake_sink_commit_seconds Lake commit latency of one micro-batch.\n# TYPE shoplake_sink_commit_seconds histogram\n");
        self.commit_seconds
            .render(&mut o, "shoplake_sink_commit_seconds", "");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_and_exposition() {
        let h = Histogram::new(LATENCY_BOUNDS);
        for _ in 0..99 {
            h.observe_micros(800);
        }
        h.observe_micros(30_000);
        assert_eq!(h.quantile(0.5), 0.001);
        assert_eq!(h.quantile(0.99), 0.001);
        assert_eq!(h.quantile(1.0), 0.05);
        let m = Metrics::default();
        m.accepted[protocol_index("ga4")].fetch_add(3, Relaxed);
        m.reject(protocol_index("posthog"), Reason::Unauthorized, 2);
        let text = m.render(LogFigures::default());
        assert!(text.contains("shoplake_events_accepted_total{protocol=\"ga4\"} 3"));
        assert!(text.contains(
            "shoplake_events_rejected_total{protocol=\"posthog\",reason=\"unauthorized\"} 2"
        ));
        assert!(text.contains("shoplake_request_duration_seconds_bucket{le=\"+Inf\"} 0"));
    }
}
