//! The end-to-end integration tests of shoplake: one test binary, one module
//! per area. Shared helpers (data set setup, query results, the independent
//! model of every report) live in `common`.

mod common;

mod api;
mod bench;
mod cli;
mod collect;
mod crash;
mod docs;
mod interop;
mod load;
mod maintenance;
mod ml;
mod orders;
mod pg;
mod pipeline;
mod privacy;
mod quality;
