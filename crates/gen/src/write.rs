//! Files: atomic writes (temp name, then rename) and fast row formatting into
//! reused byte buffers.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use shoplake_core::sources::Source;
use shoplake_core::time::format_date;

/// Write buffer per file.
const BUF: usize = 1 << 20;

/// The partition folder of `source` for epoch day `day`.
pub(crate) fn partition(root: &Path, source: Source, day: i32) -> PathBuf {
    root.join(source.name())
        .join(format!("date={}", format_date(day)))
}

/// A file written under a temporary name and renamed into place on
/// [`AtomicFile::finish`]; dropped unfinished, the temporary file is removed.
pub(crate) struct AtomicFile {
    tmp: PathBuf,
    dst: PathBuf,
    out: Option<BufWriter<File>>,
    bytes: u64,
}

impl AtomicFile {
    /// Creates `dir/name` (and `dir`), writing to `dir/.name.tmp` meanwhile.
    pub(crate) fn create(dir: &Path, name: &str) -> io::Result<AtomicFile> {
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp)?;
        Ok(AtomicFile {
            tmp,
            dst: dir.join(name),
            out: Some(BufWriter::with_capacity(BUF, file)),
            bytes: 0,
        })
    }

    /// Appends bytes.
    #[inline]
    pub(crate) fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.bytes += b.len() as u64;
        self.out.as_mut().expect("open").write_all(b)
    }

    /// Flushes, closes and renames into place; returns the file's size.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        let out = self.out.take().expect("open");
        let file = out.into_inner().map_err(|e| e.into_error())?;
        drop(file);
        fs::rename(&self.tmp, &self.dst)?;
        Ok(self.bytes)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Appends the decimal digits of `n`.
#[inline]
pub(crate) fn push_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(shoplake_core::u64_digits(n, &mut [0; 20]).as_bytes());
}

/// Appends `n` zero-padded to `width` digits.
#[inline]
pub(crate) fn push_padded(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut tmp = [b'0'; 24];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = tmp.len().saturating_sub(width).min(i);
    buf.extend_from_slice(&tmp[start..]);
}

/// Appends an id: `prefix` then the 1-based number, zero-padded.
#[inline]
pub(crate) fn push_id(buf: &mut Vec<u8>, prefix: u8, n: u64, width: usize) {
    buf.push(prefix);
    push_padded(buf, n, width);
}

/// Appends cents as a decimal with two places (`1299` → `12.99`).
#[inline]
pub(crate) fn push_cents(buf: &mut Vec<u8>, cents: i64) {
    if cents < 0 {
        buf.push(b'-');
    }
    let c = cents.unsigned_abs();
    push_u64(buf, c / 100);
    buf.push(b'.');
    push_padded(buf, c % 100, 2);
}

/// Appends `2025-01-15T10:23:45.123Z` for `date` (`YYYY-MM-DD`) and a time
/// of day in milliseconds.
#[inline]
pub(crate) fn push_ts(buf: &mut Vec<u8>, date: &[u8], ms: u32) {
    let s = ms / 1000;
    buf.extend_from_slice(date);
    buf.push(b'T');
    push_padded(buf, u64::from(s / 3600), 2);
    buf.push(b':');
    push_padded(buf, u64::from((s / 60) % 60), 2);
    buf.push(b':');
    push_padded(buf, u64::from(s % 60), 2);
    buf.push(b'.');
    push_padded(buf, u64::from(ms % 1000), 3);
    buf.push(b'Z');
}

/// Appends a CSV field, quoted when it needs to be.
pub(crate) fn push_csv_field(buf: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        buf.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(s(|b| push_u64(b, 0)), "0");
        assert_eq!(
            s(|b| push_u64(b, 18_446_744_073_709_551_615)),
            "18446744073709551615"
        );
        assert_eq!(s(|b| push_id(b, b'C', 42, 5)), "C00042");
        assert_eq!(s(|b| push_id(b, b'C', 1_234_567, 5)), "C1234567");
        assert_eq!(s(|b| push_cents(b, 1299)), "12.99");
        assert_eq!(s(|b| push_cents(b, 5)), "0.05");
        assert_eq!(s(|b| push_cents(b, 100_000)), "1000.00");
        assert_eq!(
            s(|b| push_ts(b, b"2025-01-15", 37_425_123)),
            "2025-01-15T10:23:45.123Z"
        );
        assert_eq!(
            s(|b| push_ts(b, b"2025-01-15", 86_399_999)),
            "2025-01-15T23:59:59.999Z"
        );
        assert_eq!(s(|b| push_csv_field(b, "plain text")), "plain text");
        assert_eq!(s(|b| push_csv_field(b, "a, \"b\"")), "\"a, \"\"b\"\"\"");
    }

    #[test]
    fn atomic_file_replaces_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let mut f = AtomicFile::create(&p, "a.csv").unwrap();
        f.write(b"one").unwrap();
        assert!(!p.join("a.csv").exists());
        assert_eq!(f.finish().unwrap(), 3);
        assert_eq!(fs::read(p.join("a.csv")).unwrap(), b"one");
        let mut f = AtomicFile::create(&p, "a.csv").unwrap();
        f.write(b"two!").unwrap();
        drop(f);
        assert_eq!(fs::read(p.join("a.csv")).unwrap(), b"one");
        assert_eq!(fs::read_dir(&p).unwrap().count(), 1);
        let f = AtomicFile::create(&p, "a.csv").unwrap();
        f.finish().unwrap();
        assert_eq!(fs::read(p.join("a.csv")).unwrap(), b"");
    }
}
