//! # shoplake-query
//!
//! SQL over the lake, with DataFusion.
//!
//! * [`QueryEngine`] — a session with catalog `shoplake` and one schema per
//!   zone (`processed.transactions`, `curated.daily_kpis`, ...); read-only
//!   queries with a timeout and a memory limit; errors that name what is wrong
//!   and list what exists;
//! * [`reports`] — the saved business reports (`sql/reports/*.sql`);
//! * [`guard`] — what makes the SQL API read-only;
//! * [`output`] — rows as a table, CSV or JSON;
//! * [`export`] — a table as one Parquet, CSV or JSON-lines file, locally or
//!   in an object store.
#![deny(missing_docs)]

pub mod export;
pub mod guard;
pub mod output;
pub mod raw;
pub mod reports;

mod engine;
mod error;

pub use engine::QueryEngine;
pub use error::{QueryError, Result};
pub use guard::CATALOG;
