//! The file validator and router (`shoplake import`).
//!
//! For one file claimed to be of a source it: refuses the file whole when it is
//! not what it claims (too large, binary, not UTF-8, not the format its name
//! says, a CSV header without the source's required columns, a JSON array that
//! does not parse, or more bad rows than `max_bad_row_ratio`); otherwise checks
//! every row with the source's rules, writes the good rows as received to
//! `raw/<source>/date=<row date>/<name>-<hash>.<ext>` and the bad ones, with
//! file, line and reason, to `quarantine.<source>`.
//!
//! Idempotent: the content hash (BLAKE3 of the decompressed bytes) of every
//! imported file is recorded in `state/imports.json`; importing the same
//! content again changes nothing. Output file names carry the hash and the
//! quarantine write replaces the rows of that hash, so an import killed
//! half-way and run again leaves exactly one copy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoplake_core::Rejection;
use shoplake_core::sources::{self, Format, Source};
use shoplake_core::time;

use crate::error::{LakeError, Result};
use crate::files;
use crate::lake::{Lake, WriteMode};
use crate::quarantine::{self, QuarantineBuilder, Stage};
use crate::state;

/// Limits of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Largest file, in bytes, after decompression.
    pub max_file_bytes: u64,
    /// Refuse the file when more than this share of its rows is bad (files
    /// of 20 rows or more).
    pub max_bad_ratio: f64,
    /// "Now" in µs since the epoch (the quarantine time, and the partition of
    /// products and of rejected rows).
    pub now_micros: i64,
}

/// What happened to a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Rows were routed.
    Imported,
    /// The same content was imported before; nothing changed.
    AlreadyImported {
        /// When, RFC 3339.
        at: String,
        /// The file it came from then.
        file: String,
    },
    /// The file was refused whole.
    Refused(String),
}

