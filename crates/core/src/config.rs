//! `shoplake.toml`: strict (an unknown key is an error), layered, and
//! overridable from the environment.
//!
//! Layers, later wins: built-in defaults → the profile's built-in preset
//! (`dev`, `staging`, `prod`) → the file's top level → the file's
//! `[profiles.<profile>]` table → `SHOPLAKE_*` environment variables → command
//! line flags. An environment variable names a key by its path with `__`
//! between levels: `SHOPLAKE_QUERY__TIMEOUT_SECS=10` sets `query.timeout_secs`.
//! `SHOPLAKE_LOG_FORMAT` and `SHOPLAKE_LOG_LEVEL` are accepted as shorthands.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The deployment profile, as the seeds' dev/staging/prod environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A laptop: readable logs, lenient import.
    #[default]
    Dev,
    /// Like prod, with more room for error.
    Staging,
    /// JSON logs, strict import, tighter query limits.
    Prod,
}

impl Profile {
    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Staging => "staging",
            Profile::Prod => "prod",
        }
    }

    fn parse(s: &str) -> Result<Profile> {
        match s {
            "dev" => Ok(Profile::Dev),
            "staging" => Ok(Profile::Staging),
            "prod" => Ok(Profile::Prod),
            other => Err(Error::Config(format!(
                "unknown profile {other:?}: expected dev, staging or prod"
            ))),
        }
    }

    /// The built-in settings of the profile, as TOML.
    fn preset(self) -> &'static str {
        match self {
            Profile::Dev => "",
            Profile::Staging => "[log]\nformat = \"json\"\n[import]\nmax_bad_row_ratio = 0.2\n",
            Profile::Prod => {
                "[log]\nformat = \"json\"\n[import]\nmax_bad_row_ratio = 0.05\n[query]\ntimeout_secs = 30\n"
            }
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// dev, staging or prod.
    pub profile: Profile,
    /// Data directory (the `--data` flag and `SHOPLAKE_DATA` win over this).
    pub data_dir: Option<PathBuf>,
    /// ISO 4217 currency of amounts in batch files.
    pub currency: String,
    /// Logging.
    pub log: LogConfig,
    /// The lake.
    pub lake: LakeConfig,
    /// The file validator.
    pub import: ImportConfig,
    /// The pipeline.
    pub pipeline: PipelineConfig,
    /// SQL and reports.
    pub query: QueryConfig,
    /// The cache of report and SQL answers of `shoplake serve`.
    pub cache: CacheConfig,
    /// `shoplake serve`: the collector, its event log and the sink.
    pub server: ServerConfig,
    /// Data-quality checks run by the pipeline and `shoplake quality check`.
    pub quality: QualityConfig,
    /// Where alerts go.
    pub alerts: AlertsConfig,
    /// The orders API's database and its copy into the lake.
    pub orders: OrdersConfig,
    /// Machine learning (`shoplake ml train`).
    pub ml: MlConfig,
    /// What the collector keeps of personal data.
    pub privacy: PrivacyConfig,
    /// Event sources (`[[sources]]`): a name, a write key and per-source limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    /// Per-profile overrides (`[profiles.prod.query]` ...), merged at load.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, toml::Table>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            profile: Profile::Dev,
            data_dir: None,
            currency: "USD".into(),
            log: LogConfig::default(),
            lake: LakeConfig::default(),
            import: ImportConfig::default(),
            pipeline: PipelineConfig::default(),
            query: QueryConfig::default(),
            cache: CacheConfig::default(),
            server: ServerConfig::default(),
            quality: QualityConfig::default(),
            alerts: AlertsConfig::default(),
            orders: OrdersConfig::default(),
            ml: MlConfig::default(),
            privacy: PrivacyConfig::default(),
            sources: Vec::new(),
            profiles: BTreeMap::new(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `shoplake_lake=debug,info`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Parquet compression codec of lake files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Smaller files, slower to write.
    Zstd,
    /// Fast to write and read, read by every engine (default).
    #[default]
    Snappy,
    /// Fast, portable.
    Lz4,
    /// None.
    None,
}

/// `[lake]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Lake root; default `<data>/lake`.
    pub root: Option<String>,
    /// Parquet codec.
    pub compression: Compression,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Compact a day-grain curated table when it has more files than this.
    pub compact_after_files: usize,
    /// When `shoplake serve` runs the lake's maintenance (compaction,
    /// vacuum, log and raw-zone retention): cron, UTC; empty: never.
    pub maintenance_schedule: String,
    /// Vacuum deletes data files no version of the last this-many hours uses.
    pub vacuum_retain_hours: u64,
    /// Delta log entries older than this (hours) are removed, once a
    /// checkpoint covers them (time travel reaches back this far).
    pub log_retain_hours: u64,
    /// Raw-zone partitions (batch files) older than this many days are
    /// deleted by maintenance, their processed rows kept; 0: keep forever.
    pub raw_retention_days: u32,
    /// How often `shoplake serve` tidies the tables its sink commits to
    /// (`raw.events`, `processed.events`, `quarantine.events`): compacts
    /// their small files and trims their log. Seconds; 0: never.
    pub stream_upkeep_secs: u64,
    /// Log entries of those tables older than this (minutes) are removed by
    /// that upkeep once a checkpoint covers them: the sink commits every
    /// second, and time travel on them reaches back this far.
    pub stream_log_retain_minutes: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: None,
            compression: Compression::Snappy,
            row_group_rows: 1 << 20,
            compact_after_files: 16,
            maintenance_schedule: "30 3 * * *".into(),
            vacuum_retain_hours: 168,
            log_retain_hours: 168,
            raw_retention_days: 0,
            stream_upkeep_secs: 60,
            stream_log_retain_minutes: 60,
        }
    }
}

