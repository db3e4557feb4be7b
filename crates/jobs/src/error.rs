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
    /// A step's attempt ran past `pipeline.step_timeout_secs`.
    #[error("step {0} timed out after {1} s")]
    Timeout(String, u64),
    /// A passing failure (injected by tests, or worth a retry).
    #[error("{0}")]
    Transient(String),
    /// Quality checks of severity `error` failed: curated tables kept.
    #[error("quality checks failed: {0}")]
    QualityBlocked(String),
    /// The warehouse (PostgreSQL) refused or failed a load.
    #[error("PostgreSQL: {0}")]
    Warehouse(String),
    /// An external data catalog (AWS Glue) refused or failed.
    #[error("AWS Glue: {0}")]
    Catalog(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// An invariant broke: a bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl JobError {
    /// Whether a retry may succeed: I/O, storage and timeouts, not bad
    /// input, failed checks or bugs.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            JobError::Io(..)
                | JobError::Lake(_)
                | JobError::Store(_)
                | JobError::Timeout(..)
                | JobError::Transient(_)
        )
    }
}
