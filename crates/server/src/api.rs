//! The query API and login: `/api/...` for reports and read-only SQL,
//! `/login` and `/logout` for the dashboard's session cookie.
//!
//! | route | role |
//! | --- | --- |
//! | `GET /api/openapi.json` | anyone |
//! | `GET /api/me` | any account |
//! | `GET /api/reports`, `GET /api/reports/{name}` | viewer |
//! | `POST /api/sql` | analyst |
//! | `GET /login`, `POST /login`, `POST /logout` | anyone (logout: the session's) |
//!
//! Queries run on their own runtime (`shoplake-query` threads), so a heavy
//! query never delays the collector's requests. Errors are JSON
//! `{"error": "..."}` with 400 (bad SQL, a refused statement, a bad
//! parameter), 401 (who are you), 403 (not allowed), 404, 408 (timeout) or
//! 500.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use shoplake_jobs::accounts::Role;
use shoplake_jobs::store::Store;
use shoplake_query::output::{OutputFormat, to_string};
use shoplake_query::{QueryEngine, QueryError, reports};

use crate::auth::{self, Denied, Principal, Via};
use crate::cache;
use crate::dashboard::html::esc;

/// A runtime of its own for queries; shut down without blocking when the
/// server stops.
pub(crate) struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    pub(crate) fn new() -> std::io::Result<QueryRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shoplake-query")
            .thread_stack_size(8 << 20)
            .enable_all()
            .build()?;
        Ok(QueryRuntime(Some(rt)))
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("alive until dropped").handle()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Shared state of the API's handlers.
pub(crate) struct Api {
    pub(crate) store: Arc<Store>,
    pub(crate) engine: QueryEngine,
    pub(crate) runtime: QueryRuntime,
    pub(crate) reports_dir: Option<PathBuf>,
    pub(crate) max_rows: usize,
    pub(crate) secure_cookies: bool,
    /// The lake and configuration, for pipeline runs started from here.
    pub(crate) lake: shoplake_lake::Lake,
    pub(crate) config: shoplake_core::config::Config,
    /// A run started from the API is under way.
    pub(crate) running: Arc<std::sync::atomic::AtomicBool>,
    /// JWTs of an OIDC provider, when configured.
    pub(crate) oidc: Option<Arc<auth::Oidc>>,
    /// Failed logins, to refuse password guessing.
    pub(crate) throttle: auth::Throttle,
    /// Client addresses come from `X-Forwarded-For` (behind a proxy).
    pub(crate) trust_forwarded_for: bool,
    /// The data directory (the write-key file is under it).
    pub(crate) data_dir: PathBuf,
    /// Answers of reports and SQL, until a table they read changes.
    pub(crate) cache: cache::Cache,
    /// The server's counters (cache hits and misses).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/me", get(me))
        .route("/api/reports", get(list_reports))
        .route("/api/reports/{name}", get(run_report))
        .route("/api/sql", post(sql))
        .route("/api/pipeline/run", post(run_pipeline))
        .route("/api/queries", get(list_queries).post(save_query))
        .route("/api/queries/{id}", axum::routing::delete(delete_query))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .with_state(api)
}

/// An error answer: status and `{"error": reason}`.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shoplake\""),
            );
        }
        r
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError(d.status, d.reason)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = match &e {
            QueryError::Plan(_) | QueryError::ReadOnly(_) | QueryError::Report(_) => {
                StatusCode::BAD_REQUEST
            }
            QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            QueryError::Resources(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

impl Api {
    /// The request's principal, refused below `role`; a session's change
    /// must carry its CSRF token.
    pub(crate) fn allow(
        &self,
        headers: &HeaderMap,
        role: Role,
        change: bool,
    ) -> ApiResult<Principal> {
        let p = auth::authenticate(&self.store, self.oidc.as_deref(), headers)?;
        p.require(role)?;
        if change {
            let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            p.check_csrf(given)?;
        }
        Ok(p)
    }

    /// Runs `sql` on the query runtime, returning at most `max_rows` rows
    /// (`None`: all) and whether it cut.
    pub(crate) async fn query(&self, sql: String, max_rows: Option<usize>) -> ApiResult<Answer> {
        // the cache first: its key holds the versions of the tables the
        // query names, so a hit is what the query would answer now
        let key = match self.cache.get(&sql, max_rows).await {
            cache::Lookup::Hit(batches, truncated) => {
                self.metrics.cache_hits.fetch_add(1, Relaxed);
                return Ok(Answer {
                    batches,
                    truncated,
                    cache: "hit",
                });
            }
            cache::Lookup::Miss(key) => key,
        };
        let engine = self.engine.clone();
        let (batches, truncated) = self
            .runtime
            .handle()
            .spawn(async move {
                match max_rows {
                    Some(n) => engine.query_limited(&sql, n).await,
                    None => engine.query(&sql).await.map(|b| (b, false)),
                }
            })
            .await
            .map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("query task: {e}"),
                )
            })?
            .map_err(ApiError::from)?;
        let cache = match key {
            Some(key) => {
                self.metrics.cache_misses.fetch_add(1, Relaxed);
                self.cache.put(key, &batches, truncated).await;
                "miss"
            }
            None => "off",
        };
        Ok(Answer {
            batches,
            truncated,
            cache,
        })
    }
}