/// `[import]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// Largest file accepted, in MiB (after decompression).
    pub max_file_size_mb: u64,
    /// Refuse a whole file when more than this share of its rows is bad (it
    /// is then probably not the claimed source).
    pub max_bad_row_ratio: f64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            max_file_size_mb: 4096,
            max_bad_row_ratio: 0.5,
        }
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Inactivity that ends a session for events without a session id.
    pub session_timeout_minutes: u32,
    /// Memory the pipeline's scans of whole days (sessionising collected
    /// events, the data-quality checks) may use before their sorts and
    /// aggregates spill to temporary files, in MiB.
    pub memory_limit_mb: usize,
    /// Worker threads for parsing and writing (0: one per core).
    pub threads: usize,
    /// When `shoplake serve` runs the pipeline: a cron schedule in UTC
    /// (`0 * * * *`, `*/15 * * * *`, `@daily`); empty: never on a timer.
    pub schedule: String,
    /// `shoplake serve` also runs it when files arrive in the raw zone,
    /// looking every this many seconds (0: never).
    pub watch_secs: u64,
    /// A step's attempt running longer than this fails (seconds).
    pub step_timeout_secs: u64,
    /// Attempts after the first when a step fails for a passing reason
    /// (I/O, a storage conflict, a timeout).
    pub step_retries: u32,
    /// Wait before the first retry, doubled for each further one (ms).
    pub retry_backoff_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            session_timeout_minutes: 30,
            memory_limit_mb: 1024,
            threads: 0,
            schedule: "@hourly".into(),
            watch_secs: 30,
            step_timeout_secs: 3600,
            step_retries: 2,
            retry_backoff_ms: 2000,
        }
    }
}

/// `[query]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// A query running longer is cancelled.
    pub timeout_secs: u64,
    /// Memory a query may use for sorts, joins and aggregates, in MiB (0: no limit).
    pub memory_limit_mb: usize,
    /// Extra report `.sql` files (beside the built-in ones); a file with a
    /// built-in's name replaces it.
    pub reports_dir: Option<PathBuf>,
    /// Rows `POST /api/sql` returns at most (the answer says when it cut).
    pub api_max_rows: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout_secs: 300,
            memory_limit_mb: 0,
            reports_dir: None,
            api_max_rows: 10_000,
        }
    }
}

