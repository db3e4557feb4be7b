//! The orders API (`/api/orders`) over the order store, and the copy of
//! every order change into the lake.
//!
//! | route | role |
//! | --- | --- |
//! | `POST /api/orders` | orders, admin |
//! | `PATCH /api/orders/{id}` | orders, admin |
//! | `GET /api/orders/{id}`, `GET /api/orders` | orders, analyst, admin |
//!
//! Errors are RFC 7807 `application/problem+json`: `type`, `title`,
//! `status`, `detail`, and `errors` (`[{field, reason}]`, every problem
//! found) or `allowed` (the statuses an order may move to).
//!
//! The store writes each change to its outbox in the change's own
//! transaction; [`sync`] copies the outbox into `processed.orders` (one row
//! per order) and `processed.transactions` (its lines, `source =
//! 'orders_api'`) every `orders.sync_interval_ms`. Each commit records the
//! outbox position it reached as a Delta transaction version, so a crash
//! resumes where the lake stands, and a table rebuilt by an upgrade is
//! filled again from the start. Rewriting an order's rows is idempotent:
//! the latest version wins.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use shoplake_core::schema;
use shoplake_lake::{Lake, WriteMode};
use shoplake_orders::{NewOrder, Order, OrderError, OrderQuery, OrderStore, Problem, Status};
use tokio::sync::watch;

use crate::api::Api;
use crate::auth::{self, Principal};

/// The application id of the lake commits that copy orders: its
/// transaction version is the last outbox change fully in the table.
pub const SYNC_APP: &str = "shoplake-orders-sync";

/// The application id whose transaction version is the last outbox change
/// up to which every *created* order is in the table (see [`sync`]).
pub const SYNC_NEW_APP: &str = "shoplake-orders-sync-new";

/// State of the orders routes.
pub(crate) struct Orders {
    pub(crate) api: Arc<Api>,
    pub(crate) store: OrderStore,
    /// Wakes the sync after a change, so the lake follows within moments.
    pub(crate) changed: Arc<tokio::sync::Notify>,
}

pub(crate) fn router(state: Arc<Orders>) -> Router {
    Router::new()
        .route("/api/orders", get(list).post(create))
        .route("/api/orders/{id}", get(read).patch(change))
        .with_state(state)
}

/// An RFC 7807 problem.
struct ProblemResponse {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for ProblemResponse {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert(
            "type".into(),
            format!("urn:shoplake:problem:{}", self.kind).into(),
        );
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.extend(self.extra);
        let mut r = (self.status, axum::Json(serde_json::Value::Object(body))).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self.status {
            StatusCode::UNAUTHORIZED => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"shoplake\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

fn problem(
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
) -> ProblemResponse {
    ProblemResponse {
        status,
        kind,
        title,
        detail,
        extra: serde_json::Map::new(),
    }
}

fn problems_json(p: &[Problem]) -> serde_json::Value {
    p.iter()
        .map(|p| serde_json::json!({"field": p.field, "reason": p.reason}))
        .collect::<Vec<_>>()
        .into()
}

impl From<OrderError> for ProblemResponse {
    fn from(e: OrderError) -> Self {
        let detail = e.to_string();
        match e {
            OrderError::Invalid(p) => {
                let mut r = problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-order",
                    "The order breaks a rule",
                    detail,
                );
                r.extra.insert("errors".into(), problems_json(&p));
                r
            }
            OrderError::NotFound(_) => {
                problem(StatusCode::NOT_FOUND, "not-found", "No such order", detail)
            }
            OrderError::Conflict(_) => problem(
                StatusCode::CONFLICT,
                "conflict",
                "The request conflicts with what is stored",
                detail,
            ),
            OrderError::InvalidTransition { from, to, allowed } => {
                let mut r = problem(
                    StatusCode::CONFLICT,
                    "invalid-transition",
                    "The order cannot move to that status",
                    detail,
                );
                r.extra.insert("from".into(), from.as_str().into());
                r.extra.insert("to".into(), to.as_str().into());
                r.extra.insert(
                    "allowed".into(),
                    allowed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .into(),
                );
                r
            }
            OrderError::Database(_) => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The order database is unavailable",
                detail,
            ),
        }
    }
}

type Answer = Result<Response, ProblemResponse>;

/// The caller, refused unless its role may read (or, `write`, change) orders.
fn allow(o: &Orders, headers: &HeaderMap, write: bool) -> Result<Principal, ProblemResponse> {
    let p = auth::authenticate(&o.api.store, o.api.oidc.as_deref(), headers)
        .map_err(|d| problem(d.status, "unauthorized", "Who are you?", d.reason))?;
    if !p.role.may_use_orders(write) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
            format!(
                "{} has the role {}; {} orders needs the role orders or admin{}",
                p.name,
                p.role,
                if write { "changing" } else { "reading" },
                if write { "" } else { " (or analyst)" }
            ),
        ));
    }
    if write {
        let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        p.check_csrf(given)
            .map_err(|d| problem(d.status, "forbidden", "Not allowed", d.reason))?;
    }
    Ok(p)
}

