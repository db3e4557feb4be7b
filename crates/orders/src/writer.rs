//! Group commit: every write of the store (order creations and status
//! changes) goes through one writer task, which writes whatever is waiting
//! in one database transaction, so one commit (one fsync) serves many
//! requests.
//!
//! ## Contract
//!
//! * **Acknowledged means committed.** A caller gets its answer only after
//!   the transaction holding its write committed, or the error that stopped
//!   it. Durability is unchanged: SQLite `synchronous = FULL` (one WAL fsync
//!   per batch), PostgreSQL its `synchronous_commit`.
//! * **No timer.** When the writer is free it takes everything queued, up to
//!   [`MAX_BATCH`] writes, and writes it at once: a lone request is written
//!   alone and immediately; under load requests queue while a batch commits
//!   and the next batch takes them all, so throughput rises with load.
//! * **Each write gets its own answer**, the one it would get if the
//!   batch's writes ran one after another: validation (checked before
//!   queueing), replay or conflict by order id and by idempotency key,
//!   duplicates within the batch, unique constraints, and its own outbox row
//!   and history, in the batch's commit.
//! * **One write cannot fail the others.** Writes that are not plain new
//!   orders run one at a time inside a `SAVEPOINT`: an error rolls back to
//!   it and the batch goes on. A failure of the transaction itself (BEGIN,
//!   COMMIT, a lost connection, a savepoint that cannot be rolled back to)
//!   is reported to every write of the batch. If a COMMIT fails with its
//!   outcome unknown (the connection dropped), a retry is safe: creations are
//!   idempotent and a status change to the current status is a no-op.
//!
//! ## How a batch is written
//!
//! 1. **Fast path.** Creations whose order id and idempotency key no earlier
//!    write of the batch names (see [`fast_candidates`]) and the database
//!    does not have are inserted with their keys, lines, search entries and
//!    outbox rows by a few statements:
//!    * SQLite: two `IN (...)` lookups, then multi-row `INSERT`s (keys,
//!      orders, lines, FTS5 entries, outbox rows);
//!    * PostgreSQL: one cached statement with every column bound as an
//!      array ([`pg_insert_new!`]): a stored order id is skipped (`ON
//!      CONFLICT DO NOTHING`) and answered one by one. The outbox's shared
//!      advisory lock is taken in it, before the outbox rows get their
//!      `seq`, and held until the commit, as
//!      [`OrderStore::changes_after`](crate::OrderStore::changes_after)
//!      requires.
//!
//!    None of these statements should fail for one order's sake; if one
//!    does anyway (a trigger, another process writing the same database, on
//!    PostgreSQL an idempotency key stored for another order id), the
//!    transaction is rolled back and the whole batch is written again the
//!    careful way, each write in its own savepoint.
//! 2. **One by one.** Everything else (replays, conflicts, an order id or
//!    key seen earlier in the batch, status changes) runs through the same
//!    code as a single write ([`create_in`], [`transition_in`]), each inside
//!    `SAVEPOINT item`: `RELEASE` on success, `ROLLBACK TO` on error.
//! 3. **COMMIT**, then every caller is answered.
//!
//! On PostgreSQL a batch of nothing but fast-path creations (the usual
//! batch under load) is first tried as that one statement on its own,
//! without `BEGIN`/`COMMIT` (its own transaction, committed before it
//! answers: one round trip instead of three), in a form where a stored
//! order id fails it ([`write_alone`]); if the database refuses it, nothing
//! was written and the batch is written as above.
//!
//! A PostgreSQL store also runs [`clean_search_index`] next to the writer,
//! so that the full-text index's pending list is moved into the index in
//! small steps instead of in one long stall of a batch.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::{Arg, Db, Kind, Tx};
use crate::error::{OrderError, Result};
use crate::model::{ChangeKind, Created, Order};
use crate::store::{NewRow, ORDER_COLUMNS, StatusChange, change_payload, create_in, transition_in};