/// `[cache]`: answers of `/api/reports/...` and `/api/sql` (what the
/// dashboard shows), kept until a table they read changes. The key holds the
/// query and the Delta version of every table it names, so a pipeline run or
/// a sink commit that changes a table makes its answers miss; nothing is
/// ever served from a table version that is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `memory` (in the process, the default), `redis` (shared by every
    /// shoplake process using the same lake) or `off`.
    pub backend: CacheBackend,
    /// With `backend = "redis"`: `redis://[:password@]host:port[/db]` (no
    /// TLS yet).
    pub redis_url: String,
    /// Keys start with this (several lakes may share one Redis).
    pub key_prefix: String,
    /// With `backend = "memory"`: at most this many MiB of answers.
    pub max_mb: usize,
    /// An answer larger than this (KiB) is not kept.
    pub max_entry_kb: usize,
    /// Answers expire after this many seconds even if nothing changed.
    pub ttl_secs: u64,
}

/// Where cached answers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In the process.
    #[default]
    Memory,
    /// In Redis (ElastiCache, Memorystore, ...).
    Redis,
    /// No cache.
    Off,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "shoplake".into(),
            max_mb: 64,
            max_entry_kb: 4096,
            ttl_secs: 3600,
        }
    }
}

/// When the collector answers a request: after the event log fsynced it
/// (`always`, the default: an acknowledged event survives a power cut), after
/// it wrote it (`interval`: fsync at most every `fsync_interval_ms`; survives a
/// crash of the process, not of the machine), or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Acknowledge after fsync.
    #[default]
    Always,
    /// Acknowledge after write; fsync every `fsync_interval_ms`.
    Interval,
    /// Leave flushing to the operating system.
    Never,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address (`--addr` wins).
    pub addr: String,
    /// The PostgreSQL wire-protocol endpoint's listen address (`--pg-addr`
    /// wins; empty: off). psql, Grafana, Metabase and PostgreSQL drivers then
    /// query the lake read-only, as database `shoplake`, with the password
    /// (or an API token) of an analyst or admin.
    pub pg_addr: String,
    /// Connections the PostgreSQL endpoint serves at once.
    pub pg_max_connections: usize,
    /// Largest event, in KiB (a larger one is quarantined).
    pub max_event_kb: usize,
    /// Largest request body, in KiB, before and after decompression (413 past it).
    pub max_request_kb: usize,
    /// When a request is acknowledged (see [`FsyncPolicy`]).
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: the longest time between fsyncs.
    pub fsync_interval_ms: u64,
    /// Size of one event-log segment file, in MiB.
    pub wal_segment_mb: u64,
    /// The event log may hold this much not yet in the lake, in MiB; past it
    /// requests get 503 with Retry-After (backpressure) instead of filling the disk.
    pub wal_max_mb: u64,
    /// The sink commits to the lake at least this often (ms).
    pub commit_interval_ms: u64,
    /// ... or as soon as this many events are waiting.
    pub commit_max_events: usize,
    /// ... and reads at most this many MiB of the event log into one commit
    /// (this bounds the sink's memory: the columns and Parquet pages built
    /// from a commit are of the same size).
    pub commit_max_mb: usize,
    /// Client retries within this many recent events are dropped as duplicates
    /// (by `event_id`), across restarts.
    pub dedup_window_events: usize,
    /// A MaxMind-format database (`GeoLite2-Country.mmdb`) for `country`.
    pub geoip_db: Option<PathBuf>,
    /// Take the client address from `X-Forwarded-For` (behind a proxy you trust).
    pub trust_forwarded_for: bool,
    /// A PEM certificate chain: with `tls_key`, the HTTP port speaks HTTPS
    /// only and the PostgreSQL port TLS (and refuses logins without it).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Collection requests per second one client address may send (bursts
    /// of two seconds' worth); more get 429 before their body is read.
    /// 0: no limit (the default: a server-side SDK or an office NAT sends
    /// from one address).
    pub ip_requests_per_sec: f64,
    /// Serve `GET /metrics` without a token (for a Prometheus that reaches
    /// the port over a private network only). Off by default: it then
    /// needs an API token of any role (`shoplake tokens create prometheus
    /// --role metrics`).
    pub metrics_public: bool,
    /// Mark the login cookie `Secure` (browsers then send it over HTTPS
    /// only): set it when users reach shoplake through HTTPS.
    pub secure_cookies: bool,
    /// Accept JWTs of an OpenID Connect provider (`[server.oidc]`).
    pub oidc: OidcConfig,
}

