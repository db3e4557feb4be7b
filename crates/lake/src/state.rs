//! Small state files under `<data>/state/`: written to a temporary file,
//! fsynced, then renamed over the old one, so a crash leaves the old or the
//! new version and never a torn one.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{LakeError, Result};

/// Reads a JSON state file; a missing file gives `T::default()`.
pub fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            LakeError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(LakeError::io(path, e)),
    }
}

/// Writes a JSON state file atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| LakeError::Internal(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(|e| LakeError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| LakeError::io(&tmp, e))?;
    f.sync_all().map_err(|e| LakeError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| LakeError::io(path, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The key of personal-data pseudonyms (`[privacy]`): `SHOPLAKE_PII_KEY`
/// (`env`) if set, else `key_file`, else `<data>/state/pii.key`, which is
/// created with 32 random bytes (mode 0600) when missing. A key shorter than
/// 32 bytes is an error: it could be guessed.
pub fn pii_key(
    state_dir: &Path,
    key_file: Option<&Path>,
    env: Option<&str>,
) -> Result<shoplake_core::privacy::PiiKey> {
    use shoplake_core::privacy::PiiKey;
    let short = |what: &Path| {
        LakeError::Refused {
        path: what.to_path_buf(),
        reason: "a key shorter than 32 bytes could be guessed: make one with `head -c 32 /dev/urandom | base64`".into(),
    }
    };
    if let Some(v) = env.filter(|v| !v.trim().is_empty()) {
        return PiiKey::from_secret(v.as_bytes())
            .ok_or_else(|| short(Path::new("SHOPLAKE_PII_KEY")));
    }
    let default = state_dir.join("pii.key");
    let path = key_file.unwrap_or(&default);
    match fs::read(path) {
        Ok(bytes) => PiiKey::from_secret(&bytes).ok_or_else(|| short(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && key_file.is_none() => {
            let mut secret = [0u8; 32];
            let mut r =
                fs::File::open("/dev/urandom").map_err(|e| LakeError::io("/dev/urandom", e))?;
            std::io::Read::read_exact(&mut r, &mut secret)
                .map_err(|e| LakeError::io("/dev/urandom", e))?;
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            fs::create_dir_all(state_dir).map_err(|e| LakeError::io(state_dir, e))?;
            let mut f = {
                let mut o = fs::OpenOptions::new();
                o.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                match o.open(path) {
                    Ok(f) => f,
                    // another process made it first: use theirs
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return pii_key(state_dir, key_file, None);
                    }
                    Err(e) => return Err(LakeError::io(path, e)),
                }
            };
            f.write_all(hex.as_bytes())
                .map_err(|e| LakeError::io(path, e))?;
            f.sync_all().map_err(|e| LakeError::io(path, e))?;
            Ok(PiiKey::from_secret(hex.as_bytes()).expect("64 bytes"))
        }
        Err(e) => Err(LakeError::io(path, e)),
    }
}

/// Days a pipeline run must revisit, marked by `shoplake serve` as it
/// writes them: one empty file per day under `<data>/state/<kind>/`, touched
/// after each commit and removed by the pipeline once it has processed the
/// day (if not touched since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// Days that gained collected events (`state/collected/`): sessionised
    /// and curated by the next run.
    Collected,
    /// Days whose orders changed through the orders API (`state/orders/`):
    /// checked and curated by the next run.
    Orders,
}

impl Marks {
    fn dir(self, lake: &crate::Lake) -> std::path::PathBuf {
        lake.state_dir().join(match self {
            Marks::Collected => "collected",
            Marks::Orders => "orders",
        })
    }
}

/// `<data>/state/collected/`: see [`Marks::Collected`].
pub fn collected_dir(lake: &crate::Lake) -> std::path::PathBuf {
    Marks::Collected.dir(lake)
}

/// Marks day `d` (days since 1970-01-01) as having new collected events.
pub fn mark_collected(lake: &crate::Lake, d: i32) {
    mark_day(lake, Marks::Collected, d);
}

/// Marks day `d` for the next pipeline run. Best effort: a failure is
/// logged, the data is in the lake regardless.
pub fn mark_day(lake: &crate::Lake, kind: Marks, d: i32) {
    let dir = kind.dir(lake);
    let path = dir.join(shoplake_core::time::format_date(d));
    let touch = || -> std::io::Result<()> {
        fs::create_dir_all(&dir)?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        f.set_modified(std::time::SystemTime::now())
    };
    if let Err(e) = touch() {
        tracing::warn!(path = %path.display(), error = %e, "cannot mark the day for the pipeline");
    }
}

/// Days marked by [`mark_collected`], with when each was last marked.
pub fn collected_days(lake: &crate::Lake) -> Vec<(i32, std::time::SystemTime)> {
    marked_days(lake, Marks::Collected)
}

/// Days marked by [`mark_day`], with when each was last marked.
pub fn marked_days(lake: &crate::Lake, kind: Marks) -> Vec<(i32, std::time::SystemTime)> {
    let Ok(entries) = fs::read_dir(kind.dir(lake)) else {
        return Vec::new();
    };
    let mut out: Vec<(i32, std::time::SystemTime)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let d = shoplake_core::time::parse_date(name.to_str()?).ok()?;
            let at = e.metadata().ok()?.modified().ok()?;
            Some((d, at))
        })
        .collect();
    out.sort();
    out
}

/// Removes day `d`'s collected mark unless it was marked again after `since`.
pub fn unmark_collected(lake: &crate::Lake, d: i32, since: std::time::SystemTime) {
    unmark_day(lake, Marks::Collected, d, since);
}

/// Removes day `d`'s mark unless it was marked again after `since`.
pub fn unmark_day(lake: &crate::Lake, kind: Marks, d: i32, since: std::time::SystemTime) {
    let path = kind.dir(lake).join(shoplake_core::time::format_date(d));
    let fresh = fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|m| m >= since);
    if !fresh {
        let _ = fs::remove_file(&path);
    }
}
