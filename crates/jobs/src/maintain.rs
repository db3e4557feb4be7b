//! Lake maintenance: compaction of small files, vacuum of files no recent
//! version uses, trimming of the Delta logs, and the raw zone's retention.
//! `shoplake lake maintain` runs it; `shoplake serve` runs it on
//! `lake.maintenance_schedule` (03:30 UTC daily by default).
//!
//! It holds the pipeline lock, so it never rewrites a table a run is
//! writing. The collector's sink may append meanwhile: Delta merges an
//! append with a compaction, and vacuum deletes only files that no version
//! of the retention period references.

use std::time::{Duration, Instant};

use serde::Serialize;
use shoplake_core::config::Config;
use shoplake_core::schema::{self, Storage, Table};
use shoplake_lake::{Lake, MaintainOptions, Maintained};

use crate::error::Result;
use crate::pipeline;

/// What to do.
#[derive(Debug, Clone)]
pub struct MaintainRun {
    /// Tables (default: every Delta table).
    pub tables: Vec<&'static Table>,
    /// Compact tables with more data files than this; `None`: the
    /// configured `lake.compact_after_files`.
    pub compact_above: Option<u64>,
    /// Whether to vacuum and trim the logs.
    pub vacuum: bool,
    /// Vacuum retention; `None`: `lake.vacuum_retain_hours`.
    pub vacuum_retain: Option<Duration>,
    /// Raw-zone retention in days; `None`: `lake.raw_retention_days` (0: off).
    pub raw_retention_days: Option<u32>,
    /// Today, days since the epoch (retention counts back from it).
    pub today: i32,
    /// Report only.
    pub dry_run: bool,
}

/// What it did.
#[derive(Debug, Clone, Serialize)]
pub struct MaintainReport {
    /// Per table.
    pub tables: Vec<Maintained>,
    /// Raw partitions deleted (`source/date`).
    pub raw_partitions_removed: Vec<String>,
    /// Their bytes.
    pub raw_bytes_removed: u64,
    /// Wall time.
    pub seconds: f64,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// Runs maintenance.
pub async fn run(lake: &Lake, cfg: &Config, m: &MaintainRun) -> Result<MaintainReport> {
    let t0 = Instant::now();
    let _lock = pipeline::lock(lake)?;
    let tables: Vec<&'static Table> = if m.tables.is_empty() {
        schema::TABLES
            .iter()
            .filter(|t| t.storage == Storage::Delta)
            .collect()
    } else {
        m.tables.clone()
    };
    let opts = MaintainOptions {
        compact_above: Some(
            m.compact_above
                .unwrap_or(cfg.lake.compact_after_files as u64)
                .max(1),
        ),
        vacuum_retain: m.vacuum.then(|| {
            m.vacuum_retain
                .unwrap_or(Duration::from_secs(cfg.lake.vacuum_retain_hours * 3600))
        }),
        // also the files whose tombstones have expired (the sink's tables
        // keep them an hour, see Lake::tidy_stream_table) and those of
        // commits that never happened (a crash between writing and committing)
        vacuum_full: true,
        log_retain: m
            .vacuum
            .then(|| Duration::from_secs(cfg.lake.log_retain_hours * 3600)),
        dry_run: m.dry_run,
    };
    let mut out = Vec::new();
    for t in tables {
        out.push(lake.maintain(t, &opts).await?);
    }
    let days = m.raw_retention_days.unwrap_or(cfg.lake.raw_retention_days);
    let (removed, bytes) = if days > 0 {
        pipeline::retire_raw_partitions(lake, m.today - days as i32, m.dry_run)?
    } else {
        (Vec::new(), 0)
    };
    Ok(MaintainReport {
        tables: out,
        raw_partitions_removed: removed,
        raw_bytes_removed: bytes,
        seconds: t0.elapsed().as_secs_f64(),
        dry_run: m.dry_run,
    })
}