/// A query's answer.
pub(crate) struct Answer {
    pub(crate) batches: Vec<arrow::array::RecordBatch>,
    /// Cut at the row limit.
    pub(crate) truncated: bool,
    /// `hit`, `miss` or `off` (not cacheable, or no cache).
    pub(crate) cache: &'static str,
}

impl Answer {
    /// `response` with the `X-Shoplake-Cache` header.
    fn tag(&self, mut response: Response) -> Response {
        response
            .headers_mut()
            .insert("x-shoplake-cache", HeaderValue::from_static(self.cache));
        response
    }
}

/// `json` (default) or `csv`, from `?format=` or the Accept header.
fn wanted_format(format: Option<&str>, headers: &HeaderMap) -> ApiResult<OutputFormat> {
    match format {
        Some("json") => Ok(OutputFormat::Json),
        Some("csv") => Ok(OutputFormat::Csv),
        Some(other) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("format {other:?}: use json or csv"),
        )),
        None => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            Ok(if accept.contains("text/csv") {
                OutputFormat::Csv
            } else {
                OutputFormat::Json
            })
        }
    }
}

/// Rows as the answer's body: CSV, or JSON `{columns, rows, ...extra}`.
fn rows_response(
    batches: &[arrow::array::RecordBatch],
    format: OutputFormat,
    extra: serde_json::Map<String, serde_json::Value>,
) -> ApiResult<Response> {
    let text = to_string(batches, format).map_err(ApiError::from)?;
    if format == OutputFormat::Csv {
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    let rows: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rows as JSON: {e}"),
        )
    })?;
    let columns: Vec<serde_json::Value> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect()
        })
        .unwrap_or_default();
    let mut body = serde_json::Map::new();
    body.insert("columns".into(), columns.into());
    body.insert("rows".into(), rows);
    body.extend(extra);
    Ok(axum::Json(serde_json::Value::Object(body)).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn me(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    // any account or token: the lowest role
    let p = api.allow(&headers, Role::Metrics, false)?;
    let csrf = match &p.via {
        Via::Session { csrf, .. } => Some(csrf.clone()),
        Via::Token => None,
    };
    Ok(axum::Json(serde_json::json!({
        "name": p.name,
        "role": p.role,
        "via": if csrf.is_some() { "session" } else { "token" },
        "csrf_token": csrf,
    }))
    .into_response())
}

async fn list_reports(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    api.allow(&headers, Role::Viewer, false)?;
    let all = reports::all(api.reports_dir.as_deref()).map_err(ApiError::from)?;
    let list: Vec<serde_json::Value> = all
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "title": r.title,
                "description": r.description,
                "params": r.params.iter().map(|(p, d)| serde_json::json!({"name": p, "default": d})).collect::<Vec<_>>(),
                "url": format!("/api/reports/{}", r.name),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "reports": list })).into_response())
}