/// `[server.oidc]`: `Authorization: Bearer <JWT>` from an OpenID Connect
/// provider (Cognito, Auth0, Keycloak, ...), verified against its published
/// keys. Off while `jwks_url` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The provider's JSON Web Key Set (Cognito:
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json`).
    pub jwks_url: String,
    /// The `iss` a token must carry (empty: not checked).
    pub issuer: String,
    /// An `aud` a token must carry (empty: not checked; Cognito access
    /// tokens have none).
    pub audience: String,
    /// The claim naming the account's role: a string or a list of strings,
    /// of which the highest of viewer, analyst, admin counts.
    pub role_claim: String,
    /// The role of a token whose role claim names none (empty: refused).
    pub default_role: String,
    /// The claim naming the account (falls back to `sub`).
    pub name_claim: String,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            jwks_url: String::new(),
            issuer: String::new(),
            audience: String::new(),
            role_claim: "cognito:groups".into(),
            default_role: String::new(),
            name_claim: "email".into(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:8080".into(),
            pg_addr: String::new(),
            pg_max_connections: 64,
            max_event_kb: 32,
            max_request_kb: 500,
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: 100,
            wal_segment_mb: 64,
            wal_max_mb: 1024,
            commit_interval_ms: 1000,
            commit_max_events: 200_000,
            commit_max_mb: 16,
            dedup_window_events: 2_000_000,
            geoip_db: None,
            trust_forwarded_for: false,
            ip_requests_per_sec: 0.0,
            metrics_public: false,
            tls_cert: None,
            tls_key: None,
            secure_cookies: false,
            oidc: OidcConfig::default(),
        }
    }
}

/// `[quality]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Whether the pipeline runs the checks (`shoplake quality check` always does).
    pub enabled: bool,
    /// Whether the built-in checks of every table run (`shoplake quality
    /// list` shows them); `checks` add to them, and a check of `checks`
    /// with a built-in's name replaces it.
    pub defaults: bool,
    /// Names of built-in checks to turn off.
    pub disable: Vec<String>,
    /// Days of history an anomaly check compares a day with.
    pub anomaly_window_days: u32,
    /// Robust z-score (|x − median| / (1.4826 × MAD)) past which a day is an anomaly.
    pub anomaly_threshold: f64,
    /// ... and only when it is also this far off, as a ratio (0.4: ×1.4 or ÷1.4).
    pub anomaly_min_change: f64,
    /// Declared checks (`[[quality.checks]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckConfig>,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            enabled: true,
            defaults: true,
            disable: Vec::new(),
            anomaly_window_days: 28,
            anomaly_threshold: 3.5,
            anomaly_min_change: 0.4,
            checks: Vec::new(),
        }
    }
}

/// How bad a failed check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Alert only.
    Warn,
    /// Alert, and keep the run's curated tables as they were.
    #[default]
    Error,
}

impl Severity {
    /// `warn` or `error`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// `[[quality.checks]]`: one declared check of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The table, `zone.name` (`processed.transactions`).
    pub table: String,
    /// A name, unique per table (default: made from the check and its columns).
    #[serde(default)]
    pub name: Option<String>,
    /// `error` (the default) or `warn`.
    #[serde(default)]
    pub severity: Severity,
    /// Only rows matching this SQL condition are checked (`protocol <> 'file'`).
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// What is checked.
    #[serde(flatten)]
    pub rule: CheckRule,
}

