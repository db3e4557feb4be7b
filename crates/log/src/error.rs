use std::path::PathBuf;

use crate::Offset;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the event log, grouped by cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the log's files failed.
    #[error("event log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A segment is damaged where damage cannot be a torn last write:
    /// acknowledged records may be lost, so the log refuses to guess.
    #[error("event log corrupt: {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the damage in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// Backpressure: the disk budget (`max_disk_bytes`) is spent until the
    /// sink commits and retention frees segments. The collector answers 503.
    #[error("event log full: disk budget exceeded, retry later")]
    Full,
    /// The log was closed; nothing more can be appended.
    #[error("event log closed")]
    Closed,
    /// The writer stopped after an I/O error: until it resumes by itself
    /// (a failed write, once space is back) or the log is reopened (a failed
    /// fsync). See [`Wal::failure`](crate::Wal::failure).
    #[error("event log: appends stopped after an I/O error: {0}")]
    Stopped(String),
    /// The records asked for were deleted by retention.
    #[error("event log: offset {from} was deleted by retention (oldest retained: {oldest})")]
    Deleted {
        /// The offset asked for.
        from: Offset,
        /// The oldest offset still on disk.
        oldest: Offset,
    },
    /// A record is larger than `max_record_bytes`.
    #[error("event log: record of {len} bytes is larger than the limit of {max}")]
    TooLarge {
        /// The record's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `commit` named an offset past the end of the log: a bug in the caller.
    #[error("event log: cannot commit up to {upto}, the log ends at {end}")]
    CommitPastEnd {
        /// The offset given.
        upto: Offset,
        /// The log's end offset.
        end: Offset,
    },
    /// Another [`Wal`](crate::Wal) holds the directory.
    #[error("event log {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The options are invalid.
    #[error("event log options: {0}")]
    Config(String),
}

impl Error {
    /// A copy of an I/O error for each caller of a failed group (io::Error is
    /// not `Clone`).
    pub(crate) fn io_copy(e: &std::io::Error) -> Error {
        Error::Io(std::io::Error::new(e.kind(), e.to_string()))
    }
}
