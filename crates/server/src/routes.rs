//! HTTP routes: the collection endpoints of every protocol, the tracker,
//! health and metrics.
//!
//! Every collection request goes the same way: body (≤ `max_request_kb`,
//! 413 past it) → decompress (same limit) → decode, validate, enrich → the
//! credential names a source (401 if not) → the browser's origin is allowed
//! for it (403 if not) → its rate limit (429 + Retry-After) → one event-log
//! record with the accepted events and the rejected items, appended durably
//! (503 + Retry-After when the log is over its disk budget) → the protocol's
//! own success answer.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use shoplake_collect::{Credential, Input, Protocol};
use shoplake_jobs::accounts::Role;
use shoplake_log::EventLog;

use crate::App;
use crate::api::Api;
use crate::metrics::{LogFigures, Reason, protocol_index};
use crate::record::Encoder;
use crate::sink::now_micros;

/// A transparent 1×1 GIF, the answer of pixel endpoints.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

const SDK_JS: &str = include_str!("../../../sdk/js/shoplake.js");
const DEMO_STORE: &str = include_str!("../../../sdk/js/demo/store.html");

const SEGMENT_METHODS: &[&str] = &[
    "track", "page", "identify", "screen", "group", "alias", "batch", "import", "t", "p", "i", "s",
    "g", "a",
];

pub(crate) fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/v1/{method}", post(segment).options(preflight))
        .route("/v1/pixel/{method}", get(segment_pixel))
        .route(
            "/com.snowplowanalytics.snowplow/tp2",
            post(snowplow).options(preflight),
        )
        .route("/i", get(snowplow_pixel))
        .route("/mp/collect", post(ga4).options(preflight))
        .route("/collect", post(aws).options(preflight));
    for p in [
        "/i/v0/e/",
        "/i/v0/e",
        "/capture/",
        "/capture",
        "/batch/",
        "/batch",
        "/e/",
        "/e",
        "/track/",
        "/track",
    ] {
        r = r.route(p, post(posthog).options(preflight));
    }
    r.route("/sdk.js", get(sdk))
        .route("/demo/store", get(store))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

async fn segment(
    State(app): State<Arc<App>>,
    Path(method): Path<String>,
    req: Request,
) -> Response {
    if !SEGMENT_METHODS.contains(&method.as_str()) {
        return (StatusCode::NOT_FOUND, "no such Segment method\n").into_response();
    }
    collect(app, Protocol::Segment, req).await
}

async fn segment_pixel(
    State(app): State<Arc<App>>,
    Path(_method): Path<String>,
    req: Request,
) -> Response {
    collect(app, Protocol::Segment, req).await
}

async fn snowplow(State(app): State<Arc<App>>, req: Request) -> Response {
    collect(app, Protocol::Snowplow, req).await
}

async fn snowplow_pixel(State(app): State<Arc<App>>, req: Request) -> Response {
    collect(app, Protocol::Snowplow, req).await
}

async fn ga4(State(app): State<Arc<App>>, req: Request) -> Response {
    collect(app, Protocol::Ga4, req).await
}

async fn posthog(State(app): State<Arc<App>>, req: Request) -> Response {
    collect(app, Protocol::PostHog, req).await
}

async fn aws(State(app): State<Arc<App>>, req: Request) -> Response {
    collect(app, Protocol::AwsClickstream, req).await
}

/// A refused request: status, reason, and seconds to wait if any.
struct Refusal {
    status: StatusCode,
    reason: Reason,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, reason: Reason, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
}

async fn collect(app: Arc<App>, protocol: Protocol, req: Request) -> Response {
    let t0 = Instant::now();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let pi = protocol_index(protocol.as_str());
    let is_get = req.method() == Method::GET;
    let out = accept(&app, protocol, req).await;
    app.metrics.requests[pi].fetch_add(1, Relaxed);
    let mut resp = match out {
        Ok((accepted, rejected)) => success(protocol, is_get, accepted, rejected),
        Err(r) => {
            app.metrics.reject(pi, r.reason, 1);
            let body = serde_json::json!({"success": false, "message": r.message}).to_string();
            let mut resp =
                (r.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            if let Some(s) = r.retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            resp
        }
    };
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        // lets the tracker honour Retry-After from another origin
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    app.metrics
        .request_seconds
        .observe_micros(t0.elapsed().as_micros() as u64);
    resp
}

/// Each protocol's own success answer.
fn success(protocol: Protocol, is_get: bool, accepted: usize, rejected: usize) -> Response {
    if is_get {
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "image/gif"),
                (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            ],
            PIXEL,
        )
            .into_response();
    }
    let json = |v: serde_json::Value| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    match protocol {
        Protocol::Segment => {
            json(serde_json::json!({"success": true, "accepted": accepted, "rejected": rejected}))
        }
        Protocol::PostHog => json(serde_json::json!({"status": 1})),
        Protocol::Snowplow => (StatusCode::OK, "ok").into_response(),
        // GA4 answers 2xx with no body whatever the events were
        Protocol::Ga4 => StatusCode::NO_CONTENT.into_response(),
        Protocol::AwsClickstream => {
            json(serde_json::json!({"accepted": accepted, "rejected": rejected}))
        }
    }
}

