use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in core: configuration and values that do not parse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid: unknown key, wrong type, bad value.
    #[error("configuration: {0}")]
    Config(String),
    /// A value could not be parsed or broke a rule.
    #[error("{0}")]
    Invalid(Rejection),
}

/// Why one value or one row was rejected: the column (when one is to blame) and
/// a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The column at fault, if the problem is in one column.
    pub column: Option<&'static str>,
    /// What is wrong, e.g. `not a decimal number: "12,50"`.
    pub reason: String,
}

impl Rejection {
    /// A rejection blamed on `column`.
    pub fn column(column: &'static str, reason: impl Into<String>) -> Self {
        Rejection {
            column: Some(column),
            reason: reason.into(),
        }
    }

    /// A rejection of the whole row.
    pub fn row(reason: impl Into<String>) -> Self {
        Rejection {
            column: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "{c}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for Rejection {}