async fn run_report(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    Query(mut params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    api.allow(&headers, Role::Viewer, false)?;
    let format = wanted_format(params.remove("format").as_deref(), &headers)?;
    let report = reports::find(api.reports_dir.as_deref(), &name)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    params.retain(|_, v| !v.is_empty());
    let sql = report.render(&params).map_err(ApiError::from)?;
    let t0 = Instant::now();
    let answer = api.query(sql, None).await?;
    let mut extra = serde_json::Map::new();
    extra.insert("report".into(), report.name.clone().into());
    extra.insert("title".into(), report.title.clone().into());
    extra.insert(
        "params".into(),
        serde_json::to_value(&params).unwrap_or_default(),
    );
    extra.insert(
        "elapsed_ms".into(),
        (t0.elapsed().as_millis() as u64).into(),
    );
    Ok(answer.tag(rows_response(&answer.batches, format, extra)?))
}

#[derive(Deserialize)]
struct SqlRequest {
    sql: String,
}

async fn sql(
    State(api): State<Arc<Api>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let p = api.allow(&headers, Role::Analyst, true)?;
    let format = wanted_format(q.get("format").map(String::as_str), &headers)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let text = if is_json {
        serde_json::from_str::<SqlRequest>(&body)
            .map_err(|e| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be {{\"sql\": \"SELECT ...\"}}: {e}"),
                )
            })?
            .sql
    } else {
        body
    };
    if text.trim().is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "no SQL given".into()));
    }
    let t0 = Instant::now();
    let result = api.query(text, Some(api.max_rows)).await;
    let ms = t0.elapsed().as_millis() as u64;
    match &result {
        Ok(a) => tracing::info!(user = %p.name, ms, cache = a.cache, "SQL query"),
        Err(e) => tracing::info!(user = %p.name, ms, error = %e.1, "SQL query refused or failed"),
    }
    let answer = result?;
    let mut extra = serde_json::Map::new();
    extra.insert("truncated".into(), answer.truncated.into());
    extra.insert("max_rows".into(), api.max_rows.into());
    extra.insert("elapsed_ms".into(), ms.into());
    let mut r = rows_response(&answer.batches, format, extra)?;
    if answer.truncated {
        r.headers_mut()
            .insert("x-shoplake-truncated", HeaderValue::from(api.max_rows));
    }
    Ok(answer.tag(r))
}

fn store_error(e: shoplake_jobs::JobError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// `GET /api/queries` (analyst): the caller's saved queries.
async fn list_queries(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    let p = api.allow(&headers, Role::Analyst, false)?;
    let list = api.store.saved_queries(&p.name).map_err(store_error)?;
    Ok(axum::Json(serde_json::json!({ "queries": list })).into_response())
}

#[derive(Deserialize)]
struct SaveQuery {
    name: String,
    sql: String,
}

/// `POST /api/queries` (analyst): saves `{name, sql}` for the caller,
/// replacing a query of that name.
async fn save_query(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let p = api.allow(&headers, Role::Analyst, true)?;
    let q: SaveQuery = serde_json::from_str(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"name\": \"...\", \"sql\": \"SELECT ...\"}}: {e}"),
        )
    })?;
    let name = q.name.trim();
    if name.is_empty()
        || name.chars().count() > 100
        || q.sql.trim().is_empty()
        || q.sql.len() > 100_000
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a saved query needs a name (1–100 characters) and SQL (at most 100 KB)".into(),
        ));
    }
    let id = api
        .store
        .save_query(&p.name, name, &q.sql)
        .map_err(store_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": id })),
    )
        .into_response())
}