/// What a check asserts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckRule {
    /// Rows checked are between `min` and `max`.
    RowCount {
        /// Fewest rows.
        #[serde(default)]
        min: Option<u64>,
        /// Most rows.
        #[serde(default)]
        max: Option<u64>,
    },
    /// No null (or blank text) values.
    NotNull {
        /// Columns.
        columns: Vec<String>,
    },
    /// No two rows share these columns' values.
    Unique {
        /// Columns of the key.
        columns: Vec<String>,
        /// Check the keys of the dates a run processed against the whole
        /// table (a key re-used on another day), not only among themselves.
        /// Reads the key column of every partition.
        #[serde(default)]
        whole_table: bool,
    },
    /// Every value is one of `values`.
    AcceptedValues {
        /// Column.
        column: String,
        /// Allowed values.
        values: Vec<String>,
    },
    /// Values lie in a range (nulls are not checked).
    Range {
        /// Column.
        column: String,
        /// Lower bound.
        #[serde(default)]
        min: Option<f64>,
        /// Upper bound.
        #[serde(default)]
        max: Option<f64>,
        /// Whether the bounds themselves are outside (`price > 0`).
        #[serde(default)]
        exclusive: bool,
    },
    /// Every value appears in another table's column (`product_id` in `processed.products`).
    References {
        /// Column.
        column: String,
        /// `zone.table.column` it must appear in.
        to: String,
    },
    /// The newest value of a timestamp column is at most `max_age_hours` old.
    Freshness {
        /// Timestamp column.
        column: String,
        /// Hours.
        max_age_hours: f64,
    },
    /// A daily metric is not far off its trailing median (see `[quality]`).
    Anomaly {
        /// `revenue`, `orders`, `events` or `conversion_rate`.
        metric: String,
    },
}

/// Daily metrics an anomaly check can watch.
pub const ANOMALY_METRICS: &[&str] = &["revenue", "orders", "events", "conversion_rate"];

/// `[orders]`: the orders API of `shoplake serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// The order database: empty for SQLite at `<data>/state/orders.db`, a
    /// SQLite file path, or `postgres://user@host/db` (`--orders-db` wins).
    pub db: String,
    /// How often changed orders are copied into `processed.orders` and
    /// `processed.transactions` (ms).
    pub sync_interval_ms: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            db: String::new(),
            sync_interval_ms: 1000,
        }
    }
}

/// `[ml]`: `shoplake ml train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlConfig {
    /// A customer churns when they buy nothing in this many days.
    pub churn_days: u32,
    /// The horizon of the lifetime-value forecast, in days.
    pub ltv_days: u32,
    /// Recommendations kept per product and per customer.
    pub recommendations: usize,
    /// Seed of every random choice (the same data and seed give the same models).
    pub seed: u64,
    /// When `serve` retrains every model (cron, UTC; empty: never).
    pub schedule: String,
    /// Sessions and visitors whose latest product events `serve` keeps for
    /// real-time recommendations (about 1 KiB each at most).
    pub live_sessions: usize,
}

impl Default for MlConfig {
    fn default() -> Self {
        MlConfig {
            churn_days: 30,
            ltv_days: 90,
            recommendations: 10,
            seed: 42,
            schedule: "30 2 * * *".into(),
            live_sessions: 100_000,
        }
    }
}

/// `[privacy]`: personal data in collected events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// What happens to a client's IP address: `anonymise` (IPv4 /24, IPv6
    /// /48; the default) or `drop` (no address and no anonymised address is
    /// kept). The country, when a GeoIP database is set, is looked up first
    /// either way.
    pub ip: IpPolicy,
    /// What happens to personal fields (see `pii_fields`) before anything is
    /// stored: `hash` (a keyed hash, so one person's values still match
    /// each other; the default), `drop`, or `keep`.
    pub pii: PiiAction,
    /// Field names that are personal wherever they appear, compared
    /// ignoring case and the separators `_ - . $` and space
    /// (`firstName` = `first_name`).
    pub pii_fields: Vec<String>,
    /// Field names that are personal only inside a person's object (see
    /// `person_objects`): `name` is a person's name in `traits`, a product's
    /// name in `products`.
    pub person_fields: Vec<String>,
    /// Objects that describe a person (Segment `traits`, PostHog `$set`, GA4
    /// `user_properties`, ...): everything under them named in
    /// `person_fields` is personal too.
    pub person_objects: Vec<String>,
    /// The hash key: a file of at least 32 bytes (created with a random key
    /// at `<data>/state/pii.key` when unset and missing).
    /// `SHOPLAKE_PII_KEY` wins over it. Keep it secret and keep it: a new
    /// key makes new hashes, so one person's events no longer match.
    pub key_file: Option<PathBuf>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        PrivacyConfig {
            ip: IpPolicy::Anonymise,
            pii: PiiAction::Hash,
            pii_fields: s(&[
                "email",
                "email_address",
                "phone",
                "phone_number",
                "mobile",
                "first_name",
                "last_name",
                "full_name",
                "address",
                "street",
                "birthday",
                "date_of_birth",
            ]),
            person_fields: s(&["name"]),
            person_objects: s(&[
                "traits",
                "$set",
                "$set_once",
                "user_properties",
                "customer",
                "person",
            ]),
            key_file: None,
        }
    }
}

