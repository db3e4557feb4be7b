//! # shoplake-lake
//!
//! The lakehouse: where data lives and how it gets there safely.
//!
//! ```text
//!  <data>/
//!    lake/
//!      raw/<source>/date=YYYY-MM-DD/*.csv|*.json   landing files, as received
//!      processed/<table>/   Delta tables, typed and clean
//!      curated/<table>/     Delta tables, business-ready
//!      quarantine/<source>/ Delta tables, rejected rows and why
//!    state/                 bookmarks, import manifest (and later WAL, database)
//! ```
//!
//! * [`Lake`] opens the folders and is the one way into a Delta table
//!   ([`Lake::write`], one atomic commit per call);
//! * [`import`] is the file validator and router;
//! * [`files`] (from `shoplake-core`) reads batch files (gzip/zstd, CSV, JSON lines or arrays);
//! * [`catalog`] describes every table from its Delta log;
//! * [`quarantine`] builds rejected-row batches;
//! * [`state`] writes small state files atomically.
#![deny(missing_docs)]

pub mod catalog;
pub use shoplake_core::files;
pub mod import;
pub mod quarantine;
pub mod state;

mod error;
mod lake;

pub use error::{LakeError, Result};
pub use lake::{
    Appender, Erased, Lake, MaintainOptions, Maintained, STREAM_TABLES, WriteMode, WriteStats,
    conform, dates_predicate, is_column_name,
};

pub use deltalake;