/// `DELETE /api/queries/{id}` (analyst): deletes one of the caller's queries.
async fn delete_query(
    State(api): State<Arc<Api>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = api.allow(&headers, Role::Analyst, true)?;
    if !api.store.delete_query(&p.name, id).map_err(store_error)? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("you have no saved query {id}"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/pipeline/run` (admin): starts a pipeline run in the
/// background (on a thread and runtime of its own, like the scheduler's) and
/// answers 202; 409 while one started here is under way. The run waits for
/// any other run of the data directory, then processes what is new.
async fn run_pipeline(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    use std::sync::atomic::Ordering;
    let p = api.allow(&headers, Role::Admin, true)?;
    if api.running.swap(true, Ordering::SeqCst) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "a run started from the dashboard is under way; see /pipeline".into(),
        ));
    }
    let (lake, config, running) = (api.lake.clone(), api.config.clone(), api.running.clone());
    let trigger = format!("dashboard:{}", p.name);
    let spawned = std::thread::Builder::new()
        .name("shoplake-pipeline".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    let opts = shoplake_jobs::pipeline::PipelineOptions {
                        trigger: trigger.clone(),
                        ..Default::default()
                    };
                    rt.block_on(shoplake_jobs::pipeline::run(
                        &lake,
                        &config,
                        &opts,
                        &shoplake_jobs::pipeline::Quiet,
                    ))
                    .map_err(|e| e.to_string())
                });
            match result {
                Ok(s) => tracing::info!(run = %s.run_id, trigger, "pipeline run finished"),
                Err(e) => tracing::error!(trigger, error = %e, "pipeline run failed"),
            }
            running.store(false, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        api.running.store(false, Ordering::SeqCst);
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("starting the run: {e}"),
        ));
    }
    tracing::info!(user = %p.name, "pipeline run requested");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"started": true, "see": "/pipeline"})),
    )
        .into_response())
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta name=color-scheme content=\"light dark\"><title>{title} · shoplake</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}\
         label,input,button{{display:block;width:100%;box-sizing:border-box;margin:.3rem 0}}\
         input,button{{padding:.5rem;font:inherit}}.err{{color:#c0392b}}</style></head>\
         <body><h1>shoplake</h1>{body}</body></html>"
    )
}

fn login_form(error: Option<&str>, name: &str) -> String {
    let err = error.map_or(String::new(), |e| {
        format!("<p class=err role=alert>{}</p>", esc(e))
    });
    page(
        "Log in",
        &format!(
            "{err}<form method=post action=/login>\
             <label for=name>User</label><input id=name name=name autocomplete=username required value=\"{}\">\
             <label for=password>Password</label><input id=password name=password type=password autocomplete=current-password required>\
             <button type=submit>Log in</button></form>",
            esc(name)
        ),
    )
}

async fn login_page() -> Html<String> {
    Html(login_form(None, ""))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let store = api.store.clone();
    let name = f.name.trim().to_string();
    let ip = crate::routes::client_ip(api.trust_forwarded_for, &headers, Some(peer));
    if let Some(wait) = api.throttle.check(&name, ip, Instant::now()) {
        tracing::warn!(user = %name, ip = ?ip, "login refused: too many failed attempts");
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Html(login_form(
                Some(&format!(
                    "Too many failed attempts. Try again in {} minute(s).",
                    wait.div_ceil(60)
                )),
                &name,
            )),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    let who = name.clone();
    // argon2 costs tens of milliseconds of CPU: not on the I/O threads
    let checked =
        tokio::task::spawn_blocking(move || -> Result<Option<(String, String)>, String> {
            let user = store.user(&who).map_err(|e| e.to_string())?;
            // a missing user costs a hash too, so timing does not tell names apart
            let hash = user
                .as_ref()
                .map_or(DUMMY_HASH.as_str(), |u| u.password_hash.as_str());
            if auth::verify_password(&f.password, hash) && user.is_some() {
                auth::start_session(&store, &who)
                    .map(Some)
                    .map_err(|e| e.to_string())
            } else {
                Ok(None)
            }
        })
        .await;
    match checked {
        Ok(Ok(Some((id, _csrf)))) => {
            tracing::info!(user = %name, "logged in");
            api.throttle.succeeded(&name, ip);
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(v) =
                HeaderValue::from_str(&auth::session_cookie(Some(&id), api.secure_cookies))
            {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Ok(None)) => {
            tracing::warn!(user = %name, ip = ?ip, "failed login");
            api.throttle.failed(&name, ip, Instant::now());
            (
                StatusCode::UNAUTHORIZED,
                Html(login_form(Some("Wrong user or password."), &name)),
            )
                .into_response()
        }
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(page("Error", &esc(&e))),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(page("Error", &esc(&e.to_string()))),
        )
            .into_response(),
    }
}

async fn logout(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let p = auth::authenticate(&api.store, api.oidc.as_deref(), &headers)?;
    let Via::Session { hash, .. } = &p.via else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "only a login session logs out; revoke a token with `shoplake tokens revoke`".into(),
        ));
    };
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            // a form's `csrf` field (the token is letters and digits only)
            body.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "csrf")
                .map(|(_, v)| v.to_string())
        });
    p.check_csrf(given.as_deref())?;
    api.store
        .remove_session(hash)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(None, api.secure_cookies)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// An argon2id hash, verified against when the user does not exist.
pub(crate) static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::hash_password("no such user, no such password").unwrap_or_default()
});

/// The OpenAPI document of `/api`.
const OPENAPI: &str = include_str!("openapi.json");
