//! # shoplake-core
//!
//! The vocabulary every other shoplake crate speaks, with no I/O of its own:
//!
//! * [`schema`] — every lake table's Arrow schema, defined once, with column docs;
//! * [`sources`] — the four batch sources (transactions, products, clickstream,
//!   reviews): their columns and the per-row type and value rules the file
//!   validator and the ETL share;
//! * [`event`] — the canonical behavioural event (`processed.events`) and its
//!   columnar builder;
//! * [`money`] and [`time`] — exact decimal money and UTC time parsing;
//! * [`config`] — `shoplake.toml`, its profiles and `SHOPLAKE_*` overrides;
//! * [`Error`] — the error type of this crate.
//!
//! ```text
//!  sources            collect             stream            lake (Delta tables)          serve
//!  JS tracker  ─┐
//!  Segment SDKs ─┤    decode → validate   embedded WAL      raw/        (as received)     SQL (DataFusion)
//!  Snowplow     ─┼──► → enrich → dedup ──► | Kafka | ──────► processed/  (typed, clean)  ─► reports, dashboard,
//!  GA4 / PostHog─┤    (quarantine bad)    | Kinesis         curated/    (business-ready)   ML, warehouse load
//!  orders API  ─┘                                           quarantine/ (rejected + why)
//!  batch files ──── file validator/router ─────────────────► raw/
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod event;
pub mod money;
pub mod schema;
pub mod sources;
pub mod time;

mod error;
pub use error::{Error, Rejection, Result};
