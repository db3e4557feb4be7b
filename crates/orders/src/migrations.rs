//! The schema, as numbered migrations per backend, applied in order at open.
//!
//! `orders_schema_version` records each applied migration; opening again
//! applies only the missing ones, and a database migrated by a newer build
//! is refused rather than misread. Migrations run in one transaction, under
//! a lock (`BEGIN IMMEDIATE` on SQLite, an advisory lock per schema on
//! PostgreSQL), so two processes opening at once cannot both apply one.
//!
//! Both backends have the same tables and columns. Amounts are `BIGINT`
//! cents, times are `BIGINT` microseconds since the Unix epoch (UTC) — exact,
//! identical on both, and ordered the same way. Differences: full-text
//! search (SQLite: a contentless FTS5 table keyed by `orders.id`; PostgreSQL:
//! a `tsvector` column with a GIN index) and the sequence behind
//! `order_changes.seq` (`AUTOINCREMENT`; `BIGSERIAL`).

use chrono::Utc;

use crate::db::{Arg, Kind, Tx};
use crate::error::OrderError;

/// One migration: its number, a name, and the SQL for each backend.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "orders, lines, history, outbox, idempotency keys, search",
    sqlite: r#"
CREATE TABLE orders (
    id             INTEGER PRIMARY KEY,
    order_id       TEXT NOT NULL UNIQUE,
    customer_id    TEXT NOT NULL,
    email          TEXT,
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('placed','paid','shipped','delivered','returned','refunded','cancelled')),
    subtotal_cents INTEGER NOT NULL,
    tax_cents      INTEGER NOT NULL,
    shipping_cents INTEGER NOT NULL,
    discount_cents INTEGER NOT NULL,
    total_cents    INTEGER NOT NULL,
    coupon         TEXT,
    placed_at_us   INTEGER NOT NULL,
    created_at_us  INTEGER NOT NULL,
    updated_at_us  INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    body_hash      TEXT NOT NULL
);
CREATE INDEX orders_by_placed ON orders (placed_at_us DESC, order_id DESC);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at_us DESC, order_id DESC);
CREATE INDEX orders_by_status ON orders (status, placed_at_us DESC, order_id DESC);

CREATE TABLE order_lines (
    order_id         TEXT NOT NULL REFERENCES orders (order_id),
    line_no          INTEGER NOT NULL,
    product_id       TEXT NOT NULL,
    sku              TEXT,
    name             TEXT,
    category         TEXT,
    quantity         INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;

CREATE TABLE order_history (
    order_id    TEXT NOT NULL REFERENCES orders (order_id),
    version     INTEGER NOT NULL,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    at_us       INTEGER NOT NULL,
    note        TEXT,
    actor       TEXT NOT NULL,
    PRIMARY KEY (order_id, version)
) WITHOUT ROWID;

CREATE TABLE order_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    version  INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('created','status')),
    payload  TEXT NOT NULL,
    at_us    INTEGER NOT NULL
);

CREATE TABLE order_idempotency_keys (
    idem_key      TEXT PRIMARY KEY,
    body_hash     TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE VIRTUAL TABLE orders_fts USING fts5 (doc, content = '', tokenize = 'unicode61 remove_diacritics 0');
"#,
    postgres: r#"
CREATE TABLE orders (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id       TEXT COLLATE "C" NOT NULL UNIQUE,
    customer_id    TEXT NOT NULL,
    email          TEXT,
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('placed','paid','shipped','delivered','returned','refunded','cancelled')),
    subtotal_cents BIGINT NOT NULL,
    tax_cents      BIGINT NOT NULL,
    shipping_cents BIGINT NOT NULL,
    discount_cents BIGINT NOT NULL,
    total_cents    BIGINT NOT NULL,
    coupon         TEXT,
    placed_at_us   BIGINT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    updated_at_us  BIGINT NOT NULL,
    version        BIGINT NOT NULL,
    body_hash      TEXT NOT NULL,
    search         TSVECTOR NOT NULL
);
CREATE INDEX orders_by_placed ON orders (placed_at_us DESC, order_id DESC);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at_us DESC, order_id DESC);
CREATE INDEX orders_by_status ON orders (status, placed_at_us DESC, order_id DESC);
CREATE INDEX orders_search ON orders USING GIN (search);

CREATE TABLE order_lines (
    order_id         TEXT COLLATE "C" NOT NULL REFERENCES orders (order_id),
    line_no          INTEGER NOT NULL,
    product_id       TEXT NOT NULL,
    sku              TEXT,
    name             TEXT,
    category         TEXT,
    quantity         BIGINT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_history (
    order_id    TEXT COLLATE "C" NOT NULL REFERENCES orders (order_id),
    version     BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    at_us       BIGINT NOT NULL,
    note        TEXT,
    actor       TEXT NOT NULL,
    PRIMARY KEY (order_id, version)
);

CREATE TABLE order_changes (
    seq      BIGSERIAL PRIMARY KEY,
    order_id TEXT NOT NULL,
    version  BIGINT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('created','status')),
    payload  TEXT NOT NULL,
    at_us    BIGINT NOT NULL
);

CREATE TABLE order_idempotency_keys (
    idem_key      TEXT PRIMARY KEY,
    body_hash     TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
"#,
}];

/// Applies the missing migrations in one transaction.
pub(crate) async fn migrate(mut tx: Tx) -> Result<(), OrderError> {
    if tx.kind() == Kind::Postgres {
        // Serializes concurrent openers of the same schema until commit.
        tx.execute(
            "SELECT pg_advisory_xact_lock(74220601, hashtext(current_schema()))",
            &[],
        )
        .await?;
    }
    tx.execute_script(
        "CREATE TABLE IF NOT EXISTS orders_schema_version (
            version       BIGINT PRIMARY KEY,
            name          TEXT NOT NULL,
            applied_at_us BIGINT NOT NULL
        )",
    )
    .await?;
    let row = tx
        .fetch_optional(
            "SELECT COALESCE(MAX(version), 0) FROM orders_schema_version",
            &[],
        )
        .await?;
    let current = match row {
        Some(r) => r.int(0)?,
        None => 0,
    };
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(OrderError::Database(format!(
            "the order database has schema version {current}, newer than this build knows ({latest}); upgrade shoplake"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let sql = match tx.kind() {
            Kind::Sqlite => m.sqlite,
            Kind::Postgres => m.postgres,
        };
        tx.execute_script(sql).await?;
        tx.execute(
            "INSERT INTO orders_schema_version (version, name, applied_at_us) VALUES ($1, $2, $3)",
            &[
                Arg::Int(m.version),
                Arg::Text(m.name),
                Arg::Int(Utc::now().timestamp_micros()),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
