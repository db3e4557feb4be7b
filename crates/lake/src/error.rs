use std::path::PathBuf;

/// The result type of the lake.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// What can go wrong in the lake, grouped by cause.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file was refused whole (wrong format, bad header, too large, ...).
    #[error("{path}: refused: {reason}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The Delta log or a Delta operation failed.
    #[error("delta table {table}: {source}")]
    Delta {
        /// `zone.name` of the table.
        table: String,
        /// The delta-rs error.
        source: Box<deltalake::DeltaTableError>,
    },
    /// Arrow or Parquet could not encode or decode data.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A query over the lake failed.
    #[error("datafusion: {0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
    /// Data broke an invariant the lake relies on: a bug upstream.
    #[error("internal: {0}")]
    Internal(String),
}

impl LakeError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LakeError::Io {
            path: path.into(),
            source,
        }
    }

    /// A Delta error on `table`.
    pub fn delta(table: impl Into<String>, source: deltalake::DeltaTableError) -> Self {
        LakeError::Delta {
            table: table.into(),
            source: Box::new(source),
        }
    }
}

impl From<datafusion::error::DataFusionError> for LakeError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        LakeError::DataFusion(Box::new(e))
    }
}
