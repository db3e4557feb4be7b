//! What the lake holds: per table its schema, partitions, rows, files, size,
//! version and last update (`shoplake catalog`). Read from the Delta logs and
//! the raw folders, never by scanning data.

use std::collections::BTreeSet;
use std::path::Path;

use shoplake_core::schema::{Storage, TABLES, Table};
use shoplake_core::sources::Source;

use crate::error::{LakeError, Result};
use crate::lake::Lake;

/// Facts about one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableInfo {
    /// `zone.name`.
    pub name: String,
    /// `delta` or `files`.
    pub storage: &'static str,
    /// Delta version (`None` for files or a table never written).
    pub version: Option<u64>,
    /// Rows (`None` when unknown: landing files are not counted).
    pub rows: Option<u64>,
    /// Data files.
    pub files: u64,
    /// Bytes of data files.
    pub bytes: u64,
    /// Distinct partitions (dates).
    pub partitions: u64,
    /// Oldest partition.
    pub first_partition: Option<String>,
    /// Newest partition.
    pub last_partition: Option<String>,
    /// Last change, RFC 3339.
    pub last_update: Option<String>,
}

fn millis_to_rfc3339(ms: i64) -> String {
    shoplake_core::time::format_ts(ms * 1000)
}

/// Facts about one table.
pub async fn describe(lake: &Lake, t: &Table) -> Result<TableInfo> {
    let mut info = TableInfo {
        name: t.qualified(),
        storage: match t.storage {
            Storage::Delta => "delta",
            Storage::Files => "files",
        },
        version: None,
        rows: None,
        files: 0,
        bytes: 0,
        partitions: 0,
        first_partition: None,
        last_partition: None,
        last_update: None,
    };
    let mut parts = BTreeSet::new();
    match t.storage {
        Storage::Files => {
            let source = Source::parse(t.name).expect("raw file tables are sources");
            let mut newest = 0i64;
            for f in list_raw_files(&lake.raw_dir(source))? {
                info.files += 1;
                info.bytes += f.size;
                newest = newest.max(f.modified_ms);
                parts.insert(f.partition);
            }
            if newest > 0 {
                info.last_update = Some(millis_to_rfc3339(newest));
            }
        }
        Storage::Delta => {
            let Some(table) = lake.load(t).await? else {
                return Ok(info);
            };
            let snapshot = table
                .snapshot()
                .map_err(|e| LakeError::delta(t.qualified(), e))?;
            info.version = Some(snapshot.version());
            info.last_update = snapshot
                .version_timestamp(snapshot.version())
                .map(millis_to_rfc3339);
            let mut rows = 0u64;
            for f in snapshot.log_data().iter() {
                info.files += 1;
                info.bytes += f.size().max(0) as u64;
                rows += f
                    .stats()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .and_then(|v| v.get("numRecords").and_then(|n| n.as_u64()))
                    .unwrap_or(0);
                if t.partition.is_some()
                    && let Some(Some(d)) = f.partition_values_map().get("date")
                {
                    parts.insert(d.clone());
                }
            }
            info.rows = Some(rows);
        }
    }
    info.partitions = parts.len() as u64;
    info.first_partition = parts.first().cloned();
    info.last_partition = parts.last().cloned();
    Ok(info)
}

/// Facts about every table.
pub async fn list(lake: &Lake) -> Result<Vec<TableInfo>> {
    let mut out = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        out.push(describe(lake, t).await?);
    }
    Ok(out)
}

/// One landing file in the raw zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawFile {
    /// Partition `YYYY-MM-DD`.
    pub partition: String,
    /// Absolute path.
    pub path: std::path::PathBuf,
    /// Bytes.
    pub size: u64,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
}

/// Every file under `dir/date=YYYY-MM-DD/`, sorted by partition then name.
/// Hidden and temporary files (`.name`, `_name`) are skipped.
pub fn list_raw_files(dir: &Path) -> Result<Vec<RawFile>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LakeError::io(dir, e)),
    };
    for part in entries {
        let part = part.map_err(|e| LakeError::io(dir, e))?;
        let name = part.file_name();
        let Some(date) = name.to_str().and_then(|n| n.strip_prefix("date=")) else {
            continue;
        };
        if shoplake_core::time::parse_date(date).is_err() || date.len() != 10 {
            continue;
        }
        let pdir = part.path();
        for f in std::fs::read_dir(&pdir).map_err(|e| LakeError::io(&pdir, e))? {
            let f = f.map_err(|e| LakeError::io(&pdir, e))?;
            let fname = f.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            if fname.starts_with('.') || fname.starts_with('_') {
                continue;
            }
            let meta = f.metadata().map_err(|e| LakeError::io(f.path(), e))?;
            if !meta.is_file() {
                continue;
            }
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            out.push(RawFile {
                partition: date.to_string(),
                path: f.path(),
                size: meta.len(),
                modified_ms,
            });
        }
    }
    out.sort();
    Ok(out)
}