fn malformed(detail: String) -> ProblemResponse {
    problem(
        StatusCode::BAD_REQUEST,
        "malformed",
        "The body is not what this route takes",
        detail,
    )
}

fn order_json(status: StatusCode, o: &Order) -> Response {
    (status, axum::Json(o)).into_response()
}

/// `POST /api/orders`: 201 and the order (`Location` names it); a retry
/// (same `order_id` or `Idempotency-Key`, same body) gets 200 and the first
/// result, with `Idempotent-Replayed: true`.
async fn create(State(o): State<Arc<Orders>>, headers: HeaderMap, body: String) -> Answer {
    allow(&o, &headers, true)?;
    // not JSON at all: 400; JSON but not a valid order: 422, every problem
    serde_json::from_str::<serde::de::IgnoredAny>(&body)
        .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
    let new = NewOrder::from_json(body.as_bytes())?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| malformed("the Idempotency-Key header is not visible ASCII".into()))?,
        ),
        None => None,
    };
    let created = o.store.create(&new, key).await?;
    if created.replayed {
        let mut r = order_json(StatusCode::OK, &created.order);
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(r);
    }
    o.changed.notify_one();
    let mut r = order_json(StatusCode::CREATED, &created.order);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/orders/{}", created.order.order_id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `GET /api/orders/{id}`: the order with its history.
async fn read(State(o): State<Arc<Orders>>, Path(id): Path<String>, headers: HeaderMap) -> Answer {
    allow(&o, &headers, false)?;
    let order = o.store.get(&id).await?;
    Ok(order_json(StatusCode::OK, &order))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    status: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    expected_version: Option<i64>,
}