/// Most writes in one transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Writes that may wait for the writer; more wait to be queued.
const QUEUE: usize = 4 * MAX_BATCH;
/// Rows per multi-row `INSERT` (SQLite; at most 16 parameters each).
const ROWS_PER_INSERT: usize = 128;
/// How often [`clean_search_index`] runs while orders are written.
const GIN_CLEAN_EVERY: Duration = Duration::from_millis(50);
/// How long [`clean_search_index`] waits after a failure.
const GIN_CLEAN_RETRY: Duration = Duration::from_secs(5);
/// Values per `IN (...)` lookup (SQLite).
const IDS_PER_LOOKUP: usize = 256;

/// The handle of the writer task; cheap to clone. The task ends when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

/// What the writer task has written so far.
#[derive(Debug, Default)]
struct Counts {
    batches: AtomicU64,
    writes: AtomicU64,
}

/// Counters of the writer (see [`OrderStore::writer_stats`](crate::OrderStore::writer_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions written (batches), committed or not.
    pub batches: u64,
    /// Writes (creations and status changes) in those batches.
    pub writes: u64,
}

/// One queued write and where its answer goes.
enum Job {
    Create(Box<NewRow>, oneshot::Sender<Result<Created>>),
    Transition(StatusChange, oneshot::Sender<Result<Order>>),
}

/// The answer to one [`Job`].
enum Answer {
    Created(Result<Created>),
    Changed(Result<Order>),
}

impl Answer {
    fn is_ok(&self) -> bool {
        match self {
            Answer::Created(r) => r.is_ok(),
            Answer::Changed(r) => r.is_ok(),
        }
    }
}

/// Why a batch's transaction failed.
enum Failed {
    /// A fast-path statement failed: write the batch again one by one.
    FastPath(OrderError),
    /// The transaction failed: every write of the batch gets the error.
    Batch(OrderError),
}

impl Writer {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn spawn(db: Db) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        if let Db::Postgres(pool) = &db {
            tokio::spawn(clean_search_index(pool.clone(), Arc::downgrade(&counts)));
        }
        tokio::spawn(run(db, queue, counts.clone()));
        Writer { jobs, counts }
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.counts.batches.load(Relaxed),
            writes: self.counts.writes.load(Relaxed),
        }
    }

    /// Writes a validated order (see [`create_in`]) in the next batch.
    pub(crate) async fn create(&self, item: NewRow) -> Result<Created> {
        let (answer, wait) = oneshot::channel();
        self.submit(Job::Create(Box::new(item), answer)).await?;
        wait.await.map_err(|_| stopped())?
    }

    /// Applies a checked status change (see [`transition_in`]) in the next
    /// batch.
    pub(crate) async fn transition(&self, change: StatusChange) -> Result<Order> {
        let (answer, wait) = oneshot::channel();
        self.submit(Job::Transition(change, answer)).await?;
        wait.await.map_err(|_| stopped())?
    }

    async fn submit(&self, job: Job) -> Result<()> {
        self.jobs.send(job).await.map_err(|_| stopped())
    }
}

fn stopped() -> OrderError {
    OrderError::Database("the order writer has stopped (is the store closing?)".into())
}

/// The writer task: takes what is queued, writes it, answers, repeats.
async fn run(db: Db, mut queue: mpsc::Receiver<Job>, counts: Arc<Counts>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        counts.batches.fetch_add(1, Relaxed);
        counts.writes.fetch_add(batch.len() as u64, Relaxed);
        write_batch(&db, batch).await;
    }
}

