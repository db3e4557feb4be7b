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
//! 1. **Fast path.** Creations whose order id and idempotency key are new
//!    (two `IN (...)` lookups inside the transaction) and unique within the
//!    batch are inserted with a few multi-row statements: keys, orders,
//!    lines, search entries (SQLite FTS5) and outbox rows. On PostgreSQL the
//!    outbox's shared advisory lock is taken once, before the outbox rows get
//!    their `seq`, and held until the commit, as
//!    [`OrderStore::changes_after`](crate::OrderStore::changes_after)
//!    requires. None of these statements should fail for one order's sake;
//!    if one does anyway (a trigger, another process writing the same
//!    database), the transaction is rolled back and the whole batch is
//!    written again the careful way, each write in its own savepoint.
//! 2. **One by one.** Everything else (replays, conflicts, an order id or
//!    key seen earlier in the batch, status changes) runs through the same
//!    code as a single write ([`create_in`], [`transition_in`]), each inside
//!    `SAVEPOINT item`: `RELEASE` on success, `ROLLBACK TO` on error.
//! 3. **COMMIT**, then every caller is answered.

use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};

use crate::db::{Arg, Db, Kind, Tx};
use crate::error::{OrderError, Result};
use crate::model::{ChangeKind, Created, Order};
use crate::store::{
    NewRow, ORDER_COLUMNS, OUTBOX_LOCK_SHARED, StatusChange, change_payload, create_in,
    transition_in,
};

/// Most writes in one transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Writes that may wait for the writer; more wait to be queued.
const QUEUE: usize = 4 * MAX_BATCH;
/// Rows per multi-row `INSERT` (at most 17 parameters each).
const ROWS_PER_INSERT: usize = 128;
/// Values per `IN (...)` lookup.
const IDS_PER_LOOKUP: usize = 256;

/// The handle of the writer task; cheap to clone. The task ends when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
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
        tokio::spawn(run(db, queue));
        Writer { jobs }
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
async fn run(db: Db, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        write_batch(&db, batch).await;
    }
}

/// Writes one batch and answers every job in it.
async fn write_batch(db: &Db, jobs: Vec<Job>) {
    let written = match write(db, &jobs, true).await {
        Err(Failed::FastPath(_)) => write(db, &jobs, false).await,
        other => other,
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
        let fresh = fresh_orders(&mut tx, jobs)
            .await
            .map_err(Failed::FastPath)?;
        let items: Vec<&NewRow> = fresh.iter().map(|&(_, item)| item).collect();
        insert_new(&mut tx, &items)
            .await
            .map_err(Failed::FastPath)?;
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

/// The creations of `jobs` that can take the fast path: order id and
/// idempotency key not in the database and not used by an earlier fresh
/// creation of the batch.
async fn fresh_orders<'a>(tx: &mut Tx, jobs: &'a [Job]) -> Result<Vec<(usize, &'a NewRow)>> {
    let creations: Vec<(usize, &NewRow)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| match job {
            Job::Create(item, _) => Some((i, &**item)),
            Job::Transition(..) => None,
        })
        .collect();
    if creations.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = creations
        .iter()
        .map(|(_, item)| item.order.order_id.as_str())
        .collect();
    let keys: Vec<&str> = creations
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
    let (mut ids_taken, mut keys_taken) = (HashSet::new(), HashSet::new());
    let mut fresh = Vec::new();
    for (i, item) in creations {
        let id = item.order.order_id.as_str();
        let key = item.key.as_deref();
        let new_id = !stored_ids.contains(id) && !ids_taken.contains(id);
        let new_key = key.is_none_or(|k| !stored_keys.contains(k) && !keys_taken.contains(k));
        if new_id && new_key {
            ids_taken.insert(id);
            keys_taken.extend(key);
            fresh.push((i, item));
        }
    }
    Ok(fresh)
}

/// Which of `values` the lookup `select` (`SELECT col FROM t WHERE col IN`)
/// finds.
async fn existing(tx: &mut Tx, select: &str, values: &[&str]) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in values.chunks(IDS_PER_LOOKUP) {
        let marks: Vec<String> = match tx.kind() {
            Kind::Sqlite => vec!["?".to_string(); chunk.len()],
            Kind::Postgres => (1..=chunk.len()).map(|n| format!("${n}")).collect(),
        };
        let sql = format!("{select} ({})", marks.join(", "));
        let args: Vec<Arg<'_>> = chunk.iter().map(|v| Arg::Text(v)).collect();
        for row in tx.fetch_all_once(sql, &args).await? {
            found.insert(row.text(0)?);
        }
    }
    Ok(found)
}

/// `head VALUES (row), (row), ...` with `rows` rows; `row` lists each
/// column's expression with `?` for its parameter. PostgreSQL gets `$1, $2,
/// ...`; SQLite keeps the anonymous `?`, which binds by position (for `$N`
/// sqlx looks each parameter's name up among all of them, which is
/// quadratic in a statement of thousands of parameters).
fn multi_row(kind: Kind, head: &str, row: &[&str], rows: usize, tail: &str) -> String {
    let mut sql = format!("{head} VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (c, column) in row.iter().enumerate() {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match kind {
                Kind::Sqlite => sql.push_str(column),
                Kind::Postgres => sql.push_str(&column.replace('?', &format!("${n}"))),
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Inserts new orders (checked by [`fresh_orders`]) with everything that
/// goes with them: keys, lines, search entries, outbox rows.
async fn insert_new(tx: &mut Tx, items: &[&NewRow]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let kind = tx.kind();

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
            kind,
            "INSERT INTO order_idempotency_keys (idem_key, body_hash, order_id, created_at_us)",
            &["?"; 4],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }

    // orders (SQLite: their row ids, for the search entries)
    let mut row_ids: Vec<(i64, &str)> = Vec::with_capacity(items.len());
    for chunk in items.chunks(ROWS_PER_INSERT) {
        let mut args = Vec::with_capacity(chunk.len() * 17);
        for item in chunk {
            let o = &item.order;
            args.extend(crate::store::order_args(o, &item.hash));
            if kind == Kind::Postgres {
                args.push(Arg::Text(&item.doc));
            }
        }
        let head = format!("INSERT INTO orders ({ORDER_COLUMNS}, body_hash");
        match kind {
            Kind::Sqlite => {
                let sql = multi_row(
                    kind,
                    &format!("{head})"),
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
            Kind::Postgres => {
                let mut row = ["?"; 17];
                row[16] = "to_tsvector('simple', ?)";
                let sql = multi_row(kind, &format!("{head}, search)"), &row, chunk.len(), "");
                tx.execute_once(sql, &args).await?;
            }
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
            kind,
            "INSERT INTO order_lines (order_id, line_no, product_id, sku, name, category, quantity, unit_price_cents)",
            &["?"; 8],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }

    // search entries (SQLite; PostgreSQL keeps them in the orders row)
    for chunk in row_ids.chunks(ROWS_PER_INSERT) {
        let args: Vec<Arg<'_>> = chunk
            .iter()
            .flat_map(|&(id, doc)| [Arg::Int(id), Arg::Text(doc)])
            .collect();
        let sql = multi_row(
            kind,
            "INSERT INTO orders_fts (rowid, doc)",
            &["?"; 2],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }

    // the outbox, in the batch's order
    if kind == Kind::Postgres {
        tx.execute(OUTBOX_LOCK_SHARED, &[]).await?;
    }
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
            kind,
            "INSERT INTO order_changes (order_id, version, kind, payload, at_us)",
            &["?"; 5],
            chunk.len(),
            "",
        );
        tx.execute_once(sql, &args).await?;
    }
    Ok(())
}
