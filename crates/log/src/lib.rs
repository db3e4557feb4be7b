//! # shoplake-log
//!
//! The event log between the HTTP collector and the lake sink: the
//! [`EventLog`] trait and [`Wal`], its embedded implementation, a segmented
//! write-ahead log on local disk.
//!
//! ```text
//!  collector (many tasks)                 writer thread                      sink task
//!  append(batch) ──► bounded queue ──► drain queue ─► one write ─► one fsync   read(from, n, bytes)
//!  ◄── offset (then HTTP 2xx) ◄──────── complete every caller of the group ──► wait_for(from)
//!                                                                             commit(upto) ─► retention
//! ```
//!
//! ## Contract
//!
//! * **Offsets** are record sequence numbers: the first record ever appended
//!   is 0, offsets are dense and never reused, and the records of one
//!   [`append`](EventLog::append) get consecutive offsets.
//! * **Acknowledgement.** `append` returns only after its records are durable
//!   as the [`FsyncPolicy`] defines it: with `Always` (the default) after an
//!   fsync, so an acknowledged record survives `kill -9` and a power cut; with
//!   `Interval` and `Never` after the write, so it survives `kill -9` but not a
//!   crash of the machine.
//! * **Visibility.** A reader sees a record only once it is durable: with
//!   `Always` and `Interval` once it is fsynced (with `Interval` that may be a
//!   little after `append` returned), with `Never` once it is written. So a
//!   sink never commits to the lake a record that a power cut could take back
//!   from the log (except with `Never`).
//! * **Order.** Reads return records in offset order; concurrent appends are
//!   ordered by the writer, each batch contiguous.
//! * **Retention.** [`commit(upto)`](EventLog::commit) records that every
//!   offset below `upto` is safe downstream (persisted atomically in
//!   `<dir>/committed`). Segments whose every record is below it are deleted;
//!   the active segment never is. Reading below the oldest retained offset is
//!   an error ([`Error::Deleted`]), never a silent skip.
//! * **Backpressure.** When the bytes on disk plus the bytes queued would
//!   pass `max_disk_bytes`, `append` fails at once with [`Error::Full`] (the
//!   collector answers 503); the queue to the writer is bounded too (callers
//!   wait for a slot).
//! * **Recovery** happens in [`Wal::open`]: every segment is scanned and
//!   its CRCs checked. A torn or corrupt tail of the *last* segment is cut off
//!   (with a warning saying how many bytes): it can only hold the last group,
//!   whose callers were never acknowledged. Damage anywhere else is
//!   [`Error::Corrupt`]: acknowledged data is never dropped silently.
//! * **Write failures.** When a write fails (a full disk, a quota), the
//!   callers of that group get an error and so do later appends
//!   ([`Error::Stopped`]; [`Wal::failure`] says why). Every second the writer
//!   cuts off what the failed write may have left after the last complete
//!   group, checks that 1 MiB can be written again, and resumes: the
//!   offsets of the failed group that were not written were never
//!   acknowledged nor visible, so they are given to the next records. (Its
//!   records written before the failure, when the group spanned a segment
//!   roll, are kept and become readable although their callers got an error:
//!   as after a crash, a client's retry may deliver them again, which the
//!   sink's event-id dedup absorbs.) A failed *fsync* stops the log until it
//!   is reopened (as PostgreSQL does: the kernel may have dropped pages that
//!   failed to write back, so only recovery knows what is on disk).
//! * **One owner.** A directory is opened by one [`Wal`] at a time (an
//!   exclusive lock on `<dir>/LOCK`).
//!
//! ## On-disk format
//!
//! ```text
//!  <dir>/LOCK                      lock file (empty)
//!  <dir>/committed                 "<offset>\n", replaced atomically (temp file, fsync, rename, fsync dir)
//!  <dir>/<first_offset:020>.wal    a segment: header, then records
//!
//!  header (32 bytes):  magic "SHOPLWAL" | version u32 = 1 | flags u32 = 0 | first offset u64
//!                      | CRC32C of the 24 bytes before it, u32 | zero u32          (little-endian)
//!  record:             payload length u32 | CRC32C(length bytes ++ payload) u32 | payload
//! ```
//!
//! A segment rolls when the next batch would take it past `segment_bytes`
//! (a batch is never split, so one larger than a segment gets a segment to
//! itself). Before a new segment is created the old one is fsynced, whatever
//! the policy, so every segment but the last is complete; the new file's
//! header and directory entry are fsynced before records go in. Because the
//! CRC covers the length, a run of zero bytes never passes for a record.
#![deny(missing_docs)]