/// `PATCH /api/orders/{id}` `{status, note?, expected_version?}`: moves the
/// order on, recording who did it and why.
async fn change(
    State(o): State<Arc<Orders>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Answer {
    let who = allow(&o, &headers, true)?;
    let c: Change = serde_json::from_str(&body).map_err(|e| {
        malformed(format!(
            "the body must be {{\"status\": \"paid\", \"note\": \"...\", \"expected_version\": 2}}: {e}"
        ))
    })?;
    let to: Status = c.status.parse().map_err(|e: String| {
        ProblemResponse::from(OrderError::Invalid(vec![Problem::new("/status", e)]))
    })?;
    let order = o
        .store
        .transition(&id, to, c.note.as_deref(), &who.name, c.expected_version)
        .await?;
    o.changed.notify_one();
    Ok(order_json(StatusCode::OK, &order))
}

/// `GET /api/orders?customer_id=&status=&from=&to=&q=&cursor=&limit=`
async fn list(
    State(o): State<Arc<Orders>>,
    headers: HeaderMap,
    q: Result<Query<OrderQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    allow(&o, &headers, false)?;
    let Query(q) = q.map_err(|e| malformed(format!("the query string: {}", e.body_text())))?;
    let page = o.store.list(&q).await?;
    Ok(axum::Json(page).into_response())
}

/// Copies the order store's outbox into the lake until `stop`, every
/// `interval` or as soon as an order changes; a last copy runs on stop.
pub(crate) async fn run_sync(
    store: OrderStore,
    lake: Lake,
    interval: Duration,
    changed: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            _ = stop.changed() => true,
            _ = tokio::time::sleep(interval) => false,
            _ = changed.notified() => {
                // let a burst of changes gather into one commit
                tokio::time::sleep(interval.min(Duration::from_millis(200))).await;
                false
            }
        };
        loop {
            match sync(&store, &lake).await {
                Ok(n) => {
                    if failing {
                        tracing::info!("orders reach the lake again");
                        failing = false;
                    }
                    // a full batch: more are waiting
                    if n < shoplake_orders::MAX_CHANGES_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "copying orders into the lake failed; retrying");
                        failing = true;
                    }
                    break;
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// One copy of the outbox's changes after the lake's positions; returns the
/// changes read.
///
/// Each table keeps two positions as Delta transaction versions: up to
/// [`SYNC_NEW_APP`]'s, every order created is in the table; up to
/// [`SYNC_APP`]'s, every change is (and the table holds each order's latest
/// state). Orders created since are *appended*, in their latest state: a
/// blind append that reads nothing, so a steady stream of new orders costs
/// the same however many the day already holds. Only orders created before
/// and changed since are *replaced*, by a predicate on their ids. The two
/// steps are two commits when both have work (the positions tell a restart
/// where it stopped) and one otherwise.
pub async fn sync(store: &OrderStore, lake: &Lake) -> Result<usize, String> {
    sync_steps(store, lake, true).await
}

/// [`sync`] without its replace step: what a crash between the two commits
/// leaves, for tests.
#[doc(hidden)]
pub async fn sync_appends_only(store: &OrderStore, lake: &Lake) -> Result<usize, String> {
    sync_steps(store, lake, false).await
}

/// The most orders one replace commit rewrites. delta-rs turns the
/// predicate's `order_id IN (...)` into a chain of `OR`s that it walks
/// recursively, about one stack frame per id: 10,000 ids overflowed a
/// thread's stack and aborted `serve` (deltalake-core 1.1).
const MAX_REPLACED: usize = 500;

/// A table's positions in the outbox (see [`sync`]).
#[derive(Debug, Clone, Copy)]
struct Position {
    /// Every change up to here is in the table.
    changed: i64,
    /// Every order created up to here is in the table (≥ `changed`).
    created: i64,
}

async fn position(lake: &Lake, t: &'static schema::Table) -> Result<Position, String> {
    let at = |app| async move { lake.txn_version(t, app).await.map_err(|e| e.to_string()) };
    let changed = at(SYNC_APP).await?;
    // a lake copied before SYNC_NEW_APP existed recorded SYNC_APP alone
    let created = at(SYNC_NEW_APP).await?.or(changed);
    Ok(Position {
        changed: changed.unwrap_or(0),
        created: created.unwrap_or(0),
    })
}

async fn sync_steps(store: &OrderStore, lake: &Lake, replace: bool) -> Result<usize, String> {
    let at_orders = position(lake, &schema::ORDERS).await?;
    let at_lines = position(lake, &schema::TRANSACTIONS).await?;
    let from = at_orders.changed.min(at_lines.changed);
    let changes = store
        .changes_after(from, shoplake_orders::MAX_CHANGES_BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = changes.last().map(|c| c.seq) else {
        return Ok(0);
    };
    let mut latest: HashMap<String, Order> = HashMap::new();
    for c in &changes {
        let order = c
            .order()
            .map_err(|e| format!("outbox entry {} of {}: {e}", c.seq, c.order_id))?;
        match latest.get(&order.order_id) {
            Some(o) if o.version >= order.version => {}
            _ => {
                latest.insert(order.order_id.clone(), order);
            }
        }
    }
    let mut days = BTreeSet::new();
    for (t, lines, at) in [
        (&schema::ORDERS, false, at_orders),
        (&schema::TRANSACTIONS, true, at_lines),
    ] {
        let copy = Copy {
            lake,
            t,
            lines,
            at,
            last,
            latest: &latest,
        };
        days.extend(copy.run(&changes, replace).await?);
    }
    for d in &days {
        shoplake_lake::state::mark_day(lake, shoplake_lake::state::Marks::Orders, *d);
    }
    tracing::debug!(
        changes = changes.len(),
        orders = latest.len(),
        seq = last,
        "orders copied into the lake"
    );
    Ok(changes.len())
}

/// One table's part of a [`sync`].
struct Copy<'a> {
    lake: &'a Lake,
    t: &'static schema::Table,
    /// `processed.transactions` (one row per line), not `processed.orders`.
    lines: bool,
    at: Position,
    /// The last change read.
    last: i64,
    /// Each order's latest state among the changes read.
    latest: &'a HashMap<String, Order>,
}

impl Copy<'_> {
    /// Appends the new orders and replaces the changed ones; returns the
    /// days (of `placed_at`) written.
    async fn run(
        &self,
        changes: &[shoplake_orders::OrderChange],
        replace: bool,
    ) -> Result<BTreeSet<i32>, String> {
        use shoplake_orders::ChangeKind;
        let err = |e: shoplake_lake::LakeError| e.to_string();
        let fresh: BTreeSet<&str> = changes
            .iter()
            .filter(|c| c.seq > self.at.created && c.kind == ChangeKind::Created)
            .map(|c| c.order_id.as_str())
            .collect();
        let changed: BTreeSet<&str> = changes
            .iter()
            .filter(|c| c.seq > self.at.changed && !fresh.contains(c.order_id.as_str()))
            .map(|c| c.order_id.as_str())
            .collect();
        let mut days = BTreeSet::new();
        if self.at.created < self.last && (!fresh.is_empty() || changed.is_empty()) {
            let orders = self.orders(&fresh)?;
            days.extend(orders.iter().map(|o| day_of(o)));
            let Some(mut a) = self
                .lake
                .begin_append_once(self.t, SYNC_NEW_APP, self.last)
                .await
                .map_err(err)?
            else {
                return Err(format!(
                    "{} changed under the order copy (another server copying the same orders?)",
                    self.t.qualified()
                ));
            };
            a.write(self.batch(&orders)?).await.map_err(err)?;
            if changed.is_empty() {
                a.also_record(SYNC_APP, self.last);
            }
            a.commit().await.map_err(err)?;
        }
        if changed.is_empty() || !replace {
            return Ok(days);
        }
        let orders = self.orders(&changed)?;
        let chunks: Vec<&[&Order]> = orders.chunks(MAX_REPLACED).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let dates: BTreeSet<i32> = chunk.iter().map(|o| day_of(o)).collect();
            let dates: Vec<i32> = dates.into_iter().collect();
            let ids = chunk
                .iter()
                .map(|o| format!("'{}'", o.order_id.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            let mut within = format!(
                "{} AND order_id IN ({ids})",
                shoplake_lake::dates_predicate(&dates)
            );
            if self.lines {
                within.push_str(" AND source = 'orders_api'");
            }
            // the positions move with the last piece: a crash before it
            // replaces the pieces again, which changes nothing
            let txns: &[(&str, i64)] = if i + 1 == chunks.len() {
                &[(SYNC_APP, self.last), (SYNC_NEW_APP, self.last)]
            } else {
                &[]
            };
            self.lake
                .write_recording(
                    self.t,
                    vec![self.batch(chunk)?],
                    WriteMode::Replace(within),
                    txns,
                )
                .await
                .map_err(err)?;
            days.extend(dates);
        }
        Ok(days)
    }

    /// The latest state of `ids`, by `placed_at` then id.
    fn orders(&self, ids: &BTreeSet<&str>) -> Result<Vec<&Order>, String> {
        let mut orders = ids
            .iter()
            .map(|id| {
                self.latest
                    .get(*id)
                    .ok_or_else(|| format!("order {id} changed but has no state"))
            })
            .collect::<Result<Vec<&Order>, String>>()?;
        orders.sort_by(|a, b| (a.placed_at, &a.order_id).cmp(&(b.placed_at, &b.order_id)));
        Ok(orders)
    }

    fn batch(&self, orders: &[&Order]) -> Result<RecordBatch, String> {
        if self.lines {
            lines_batch(orders)
        } else {
            orders_batch(orders)
        }
        .map_err(|e| e.to_string())
    }
}

/// The order's business date: the UTC day it was placed.
fn day_of(o: &Order) -> i32 {
    o.placed_at.timestamp_micros().div_euclid(86_400_000_000) as i32
}

fn money_builder(n: usize) -> Decimal128Builder {
    Decimal128Builder::with_capacity(n).with_data_type(schema::ColType::Money.arrow())
}

fn orders_batch(orders: &[&Order]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = orders.len();
    let mut id = StringBuilder::new();
    let mut customer = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut currency = StringBuilder::new();
    let mut money: [Decimal128Builder; 5] = std::array::from_fn(|_| money_builder(n));
    let mut coupon = StringBuilder::new();
    let mut lines = Int32Builder::with_capacity(n);
    let mut units = Int64Builder::with_capacity(n);
    let mut placed = TimestampMicrosecondBuilder::with_capacity(n);
    let mut updated = TimestampMicrosecondBuilder::with_capacity(n);
    let mut version = Int64Builder::with_capacity(n);
    let mut date = Date32Builder::with_capacity(n);
    for o in orders {
        id.append_value(&o.order_id);
        customer.append_value(&o.customer_id);
        status.append_value(o.status.as_str());
        currency.append_value(&o.currency);
        for (b, m) in money
            .iter_mut()
            .zip([o.subtotal, o.discount, o.tax, o.shipping, o.total])
        {
            b.append_value(i128::from(m.cents()));
        }
        coupon.append_option(o.coupon.as_deref());
        lines.append_value(i32::try_from(o.lines.len()).unwrap_or(i32::MAX));
        units.append_value(o.lines.iter().map(|l| l.quantity).sum());
        placed.append_value(o.placed_at.timestamp_micros());
        updated.append_value(o.updated_at.timestamp_micros());
        version.append_value(o.version);
        date.append_value(day_of(o));
    }
    let [mut subtotal, mut discount, mut tax, mut shipping, mut total] = money;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(customer.finish()),
        Arc::new(status.finish()),
        Arc::new(currency.finish()),
        Arc::new(subtotal.finish()),
        Arc::new(discount.finish()),
        Arc::new(tax.finish()),
        Arc::new(shipping.finish()),
        Arc::new(total.finish()),
        Arc::new(coupon.finish()),
        Arc::new(lines.finish()),
        Arc::new(units.finish()),
        Arc::new(placed.finish().with_timezone("UTC")),
        Arc::new(updated.finish().with_timezone("UTC")),
        Arc::new(version.finish()),
        Arc::new(date.finish()),
    ];
    RecordBatch::try_new(schema::ORDERS.schema(), cols)
}

/// The status of an order's lines in `processed.transactions` (`None`: a
/// cancelled order, whose lines are left out).
fn line_status(s: Status) -> Option<&'static str> {
    match s {
        Status::Placed | Status::Paid | Status::Shipped | Status::Delivered => Some("completed"),
        Status::Returned => Some("returned"),
        Status::Refunded => Some("refunded"),
        Status::Cancelled => None,
    }
}

