//! # shoplake-server
//!
//! `shoplake serve`: one HTTP port that speaks the collection protocols shops
//! already use, makes every accepted event durable in the event log before it
//! answers, and streams the log into the lake.
//!
//! ```text
//!  Segment / Snowplow / GA4 /      routes        collect            log             sink
//!  PostHog / AWS Clickstream ───► (auth, CORS, ─► decode, validate, ─► WAL append ──► raw.events
//!  shoplake.js (/sdk.js)           limits)        enrich             (group fsync)   processed.events
//!                                                                     then 2xx        quarantine.events
//! ```
//!
//! [`serve`] takes its listener and shutdown signal as arguments, so tests run
//! a whole server in-process on port 0 with a temporary data directory.
//!
//! Endpoints: Segment `POST /v1/{track,page,identify,screen,group,alias,batch}`
//! and `GET /v1/pixel/{method}`; Snowplow `POST /com.snowplowanalytics.snowplow/tp2`
//! and `GET /i`; GA4 `POST /mp/collect`; PostHog `POST /i/v0/e/`, `/capture/`,
//! `/batch/`; AWS Clickstream `POST /collect`; the tracker `GET /sdk.js`; a demo
//! shop `GET /demo/store`; `GET /healthz`, `/readyz`, `/metrics`; the query
//! API `/api/...` and `/login` (see [`auth`] and `docs/api.md`).
#![deny(missing_docs)]

mod admin;
mod api;
pub mod auth;
mod cache;
mod dashboard;
mod error;
mod http;
mod iplimit;
pub use http::HEADER_TIMEOUT;
pub mod keys;
pub mod metrics;
pub mod orders;
mod pg;
pub mod record;
mod recs;
mod routes;
pub mod sink;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use shoplake_collect::{Collector, CollectorOptions};
use shoplake_core::config::{Config, SourceConfig};
use shoplake_lake::Lake;
use shoplake_log::{EventLog, Wal, WalOptions};
use tokio::sync::watch;

pub use error::{Result, ServerError};

/// Everything [`serve`] needs besides its listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration (`[server]`, `[[sources]]`, `[lake]`).
    pub config: Config,
    /// Write keys from flags and the environment, on top of `[[sources]]`.
    pub write_keys: Vec<SourceConfig>,
}

/// The event log's directory.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("wal")
}

/// The log's identity: a random id made with the log, so a lake never mixes
/// up the offsets of a deleted log with those of a new one.
fn log_id(dir: &Path) -> Result<String> {
    let path = dir.join("log-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServerError::Io(format!("{}: {e}", path.display()))),
    }
    let has_segments = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .unwrap_or(false);
    if has_segments {
        return Err(ServerError::Invalid(format!(
            "{} holds event-log segments but no log-id file: restore it, or move the folder away to start a new log",
            dir.display()
        )));
    }
    let id = keys::new_key()?[3..19].to_string();
    shoplake_lake::state::write_atomic(&path, id.as_bytes())
        .map_err(|e| ServerError::Io(e.to_string()))?;
    Ok(id)
}

/// Shared state of the request handlers.
pub(crate) struct App {
    pub(crate) collector: Collector,
    pub(crate) wal: Arc<Wal>,
    pub(crate) keys: std::sync::RwLock<Arc<keys::Keys>>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) ready: AtomicBool,
    pub(crate) max_request: usize,
    pub(crate) trust_forwarded_for: bool,
    /// Requests per second per client address (collection), if limited.
    pub(crate) ip_limit: Option<iplimit::IpLimiter>,
    /// Latest product events per session and user, for recommendations.
    pub(crate) activity: Arc<recs::Activity>,
}

/// Runs the server on `listener` until `shutdown` resolves, then stops taking
/// requests, lets the sink commit everything acknowledged, and returns.
pub async fn serve(
    opts: ServeOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_on(
        opts,
        Listeners {
            http: listener,
            postgres: None,
        },
        shutdown,
    )
    .await
}

/// Where [`serve_on`] listens.
#[derive(Debug)]
pub struct Listeners {
    /// Collection, API and dashboard.
    pub http: tokio::net::TcpListener,
    /// The PostgreSQL wire protocol (off when None).
    pub postgres: Option<tokio::net::TcpListener>,
}

