//! The server's error type.

/// What can go wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A bad setting or argument.
    #[error("{0}")]
    Invalid(String),
    /// A file or socket operation failed.
    #[error("{0}")]
    Io(String),
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] shoplake_log::Error),
    /// The lake failed.
    #[error("lake: {0}")]
    Lake(#[from] shoplake_lake::LakeError),
}

/// Result with [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
