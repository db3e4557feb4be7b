//! The error type of the order store.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Status;

/// `Result` with [`OrderError`] as the default error.
pub type Result<T, E = OrderError> = std::result::Result<T, E>;

/// One thing wrong with a request.
///
/// `field` is a JSON pointer into the request body (`/lines/0/quantity`; `""`
/// for the body as a whole), or the name of a query parameter (`cursor`,
/// `from`, ...) or header (`Idempotency-Key`) for what does not come from the
/// body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Where: a JSON pointer, a query parameter or a header name.
    pub field: String,
    /// What is wrong, in words meant for the developer calling the API.
    pub reason: String,
}

impl Problem {
    /// A problem at `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

/// Why an order operation failed, grouped by what the caller can do about it.
///
/// Suggested HTTP mapping: [`OrderError::http_status`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum OrderError {
    /// The request is malformed or breaks a rule; every problem found is
    /// listed, not only the first.
    #[error("invalid request: {}", join(.0))]
    Invalid(Vec<Problem>),
    /// No order has this id.
    #[error("order {0:?} not found")]
    NotFound(String),
    /// The request contradicts what is stored: an order id or idempotency key
    /// already used with a different body, or a stale `expected_version`.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The status machine does not allow this change.
    #[error(
        "cannot change the status from {from} to {to}; allowed from {from}: {}",
        list(allowed)
    )]
    InvalidTransition {
        /// The current status.
        from: Status,
        /// The status asked for.
        to: Status,
        /// The statuses reachable from `from` (empty for a terminal status).
        allowed: Vec<Status>,
    },
    /// The database failed or could not be reached. The message names the
    /// cause (never the SQL); retrying may help.
    #[error("order database: {0}")]
    Database(String),
}

impl OrderError {
    /// The HTTP status this error maps to: 422 for [`Invalid`](Self::Invalid),
    /// 404, 409 for [`Conflict`](Self::Conflict) and
    /// [`InvalidTransition`](Self::InvalidTransition), 503 for
    /// [`Database`](Self::Database).
    pub fn http_status(&self) -> u16 {
        match self {
            OrderError::Invalid(_) => 422,
            OrderError::NotFound(_) => 404,
            OrderError::Conflict(_) | OrderError::InvalidTransition { .. } => 409,
            OrderError::Database(_) => 503,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> OrderError {
        OrderError::Invalid(vec![Problem::new(field, reason)])
    }
}

fn join(problems: &[Problem]) -> String {
    let parts: Vec<String> = problems.iter().map(Problem::to_string).collect();
    parts.join("; ")
}

fn list(statuses: &[Status]) -> String {
    if statuses.is_empty() {
        return "none (terminal status)".into();
    }
    let parts: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    parts.join(", ")
}

impl From<sqlx::Error> for OrderError {
    fn from(e: sqlx::Error) -> OrderError {
        OrderError::Database(describe_sqlx(&e))
    }
}

/// A message for a database error that names the cause without the SQL.
pub(crate) fn describe_sqlx(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::PoolTimedOut => {
            "no database connection became free in time (overloaded?)".into()
        }
        sqlx::Error::PoolClosed => "the order store is closed".into(),
        sqlx::Error::Io(io) => format!("I/O error talking to the database: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS error talking to the database: {tls}"),
        sqlx::Error::Configuration(c) => format!("bad database configuration: {c}"),
        sqlx::Error::Protocol(p) => format!("database protocol error: {p}"),
        sqlx::Error::ColumnDecode { index, source } => {
            format!("cannot decode column {index}: {source} (schema changed underneath?)")
        }
        sqlx::Error::RowNotFound => "expected row not found".into(),
        other => other.to_string(),
    }
}