/// PostgreSQL: keeps the pending list of the full-text index (`orders_search`,
/// a GIN index with `fastupdate`) short, off the writer's path.
///
/// New entries of a GIN index with `fastupdate` go to a pending list, which
/// is cheap; once it outgrows `gin_pending_list_limit` (4 MB by default)
/// the insert that notices moves it all into the index, which takes tens of
/// milliseconds, inside the writer's batch, holding up every caller of it.
/// This task does that move in small steps on its own connection (one
/// `gin_clean_pending_list` call each [`GIN_CLEAN_EVERY`] while orders are
/// being written), so that the list stays short. An insert that finds a
/// cleanup running does not wait for it. If the store may not do this
/// (its user does not own the index) or the index is gone, the task stops
/// and inserts clean the list themselves, as before; after any other error
/// it waits [`GIN_CLEAN_RETRY`]. It ends with the writer, or when the pool
/// is closed.
async fn clean_search_index(pool: sqlx::PgPool, counts: Weak<Counts>) {
    let mut cleaned = 0;
    loop {
        tokio::time::sleep(GIN_CLEAN_EVERY).await;
        let Some(counts) = counts.upgrade() else {
            return;
        };
        let writes = counts.writes.load(Relaxed);
        drop(counts);
        if writes == cleaned {
            continue;
        }
        cleaned = writes;
        let clean = sqlx::query("SELECT gin_clean_pending_list('orders_search'::regclass)");
        match clean.execute(&pool).await {
            Ok(_) => {}
            Err(sqlx::Error::PoolClosed) => return,
            // insufficient_privilege, undefined_table, undefined_object,
            // undefined_function, invalid_schema_name
            Err(sqlx::Error::Database(e))
                if matches!(
                    e.code().as_deref(),
                    Some("42501" | "42P01" | "42704" | "42883" | "3F000")
                ) =>
            {
                return;
            }
            Err(_) => tokio::time::sleep(GIN_CLEAN_RETRY).await,
        }
    }
}

/// Writes one batch and answers every job in it.
async fn write_batch(db: &Db, jobs: Vec<Job>) {
    let written = match write_alone(db, &jobs).await {
        Some(written) => written,
        None => match write(db, &jobs, true).await {
            Err(Failed::FastPath(_)) => write(db, &jobs, false).await,
            other => other,
        },
    };
    match written {
        Ok(answers) => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                // A caller that went away (its request dropped) finds its
                // write committed all the same; nobody hears the answer.
                match (job, answer) {
                    (Job::Create(_, to), Answer::Created(r)) => _ = to.send(r),
                    (Job::Transition(_, to), Answer::Changed(r)) => _ = to.send(r),
                    (job, _) => job.fail(OrderError::Database(
                        "internal error: an answer of the wrong kind".into(),
                    )),
                }
            }
        }
        Err(Failed::Batch(e) | Failed::FastPath(e)) => {
            for job in jobs {
                job.fail(e.clone());
            }
        }
    }
}

impl Job {
    fn fail(self, e: OrderError) {
        match self {
            Job::Create(_, to) => _ = to.send(Err(e)),
            Job::Transition(_, to) => _ = to.send(Err(e)),
        }
    }
}

/// Writes `jobs` in one transaction; with `fast`, new orders go through the
/// multi-row fast path first. Returns one answer per job, in order.
async fn write(db: &Db, jobs: &[Job], fast: bool) -> Result<Vec<Answer>, Failed> {
    let batch = |e: sqlx::Error| Failed::Batch(e.into());
    let mut tx = db.begin_write().await.map_err(batch)?;
    let mut answers: Vec<Option<Answer>> = jobs.iter().map(|_| None).collect();
    if fast {
        let candidates = fast_candidates(jobs);
        let fresh = match tx.kind() {
            Kind::Sqlite => {
                let fresh = fresh_orders(&mut tx, candidates)
                    .await
                    .map_err(Failed::FastPath)?;
                let items: Vec<&NewRow> = fresh.iter().map(|&(_, item)| item).collect();
                insert_new(&mut tx, &items)
                    .await
                    .map_err(Failed::FastPath)?;
                fresh
            }
            Kind::Postgres => insert_new_pg(&mut tx, candidates)
                .await
                .map_err(Failed::FastPath)?,
        };
        for (i, item) in fresh {
            answers[i] = Some(Answer::Created(Ok(Created {
                order: item.order.clone(),
                replayed: false,
            })));
        }
    }
    for (job, answer) in jobs.iter().zip(answers.iter_mut()) {
        if answer.is_some() {
            continue;
        }
        tx.execute_script("SAVEPOINT item").await.map_err(batch)?;
        let a = match job {
            Job::Create(item, _) => Answer::Created(create_in(&mut tx, item).await),
            Job::Transition(change, _) => Answer::Changed(transition_in(&mut tx, change).await),
        };
        let end = if a.is_ok() {
            "RELEASE item"
        } else {
            "ROLLBACK TO item; RELEASE item"
        };
        tx.execute_script(end).await.map_err(batch)?;
        *answer = Some(a);
    }
    tx.commit().await.map_err(batch)?;
    Ok(answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                Answer::Created(Err(OrderError::Database(
                    "internal error: a write of the batch was not answered".into(),
                )))
            })
        })
        .collect())
}

