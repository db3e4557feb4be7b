//! The crate's tests, in one binary.

mod classify;
mod cluster;
mod lifetime;
mod recommend;
mod util;
