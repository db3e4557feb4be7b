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
//! * [`curate`] — the curated models;
//! * [`quality`] — data-quality checks and anomaly detection;
//! * [`store`] — the operational store (run history, alerts; SQLite);
//! * [`alerts`] — alerts to the log and webhooks, de-duplicated;
//! * [`schedule`] — the scheduler of `shoplake serve` (cron, new files);
//! * [`maintain`] — compaction, vacuum, log trimming, raw-zone retention;
//! * [`privacy`] — erasing a person from every table;
//! * [`ml`] — segments, churn, recommendations and lifetime value;
//! * [`warehouse`] — incremental loads of lake tables into PostgreSQL, over
//!   [`pgcopy`], Arrow in PostgreSQL's binary `COPY` format.
#![deny(missing_docs)]

pub mod accounts;
pub mod alerts;
pub mod curate;
pub mod etl;
pub mod glue;
pub mod maintain;
pub mod ml;
pub mod pgcopy;
pub mod pipeline;
pub mod privacy;
pub mod quality;
pub mod schedule;
pub mod sessions;
pub mod store;
pub mod warehouse;

mod error;

pub use error::{JobError, Result};