/// The creations of `jobs` that may take the fast path: those whose order
/// id and idempotency key no earlier write of the batch names (a creation's
/// id or key, a status change's order id), so that writing them first gives
/// every write of the batch the answer it would get in batch order. Whether
/// the database has them already is checked afterwards.
fn fast_candidates(jobs: &[Job]) -> Vec<(usize, &NewRow)> {
    let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
    let mut candidates = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match job {
            Job::Create(item, _) => {
                let id = item.order.order_id.as_str();
                let key = item.key.as_deref();
                let new_id = ids.insert(id);
                let new_key = key.is_none_or(|k| keys.insert(k));
                if new_id && new_key {
                    candidates.push((i, &**item));
                }
            }
            Job::Transition(change, _) => {
                ids.insert(change.order_id.as_str());
            }
        }
    }
    candidates
}

/// The `candidates` (see [`fast_candidates`]) whose order id and
/// idempotency key are not in the database (SQLite: two `IN (...)`
/// lookups; PostgreSQL checks inside [`insert_new_pg`]).
async fn fresh_orders<'a>(
    tx: &mut Tx,
    candidates: Vec<(usize, &'a NewRow)>,
) -> Result<Vec<(usize, &'a NewRow)>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = candidates
        .iter()
        .map(|(_, item)| item.order.order_id.as_str())
        .collect();
    let keys: Vec<&str> = candidates
        .iter()
        .filter_map(|(_, item)| item.key.as_deref())
        .collect();
    let stored_ids = existing(tx, "SELECT order_id FROM orders WHERE order_id IN", &ids).await?;
    let stored_keys = existing(
        tx,
        "SELECT idem_key FROM order_idempotency_keys WHERE idem_key IN",
        &keys,
    )
    .await?;
    Ok(candidates
        .into_iter()
        .filter(|(_, item)| {
            !stored_ids.contains(item.order.order_id.as_str())
                && item.key.as_deref().is_none_or(|k| !stored_keys.contains(k))
        })
        .collect())
}

/// Which of `values` the lookup `select` (`SELECT col FROM t WHERE col IN`)
/// finds (SQLite).
async fn existing(tx: &mut Tx, select: &str, values: &[&str]) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in values.chunks(IDS_PER_LOOKUP) {
        let sql = format!("{select} ({})", vec!["?"; chunk.len()].join(", "));
        let args: Vec<Arg<'_>> = chunk.iter().map(|v| Arg::Text(v)).collect();
        for row in tx.fetch_all_once(sql, &args).await? {
            found.insert(row.text(0)?);
        }
    }
    Ok(found)
}

/// `head VALUES (row), (row), ...` with `rows` rows; `row` lists each
/// column's expression with `?` for its parameter. SQLite only: it binds
/// the anonymous `?` by position (for `$N` sqlx looks each parameter's name
/// up among all of them, which is quadratic in a statement of thousands of
/// parameters).
fn multi_row(head: &str, row: &[&str], rows: usize, tail: &str) -> String {
    let row = format!("({})", row.join(", "));
    format!("{head} VALUES {}{tail}", vec![row; rows].join(", "))
}

