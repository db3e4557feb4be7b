//! [`OrderStore`]: opening, migrations, and every operation.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::cursor::Cursor;
use crate::db::{Arg, Db, Kind, Row, Tx, assembled};
use crate::error::{OrderError, Problem, Result, describe_sqlx};
use crate::migrations::migrate;
use crate::model::{
    ChangeKind, Created, HistoryEntry, Line, NewOrder, Order, OrderChange, OrderQuery,
    OrderSummary, Page, Status,
};
use crate::money::Money;
use crate::search;
use crate::validate::{body_hash, check_change, check_idempotency_key, totals, validate};
use crate::writer::{Writer, WriterStats};

/// Default page size of [`OrderStore::list`].
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size of [`OrderStore::list`].
pub const MAX_PAGE_SIZE: usize = 500;
/// Largest batch of [`OrderStore::changes_after`].
pub const MAX_CHANGES_BATCH: usize = 10_000;
/// Lines inserted per statement (bounds the number of distinct statements).
const LINES_PER_INSERT: usize = 32;
/// Connections of the PostgreSQL pool.
const PG_MAX_CONNECTIONS: u32 = 16;
/// A pooled PostgreSQL connection idle this long is pinged before use.
const PG_PING_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Below this many full-text matches, SQLite search sorts the matches;
/// above, it walks the orders newest first (see [`OrderStore::list`]). At
/// 1M orders with the words of a shop's product names, sorting 40k
/// matches took 25–50 ms and walking 3–12 ms, while walking for one match
/// scans the whole index (65 ms) and sorting it takes 0.3 ms.
const FTS_FEW_MATCHES: i64 = 1_000;
/// Reading connections of the SQLite pool (one more writes).
const SQLITE_READERS: u32 = 4;

/// PostgreSQL: the outbox lock in shared mode (writers, until commit), then
/// the next `seq`.
pub(crate) const OUTBOX_LOCK_SHARED_NEXTVAL: &str = "WITH outbox_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(74220602, hashtext(current_schema()))) \
     SELECT nextval('order_changes_seq_seq') FROM outbox_lock";
/// PostgreSQL: the outbox lock in exclusive mode (`changes_after`). (The
/// writer's batch statement takes it in shared mode, see `pg_insert_new!`.)
pub(crate) const OUTBOX_LOCK_EXCLUSIVE: &str =
    "SELECT pg_advisory_xact_lock(74220602, hashtext(current_schema()))";

/// The order header columns, in the order [`summary_from_row`] reads them.
macro_rules! order_columns {
    () => {
        "order_id, customer_id, email, currency, status, subtotal_cents, tax_cents, shipping_cents, \
         discount_cents, total_cents, coupon, placed_at_us, created_at_us, updated_at_us, version"
    };
}

/// The [`order_columns!`], for code outside this module.
pub(crate) const ORDER_COLUMNS: &str = order_columns!();

/// The operational store of orders, on SQLite or PostgreSQL. Cheap to clone
/// (the clones share the connection pools).
#[derive(Clone, Debug)]
pub struct OrderStore {
    db: Db,
    /// Every write goes through it (group commit).
    writer: Writer,
}

