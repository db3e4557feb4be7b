//! # shoplake-orders
//!
//! The operational store behind the orders API (`POST/GET/PATCH
//! /api/orders`): orders with their lines, a status machine with an audit
//! trail, idempotent creation, filtered and full-text listing with keyset
//! pagination, and an outbox that feeds order changes to the lake. One code
//! path runs on SQLite (embedded, the default, `<data>/state/orders.db`) and
//! on PostgreSQL, through sqlx. This crate has no HTTP: the server parses
//! requests with [`NewOrder::from_json`] / [`OrderQuery`], calls
//! [`OrderStore`], and maps [`OrderError`] with [`OrderError::http_status`].
//!
//! ```text
//!  POST /api/orders ──► NewOrder::from_json ──► OrderStore::create ─┐  one transaction:
//!  PATCH …/{id}     ──► OrderStore::transition ─────────────────────┤  orders, order_lines,
//!                                                                   │  order_history, search,
//!  GET …/{id}       ──► OrderStore::get                             │  idempotency key,
//!  GET /api/orders  ──► OrderStore::list (filters, q, cursor)       │  order_changes (outbox)
//!                                                                   ▼
//!  relay task: changes_after(cursor, n) ──► event log ──► lake (processed.transactions)
//! ```
//!
//! ## Contract
//!
//! * **Money is exact.** Amounts are [`Money`] (integer cents), read from
//!   JSON numbers or decimal strings without floats, stored as `BIGINT`
//!   cents, written as decimal strings (`"19.99"`). More than two decimals
//!   and exponents are rejected. See [`money`].
//! * **Validation lists every problem** ([`Problem`]: JSON pointer + reason).
//! * **Idempotency.** A create is identified by its `order_id` and, if
//!   given, its idempotency key; a repeat with the same canonical body
//!   returns the stored order (`replayed`), a different body is a
//!   [`OrderError::Conflict`]. Unique constraints inside the transaction
//!   decide races, not a check-then-insert.
//! * **Atomicity.** Each create or status change writes the order, its
//!   history, its search entry and its outbox row in one transaction: the
//!   outbox has a row for every committed change and for nothing else.
//! * **Outbox order.** [`OrderStore::changes_after`] returns changes in
//!   `seq` order and never one whose predecessors could still commit, so a
//!   relay that keeps the last `seq` it forwarded misses nothing.
//! * **Durability.** SQLite runs in WAL mode with `synchronous = FULL`; a
//!   returned write survives a power cut. PostgreSQL follows its server's
//!   `synchronous_commit`.
//! * **Group commit.** Every write goes through one writer task that puts
//!   whatever is waiting (up to 256 writes) in one transaction, each write in
//!   its own savepoint unless it is a plain new order, and answers each
//!   caller only after that commit, with the answer it would get alone (see
//!   the `writer` module). The store must be opened inside a tokio runtime,
//!   which runs the writer.
//!
//! ## Status machine
//!
//! | from        | allowed to                        |
//! |-------------|-----------------------------------|
//! | `placed`    | `paid`, `cancelled`               |
//! | `paid`      | `shipped`, `refunded`, `cancelled`|
//! | `shipped`   | `delivered`, `refunded`           |
//! | `delivered` | `returned`, `refunded`            |
//! | `returned`  | `refunded`                        |
//! | `refunded`  | — (terminal)                      |
//! | `cancelled` | — (terminal)                      |
//!
//! Every order starts `placed` at version 1; each change adds 1 to the
//! version and appends a [`HistoryEntry`]. Cancelling is possible until the
//! order ships; after that, money goes back through `refunded` (directly, or
//! after `returned`). Moving to the current status is a no-op, not an error.
//!
//! ## Tables
//!
//! `orders`, `order_lines`, `order_history` (the audit trail),
//! `order_changes` (the outbox), `order_idempotency_keys`,
//! `orders_schema_version`, and for search `orders_fts` (SQLite FTS5) or the
//! `orders.search` `tsvector` column (PostgreSQL). See [`migrations`].

#![deny(missing_docs)]

pub mod currency;
mod cursor;
mod db;
mod error;
pub mod migrations;
mod model;
pub mod money;
mod search;
mod store;
mod validate;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{OrderError, Problem, Result};
pub use model::{
    ChangeKind, Created, HistoryEntry, Line, NewOrder, Order, OrderChange, OrderQuery,
    OrderSummary, Page, Status,
};
pub use money::Money;
pub use store::{DEFAULT_PAGE_SIZE, MAX_CHANGES_BATCH, MAX_PAGE_SIZE, OrderStore};
pub use validate::{MAX_LINES, MAX_ORDER_ID_LEN, MAX_QUANTITY, is_valid_order_id, validate};
pub use writer::WriterStats;