/// SQLite: inserts new orders (checked by [`fresh_orders`]) with everything
/// that goes with them: keys, lines, search entries, outbox rows.
async fn insert_new(tx: &mut Tx, items: &[&NewRow]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }

    // idempotency keys
    let keyed: Vec<&NewRow> = items.iter().copied().filter(|i| i.key.is_some()).collect();
    for chunk in keyed.chunks(ROWS_PER_INSERT) {
        let mut args = Vec::with_capacity(chunk.len() * 4);
        for item in chunk {
            args.extend([
                Arg::OptText(item.key.as_deref()),
                Arg::Text(&item.hash),
                Arg::Text(&item.order.order_id),
                Arg::Int(item.order.created_at.timestamp_micros()),
            ]);
        }
        let sql = multi_row(
            "INSERT INTO order_idempotency_keys (idem_key, body_hash, order_id, created_at_us)",
            &["?"; 4],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }

    // orders, and their row ids for the search entries
    let mut row_ids: Vec<(i64, &str)> = Vec::with_capacity(items.len());
    for chunk in items.chunks(ROWS_PER_INSERT) {
        let mut args = Vec::with_capacity(chunk.len() * 16);
        for item in chunk {
            args.extend(crate::store::order_args(&item.order, &item.hash));
        }
        let sql = multi_row(
            &format!("INSERT INTO orders ({ORDER_COLUMNS}, body_hash)"),
            &["?"; 16],
            chunk.len(),
            " RETURNING id, order_id",
        );
        for row in tx.fetch_all_once(sql, &args).await? {
            let (id, order_id) = (row.int(0)?, row.text(1)?);
            let item = chunk
                .iter()
                .find(|i| i.order.order_id == order_id)
                .ok_or_else(|| {
                    OrderError::Database(format!(
                        "INSERT returned an order id it was not given: {order_id:?}"
                    ))
                })?;
            row_ids.push((id, &item.doc));
        }
    }

    // lines
    let lines: Vec<(&str, i64, &crate::model::Line)> = items
        .iter()
        .flat_map(|item| {
            let id = item.order.order_id.as_str();
            (0_i64..)
                .zip(&item.order.lines)
                .map(move |(n, l)| (id, n, l))
        })
        .collect();
    for chunk in lines.chunks(ROWS_PER_INSERT) {
        let mut args = Vec::with_capacity(chunk.len() * 8);
        for &(order_id, line_no, line) in chunk {
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
        let sql = multi_row(
            "INSERT INTO order_lines (order_id, line_no, product_id, sku, name, category, quantity, unit_price_cents)",
            &["?"; 8],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }

    // search entries
    for chunk in row_ids.chunks(ROWS_PER_INSERT) {
        let args: Vec<Arg<'_>> = chunk
            .iter()
            .flat_map(|&(id, doc)| [Arg::Int(id), Arg::Text(doc)])
            .collect();
        let sql = multi_row(
            "INSERT INTO orders_fts (rowid, doc)",
            &["?"; 2],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }

    // the outbox, in the batch's order
    let payloads = items
        .iter()
        .map(|item| change_payload(&item.order))
        .collect::<Result<Vec<String>>>()?;
    let rows: Vec<(&NewRow, &String)> = items.iter().copied().zip(&payloads).collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut args = Vec::with_capacity(chunk.len() * 5);
        for &(item, payload) in chunk {
            args.extend([
                Arg::Text(&item.order.order_id),
                Arg::Int(item.order.version),
                Arg::Text(ChangeKind::Created.as_str()),
                Arg::Text(payload),
                Arg::Int(item.order.created_at.timestamp_micros()),
            ]);
        }
        let sql = multi_row(
            "INSERT INTO order_changes (order_id, version, kind, payload, at_us)",
            &["?"; 5],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }
    Ok(())
}

/// PostgreSQL: the fast path in one statement, with every column bound as
/// an array (one parsed, cached statement whatever the batch size). It
/// inserts the input orders (see [`fast_candidates`]) with their keys, lines
/// and outbox rows (taking the outbox's shared lock before they get their
/// `seq`), and returns the positions (1-based) in the input of the orders
/// it inserted.
///
/// Its plan joins only the input with itself: an order id already stored
/// is handled by the unique constraint on `orders.order_id` (`$on_conflict`:
/// empty, it fails the statement; `ON CONFLICT (order_id) DO NOTHING`, the
/// order is skipped and answered one by one), and an idempotency key
/// already stored for another order id violates the key's primary key,
/// which fails the statement. So no cached plan can turn into a scan of a
/// table that has grown since it was planned (a join with the stored orders
/// would be planned as a hash join while the table is small).
///
/// Data-modifying `WITH` statements see the snapshot of the statement start
/// and each runs once; `fresh` (the orders inserted) is computed once. The
/// outbox rows get their `seq` (the column default, evaluated above the
/// `ORDER BY`) in input order, and only from rows of the join with
/// `outbox_lock`, i.e. once the lock is held.
macro_rules! pg_insert_new {
    ($on_conflict:literal) => {
        concat!(
            "WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::text[],
                         $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::text[],
                         $17::text[], $18::text[], $19::text[])
        WITH ORDINALITY AS t (order_id, customer_id, email, currency, status,
                              subtotal_cents, tax_cents, shipping_cents, discount_cents, total_cents, coupon,
                              placed_at_us, created_at_us, updated_at_us, version, body_hash,
                              doc, idem_key, payload, n)
),
new_orders AS (
    INSERT INTO orders (order_id, customer_id, email, currency, status, subtotal_cents, tax_cents,
                        shipping_cents, discount_cents, total_cents, coupon, placed_at_us,
                        created_at_us, updated_at_us, version, body_hash, search)
    SELECT order_id, customer_id, email, currency, status, subtotal_cents, tax_cents,
           shipping_cents, discount_cents, total_cents, coupon, placed_at_us,
           created_at_us, updated_at_us, version, body_hash, to_tsvector('simple', doc)
    FROM input ORDER BY n
    ",
            $on_conflict,
            "
    RETURNING order_id
),
fresh AS MATERIALIZED (
    SELECT * FROM input WHERE order_id IN (SELECT order_id FROM new_orders)
),
new_keys AS (
    INSERT INTO order_idempotency_keys (idem_key, body_hash, order_id, created_at_us)
    SELECT idem_key, body_hash, order_id, created_at_us FROM fresh
    WHERE idem_key IS NOT NULL ORDER BY n
),
new_lines AS (
    INSERT INTO order_lines (order_id, line_no, product_id, sku, name, category, quantity, unit_price_cents)
    SELECT l.order_id, l.line_no, l.product_id, l.sku, l.name, l.category, l.quantity, l.unit_price_cents
    FROM unnest($20::text[], $21::int8[], $22::text[], $23::text[], $24::text[], $25::text[],
                $26::int8[], $27::int8[])
        AS l (order_id, line_no, product_id, sku, name, category, quantity, unit_price_cents)
    WHERE l.order_id IN (SELECT order_id FROM fresh)
),
outbox_lock AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(74220602, hashtext(current_schema()))
),
new_changes AS (
    INSERT INTO order_changes (order_id, version, kind, payload, at_us)
    SELECT f.order_id, f.version, $28, f.payload, f.created_at_us
    FROM fresh f CROSS JOIN outbox_lock
    ORDER BY f.n
)
SELECT n FROM fresh"
        )
    };
}

