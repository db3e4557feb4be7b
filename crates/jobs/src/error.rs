use std::path::PathBuf;

/// The result type of jobs.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A file could not be read.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] shoplake_lake::LakeError),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] shoplake_query::QueryError),
    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The operational store (SQLite) failed.
    #[error("operational store: {0}")]
    Store(String),
    /// Quality checks of severity `error` failed: curated tables kept.
    #[error("quality checks failed: {0}")]
    QualityBlocked(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// An invariant broke: a bug.
    #[error("internal: {0}")]
    Internal(String),
}