/// The client's address: the first `X-Forwarded-For` hop behind a trusted
/// proxy, else the peer's.
pub(crate) fn client_ip(
    trust_forwarded_for: bool,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    peer.map(|p| p.ip())
}

fn basic_user(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_string())
}

/// 413 for a body too large once decompressed, 400 for any other decode failure.
fn decode_refusal(e: shoplake_collect::DecodeError) -> Refusal {
    if e.is_too_large() {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Reason::TooLarge,
            e.to_string(),
        )
    } else {
        Refusal::new(StatusCode::BAD_REQUEST, Reason::BadRequest, e.to_string())
    }
}

/// A request's body must arrive within this long.
pub(crate) const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Decodes, authenticates and logs one request; returns (accepted, rejected).
async fn accept(app: &App, protocol: Protocol, req: Request) -> Result<(usize, usize), Refusal> {
    let received_at = now_micros();
    let ip = client_ip(
        app.trust_forwarded_for,
        req.headers(),
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    );
    if let (Some(limit), Some(addr)) = (&app.ip_limit, ip)
        && let Err(wait) = limit.admit(addr)
    {
        let mut r = Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            Reason::RateLimited,
            "too many requests from this address (server.ip_requests_per_sec)",
        );
        r.retry_after = Some(wait);
        return Err(r);
    }
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let header = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    // a body trickled in slowly holds a connection: it has BODY_TIMEOUT
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, app.max_request))
        .await
    {
        Ok(b) => b.map_err(|_| {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Reason::TooLarge,
                format!("request body over {} KiB", app.max_request / 1024),
            )
        })?,
        Err(_) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                Reason::BadRequest,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    let body =
        shoplake_collect::decompress(header(header::CONTENT_ENCODING), &body, app.max_request)
            .map_err(decode_refusal)?;
    let basic = basic_user(headers);
    let path = parts.uri.path();
    let input = Input {
        protocol,
        path,
        query: parts.uri.query(),
        body: &body,
        content_type: header(header::CONTENT_TYPE),
        basic_auth_user: basic.as_deref(),
        user_agent: header(header::USER_AGENT),
        ip,
        received_at,
    };
    let decoded = app.collector.collect(&input).map_err(decode_refusal)?;

    let keys = app.keys.read().expect("unpoisoned").clone();
    let source = match &decoded.credential {
        Some(Credential::Secret(k)) => keys.by_key(k),
        Some(Credential::AppId(a)) => keys.by_name(a),
        None => {
            // an item that does not parse hides the key it carries: that is
            // a bad request, and the client is told what is wrong with it
            return Err(match decoded.rejected.first() {
                Some(r) => Refusal::new(
                    StatusCode::BAD_REQUEST,
                    Reason::BadRequest,
                    format!(
                        "the request could not be read (so neither could its write key): {}",
                        r.reason
                    ),
                ),
                None => Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    Reason::Unauthorized,
                    "missing write key",
                ),
            });
        }
    }
    .ok_or_else(|| {
        let what = match &decoded.credential {
            Some(Credential::AppId(a)) => format!("unknown app id {a:?}"),
            _ => "unknown or revoked write key".to_string(),
        };
        Refusal::new(StatusCode::UNAUTHORIZED, Reason::Unauthorized, what)
    })?
    .clone();
    if let Some(o) = header(header::ORIGIN)
        && !source.allows_origin(o)
    {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            Reason::ForbiddenOrigin,
            format!("origin {o} may not send for source {}", source.name),
        ));
    }
    let n = decoded.events.len() + decoded.rejected.len();
    if let Err(wait) = source.admit(n) {
        let mut r = Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            Reason::RateLimited,
            format!("source {} is over its rate limit", source.name),
        );
        r.retry_after = Some(wait);
        return Err(r);
    }
    let (accepted, rejected) = (decoded.events.len(), decoded.rejected.len());
    if n == 0 {
        return Ok((0, 0));
    }
    // the key is a secret: it never reaches the lake with the payloads
    let secret = match &decoded.credential {
        Some(Credential::Secret(k)) if !k.is_empty() => Some(k.clone()),
        _ => None,
    };
    let record_protocol = decoded
        .events
        .first()
        .map_or(protocol.as_str(), |c| c.event.protocol);
    let mut record = Encoder::new(
        received_at,
        &source.name,
        record_protocol,
        path,
        accepted,
        rejected,
    );
    for c in &decoded.events {
        record.event(&c.event, &scrub(&c.raw, secret.as_deref()));
    }
    for r in &decoded.rejected {
        record.rejection(
            r.index as u32 + 1,
            &r.reason,
            &scrub(&r.raw, secret.as_deref()),
        );
    }
    let record = record.finish();
    let t_append = Instant::now();
    match app.wal.append(vec![record]).await {
        Ok(_) => {}
        Err(shoplake_log::Error::Full) => {
            let mut r = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Reason::Backpressure,
                "the event log is full while the lake catches up; retry shortly",
            );
            r.retry_after = Some(1);
            return Err(r);
        }
        Err(e) => {
            tracing::error!(error = %e, "event-log append failed");
            let mut r = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Reason::Backpressure,
                format!("the event log cannot take events: {e}"),
            );
            r.retry_after = Some(5);
            return Err(r);
        }
    }
    app.metrics
        .append_seconds
        .observe_micros(t_append.elapsed().as_micros() as u64);
    app.activity.record(&decoded.events);
    let pi = protocol_index(record_protocol);
    app.metrics.accepted[pi].fetch_add(accepted as u64, Relaxed);
    if rejected > 0 {
        app.metrics.reject(pi, Reason::Invalid, rejected as u64);
    }
    Ok((accepted, rejected))
}