/// [`pg_insert_new!`] inside the batch's transaction: stored order ids are
/// skipped.
const PG_INSERT_NEW: &str = pg_insert_new!("ON CONFLICT (order_id) DO NOTHING");
/// [`pg_insert_new!`] as a transaction of its own: every order is inserted
/// or none.
const PG_INSERT_NEW_ALONE: &str = pg_insert_new!("");

/// The arguments of [`pg_insert_new!`]: the columns of some orders and of
/// their lines, as arrays.
#[derive(Default)]
struct PgBatch<'a> {
    order_id: Vec<&'a str>,
    customer_id: Vec<&'a str>,
    email: Vec<Option<&'a str>>,
    currency: Vec<&'a str>,
    status: Vec<&'a str>,
    subtotal: Vec<i64>,
    tax: Vec<i64>,
    shipping: Vec<i64>,
    discount: Vec<i64>,
    total: Vec<i64>,
    coupon: Vec<Option<&'a str>>,
    placed_at: Vec<i64>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    version: Vec<i64>,
    hash: Vec<&'a str>,
    doc: Vec<&'a str>,
    key: Vec<Option<&'a str>>,
    payload: Vec<String>,
    line_order_id: Vec<&'a str>,
    line_no: Vec<i64>,
    line_product_id: Vec<&'a str>,
    line_sku: Vec<Option<&'a str>>,
    line_name: Vec<Option<&'a str>>,
    line_category: Vec<Option<&'a str>>,
    line_quantity: Vec<i64>,
    line_price: Vec<i64>,
}