/// [`serve`] on several listeners.
pub async fn serve_on(
    opts: ServeOptions,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = listeners.http;
    let cfg = &opts.config;
    let srv = &cfg.server;
    let lake = Lake::open(&opts.data_dir, &cfg.lake)?;
    let pii = match cfg.privacy.pii {
        shoplake_core::config::PiiAction::Keep => None,
        _ => {
            let key = shoplake_lake::state::pii_key(
                &lake.state_dir(),
                cfg.privacy.key_file.as_deref(),
                std::env::var("SHOPLAKE_PII_KEY").ok().as_deref(),
            )?;
            shoplake_collect::PiiRules::new(&cfg.privacy, key)
        }
    };
    let collector = Collector::new(CollectorOptions {
        max_event_bytes: srv.max_event_kb * 1024,
        max_decompressed_bytes: srv.max_request_kb * 1024,
        geo_db: srv.geoip_db.clone(),
        ip: cfg.privacy.ip,
        pii,
        ..Default::default()
    })
    .map_err(|e| ServerError::Invalid(e.to_string()))?;

    let mut fixed = cfg.sources.clone();
    fixed.extend(opts.write_keys.iter().cloned());
    let key_file = keys::KeyFile::read(&opts.data_dir)?;
    let key_set = Arc::new(keys::Keys::build(&fixed, &key_file));
    if key_set.is_empty() {
        tracing::warn!(
            "no write keys: every collection request will get 401; create one with `shoplake keys create NAME` or pass --write-key NAME=KEY"
        );
    }

    // recovery happens in Wal::open; /readyz says ready only after it
    let dir = wal_dir(&opts.data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ServerError::Io(format!("{}: {e}", dir.display())))?;
    let log_id = log_id(&dir)?;
    let mut wo = WalOptions::new(&dir);
    wo.segment_bytes = srv.wal_segment_mb << 20;
    wo.max_disk_bytes = srv.wal_max_mb << 20;
    wo.fsync = match srv.fsync {
        shoplake_core::config::FsyncPolicy::Always => shoplake_log::FsyncPolicy::Always,
        shoplake_core::config::FsyncPolicy::Interval => {
            shoplake_log::FsyncPolicy::Interval(Duration::from_millis(srv.fsync_interval_ms))
        }
        shoplake_core::config::FsyncPolicy::Never => shoplake_log::FsyncPolicy::Never,
    };
    let wal = Arc::new(
        tokio::task::spawn_blocking(move || Wal::open(wo))
            .await
            .map_err(|e| ServerError::Io(format!("opening the event log: {e}")))??,
    );
    let metrics = Arc::new(metrics::Metrics::default());
    lake.ensure_tables().await?;
    let sink = sink::Sink::open(
        lake.clone(),
        wal.clone() as Arc<dyn EventLog>,
        metrics.clone(),
        sink::SinkOptions {
            interval: Duration::from_millis(srv.commit_interval_ms),
            max_events: srv.commit_max_events,
            max_bytes: srv.commit_max_mb << 20,
            dedup_window: srv.dedup_window_events,
            app_id: format!("{}-{log_id}", sink::APP_ID),
        },
    )
    .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let sink_task = sink
        .spawn(stop_rx.clone())
        .map_err(|e| ServerError::Io(format!("starting the sink: {e}")))?;
    // left to run out at exit: its commits are atomic, like every other
    let _upkeep = match cfg.lake.stream_upkeep_secs {
        0 => None,
        secs => Some(
            sink::Sink::spawn_upkeep(
                lake.clone(),
                metrics.clone(),
                Duration::from_secs(secs),
                stop_rx.clone(),
            )
            .map_err(|e| ServerError::Io(format!("starting the sink's upkeep: {e}")))?,
        ),
    };

    let app = Arc::new(App {
        collector,
        wal: wal.clone(),
        keys: std::sync::RwLock::new(key_set),
        metrics,
        ready: AtomicBool::new(true),
        max_request: srv.max_request_kb * 1024,
        trust_forwarded_for: srv.trust_forwarded_for,
        ip_limit: iplimit::IpLimiter::new(srv.ip_requests_per_sec),
        activity: Arc::new(recs::Activity::new(cfg.ml.live_sessions)),
    });
    let reload = tokio::spawn(reload_keys(app.clone(), opts.data_dir.clone(), fixed));

    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    tracing::info!(%addr, "collector listening");
    // OIDC: load the provider's keys before serving (a failure is retried
    // in the background; JWTs are refused until they load)
    let oidc = auth::Oidc::new(&srv.oidc);
    let oidc_refresh = match &oidc {
        Some(o) => {
            match o.refresh().await {
                Ok(n) => tracing::info!(keys = n, url = %srv.oidc.jwks_url, "OIDC keys loaded"),
                Err(e) => tracing::warn!(error = %e, "OIDC keys not loaded; retrying every 30 s"),
            }
            let o = o.clone();
            Some(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(600)).await;
                let _ = o.keep_fresh().await;
            }))
        }
        None => None,
    };
    let store = shoplake_jobs::store::Store::open(&lake.state_dir())
        .map_err(|e| ServerError::Invalid(e.to_string()))?;
    let api = Arc::new(api::Api {
        store: Arc::new(store),
        engine: shoplake_query::QueryEngine::new(&lake, &cfg.query)
            .map_err(|e| ServerError::Invalid(e.to_string()))?,
        runtime: api::QueryRuntime::new()
            .map_err(|e| ServerError::Io(format!("starting the query threads: {e}")))?,
        reports_dir: cfg.query.reports_dir.clone(),
        max_rows: cfg.query.api_max_rows,
        secure_cookies: srv.secure_cookies,
        lake: lake.clone(),
        config: cfg.clone(),
        running: Arc::new(AtomicBool::new(false)),
        oidc: oidc.clone(),
        throttle: auth::Throttle::default(),
        trust_forwarded_for: srv.trust_forwarded_for,
        data_dir: opts.data_dir.clone(),
        cache: cache::Cache::new(&cfg.cache, &lake),
        metrics: app.metrics.clone(),
    });
    tracing::info!(backend = api.cache.backend(), "answer cache");
    // the orders API and its copy into the lake
    let order_store = shoplake_orders::OrderStore::open(&cfg.orders.db, &lake.state_dir())
        .await
        .map_err(|e| ServerError::Invalid(format!("the order database: {e}")))?;
    tracing::info!(backend = order_store.backend(), "order database open");
    let changed = Arc::new(tokio::sync::Notify::new());
    let order_sync = tokio::spawn(orders::run_sync(
        order_store.clone(),
        lake.clone(),
        Duration::from_millis(cfg.orders.sync_interval_ms),
        changed.clone(),
        stop_rx.clone(),
    ));
    let orders_state = Arc::new(orders::Orders {
        api: api.clone(),
        store: order_store.clone(),
        changed,
    });
    let recs_state = Arc::new(recs::Recs {
        api: api.clone(),
        activity: app.activity.clone(),
        model: std::sync::RwLock::new(None),
        metrics: app.metrics.clone(),
    });
    let recs_loader = tokio::spawn(recs_state.clone().keep_loaded());
    let postgres = match listeners.postgres {
        Some(l) => Some(start_postgres(l, &lake, cfg, api.clone(), stop_rx.clone())?),
        None => None,
    };
    let router = axum::Router::new()
        .merge(routes::router(app.clone()))
        .merge(recs::router(recs_state))
        .merge(api::router(api.clone()))
        .merge(admin::router(api.clone()))
        .merge(orders::router(orders_state))
        .merge(
            axum::Router::new()
                .route("/metrics", axum::routing::get(routes::metrics))
                .with_state((app.clone(), api.clone())),
        )
        .merge(dashboard::router(api));
    let tls = match (&srv.tls_cert, &srv.tls_key) {
        (Some(c), Some(k)) => Some(http::tls_acceptor(c, k, &[b"h2", b"http/1.1"])?),
        _ => None,
    };
    let served = http::serve(listener, router, tls, shutdown).await;
    reload.abort();
    recs_loader.abort();
    if let Some(t) = oidc_refresh {
        t.abort();
    }
    app.ready.store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("shutting down: committing what the event log holds");
    let _ = stop_tx.send(true);
    let sunk = sink_task
        .await
        .map_err(|_| ServerError::Io("the sink stopped without a word".into()))?;
    let _ = order_sync.await;
    if let Some(pg) = postgres {
        let _ = pg.await;
    }
    order_store.close().await;
    wal.close();
    served.map_err(|e| ServerError::Io(format!("HTTP server: {e}")))?;
    sunk?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the PostgreSQL endpoint on the query threads (a heavy query there
/// never slows collection), over a session of its own.
fn start_postgres(
    listener: tokio::net::TcpListener,
    lake: &Lake,
    cfg: &Config,
    api: Arc<api::Api>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let engine = shoplake_query::QueryEngine::new(lake, &cfg.query)
        .map_err(|e| ServerError::Invalid(e.to_string()))?;
    let ctx = engine.ctx().clone();
    shoplake_pgwire::prepare(&ctx)
        .map_err(|e| ServerError::Invalid(format!("the PostgreSQL endpoint: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    tracing::info!(%addr, database = shoplake_pgwire::DATABASE, "PostgreSQL endpoint listening");
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(c), Some(k)) => Some(http::tls_acceptor(c, k, &[])?),
        _ => None,
    };
    let opts = shoplake_pgwire::PgOptions {
        timeout: Duration::from_secs(cfg.query.timeout_secs.max(1)),
        max_connections: cfg.server.pg_max_connections,
        tls,
    };
    let auth = Arc::new(pg::PgAuth { api: api.clone() });
    let served = shoplake_pgwire::serve(listener, ctx, auth, opts, async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    Ok(api.runtime.handle().spawn(served))
}

/// Re-reads the key file when it changes, so created and revoked keys take
/// effect within two seconds.
async fn reload_keys(app: Arc<App>, data_dir: PathBuf, fixed: Vec<SourceConfig>) {
    let path = keys::key_file_path(&data_dir);
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = stamp(&path);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match keys::KeyFile::read(&data_dir) {
            Ok(file) => {
                let k = Arc::new(keys::Keys::build(&fixed, &file));
                tracing::info!(sources = k.len(), "write keys reloaded");
                *app.keys.write().expect("unpoisoned") = k;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the key file; keeping the old keys")
            }
        }
    }
}