impl OrderStore {
    /// Opens the store named by `spec`: a `postgres://` or `postgresql://`
    /// URL opens PostgreSQL; an empty spec or `sqlite` opens
    /// `<state_dir>/orders.db`; anything else (optionally prefixed
    /// `sqlite:`/`sqlite://`) is the path of a SQLite database file.
    pub async fn open(spec: &str, state_dir: &Path) -> Result<OrderStore> {
        let spec = spec.trim();
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return OrderStore::open_postgres(spec).await;
        }
        let path = spec
            .strip_prefix("sqlite://")
            .or_else(|| spec.strip_prefix("sqlite:"))
            .unwrap_or(spec);
        if path.is_empty() || path == "sqlite" {
            return OrderStore::open_sqlite(state_dir.join("orders.db")).await;
        }
        OrderStore::open_sqlite(path).await
    }

    /// Opens (creating it and its directory if needed) a SQLite database in
    /// WAL mode with `synchronous = FULL`: a returned write is on disk.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<OrderStore> {
        let path = path.as_ref();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            OrderError::Database(format!(
                "cannot open the SQLite order database {}: {what}{e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail("creating its directory: ", &e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| fail("", &describe_sqlx(&e)))?;
        let read = SqlitePoolOptions::new()
            .max_connections(SQLITE_READERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| fail("", &describe_sqlx(&e)))?;
        let db = Db::Sqlite { write, read };
        migrate(db.begin_write().await?).await?;
        Ok(OrderStore::with_writer(db))
    }

    /// Opens a PostgreSQL database by URL
    /// (`postgres://user:password@host:5432/db?sslmode=require`). Tables go to
    /// the first schema of the search path; pick one with
    /// `?options=-c%20search_path%3Dshop` (the schema must exist) or use
    /// [`open_postgres_in_schema`](Self::open_postgres_in_schema). An
    /// unreachable server fails at once (no retries).
    pub async fn open_postgres(url: &str) -> Result<OrderStore> {
        let options = pg_options(url)?;
        OrderStore::connect_postgres(options).await
    }

    /// Opens a PostgreSQL database with the tables in `schema` (created if
    /// absent): a name of lower-case letters, digits and `_`.
    pub async fn open_postgres_in_schema(url: &str, schema: &str) -> Result<OrderStore> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(OrderError::invalid(
                "schema",
                "must be 1 to 63 lower-case letters, digits and _, not starting with a digit",
            ));
        }
        let options = pg_options(url)?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| pg_connect_error(&options, &e))?;
        sqlx::raw_sql(assembled(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        OrderStore::connect_postgres(options.options([("search_path", schema)])).await
    }

    async fn connect_postgres(options: PgConnectOptions) -> Result<OrderStore> {
        // One direct connection first: an unreachable server or a bad
        // password fails at once, instead of after the pool's retries.
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(|e| pg_connect_error(&options, &e))?;
        probe.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            // A connection idle for a while is checked (a round trip)
            // before use; one in steady use is not: under load every batch
            // would pay a round trip for it. A connection that broke in
            // between fails its statement, and the caller's error says so.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PG_PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(|e| pg_connect_error(&options, &e))?;
        let db = Db::Postgres(pool);
        migrate(db.begin_write().await?).await?;
        Ok(OrderStore::with_writer(db))
    }

    /// The store over `db`, with its writer task started.
    fn with_writer(db: Db) -> OrderStore {
        let writer = Writer::spawn(db.clone());
        OrderStore { db, writer }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.db.kind() {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }

    /// How many batches (transactions) the writer has written since the
    /// store was opened, and how many writes they held: the mean batch size
    /// of a period is the difference of `writes` over that of `batches`.
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// Closes the connection pools (waiting for the connections in use).
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Creates an order, idempotently.
    ///
    /// * The order is validated first ([`OrderError::Invalid`] lists every
    ///   problem).
    /// * If `order_id` exists with the same canonical body (same values,
    ///   whatever the number format, key order or time zone; `total` is not
    ///   part of it), the stored order is returned with `replayed: true`;
    ///   with a different body, [`OrderError::Conflict`].
    /// * If `idempotency_key` was used before with the same body, the order
    ///   it created is returned with `replayed: true`; with a different body,
    ///   [`OrderError::Conflict`]. Keys are remembered only for successful
    ///   creations, and forever.
    /// * Concurrent creations of one order id are decided by the unique
    ///   constraint inside the transaction: exactly one is new.
    ///
    /// The order, its lines, its search entry, the key and the outbox row
    /// ([`ChangeKind::Created`]) are written in one transaction.
    pub async fn create(&self, new: &NewOrder, idempotency_key: Option<&str>) -> Result<Created> {
        let now = micros(Utc::now());
        let mut problems = validate(new, now);
        if let Some(p) = idempotency_key.and_then(check_idempotency_key) {
            problems.push(p);
        }
        if !problems.is_empty() {
            return Err(OrderError::Invalid(problems));
        }
        let amounts = totals(new).map_err(OrderError::Invalid)?;
        let hash = body_hash(new);
        let order = Order {
            order_id: new.order_id.clone(),
            customer_id: new.customer_id.clone(),
            email: new.email.clone(),
            currency: new.currency.clone(),
            status: Status::Placed,
            lines: new.lines.clone(),
            subtotal: amounts.subtotal,
            tax: new.tax,
            shipping: new.shipping,
            discount: new.discount,
            total: amounts.total,
            coupon: new.coupon.clone(),
            placed_at: new.placed_at.map_or(now, micros),
            created_at: now,
            updated_at: now,
            version: 1,
            history: Vec::new(),
        };

        let doc = search_document(&order);
        let item = NewRow {
            order,
            hash,
            doc,
            key: idempotency_key.map(str::to_string),
        };
        self.writer.create(item).await
    }

    /// The order with this id, with its lines and history.
    pub async fn get(&self, order_id: &str) -> Result<Order> {
        let mut tx = self.db.begin_read().await?;
        let order = load_order(&mut tx, order_id, false).await?;
        tx.rollback().await?;
        order.ok_or_else(|| OrderError::NotFound(order_id.to_string()))
    }

    /// Moves an order to status `to`, recording `note` and `actor` in its
    /// history, and returns it.
    ///
    /// The order row is locked for the transaction. Errors, checked in this
    /// order: [`OrderError::NotFound`]; [`OrderError::Conflict`] if
    /// `expected_version` is given and differs from the stored version;
    /// [`OrderError::InvalidTransition`] (with the allowed statuses) if the
    /// status machine forbids it. Asking for the current status is not an
    /// error: the order is returned unchanged (no version bump), so a retried
    /// request is harmless.
    ///
    /// The update, the history entry and the outbox row
    /// ([`ChangeKind::Status`]) are written in one transaction.
    pub async fn transition(
        &self,
        order_id: &str,
        to: Status,
        note: Option<&str>,
        actor: &str,
        expected_version: Option<i64>,
    ) -> Result<Order> {
        let problems = check_change(actor, note);
        if !problems.is_empty() {
            return Err(OrderError::Invalid(problems));
        }
        self.writer
            .transition(StatusChange {
                order_id: order_id.to_string(),
                to,
                note: note.map(str::to_string),
                actor: actor.to_string(),
                expected_version,
            })
            .await
    }

    /// One page of orders matching `query`, newest `placed_at` first (ties by
    /// `order_id`, descending), with keyset pagination: following
    /// `next_cursor` visits every matching order exactly once, even while
    /// orders are added. Bad parameters are reported together as
    /// [`OrderError::Invalid`] (fields named after the parameters); empty
    /// parameters count as absent.
    pub async fn list(&self, query: &OrderQuery) -> Result<Page> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut problems = Vec::new();
        let status = given(&query.status).and_then(|s| {
            Status::from_str(&s)
                .map_err(|e| problems.push(Problem::new("status", e)))
                .ok()
        });
        let from = given(&query.from).and_then(|s| {
            time_bound(&s, false)
                .map_err(|e| problems.push(Problem::new("from", e)))
                .ok()
        });
        let to = given(&query.to).and_then(|s| {
            time_bound(&s, true)
                .map_err(|e| problems.push(Problem::new("to", e)))
                .ok()
        });
        let cursor = given(&query.cursor).and_then(|s| match Cursor::decode(&s) {
            Ok(c) => Some(c),
            Err(OrderError::Invalid(p)) => {
                problems.extend(p);
                None
            }
            Err(_) => None,
        });
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if limit == 0 || limit > MAX_PAGE_SIZE {
            problems.push(Problem::new(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}, got {limit}"),
            ));
        }
        if !problems.is_empty() {
            return Err(OrderError::Invalid(problems));
        }
        let customer_id = given(&query.customer_id);
        let text = given(&query.q)
            .and_then(|q| search::query_words(&q))
            .map(|words| match self.db.kind() {
                Kind::Sqlite => search::fts5_query(&words),
                Kind::Postgres => search::ts_query(&words),
            });

        let mut sql = String::from(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE TRUE"
        ));
        let mut args: Vec<Arg<'_>> = Vec::new();
        /// Appends `fragment` with its `?` numbered as the next parameter.
        fn param<'a>(sql: &mut String, args: &mut Vec<Arg<'a>>, fragment: &str, arg: Arg<'a>) {
            args.push(arg);
            sql.push_str(&fragment.replace('?', &format!("${}", args.len())));
        }
        if let Some(c) = &customer_id {
            param(&mut sql, &mut args, " AND customer_id = ?", Arg::Text(c));
        }
        if let Some(s) = status {
            param(
                &mut sql,
                &mut args,
                " AND status = ?",
                Arg::Text(s.as_str()),
            );
        }
        if let Some(f) = from {
            param(&mut sql, &mut args, " AND placed_at_us >= ?", Arg::Int(f));
        }
        if let Some(t) = to {
            param(&mut sql, &mut args, " AND placed_at_us < ?", Arg::Int(t));
        }
        if let Some(c) = &cursor {
            param(
                &mut sql,
                &mut args,
                " AND (placed_at_us, order_id) < (?",
                Arg::Int(c.placed_at_us),
            );
            param(&mut sql, &mut args, ", ?)", Arg::Text(&c.order_id));
        }
        if let Some(t) = &text {
            let fragment = match self.db.kind() {
                // Few matches: fetch them by rowid and sort them. Many: walk
                // the orders newest first and keep those in the match set
                // (`+id` keeps SQLite from looking them up by rowid), which
                // stops after a page instead of sorting every match.
                Kind::Sqlite if self.fts_matches_more_than(t, FTS_FEW_MATCHES).await? => {
                    " AND +id IN (SELECT rowid FROM orders_fts WHERE orders_fts MATCH ?)"
                }
                Kind::Sqlite => {
                    " AND id IN (SELECT rowid FROM orders_fts WHERE orders_fts MATCH ?)"
                }
                Kind::Postgres => " AND search @@ to_tsquery('simple', ?)",
            };
            param(&mut sql, &mut args, fragment, Arg::Text(t));
        }
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        param(
            &mut sql,
            &mut args,
            " ORDER BY placed_at_us DESC, order_id DESC LIMIT ?",
            Arg::Int(fetch),
        );

        let rows = self.db.fetch_all(assembled(sql), &args).await?;
        let mut orders = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if orders.len() > limit {
            orders.truncate(limit);
            orders.last().map(|o| {
                Cursor {
                    placed_at_us: us(o.placed_at),
                    order_id: o.order_id.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page {
            orders,
            next_cursor,
        })
    }

    /// Whether the FTS5 query `fts` matches more than `n` orders (SQLite).
    async fn fts_matches_more_than(&self, fts: &str, n: i64) -> Result<bool> {
        let rows = self
            .db
            .fetch_all(
                "SELECT count(*) FROM (SELECT 1 FROM orders_fts WHERE orders_fts MATCH $1 LIMIT $2)",
                &[Arg::Text(fts), Arg::Int(n + 1)],
            )
            .await?;
        Ok(rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) > n)
    }

    /// The outbox: up to `limit` (at most 10,000) order changes with
    /// `seq > after`, in `seq` order. A relay appends them to the event log
    /// and keeps the last `seq` it appended as its cursor.
    ///
    /// The changes returned are always a gap-free prefix of everything that
    /// will ever be committed after `after`, so a cursor never skips a
    /// change: a change is returned only once every transaction that took a
    /// smaller `seq` has ended. On SQLite writers are serialized, so that
    /// holds at commit. On PostgreSQL concurrent writers may commit out of
    /// `seq` order: each writer holds a shared advisory lock from taking its
    /// `seq` to its commit, and this call takes the lock exclusively for an
    /// instant to learn the highest `seq` no running transaction can still
    /// add below (writers wait that instant; this call waits for writers in
    /// their last statements, at most 5 s). `seq` itself may have gaps
    /// (rolled-back transactions).
    pub async fn changes_after(&self, after: i64, limit: usize) -> Result<Vec<OrderChange>> {
        let limit = i64::try_from(limit.clamp(1, MAX_CHANGES_BATCH)).unwrap_or(1);
        let settled = match self.db.kind() {
            Kind::Sqlite => i64::MAX,
            Kind::Postgres => {
                let mut tx = self.db.begin_write().await?;
                tx.execute("SET LOCAL lock_timeout = '5s'", &[]).await?;
                tx.execute(OUTBOX_LOCK_EXCLUSIVE, &[]).await?;
                let row = tx
                    .fetch_optional(
                        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM order_changes_seq_seq",
                        &[],
                    )
                    .await?
                    .ok_or_else(|| OrderError::Database("the outbox sequence has no row".into()))?;
                let settled = row.int(0)?;
                tx.commit().await?;
                settled
            }
        };
        let sql = "SELECT seq, order_id, version, kind, payload, at_us FROM order_changes \
                   WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3";
        let rows = self
            .db
            .fetch_all(sql, &[Arg::Int(after), Arg::Int(settled), Arg::Int(limit)])
            .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind = match row.text(3)?.as_str() {
                "created" => ChangeKind::Created,
                "status" => ChangeKind::Status,
                other => {
                    return Err(OrderError::Database(format!(
                        "unknown change kind {other:?} in order_changes"
                    )));
                }
            };
            changes.push(OrderChange {
                seq: row.int(0)?,
                order_id: row.text(1)?,
                version: row.int(2)?,
                kind,
                payload: row.text(4)?,
                at: time(row.int(5)?)?,
            });
        }
        Ok(changes)
    }

    /// Drops a PostgreSQL schema with everything in it (test clean-up).
    #[cfg(test)]
    pub(crate) async fn drop_schema(&self, schema: &str) -> Result<()> {
        if let Db::Postgres(pool) = &self.db {
            sqlx::raw_sql(assembled(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }
}

/// A validated order, ready to be written by [`create_in`].
pub(crate) struct NewRow {
    /// The order as it will be stored (`created_at` is the time of the request).
    pub order: Order,
    /// Its canonical body hash.
    pub hash: String,
    /// Its search document.
    pub doc: String,
    /// The `Idempotency-Key`, if given.
    pub key: Option<String>,
}

/// A status change, checked by [`OrderStore::transition`], to be written by
/// [`transition_in`].
pub(crate) struct StatusChange {
    pub order_id: String,
    pub to: Status,
    pub note: Option<String>,
    pub actor: String,
    pub expected_version: Option<i64>,
}

/// Creates one order inside `tx` (see [`OrderStore::create`]). An `Err`
/// may leave partial writes: the caller rolls back to a savepoint taken
/// before; an `Ok` is kept by releasing it (a replay may keep a new key).
pub(crate) async fn create_in(tx: &mut Tx, item: &NewRow) -> Result<Created> {
    let order = &item.order;
    let now = order.created_at;
    if let Some(key) = item.key.as_deref() {
        let inserted = tx
            .fetch_optional(
                "INSERT INTO order_idempotency_keys (idem_key, body_hash, order_id, created_at_us) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (idem_key) DO NOTHING RETURNING idem_key",
                &[
                    Arg::Text(key),
                    Arg::Text(&item.hash),
                    Arg::Text(&order.order_id),
                    Arg::Int(us(now)),
                ],
            )
            .await?;
        if inserted.is_none() {
            let row = tx
                .fetch_optional(
                    "SELECT body_hash, order_id FROM order_idempotency_keys WHERE idem_key = $1",
                    &[Arg::Text(key)],
                )
                .await?
                .ok_or_else(|| {
                    OrderError::Database("idempotency key vanished during the transaction".into())
                })?;
            let (stored_hash, first_order) = (row.text(0)?, row.text(1)?);
            if stored_hash != item.hash {
                return Err(OrderError::Conflict(format!(
                    "Idempotency-Key {key:?} was already used for order {first_order:?} with a different request body"
                )));
            }
            let stored = load_order(tx, &first_order, false).await?.ok_or_else(|| {
                OrderError::Database(format!(
                    "order {first_order:?} of an idempotency key is missing"
                ))
            })?;
            // Nothing was written.
            return Ok(Created {
                order: stored,
                replayed: true,
            });
        }
    }

    let doc = &item.doc;
    let mut header = order_args(order, &item.hash).to_vec();
    header.push(Arg::Text(doc));
    let inserted = match tx.kind() {
        Kind::Sqlite => {
            tx.fetch_optional(
                concat!(
                    "INSERT INTO orders (",
                    order_columns!(),
                    ", body_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                     ON CONFLICT (order_id) DO NOTHING RETURNING id"
                ),
                &header[..16],
            )
            .await?
        }
        Kind::Postgres => {
            tx.fetch_optional(
                concat!(
                    "INSERT INTO orders (",
                    order_columns!(),
                    ", body_hash, search) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16, to_tsvector('simple', $17)) ON CONFLICT (order_id) DO NOTHING RETURNING id"
                ),
                &header,
            )
            .await?
        }
    };
    let Some(inserted) = inserted else {
        let row = tx
            .fetch_optional(
                "SELECT body_hash FROM orders WHERE order_id = $1",
                &[Arg::Text(&order.order_id)],
            )
            .await?
            .ok_or_else(|| {
                OrderError::Database("conflicting order vanished during the transaction".into())
            })?;
        if row.text(0)? != item.hash {
            return Err(OrderError::Conflict(format!(
                "order {:?} already exists with a different body (same order_id, different contents)",
                order.order_id
            )));
        }
        let stored = load_order(tx, &order.order_id, false)
            .await?
            .ok_or_else(|| {
                OrderError::Database("conflicting order vanished during the transaction".into())
            })?;
        // Kept when the caller commits: a new idempotency key for this
        // existing order.
        return Ok(Created {
            order: stored,
            replayed: true,
        });
    };

    insert_lines(tx, &order.order_id, &order.lines).await?;
    if tx.kind() == Kind::Sqlite {
        tx.execute(
            "INSERT INTO orders_fts (rowid, doc) VALUES ($1, $2)",
            &[Arg::Int(inserted.int(0)?), Arg::Text(doc)],
        )
        .await?;
    }
    insert_change(tx, order, ChangeKind::Created, now).await?;
    Ok(Created {
        order: order.clone(),
        replayed: false,
    })
}

/// Applies one status change inside `tx` (see [`OrderStore::transition`]),
/// with the same savepoint contract as [`create_in`].
pub(crate) async fn transition_in(tx: &mut Tx, change: &StatusChange) -> Result<Order> {
    let StatusChange {
        order_id,
        to,
        note,
        actor,
        expected_version,
    } = change;
    let (order_id, to, note, actor, expected_version) = (
        order_id.as_str(),
        *to,
        note.as_deref(),
        actor.as_str(),
        *expected_version,
    );
    let Some(mut order) = load_order(tx, order_id, true).await? else {
        return Err(OrderError::NotFound(order_id.to_string()));
    };
    if let Some(expected) = expected_version.filter(|v| *v != order.version) {
        return Err(OrderError::Conflict(format!(
            "order {order_id:?} is at version {}, not {expected} (changed meanwhile: read it again)",
            order.version
        )));
    }
    let from = order.status;
    if from == to {
        // Nothing to write.
        return Ok(order);
    }
    if !from.can_become(to) {
        return Err(OrderError::InvalidTransition {
            from,
            to,
            allowed: from.allowed_next().to_vec(),
        });
    }
    let now = micros(Utc::now());
    let version = order.version + 1;
    tx.execute(
        "UPDATE orders SET status = $1, version = $2, updated_at_us = $3 WHERE order_id = $4",
        &[
            Arg::Text(to.as_str()),
            Arg::Int(version),
            Arg::Int(us(now)),
            Arg::Text(order_id),
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO order_history (order_id, version, from_status, to_status, at_us, note, actor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            Arg::Text(order_id),
            Arg::Int(version),
            Arg::Text(from.as_str()),
            Arg::Text(to.as_str()),
            Arg::Int(us(now)),
            Arg::OptText(note),
            Arg::Text(actor),
        ],
    )
    .await?;
    order.status = to;
    order.version = version;
    order.updated_at = now;
    order.history.push(HistoryEntry {
        from,
        to,
        at: now,
        note: note.map(str::to_string),
        actor: actor.to_string(),
        version,
    });
    insert_change(tx, &order, ChangeKind::Status, now).await?;
    Ok(order)
}

fn pg_options(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map_err(|e| OrderError::Database(format!("bad PostgreSQL URL: {}", describe_sqlx(&e))))
}

fn pg_connect_error(options: &PgConnectOptions, e: &sqlx::Error) -> OrderError {
    OrderError::Database(format!(
        "cannot connect to PostgreSQL at {}:{}/{}: {}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username()),
        describe_sqlx(e)
    ))
}

/// `t` truncated to whole microseconds (what the database keeps).
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// An order's `orders` row, in [`ORDER_COLUMNS`] order, then its body hash
/// (the search document, PostgreSQL only, is the caller's).
pub(crate) fn order_args<'a>(o: &'a Order, hash: &'a str) -> [Arg<'a>; 16] {
    [
        Arg::Text(&o.order_id),
        Arg::Text(&o.customer_id),
        Arg::OptText(o.email.as_deref()),
        Arg::Text(&o.currency),
        Arg::Text(o.status.as_str()),
        Arg::Int(o.subtotal.cents()),
        Arg::Int(o.tax.cents()),
        Arg::Int(o.shipping.cents()),
        Arg::Int(o.discount.cents()),
        Arg::Int(o.total.cents()),
        Arg::OptText(o.coupon.as_deref()),
        Arg::Int(us(o.placed_at)),
        Arg::Int(us(o.created_at)),
        Arg::Int(us(o.updated_at)),
        Arg::Int(o.version),
        Arg::Text(hash),
    ]
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| OrderError::Database(format!("timestamp out of range: {us} µs")))
}

/// Parses `from`/`to`: an RFC 3339 timestamp, or a date (midnight UTC; for
/// the end of a range, the following midnight, so the day is included).
fn time_bound(text: &str, end: bool) -> std::result::Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        format!("must be a date (2024-05-01) or an RFC 3339 timestamp, got {text:?}")
    })?;
    let date = if end {
        date.succ_opt().unwrap_or(date)
    } else {
        date
    };
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp_micros());
    midnight.ok_or_else(|| format!("date out of range: {text:?}"))
}

