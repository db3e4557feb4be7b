//! # shoplake-jobs
//!
//! The work that turns raw data into answers:
//!
//! ```text
//!  raw files ──► etl (typed rows, quarantine) ──► processed.*
//!                      clickstream ──► sessions ──► processed.sessions
//!  processed.* ──► curate (SQL models) ──► curated.*
//! ```
//!
//! * [`pipeline`] — the incremental, crash-safe pipeline run;
//! * [`etl`] — raw files to typed processed rows;
//! * [`sessions`] — sessionisation;
//! * [`curate`] — the curated models.
#![deny(missing_docs)]

pub mod curate;
pub mod etl;
pub mod pipeline;
pub mod sessions;

mod error;

pub use error::{JobError, Result};