/// CORS preflight: browsers ask before a JSON POST, without the key, so any
/// origin some source allows may ask; the POST itself is checked per source.
async fn preflight(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let keys = app.keys.read().expect("unpoisoned").clone();
    if !keys.any_allows_origin(origin) {
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    if let Ok(o) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Content-Encoding, Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

async fn sdk() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SDK_JS,
    )
        .into_response()
}

async fn store() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DEMO_STORE,
    )
        .into_response()
}

/// Alive unless the event log stopped after a failed fsync: then only a
/// restart recovers it, so a supervisor should restart. A failed write (a
/// full disk) keeps the process alive: the log resumes by itself once space
/// is back, and `/readyz` says not ready meanwhile.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.wal.failure() {
        Some(f) if !f.recoverable => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the event log stopped after a failed fsync ({}); restart shoplake once the cause is fixed: nothing acknowledged is lost\n",
                f.reason
            ),
        )
            .into_response(),
        Some(f) => (
            StatusCode::OK,
            format!(
                "alive; collection paused: the event log cannot write ({}); it resumes by itself once the disk has space\n",
                f.reason
            ),
        )
            .into_response(),
        None => (StatusCode::OK, "ok\n").into_response(),
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if !app.ready.load(Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: recovering\n").into_response();
    }
    match app.wal.failure() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the event log cannot write ({})\n", f.reason),
        )
            .into_response(),
    }
}

/// `GET /metrics`, for any API token (a `metrics` one for a scraper) unless
/// `server.metrics_public`.
pub(crate) async fn metrics(
    State((app, api)): State<(Arc<App>, Arc<Api>)>,
    headers: HeaderMap,
) -> Response {
    if !api.config.server.metrics_public
        && let Err(e) = api.allow(&headers, Role::Metrics, false)
    {
        return e.into_response();
    }
    let s = app.wal.stats();
    let text = app.metrics.render(LogFigures {
        disk_bytes: s.disk_bytes,
        lag_records: app.wal.end_offset().saturating_sub(s.committed),
        fsyncs: s.fsyncs,
        fsync_avg_micros: s.fsync_avg_micros,
        fsync_last_micros: s.fsync_last_micros,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Body::from(text))
        .expect("valid response")
}

/// `raw` with the write key `secret` blanked out.
fn scrub<'a>(raw: &'a str, secret: Option<&str>) -> Cow<'a, str> {
    match secret {
        Some(k) if raw.contains(k) => Cow::Owned(raw.replace(k, "[write key]")),
        _ => Cow::Borrowed(raw),
    }
}