/// The searchable text of an order.
fn search_document(order: &Order) -> String {
    let mut parts: Vec<&str> = vec![&order.order_id, &order.customer_id];
    parts.extend(order.email.as_deref());
    for line in &order.lines {
        parts.push(&line.product_id);
        parts.extend(line.sku.as_deref());
        parts.extend(line.name.as_deref());
    }
    search::document(parts)
}

async fn insert_lines(tx: &mut Tx, order_id: &str, lines: &[Line]) -> Result<()> {
    for (chunk_no, chunk) in lines.chunks(LINES_PER_INSERT).enumerate() {
        let mut sql = String::from(
            "INSERT INTO order_lines (order_id, line_no, product_id, sku, name, category, quantity, unit_price_cents) VALUES ",
        );
        let mut args = Vec::with_capacity(chunk.len() * 8);
        for (i, line) in chunk.iter().enumerate() {
            let line_no = i64::try_from(chunk_no * LINES_PER_INSERT + i).unwrap_or(i64::MAX);
            if i > 0 {
                sql.push_str(", ");
            }
            let n = args.len();
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8
            ));
            args.extend([
                Arg::Text(order_id),
                Arg::Int(line_no),
                Arg::Text(&line.product_id),
                Arg::OptText(line.sku.as_deref()),
                Arg::OptText(line.name.as_deref()),
                Arg::OptText(line.category.as_deref()),
                Arg::Int(line.quantity),
                Arg::Int(line.unit_price.cents()),
            ]);
        }
        tx.execute(assembled(sql), &args).await?;
    }
    Ok(())
}