/// `[privacy] ip`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpPolicy {
    /// Keep the network part only.
    #[default]
    Anonymise,
    /// Keep nothing.
    Drop,
}

/// `[privacy] pii`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Replace the value with `pii:` and a keyed hash.
    #[default]
    Hash,
    /// Remove the field.
    Drop,
    /// Store the value as sent.
    Keep,
}

/// `[alerts]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Webhooks (`[[alerts.webhooks]]`); every alert is also logged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
}

/// `[[alerts.webhooks]]`: an HTTP endpoint that receives alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL the alert is POSTed to.
    pub url: String,
    /// `json` (shoplake's own) or `slack` (a Slack incoming-webhook message).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Alerts below this severity are not sent here.
    #[serde(default = "warn")]
    pub min_severity: Severity,
}

fn warn() -> Severity {
    Severity::Warn
}

/// A webhook's body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"kind", "key", "severity", "state", "message", ...}`.
    #[default]
    Json,
    /// `{"text": ...}`, what Slack (and Mattermost, Teams' Slack mode) accept.
    Slack,
}

/// `[[sources]]`: one event source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name, recorded with every event (`source`); Snowplow and AWS
    /// Clickstream events are accepted when their app id is this name.
    pub name: String,
    /// Write key (Segment `writeKey`, PostHog `api_key`, GA4 `api_secret`).
    pub key: String,
    /// Browser origins allowed to send (CORS); empty: any.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Events per second this source may send (0: no limit); past it: 429.
    #[serde(default)]
    pub rate_limit: f64,
}

/// `SHOPLAKE_*` environment variables that are not config keys: read by the
/// command line itself, or by tests (`SHOPLAKE_FAILPOINT` simulates a crash).
pub const NON_CONFIG_ENV: &[&str] = &[
    "SHOPLAKE_DATA",
    "SHOPLAKE_CONFIG",
    "SHOPLAKE_PROFILE",
    "SHOPLAKE_WRITE_KEYS",
    "SHOPLAKE_ORDERS_DB",
    "SHOPLAKE_WAREHOUSE_URL",
    "SHOPLAKE_FAILPOINT",
    "SHOPLAKE_PII_KEY",
];

