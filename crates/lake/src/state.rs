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