/// The result of importing one file.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The file.
    pub file: PathBuf,
    /// The source it was imported as.
    pub source: Source,
    /// BLAKE3 of its decompressed content (empty if it could not be read).
    pub hash: String,
    /// What happened.
    pub outcome: Outcome,
    /// Rows read.
    pub rows: u64,
    /// Rows routed to raw.
    pub good: u64,
    /// Rows quarantined.
    pub quarantined: u64,
    /// Good rows per date partition.
    pub partitions: BTreeMap<i32, u64>,
    /// The first few rejections: (line, reason).
    pub sample_errors: Vec<(u64, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestEntry {
    source: String,
    file: String,
    imported_at: String,
    rows: u64,
    good: u64,
    quarantined: u64,
}

type Manifest = BTreeMap<String, ManifestEntry>;

fn manifest_path(lake: &Lake) -> PathBuf {
    lake.state_dir().join("imports.json")
}

/// Imports one file. Errors are failures of the lake itself; a bad file is an
/// [`Outcome::Refused`] report.
pub async fn import_file(
    lake: &Lake,
    source: Source,
    path: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let mut report = ImportReport {
        file: path.to_path_buf(),
        source,
        hash: String::new(),
        outcome: Outcome::Imported,
        rows: 0,
        good: 0,
        quarantined: 0,
        partitions: BTreeMap::new(),
        sample_errors: Vec::new(),
    };
    let refuse = |mut r: ImportReport, why: String| {
        r.outcome = Outcome::Refused(why);
        Ok(r)
    };
    let meta = fs::metadata(path).map_err(|e| LakeError::io(path, e))?;
    if !meta.is_file() {
        return refuse(report, "not a regular file".into());
    }
    if meta.len() > opts.max_file_bytes {
        return refuse(
            report,
            format!(
                "{} bytes is over the {} MiB limit",
                meta.len(),
                opts.max_file_bytes >> 20
            ),
        );
    }
    let bytes = fs::read(path).map_err(|e| LakeError::io(path, e))?;
    let bytes = match files::decompress(bytes, opts.max_file_bytes) {
        Ok(b) => b,
        Err(e) => return refuse(report, e),
    };
    report.hash = blake3::hash(&bytes).to_hex().to_string();
    let (text, format) = match files::into_text(path, bytes) {
        Ok(t) => t,
        Err(e) => return refuse(report, e),
    };
    let text = text.as_str();

    // One import at a time per data dir: the manifest is read-modify-write.
    let lock_path = lake.state_dir().join("imports.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| LakeError::io(&lock_path, e))?;
    lock.lock().map_err(|e| LakeError::io(&lock_path, e))?;

    let mut manifest: Manifest = state::read_json(&manifest_path(lake))?;
    if let Some(prev) = manifest.get(&report.hash)
        && prev.source == source.name()
    {
        report.outcome = Outcome::AlreadyImported {
            at: prev.imported_at.clone(),
            file: prev.file.clone(),
        };
        report.rows = prev.rows;
        return Ok(report);
    }

    let today = opts.now_micros.div_euclid(time::MICROS_PER_DAY) as i32;
    let file_label = path.display().to_string();
    let mut q = QuarantineBuilder::new(opts.now_micros, Stage::Import, &file_label, &report.hash);
    let mut by_date: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    let note = |line: u64,
                why: &Rejection,
                raw: &str,
                q: &mut QuarantineBuilder,
                samples: &mut Vec<(u64, String)>| {
        if samples.len() < 5 {
            samples.push((line, why.to_string()));
        }
        q.push(line, why, raw, today);
    };
    let mut samples = Vec::new();
    let shape = files::for_each_row(source, format, text, 1, |row, rec| {
        let checked = rec.and_then(|r| {
            sources::validate(source, &r)?;
            sources::record_date(source, &r)
        });
        match checked {
            Ok(date) => by_date
                .entry(date.unwrap_or(today))
                .or_default()
                .push(row.raw),
            Err(why) => note(row.line, &why, row.raw, &mut q, &mut samples),
        }
    });
    report.sample_errors = samples;
    let shape = match shape {
        Ok(s) => s,
        Err(e) => return refuse(report, e),
    };
    report.rows = shape.rows;
    report.quarantined = q.len() as u64;
    report.good = report.rows - report.quarantined;
    if report.rows == 0 {
        return refuse(report, "no rows".into());
    }
    let ratio = report.quarantined as f64 / report.rows as f64;
    if report.rows >= 20 && ratio > opts.max_bad_ratio {
        let first = report
            .sample_errors
            .first()
            .map(|(l, e)| format!("; first: line {l}: {e}"))
            .unwrap_or_default();
        let why = format!(
            "{:.0}% of {} rows are invalid (limit {:.0}%){first} — is this really a {} file?",
            ratio * 100.0,
            report.rows,
            opts.max_bad_ratio * 100.0,
            source.name()
        );
        return refuse(report, why);
    }

    // Good rows, as received, one file per date partition.
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.split('.').next().unwrap_or(n))
        .filter(|s| !s.is_empty())
        .unwrap_or(source.name());
    let name = format!("{stem}-{}.{}", &report.hash[..16], format.extension());
    for (date, rows) in &by_date {
        let dir = lake
            .raw_dir(source)
            .join(format!("date={}", time::format_date(*date)));
        let mut out = String::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 256);
        if let Some(h) = &shape.header {
            out.push_str(h);
            out.push('\n');
        }
        for r in rows {
            if format == Format::Json && r.contains(['\n', '\r']) {
                // pretty-printed array element → one line (raw newlines in
                // valid JSON are whitespace; those in strings are escaped)
                out.push_str(&r.replace(['\n', '\r'], " "));
            } else {
                out.push_str(r);
            }
            out.push('\n');
        }
        state::write_atomic(&dir.join(&name), out.as_bytes())?;
        report.partitions.insert(*date, rows.len() as u64);
    }

    // Bad rows: replace this file's rows, so a re-run never duplicates them.
    let qt = quarantine::table(source);
    let pred = format!("file_hash = '{}' AND stage = 'import'", report.hash);
    let batch = q.finish();
    lake.write(qt, vec![batch], WriteMode::Replace(pred))
        .await?;

    manifest.insert(
        report.hash.clone(),
        ManifestEntry {
            source: source.name().into(),
            file: file_label,
            imported_at: time::format_ts(opts.now_micros),
            rows: report.rows,
            good: report.good,
            quarantined: report.quarantined,
        },
    );
    state::write_json(&manifest_path(lake), &manifest)?;
    Ok(report)
}