impl Config {
    /// Loads the configuration from the file's text (empty for none), the
    /// profile chosen on the command line (if any) and environment variables.
    pub fn load(
        file_text: &str,
        profile_flag: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let file: toml::Table =
            toml::from_str(file_text).map_err(|e| Error::Config(format!("shoplake.toml: {e}")))?;
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SHOPLAKE_"))
            .collect();
        let env_profile = env
            .iter()
            .find(|(k, _)| k == "SHOPLAKE_PROFILE")
            .map(|(_, v)| v.as_str());
        let file_profile = file.get("profile").and_then(|v| v.as_str());
        let profile = Profile::parse(
            profile_flag
                .or(env_profile)
                .or(file_profile)
                .unwrap_or("dev"),
        )?;

        let mut merged: toml::Table = toml::from_str(profile.preset()).expect("valid preset");
        let mut base = file.clone();
        let overrides = base.remove("profiles");
        merge(&mut merged, base);
        if let Some(toml::Value::Table(profiles)) = &overrides {
            for name in profiles.keys() {
                Profile::parse(name)
                    .map_err(|e| Error::Config(format!("[profiles.{name}]: {e}")))?;
            }
            if let Some(toml::Value::Table(p)) = profiles.get(profile.name()) {
                merge(&mut merged, p.clone());
            }
        }
        for (k, v) in &env {
            if NON_CONFIG_ENV.contains(&k.as_str()) {
                continue;
            }
            let path = env_key_path(k);
            set_path(&mut merged, &path, parse_env_value(v))
                .map_err(|e| Error::Config(format!("{k}: {e}")))?;
        }
        merged.insert("profile".into(), toml::Value::String(profile.name().into()));
        let mut cfg: Config = merged
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(env_or_file_message(e)))?;
        cfg.profiles.clear();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<()> {
        let c = &self.currency;
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::Config(format!(
                "currency: {c:?} is not an ISO 4217 code such as USD or EUR"
            )));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(Error::Config(
                "server.tls_cert and server.tls_key go together: set both or neither".into(),
            ));
        }
        let ip_rate = self.server.ip_requests_per_sec;
        if !(ip_rate.is_finite() && ip_rate >= 0.0) {
            return Err(Error::Config(
                "server.ip_requests_per_sec: must be a number ≥ 0 (0: no limit)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.import.max_bad_row_ratio) {
            return Err(Error::Config(
                "import.max_bad_row_ratio: must be between 0 and 1".into(),
            ));
        }
        if self.import.max_file_size_mb == 0 {
            return Err(Error::Config("import.max_file_size_mb: must be > 0".into()));
        }
        if self.pipeline.step_timeout_secs == 0 {
            return Err(Error::Config(
                "pipeline.step_timeout_secs: must be > 0".into(),
            ));
        }
        if self.pipeline.session_timeout_minutes == 0 {
            return Err(Error::Config(
                "pipeline.session_timeout_minutes: must be > 0".into(),
            ));
        }
        if self.pipeline.memory_limit_mb == 0 {
            return Err(Error::Config(
                "pipeline.memory_limit_mb: must be > 0".into(),
            ));
        }
        if self.ml.churn_days == 0 || self.ml.ltv_days == 0 || self.ml.recommendations == 0 {
            return Err(Error::Config(
                "ml.churn_days, ml.ltv_days and ml.recommendations: must be > 0".into(),
            ));
        }
        if self.orders.sync_interval_ms == 0 {
            return Err(Error::Config("orders.sync_interval_ms: must be > 0".into()));
        }
        if self.lake.row_group_rows < 1024 {
            return Err(Error::Config("lake.row_group_rows: must be ≥ 1024".into()));
        }
        let srv = &self.server;
        if srv.max_event_kb == 0 || srv.max_request_kb < srv.max_event_kb {
            return Err(Error::Config(
                "server.max_request_kb must be ≥ server.max_event_kb > 0".into(),
            ));
        }
        if srv.commit_interval_ms == 0 || srv.commit_max_events == 0 || srv.commit_max_mb == 0 {
            return Err(Error::Config(
                "server.commit_interval_ms, server.commit_max_events and server.commit_max_mb: must be > 0".into(),
            ));
        }
        if srv.wal_segment_mb == 0 || srv.wal_max_mb < srv.wal_segment_mb {
            return Err(Error::Config(
                "server.wal_max_mb must be ≥ server.wal_segment_mb > 0".into(),
            ));
        }
        let oidc = &srv.oidc;
        let url_ok = oidc.jwks_url.is_empty()
            || oidc.jwks_url.starts_with("https://")
            || oidc.jwks_url.starts_with("http://");
        if !url_ok {
            return Err(Error::Config(
                "server.oidc.jwks_url: must be an http(s):// URL".into(),
            ));
        }
        if !["", "viewer", "analyst", "admin"].contains(&oidc.default_role.as_str()) {
            return Err(Error::Config(
                "server.oidc.default_role: viewer, analyst, admin or empty".into(),
            ));
        }
        for s in &self.sources {
            if s.name.is_empty() || s.key.len() < 8 {
                return Err(Error::Config(format!(
                    "[[sources]] {:?}: needs a name and a key of at least 8 characters",
                    s.name
                )));
            }
        }
        if self.query.timeout_secs == 0 {
            return Err(Error::Config("query.timeout_secs: must be > 0".into()));
        }
        let q = &self.quality;
        if q.anomaly_window_days < 7 || q.anomaly_threshold <= 0.0 || q.anomaly_min_change < 0.0 {
            return Err(Error::Config(
                "quality.anomaly_window_days must be ≥ 7, quality.anomaly_threshold > 0 and quality.anomaly_min_change ≥ 0".into(),
            ));
        }
        for c in &q.checks {
            if crate::schema::find(&c.table).is_none() {
                return Err(Error::Config(format!(
                    "[[quality.checks]] table {:?}: no such table (see `shoplake catalog list`)",
                    c.table
                )));
            }
            if let CheckRule::Anomaly { metric } = &c.rule
                && !ANOMALY_METRICS.contains(&metric.as_str())
            {
                return Err(Error::Config(format!(
                    "[[quality.checks]] metric {metric:?}: one of {}",
                    ANOMALY_METRICS.join(", ")
                )));
            }
        }
        for w in &self.alerts.webhooks {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "[[alerts.webhooks]] url {:?}: must be an http:// or https:// URL",
                    w.url
                )));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (`shoplake config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

fn env_or_file_message(e: toml::de::Error) -> String {
    e.message().trim().to_string()
}

fn env_key_path(k: &str) -> Vec<String> {
    let rest = k["SHOPLAKE_".len()..].to_ascii_lowercase();
    match rest.as_str() {
        "log_format" => vec!["log".into(), "format".into()],
        "log_level" => vec!["log".into(), "level".into()],
        _ => rest.split("__").map(str::to_string).collect(),
    }
}

fn parse_env_value(v: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()))
}

fn set_path(
    t: &mut toml::Table,
    path: &[String],
    v: toml::Value,
) -> std::result::Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = t;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("{p} is not a table"))?;
    }
    cur.insert(last.clone(), v);
    Ok(())
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_from_nothing() {
        let c = Config::load("", None, env(&[])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::load("[query]\ntimeout = 3\n", None, env(&[])).unwrap_err();
        assert!(e.to_string().contains("unknown field `timeout`"), "{e}");
        let e = Config::load("", None, env(&[("SHOPLAKE_QUERY__NOPE", "1")])).unwrap_err();
        assert!(e.to_string().contains("unknown field `nope`"), "{e}");
    }

    #[test]
    fn variables_read_by_the_command_line_are_not_config_keys() {
        // the flags `serve --orders-db` and `load postgres --url` read these
        let c = Config::load(
            "",
            None,
            env(&[
                ("SHOPLAKE_ORDERS_DB", "postgres://shop@db/orders"),
                ("SHOPLAKE_WAREHOUSE_URL", "postgres://bi@warehouse/bi"),
                ("SHOPLAKE_WRITE_KEYS", "web=k-12345678"),
            ]),
        )
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn layers_apply_in_order() {
        let file = "profile = \"prod\"\n[query]\ntimeout_secs = 7\n[profiles.prod.query]\nmemory_limit_mb = 512\n[profiles.dev.query]\nmemory_limit_mb = 1\n";
        let c = Config::load(file, None, env(&[])).unwrap();
        assert_eq!(c.profile, Profile::Prod);
        assert_eq!(c.log.format, LogFormat::Json, "prod preset");
        assert_eq!(c.query.timeout_secs, 7, "file beats preset");
        assert_eq!(c.query.memory_limit_mb, 512, "profile table");
        let c = Config::load(
            file,
            Some("dev"),
            env(&[
                ("SHOPLAKE_QUERY__TIMEOUT_SECS", "9"),
                ("SHOPLAKE_LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.profile, Profile::Dev);
        assert_eq!(c.query.memory_limit_mb, 1);
        assert_eq!(c.query.timeout_secs, 9, "env beats file");
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn values_are_validated() {
        assert!(Config::load("currency = \"usd\"", None, env(&[])).is_err());
        assert!(Config::load("", Some("qa"), env(&[])).is_err());
        assert!(Config::load("[import]\nmax_bad_row_ratio = 2.0", None, env(&[])).is_err());
    }
}