fn lines_batch(orders: &[&Order]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n: usize = orders.iter().map(|o| o.lines.len()).sum();
    let mut tid = StringBuilder::new();
    let mut oid = StringBuilder::new();
    let mut customer = StringBuilder::new();
    let mut product = StringBuilder::new();
    let mut quantity = Int32Builder::with_capacity(n);
    let mut price = money_builder(n);
    let mut total = money_builder(n);
    let mut currency = StringBuilder::new();
    let mut tdate = Date32Builder::with_capacity(n);
    let mut status = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut file = StringBuilder::new();
    let mut date = Date32Builder::with_capacity(n);
    for o in orders {
        let Some(st) = line_status(o.status) else {
            continue;
        };
        let d = day_of(o);
        for (i, l) in o.lines.iter().enumerate() {
            tid.append_value(format!("{}#{}", o.order_id, i + 1));
            oid.append_value(&o.order_id);
            customer.append_value(&o.customer_id);
            product.append_value(&l.product_id);
            quantity.append_value(i32::try_from(l.quantity).unwrap_or(i32::MAX));
            let unit = i128::from(l.unit_price.cents());
            price.append_value(unit);
            total.append_value(unit * i128::from(l.quantity));
            currency.append_value(&o.currency);
            tdate.append_value(d);
            status.append_value(st);
            source.append_value("orders_api");
            file.append_null();
            date.append_value(d);
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(tid.finish()),
        Arc::new(oid.finish()),
        Arc::new(customer.finish()),
        Arc::new(product.finish()),
        Arc::new(quantity.finish()),
        Arc::new(price.finish()),
        Arc::new(total.finish()),
        Arc::new(currency.finish()),
        Arc::new(tdate.finish()),
        Arc::new(status.finish()),
        Arc::new(source.finish()),
        Arc::new(file.finish()),
        Arc::new(date.finish()),
    ];
    RecordBatch::try_new(schema::TRANSACTIONS.schema(), cols)
}
