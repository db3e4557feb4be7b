//! The crate's one error type, grouped by cause.

use std::fmt;

/// Why a fit, a transform or a metric could not produce a result.
///
/// Every fit validates its input first and returns one of these instead of
/// panicking or producing `NaN`.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input has no rows (or no items, no customers) to learn from.
    Empty(&'static str),
    /// Rows of different lengths, or two inputs that must have the same length
    /// do not.
    Shape(String),
    /// A value is `NaN` or infinite, or outside its domain (a negative count,
    /// `t_x > T`, a probability outside `[0, 1]`).
    InvalidValue(String),
    /// The input is well formed but carries no signal to fit: one class only,
    /// every feature constant, fewer distinct points than clusters.
    Degenerate(String),
    /// A configuration value is out of range (`k = 0`, learning rate ≤ 0, …).
    Config(String),
    /// An iterative method did not reach a usable answer (a non-finite
    /// optimum, a series that did not converge).
    NotConverged(String),
    /// A model could not be written to or read from JSON.
    Json(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty(what) => write!(f, "empty input: {what}"),
            Error::Shape(msg) => write!(f, "shape mismatch: {msg}"),
            Error::InvalidValue(msg) => write!(f, "invalid value: {msg}"),
            Error::Degenerate(msg) => write!(f, "degenerate input: {msg}"),
            Error::Config(msg) => write!(f, "invalid configuration: {msg}"),
            Error::NotConverged(msg) => write!(f, "did not converge: {msg}"),
            Error::Json(msg) => write!(f, "model JSON: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