mod error;
mod format;
mod stats;
mod wal;
mod writer;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use error::{Error, Result};
pub use stats::{FSYNC_BUCKETS, WalStats};
pub use wal::{Failure, FsyncPolicy, Wal, WalOptions};

/// For the fuzzer (`fuzz/`): scans `bytes` as a segment's content the way
/// recovery does, and checks what recovery relies on: the valid prefix is
/// within the bytes, scanning it again finds the same records and no
/// problem, and a header that decodes is the only way to any record.
/// Panics when one of those does not hold.
#[doc(hidden)]
pub fn fuzz_scan(bytes: &[u8]) {
    let len = bytes.len() as u64;
    let scan = format::scan_reader(bytes, len, 0).expect("reading memory cannot fail");
    assert!(scan.valid_len <= len.max(format::HEADER_LEN));
    if !matches!(scan.header, format::HeaderState::Valid(_)) {
        assert_eq!(scan.records, 0, "records behind a header that is not valid");
        return;
    }
    assert_eq!(scan.problem.is_none(), scan.valid_len == len);
    let prefix = &bytes[..scan.valid_len as usize];
    let again = format::scan_reader(prefix, scan.valid_len, 0).expect("memory");
    assert_eq!(
        again.records, scan.records,
        "the valid prefix rescans the same"
    );
    assert!(again.problem.is_none(), "the valid prefix has no problem");
    assert_eq!(again.index, scan.index);
}

/// A valid segment header for first offset 0 (for the fuzzer's seeds).
#[doc(hidden)]
pub fn fuzz_header() -> Vec<u8> {
    format::encode_header(0).to_vec()
}

/// A framed record (for the fuzzer's seeds).
#[doc(hidden)]
pub fn fuzz_record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    format::encode_record(&mut out, payload);
    out
}

/// A record's position in the log: its sequence number, from 0, dense and
/// never reused.
pub type Offset = u64;

/// A durable, ordered log of opaque records: what the collector appends and
/// the sink reads, commits downstream and lets go of.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `records` durably (per the fsync policy) and returns the
    /// offset of the first; the records get consecutive offsets. An empty
    /// batch writes nothing and returns [`end_offset`](EventLog::end_offset).
    ///
    /// Fails fast with [`Error::Full`] when the disk budget is spent.
    async fn append(&self, records: Vec<Vec<u8>>) -> Result<Offset>;

    /// Reads, starting at `from`, up to `max_records` records and about
    /// `max_bytes` of payload (at least one record when one is readable).
    /// Returns `(offset, payload)` pairs in order. Only durable records are
    /// visible; reading at or past the end returns nothing, reading below
    /// the oldest retained offset is [`Error::Deleted`].
    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Vec<u8>)>>;

    /// The offset the next appended record will get (the number of records
    /// ever acknowledged).
    fn end_offset(&self) -> Offset;

    /// Marks every record below `upto` as committed downstream; segments
    /// wholly below it may be deleted. Committing less than before is a no-op;
    /// past the end is [`Error::CommitPastEnd`]. Blocks for an fsync or two
    /// (the offset is persisted), so call it once per downstream commit.
    fn commit(&self, upto: Offset) -> Result<()>;

    /// Bytes the log currently holds on disk.
    fn disk_bytes(&self) -> u64;

    /// Waits until a record at or past `from` is readable, the log is closed,
    /// or `timeout` passes, whichever comes first.
    async fn wait_for(&self, from: Offset, timeout: Duration);
}
