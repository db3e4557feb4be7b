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
//! * [`privacy`] — pseudonyms of personal data;
//! * [`files`] — reading batch files: decompression, whole-file checks, CSV and
//!   JSON rows (the importer's and the ETL's first step);
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
pub mod files;
pub mod money;
pub mod privacy;
pub mod schema;
pub mod sources;
pub mod time;

/// The decimal digits of `n`, written into `buf` without allocating (hot
/// loops format millions of ids and counts).
pub fn u64_digits(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

mod error;
pub use error::{Error, Rejection, Result};