/// The outbox payload of `order`: its JSON.
pub(crate) fn change_payload(order: &Order) -> Result<String> {
    serde_json::to_string(order).map_err(|e| {
        OrderError::Database(format!("cannot serialize order {:?}: {e}", order.order_id))
    })
}

/// Appends the outbox row of a change to `order` (already changed).
async fn insert_change(
    tx: &mut Tx,
    order: &Order,
    kind: ChangeKind,
    at: DateTime<Utc>,
) -> Result<()> {
    let payload = change_payload(order)?;
    let fields = [
        Arg::Text(&order.order_id),
        Arg::Int(order.version),
        Arg::Text(kind.as_str()),
        Arg::Text(&payload),
        Arg::Int(us(at)),
    ];
    match tx.kind() {
        Kind::Sqlite => {
            tx.execute(
                "INSERT INTO order_changes (order_id, version, kind, payload, at_us) VALUES ($1, $2, $3, $4, $5)",
                &fields,
            )
            .await?;
        }
        Kind::Postgres => {
            // The shared lock is held until commit, so `changes_after` can
            // wait out every transaction between its `seq` and its commit.
            // (The CTE is evaluated before the outer nextval.)
            let seq = tx
                .fetch_optional(OUTBOX_LOCK_SHARED_NEXTVAL, &[])
                .await?
                .ok_or_else(|| OrderError::Database("nextval returned no row".into()))?
                .int(0)?;
            let mut args = vec![Arg::Int(seq)];
            args.extend(fields);
            tx.execute(
                "INSERT INTO order_changes (seq, order_id, version, kind, payload, at_us) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &args,
            )
            .await?;
        }
    }
    Ok(())
}

