use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::Offset;

/// Number of fsync latency buckets: bucket `i` counts latencies in
/// `[2^(i-1), 2^i)` microseconds (bucket 0: under 1 µs), the last bucket
/// everything longer.
pub const FSYNC_BUCKETS: usize = 32;

/// A snapshot of the log's counters since it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `append` calls that were acknowledged.
    pub appends: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Bytes written for them (frames included).
    pub bytes: u64,
    /// Group writes: one per drain of the queue, shared by every caller in it.
    pub groups: u64,
    /// fsyncs of segment data (group commits, interval syncs, segment rolls).
    pub fsyncs: u64,
    /// The last fsync's duration, in microseconds.
    pub fsync_last_micros: u64,
    /// Mean fsync duration, in microseconds.
    pub fsync_avg_micros: u64,
    /// Longest fsync, in microseconds.
    pub fsync_max_micros: u64,
    /// fsync durations by power of two (see [`FSYNC_BUCKETS`]).
    pub fsync_histogram: [u64; FSYNC_BUCKETS],
    /// Segment files on disk.
    pub segments: usize,
    /// Bytes on disk.
    pub disk_bytes: u64,
    /// The oldest retained offset.
    pub start_offset: Offset,
    /// The offset the next record will get.
    pub end_offset: Offset,
    /// Records below this are readable.
    pub visible_end: Offset,
    /// Records below this are committed downstream.
    pub committed: Offset,
}

impl WalStats {
    /// An upper bound, in microseconds, of the `q` quantile (0.0–1.0) of
    /// fsync durations, from the histogram (so within a factor of two).
    pub fn fsync_quantile_micros(&self, q: f64) -> u64 {
        let total: u64 = self.fsync_histogram.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.fsync_histogram.iter().enumerate() {
            seen += n;
            if seen >= want {
                return 1u64 << i;
            }
        }
        u64::MAX
    }
}

/// The writer's live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub groups: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_total_micros: AtomicU64,
    pub fsync_last_micros: AtomicU64,
    pub fsync_max_micros: AtomicU64,
    pub fsync_histogram: [AtomicU64; FSYNC_BUCKETS],
}

impl Counters {
    pub(crate) fn record_fsync(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.fsyncs.fetch_add(1, Relaxed);
        self.fsync_total_micros.fetch_add(micros, Relaxed);
        self.fsync_last_micros.store(micros, Relaxed);
        self.fsync_max_micros.fetch_max(micros, Relaxed);
        let bucket = (64 - micros.leading_zeros() as usize).min(FSYNC_BUCKETS - 1);
        self.fsync_histogram[bucket].fetch_add(1, Relaxed);
    }

    /// Fills the counter fields of `s`.
    pub(crate) fn fill(&self, s: &mut WalStats) {
        s.appends = self.appends.load(Relaxed);
        s.records = self.records.load(Relaxed);
        s.bytes = self.bytes.load(Relaxed);
        s.groups = self.groups.load(Relaxed);
        s.fsyncs = self.fsyncs.load(Relaxed);
        s.fsync_last_micros = self.fsync_last_micros.load(Relaxed);
        s.fsync_avg_micros = self
            .fsync_total_micros
            .load(Relaxed)
            .checked_div(s.fsyncs)
            .unwrap_or(0);
        s.fsync_max_micros = self.fsync_max_micros.load(Relaxed);
        for (out, n) in s.fsync_histogram.iter_mut().zip(&self.fsync_histogram) {
            *out = n.load(Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_histogram() {
        let c = Counters::default();
        for micros in [3, 3, 3, 900] {
            c.record_fsync(Duration::from_micros(micros));
        }
        let mut s = WalStats::default();
        c.fill(&mut s);
        assert_eq!(s.fsyncs, 4);
        assert_eq!(s.fsync_avg_micros, 227);
        assert_eq!(s.fsync_max_micros, 900);
        assert_eq!(s.fsync_quantile_micros(0.5), 4);
        assert_eq!(s.fsync_quantile_micros(0.99), 1024);
    }
}