impl<'a> PgBatch<'a> {
    fn new(items: &[(usize, &'a NewRow)]) -> Result<PgBatch<'a>> {
        let mut b = PgBatch::default();
        for &(_, item) in items {
            let o = &item.order;
            b.order_id.push(&o.order_id);
            b.customer_id.push(&o.customer_id);
            b.email.push(o.email.as_deref());
            b.currency.push(&o.currency);
            b.status.push(o.status.as_str());
            b.subtotal.push(o.subtotal.cents());
            b.tax.push(o.tax.cents());
            b.shipping.push(o.shipping.cents());
            b.discount.push(o.discount.cents());
            b.total.push(o.total.cents());
            b.coupon.push(o.coupon.as_deref());
            b.placed_at.push(o.placed_at.timestamp_micros());
            b.created_at.push(o.created_at.timestamp_micros());
            b.updated_at.push(o.updated_at.timestamp_micros());
            b.version.push(o.version);
            b.hash.push(&item.hash);
            b.doc.push(&item.doc);
            b.key.push(item.key.as_deref());
            b.payload.push(change_payload(o)?);
            for (no, line) in (0_i64..).zip(&o.lines) {
                b.line_order_id.push(&o.order_id);
                b.line_no.push(no);
                b.line_product_id.push(&line.product_id);
                b.line_sku.push(line.sku.as_deref());
                b.line_name.push(line.name.as_deref());
                b.line_category.push(line.category.as_deref());
                b.line_quantity.push(line.quantity);
                b.line_price.push(line.unit_price.cents());
            }
        }
        Ok(b)
    }

    /// Runs `sql` ([`PG_INSERT_NEW`] or [`PG_INSERT_NEW_ALONE`]) in the
    /// transaction (`Ok`) or on its own (`Err`); returns the input
    /// positions of the orders inserted, in order.
    async fn insert(
        &self,
        sql: &'static str,
        on: Result<&mut Tx, &Db>,
    ) -> Result<Vec<usize>, sqlx::Error> {
        let payload: Vec<&str> = self.payload.iter().map(String::as_str).collect();
        let args = [
            Arg::Texts(&self.order_id),
            Arg::Texts(&self.customer_id),
            Arg::OptTexts(&self.email),
            Arg::Texts(&self.currency),
            Arg::Texts(&self.status),
            Arg::Ints(&self.subtotal),
            Arg::Ints(&self.tax),
            Arg::Ints(&self.shipping),
            Arg::Ints(&self.discount),
            Arg::Ints(&self.total),
            Arg::OptTexts(&self.coupon),
            Arg::Ints(&self.placed_at),
            Arg::Ints(&self.created_at),
            Arg::Ints(&self.updated_at),
            Arg::Ints(&self.version),
            Arg::Texts(&self.hash),
            Arg::Texts(&self.doc),
            Arg::OptTexts(&self.key),
            Arg::Texts(&payload),
            Arg::Texts(&self.line_order_id),
            Arg::Ints(&self.line_no),
            Arg::Texts(&self.line_product_id),
            Arg::OptTexts(&self.line_sku),
            Arg::OptTexts(&self.line_name),
            Arg::OptTexts(&self.line_category),
            Arg::Ints(&self.line_quantity),
            Arg::Ints(&self.line_price),
            Arg::Text(ChangeKind::Created.as_str()),
        ];
        let rows = match on {
            Ok(tx) => tx.fetch_all(sql, &args).await?,
            Err(db) => db.fetch_all(sql, &args).await?,
        };
        let mut positions = Vec::with_capacity(rows.len());
        for row in rows {
            let n = usize::try_from(row.int(0)?).unwrap_or(0);
            if n == 0 || n > self.order_id.len() {
                return Err(sqlx::Error::Protocol(format!(
                    "the batch INSERT returned position {n} of {}",
                    self.order_id.len()
                )));
            }
            positions.push(n - 1);
        }
        positions.sort_unstable();
        Ok(positions)
    }
}

/// Writes the `candidates` (see [`fast_candidates`]) that are new to the
/// database with [`PG_INSERT_NEW`] in `tx`; returns those it wrote.
async fn insert_new_pg<'a>(
    tx: &mut Tx,
    candidates: Vec<(usize, &'a NewRow)>,
) -> Result<Vec<(usize, &'a NewRow)>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let positions = PgBatch::new(&candidates)?
        .insert(PG_INSERT_NEW, Ok(tx))
        .await?;
    Ok(positions.into_iter().map(|p| candidates[p]).collect())
}

/// PostgreSQL, a batch of new orders only: writes it with one statement
/// in a transaction of its own ([`PG_INSERT_NEW_ALONE`]: one round trip,
/// and the commit comes with its answer). `None` if the batch is anything
/// else, or if the database refused the statement (an order id or key it
/// has, a trigger): then nothing was written, and the batch goes the usual
/// way. An error with an unknown outcome (a lost connection) is the batch's.
async fn write_alone(db: &Db, jobs: &[Job]) -> Option<Result<Vec<Answer>, Failed>> {
    if db.kind() != Kind::Postgres {
        return None;
    }
    let candidates = fast_candidates(jobs);
    if candidates.len() != jobs.len() {
        return None;
    }
    let batch = match PgBatch::new(&candidates) {
        Ok(b) => b,
        Err(e) => return Some(Err(Failed::Batch(e))),
    };
    match batch.insert(PG_INSERT_NEW_ALONE, Err(db)).await {
        Ok(positions) if positions.len() == candidates.len() => Some(Ok(candidates
            .iter()
            .map(|(_, item)| {
                Answer::Created(Ok(Created {
                    order: item.order.clone(),
                    replayed: false,
                }))
            })
            .collect())),
        // (Cannot happen: the statement inserts all of them or fails.)
        Ok(_) => Some(Err(Failed::Batch(OrderError::Database(
            "internal error: the batch INSERT skipped an order".into(),
        )))),
        Err(sqlx::Error::Database(_)) => None,
        Err(e) => Some(Err(Failed::Batch(e.into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OUTBOX_LOCK_EXCLUSIVE;

    #[test]
    fn the_batch_statement_takes_the_outbox_lock_of_changes_after() {
        let key = OUTBOX_LOCK_EXCLUSIVE
            .strip_prefix("SELECT pg_advisory_xact_lock(")
            .unwrap();
        for sql in [PG_INSERT_NEW, PG_INSERT_NEW_ALONE] {
            assert!(sql.contains(&format!("pg_advisory_xact_lock_shared({key}")));
        }
        assert!(PG_INSERT_NEW.contains("ON CONFLICT (order_id) DO NOTHING"));
        assert!(!PG_INSERT_NEW_ALONE.contains("ON CONFLICT"));
    }
}
