use std::time::Duration;

/// The result type of queries.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// Why a query failed, grouped by cause.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is wrong: syntax, unknown table or column, type mismatch.
    #[error("{0}")]
    Plan(String),
    /// The statement would change something; only queries are allowed.
    #[error("only read-only queries are allowed: {0}")]
    ReadOnly(String),
    /// The query ran past the configured timeout.
    #[error("query cancelled after the {0:?} timeout (query.timeout_secs)")]
    Timeout(Duration),
    /// The query needed more memory than query.memory_limit_mb allows.
    #[error("{0} (raise query.memory_limit_mb or narrow the query)")]
    Resources(String),
    /// A report name or parameter is wrong.
    #[error("{0}")]
    Report(String),
    /// Execution failed.
    #[error("{0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
    /// Output could not be written.
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] shoplake_lake::LakeError),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        QueryError::DataFusion(Box::new(e))
    }
}