/// Reads an order, its lines and its history; with `lock`, locks the order
/// row until the transaction ends (PostgreSQL; a SQLite write transaction
/// holds the database lock already).
async fn load_order(tx: &mut Tx, order_id: &str, lock: bool) -> Result<Option<Order>> {
    let sql = match (tx.kind(), lock) {
        (Kind::Postgres, true) => concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE order_id = $1 FOR UPDATE"
        ),
        _ => concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE order_id = $1"
        ),
    };
    let Some(row) = tx.fetch_optional(sql, &[Arg::Text(order_id)]).await? else {
        return Ok(None);
    };
    let s = summary_from_row(&row)?;
    let lines = tx
        .fetch_all(
            "SELECT product_id, sku, name, category, quantity, unit_price_cents FROM order_lines \
             WHERE order_id = $1 ORDER BY line_no",
            &[Arg::Text(order_id)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Line {
                product_id: r.text(0)?,
                sku: r.opt_text(1)?,
                name: r.opt_text(2)?,
                category: r.opt_text(3)?,
                quantity: r.int(4)?,
                unit_price: Money::from_cents(r.int(5)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let history = tx
        .fetch_all(
            "SELECT from_status, to_status, at_us, note, actor, version FROM order_history \
             WHERE order_id = $1 ORDER BY version",
            &[Arg::Text(order_id)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(HistoryEntry {
                from: status(&r.text(0)?)?,
                to: status(&r.text(1)?)?,
                at: time(r.int(2)?)?,
                note: r.opt_text(3)?,
                actor: r.text(4)?,
                version: r.int(5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Order {
        order_id: s.order_id,
        customer_id: s.customer_id,
        email: s.email,
        currency: s.currency,
        status: s.status,
        lines,
        subtotal: s.subtotal,
        tax: s.tax,
        shipping: s.shipping,
        discount: s.discount,
        total: s.total,
        coupon: s.coupon,
        placed_at: s.placed_at,
        created_at: s.created_at,
        updated_at: s.updated_at,
        version: s.version,
        history,
    }))
}

fn status(text: &str) -> Result<Status> {
    Status::from_str(text)
        .map_err(|e| OrderError::Database(format!("bad status in the database: {e}")))
}

/// Reads the [`order_columns!`] of a row.
fn summary_from_row(r: &Row) -> Result<OrderSummary> {
    Ok(OrderSummary {
        order_id: r.text(0)?,
        customer_id: r.text(1)?,
        email: r.opt_text(2)?,
        currency: r.text(3)?,
        status: status(&r.text(4)?)?,
        subtotal: Money::from_cents(r.int(5)?),
        tax: Money::from_cents(r.int(6)?),
        shipping: Money::from_cents(r.int(7)?),
        discount: Money::from_cents(r.int(8)?),
        total: Money::from_cents(r.int(9)?),
        coupon: r.opt_text(10)?,
        placed_at: time(r.int(11)?)?,
        created_at: time(r.int(12)?)?,
        updated_at: time(r.int(13)?)?,
        version: r.int(14)?,
    })
}
