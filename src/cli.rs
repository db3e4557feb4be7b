//! The command line, as clap structs that mirror it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "shoplake — self-hosted e-commerce behavioural analytics in one binary.

Keeps every order, product, review and click in an open lakehouse (Delta tables),
runs the ETL and business models, and answers questions in SQL.";

const AFTER: &str = "Start here:
  shoplake demo                          generate sample data, run the pipeline, show reports
  shoplake import --source transactions orders.csv
  shoplake pipeline run                  process what is new in the raw zone
  shoplake report --list                 the business questions
  shoplake report top_products --from 2025-01-01 --to 2025-01-31
  shoplake sql \"SELECT * FROM curated.daily_kpis ORDER BY date DESC LIMIT 7\"
  shoplake catalog list                  every table, its rows and partitions
  shoplake pipeline runs                 the run history; `pipeline show latest` for one run
  shoplake quality check                 data-quality checks on the whole lake
  shoplake keys create web               a write key for a storefront
  shoplake serve --addr 0.0.0.0:8080     collect events (Segment, Snowplow, GA4, PostHog, /sdk.js)
  shoplake load postgres --url postgres://user@host/db   copy the curated tables to PostgreSQL

Configuration: --config FILE, else ./shoplake.toml, else <data>/shoplake.toml;
any key can be overridden with SHOPLAKE_<SECTION>__<KEY> (see docs/configuration.md).";

/// shoplake's command line.
#[derive(Debug, Parser)]
#[command(name = "shoplake", version, about = ABOUT, after_help = AFTER, propagate_version = true)]
pub struct Cli {
    /// Data directory: lake, state and models live here.
    #[arg(long, global = true, env = "SHOPLAKE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Configuration file (TOML).
    #[arg(long, global = true, env = "SHOPLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Configuration profile: dev, staging or prod.
    #[arg(long, global = true, env = "SHOPLAKE_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// More logging (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr; no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--format`
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum FormatArg {
    /// Aligned table.
    #[default]
    Table,
    /// CSV with a header.
    Csv,
    /// JSON array of objects.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate sample data, run the pipeline, print the headline reports, then (on a
    /// terminal) serve the dashboard.
    Demo(DemoArgs),
    /// Write realistic sample files into the raw zone, one partition per day.
    Generate(GenerateArgs),
    /// Validate files and route their rows: good rows to raw, bad rows to quarantine.
    Import(ImportArgs),
    /// Run the pipeline.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Run a read-only SQL query over the lake.
    Sql(SqlArgs),
    /// Run a saved business report (see --list).
    Report(ReportArgs),
    /// Write a table (or some of its days) to one Parquet, CSV or JSON-lines
    /// file, in a folder or an object store (s3://, gs://, az://).
    #[command(after_help = EXPORT_AFTER)]
    Export(ExportArgs),
    /// Describe the lake's tables.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Run the server: the dashboard (/) and the query API (/api, see `users` and
    /// `tokens`); the Segment, Snowplow, GA4, PostHog and AWS Clickstream
    /// endpoints, the browser tracker (/sdk.js), health and metrics; events
    /// stream into the lake (raw.events, processed.events) within seconds; the
    /// pipeline runs on its schedule.
    Serve(ServeArgs),
    /// Manage the write keys of event sources.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the people who log in to the dashboard and the API.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API tokens, for scripts and tools that call /api.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Lake upkeep: compaction, vacuum, log trimming, raw-zone retention.
    #[command(subcommand)]
    Lake(LakeCommand),
    /// Personal data: erase a person from every table (the right to erasure).
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// Data-quality checks: run them, list them.
    #[command(subcommand)]
    Quality(QualityCommand),
    /// Machine learning: customer segments, churn risk, recommendations and
    /// lifetime value, trained from the curated tables.
    #[command(subcommand)]
    Ml(MlCommand),
    /// Alerts raised (pipeline failures, quality, freshness, anomalies, schema drift).
    Alerts {
        /// Also those that cleared.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// Load lake tables into a database (PostgreSQL, RDS, Aurora), incrementally.
    #[command(subcommand)]
    Load(LoadCommand),
    /// Print the effective configuration (file, profile and environment merged).
    Config,
}

/// `load ...`
#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// Copy the curated tables (or --tables) into PostgreSQL: creates each
    /// table, then on every later run copies only what changed in the lake.
    #[command(long_about = LOAD_POSTGRES_ABOUT, after_help = LOAD_POSTGRES_AFTER)]
    Postgres(LoadPostgresArgs),
}

const LOAD_POSTGRES_ABOUT: &str = "Copy the curated tables (or --tables) into PostgreSQL.

Run it after `shoplake pipeline run`. The first run creates one table per lake
table in the target schema (column types follow the lake's: money is
numeric(18,2), dates are date, timestamps timestamptz) and copies every row.
Later runs copy only what changed since: the days a pipeline run rewrote, or
the whole table for the tables it recomputes whole; a run with nothing new
changes nothing. Each table loads in one transaction, so a failed run leaves
the previous load in place. What was loaded is recorded in
<schema>.shoplake_load_state.

A column the lake gains is added to the PostgreSQL table. See docs/warehouse.md
(types, the state table, Redshift).";

const LOAD_POSTGRES_AFTER: &str = "Examples:
  shoplake load postgres --url postgres://analyst@db.example.com/shop
  shoplake load postgres --url \"$URL\" --tables order_lines,daily_kpis --schema analytics
  shoplake load postgres --url \"$URL\" --tables processed.events,processed.sessions
  shoplake pipeline run && shoplake load postgres   (with SHOPLAKE_WAREHOUSE_URL set)

The URL may carry a password (postgres://user:secret@host/db) and options
(?sslmode=require); prefer SHOPLAKE_WAREHOUSE_URL to keep it out of `ps`.";

/// `load postgres`
#[derive(Debug, Args)]
pub struct LoadPostgresArgs {
    /// The database: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require].
    #[arg(
        long,
        env = "SHOPLAKE_WAREHOUSE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: String,
    /// Lake tables to load, comma-separated: curated names (`order_lines`) or
    /// zone.name (`processed.events`). Default: every curated table.
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub tables: Vec<String>,
    /// The PostgreSQL schema to load into (created if absent). Curated tables keep
    /// their names; others are named zone_name (processed_events).
    #[arg(long, default_value = "shoplake", value_name = "NAME")]
    pub schema: String,
    /// Copy every row again, whatever was loaded before.
    #[arg(long)]
    pub full: bool,
    /// Output format of the per-table results.
    #[arg(long, value_enum, default_value_t)]
    pub format: FormatArg,
}

/// `serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (default: server.addr, 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Also serve SQL over the PostgreSQL wire protocol here (default:
    /// server.pg_addr or SHOPLAKE_SERVER__PG_ADDR; off). Connect psql, Grafana or Metabase to database
    /// `shoplake` as an analyst or admin: `psql "host=127.0.0.1 port=5433
    /// dbname=shoplake user=alice"`. Read-only.
    #[arg(long, value_name = "HOST:PORT")]
    pub pg_addr: Option<String>,
    /// A source and its key, NAME=KEY (repeatable; also SHOPLAKE_WRITE_KEYS=NAME=KEY,...
    /// and `shoplake keys create`).
    #[arg(long = "write-key", value_name = "NAME=KEY")]
    pub write_keys: Vec<String>,
    /// The orders API's database: a PostgreSQL URL (postgres://user@host/db) or a
    /// SQLite file (default: orders.db in the configuration, else <data>/state/orders.db).
    #[arg(long, value_name = "URL", env = "SHOPLAKE_ORDERS_DB")]
    pub orders_db: Option<String>,
}

/// `keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a write key for a source; the key is printed once and stored only as a hash.
    Create {
        /// Source name, recorded with every event it sends (Snowplow and AWS
        /// Clickstream apps send it as their app id).
        name: String,
        /// A browser origin allowed to send with this key (repeatable; default: any).
        #[arg(long = "origin", value_name = "URL")]
        origins: Vec<String>,
        /// Events per second allowed (0: no limit).
        #[arg(long, default_value_t = 0.0, value_name = "N")]
        rate_limit: f64,
    },
    /// List the keys (prefixes only) and whether they are revoked.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// Revoke every key of a source, or one key by its prefix; a running
    /// server stops accepting it within two seconds.
    Revoke {
        /// Source name or key prefix.
        name: String,
    },
}

/// What an account may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Dashboards and reports.
    Viewer,
    /// + ad-hoc SQL.
    Analyst,
    /// + keys, users, tokens and the pipeline.
    Admin,
    /// Only the orders API, for a shop backend's token (not for users).
    Orders,
    /// Only `GET /metrics`, for a Prometheus scraper's token (not for users).
    Metrics,
}

/// Where a password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The password (visible in the shell's history and to `ps`: prefer the prompt
    /// or --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user. The password is asked for at the terminal (twice), or taken
    /// from --password or --password-stdin; at least 8 characters, stored as an
    /// argon2id hash.
    Add {
        /// Login name.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List the users and their roles.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// Remove a user; their sessions end at once.
    Remove {
        /// Login name.
        name: String,
    },
    /// Set a user's password (and role, with --role); their sessions end.
    Passwd {
        /// Login name.
        name: String,
        /// A new role.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

/// `tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token; it is printed once and stored only as a hash. Send it
    /// as `Authorization: Bearer <token>`.
    Create {
        /// What it is for (`grafana`, `nightly-export`).
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// It stops working after this many days (default: never).
        #[arg(long, value_name = "DAYS")]
        expires_days: Option<u32>,
    },
    /// List the tokens (prefixes only), their roles and last use.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// Revoke the tokens with this name, or one token by its id; it stops
    /// working at once.
    Revoke {
        /// Token name or id.
        name: String,
    },
}

/// `demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Regenerate the sample data even if the raw zone already holds data.
    #[arg(long)]
    pub regenerate: bool,
    /// Output format of the reports.
    #[arg(long, value_enum, default_value_t)]
    pub format: FormatArg,
    /// Then serve the dashboard, the API and the collector on this address, with
    /// a `demo` write key and the demo store (/demo/store). On a terminal, demo
    /// serves on 127.0.0.1:8080 unless given --no-serve; elsewhere (scripts,
    /// CI) only when given --serve.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_serve")]
    pub serve: Option<String>,
    /// Stop after the reports, even on a terminal.
    #[arg(long)]
    pub no_serve: bool,
    #[command(flatten)]
    pub sizes: GenerateArgs,
}

/// `generate`
#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    /// Customers.
    #[arg(long, default_value_t = 5_000)]
    pub customers: usize,
    /// Products.
    #[arg(long, default_value_t = 500)]
    pub products: usize,
    /// Transaction lines.
    #[arg(long, default_value_t = 100_000)]
    pub transactions: usize,
    /// Clickstream events.
    #[arg(long, default_value_t = 500_000)]
    pub clickstream: usize,
    /// Reviews.
    #[arg(long, default_value_t = 10_000)]
    pub reviews: usize,
    /// Days of data.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// First day (YYYY-MM-DD).
    #[arg(long, default_value = "2025-01-01", value_name = "DATE")]
    pub start_date: String,
    /// Random seed: the same seed and sizes give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// `import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the files hold.
    #[arg(long, value_enum)]
    pub source: SourceArg,
    /// Files to import (CSV, JSON lines or a JSON array; .gz and .zst are read too).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format of the per-file results.
    #[arg(long, value_enum, default_value_t)]
    pub format: FormatArg,
}

/// A batch source.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// transaction_id, customer_id, product_id, quantity, price, total_amount, transaction_date, status
    Transactions,
    /// product_id, name, category, brand, price, stock
    Products,
    /// session_id, customer_id, event_type, page, timestamp, device
    Clickstream,
    /// review_id, product_id, customer_id, rating, review_text, review_date
    Reviews,
}

/// `pipeline ...`
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Process what changed in the raw zone: validate → catalog → ETL →
    /// quality checks → curated models.
    Run(PipelineRunArgs),
    /// The latest runs: id, trigger, status, dates, duration, error.
    Runs {
        /// How many runs.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// One run, step by step (`latest` for the newest).
    Show {
        /// Run id, as `pipeline runs` lists it, or `latest`.
        #[arg(default_value = "latest", value_name = "RUN")]
        run: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
}

/// `lake ...`
#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Everything `shoplake serve` runs on `lake.maintenance_schedule`:
    /// compact tables with many small files, vacuum files no version of
    /// the last `lake.vacuum_retain_hours` uses, trim Delta logs older than
    /// `lake.log_retain_hours`, delete raw partitions older than
    /// `lake.raw_retention_days` (their processed rows stay).
    Maintain {
        /// Only this table (zone.name); repeatable.
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
        /// Vacuum files unused for this many hours (default from config).
        #[arg(long, value_name = "HOURS")]
        retain_hours: Option<u64>,
        /// Delete raw partitions older than this many days (default from config; 0: keep).
        #[arg(long, value_name = "DAYS")]
        raw_retention_days: Option<u32>,
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// Compact every table (or --table) holding more than one data file.
    Optimize {
        /// Only this table (zone.name); repeatable.
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
}

/// `ml ...`
#[derive(Debug, Subcommand)]
pub enum MlCommand {
    /// Train models from the curated tables (run `pipeline run` first), evaluate
    /// each on a time split against a baseline, save it under <data>/models/
    /// and write its scores: curated.customer_segments, curated.churn_scores,
    /// curated.product_recommendations, curated.customer_ltv_forecast.
    Train {
        /// Which models (default: all).
        #[arg(value_enum, default_value = "all")]
        model: MlModelArg,
        /// Output format of the report (json: every metric).
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// The models in use: version, when and on what data they were trained,
    /// and how they scored against their baselines.
    Status {
        /// Output format (json: every metric).
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
}

/// A model of `ml train`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MlModelArg {
    /// Every model.
    All,
    /// Customer segments: k-means on recency, frequency and spend.
    Segments,
    /// Churn risk: logistic regression or gradient-boosted trees.
    Churn,
    /// Product recommendations: item-to-item from baskets and sessions.
    Recs,
    /// Lifetime value: BG/NBD purchases × Gamma-Gamma order value.
    Ltv,
}

/// `quality ...`
#[derive(Debug, Subcommand)]
pub enum QualityCommand {
    /// Run the data-quality checks now (whole tables unless --from/--to),
    /// record the results in ops.quality, alert, and print a report. Exits
    /// with 1 when a check of severity error fails.
    Check {
        /// Only this table (zone.name); repeatable.
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
        /// First date of partitioned tables to check (with --to).
        #[arg(long, value_name = "DATE", requires = "to")]
        from: Option<String>,
        /// Last date of partitioned tables to check (with --from).
        #[arg(long, value_name = "DATE", requires = "from")]
        to: Option<String>,
        /// Output format (json: the full report).
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// The checks that run: built-in and declared in [[quality.checks]].
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
}

/// `pipeline run`
#[derive(Debug, Args)]
pub struct PipelineRunArgs {
    /// Only this date (YYYY-MM-DD).
    #[arg(long, conflicts_with_all = ["from", "to"], value_name = "DATE")]
    pub date: Option<String>,
    /// From this date (inclusive).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// To this date (inclusive).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Reprocess partitions even if unchanged.
    #[arg(long)]
    pub force: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t)]
    pub format: FormatArg,
}

/// `sql`
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query; `-` reads it from standard input.
    #[arg(value_name = "QUERY")]
    pub query: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: FormatArg,
    /// Print the row count and the query's time to stderr.
    #[arg(long)]
    pub timing: bool,
}

/// `export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The table: `zone.name` (`curated.daily_kpis`), or a bare name when it is
    /// unique (see `shoplake catalog list`).
    #[arg(value_name = "TABLE")]
    pub table: String,
    /// Where: a folder (the file is named `<zone>.<table>.<format>`), a file
    /// path ending in the format's extension, or s3://bucket/prefix (also gs://
    /// and az://; credentials from the store's usual environment variables).
    #[arg(long = "to", value_name = "DIR|FILE|URL")]
    pub dest: String,
    /// File format.
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Parquet)]
    pub format: ExportFormatArg,
    /// First day (YYYY-MM-DD) of the table's date column to write.
    #[arg(long, value_name = "DATE")]
    pub from: Option<chrono::NaiveDate>,
    /// Last day (YYYY-MM-DD, inclusive) to write.
    #[arg(long, value_name = "DATE", alias = "to-date")]
    pub until: Option<chrono::NaiveDate>,
}

/// `export --format`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormatArg {
    /// Apache Parquet (zstd): exact types, for DuckDB, Polars, Spark, Athena.
    Parquet,
    /// CSV with a header row: for spreadsheets.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

const EXPORT_AFTER: &str = "Examples:
  shoplake export curated.daily_kpis --to exports/
  shoplake export processed.events --from 2024-03-01 --until 2024-03-31 --to march.parquet
  AWS_REGION=eu-west-1 shoplake export customer_ltv --format csv --to s3://my-bucket/shoplake/

An existing file of the same name is replaced. `--to` is where the file goes;
the days are chosen with --from and --until.";

/// `report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report name.
    #[arg(required_unless_present = "list", value_name = "NAME")]
    pub name: Option<String>,
    /// List the reports and their parameters.
    #[arg(long)]
    pub list: bool,
    /// From this date (inclusive).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// To this date (inclusive).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Another parameter, e.g. --param grain=month or --param limit=50.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: FormatArg,
    /// Print the row count and the query's time to stderr.
    #[arg(long)]
    pub timing: bool,
}

/// `privacy ...`
#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Erase a person from every table of the lake and from the raw landing
    /// files, then count what is left of them in each table (the proof:
    /// zeros). The data files and Delta log entries that held them are
    /// deleted at once, so older versions of those tables can no longer be
    /// read. Exits 1 if any row is left.
    #[command(after_help = ERASE_AFTER)]
    Erase {
        /// A customer id, user id or e-mail address (repeatable). An e-mail
        /// address is also searched as the pseudonym the collector stored
        /// in its place.
        #[arg(long = "user-id", value_name = "ID")]
        user_ids: Vec<String>,
        /// A device or browser id (repeatable). Devices found linked to
        /// the user ids are erased without being named.
        #[arg(long = "anonymous-id", value_name = "ID")]
        anonymous_ids: Vec<String>,
        /// Count what would be erased; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// Copy the processed and curated tables into a new data directory with
    /// personal data masked, for development and test environments: person
    /// ids become pseudonyms under a key used once and never stored (joins
    /// still match), payloads, event properties, review texts and addresses
    /// are emptied, URLs lose their query strings. The raw zone, quarantine,
    /// accounts, orders and the event log stay behind.
    #[command(after_help = MASK_AFTER)]
    Mask {
        /// The new data directory (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
}

const MASK_AFTER: &str = "Example:
  shoplake privacy mask --to /srv/staging/shoplake-data
  shoplake --data /srv/staging/shoplake-data serve     # dashboards, SQL, ML on the copy

Do not run `pipeline run` on the copy: it has no raw zone to rebuild from.";

const ERASE_AFTER: &str = "Example:
  shoplake privacy erase --user-id C000123 --user-id ann@shop.example
  # check it yourself afterwards:
  shoplake sql \"SELECT count(*) FROM processed.events WHERE user_id = 'C000123'\"

Orders in the orders database (`shoplake serve`'s /api/orders) are not
touched: they are the shop's financial records. Events still in the event
log of a running `shoplake serve` reach the lake after the erasure: stop the
person's tracking first, or erase again a minute later.";

/// `catalog ...`
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Every table with rows, files, partitions, version and last update.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// One table: its facts and its columns.
    Describe {
        /// Table, e.g. curated.daily_kpis.
        table: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: FormatArg,
    },
    /// Print the data dictionary (Markdown) of every table.
    Dictionary,
    /// Register the Delta tables in an AWS Glue Data Catalog, so Athena,
    /// Redshift Spectrum and EMR query the same files: one Glue database per
    /// zone (<prefix>_curated, <prefix>_processed), one table per Delta table,
    /// created or updated. Credentials and region: the standard AWS chain.
    #[command(after_help = GLUE_AFTER)]
    Glue {
        /// Where the lake is in S3: s3://bucket/prefix, the folder holding
        /// curated/, processed/, ... (the lake itself, or a copy kept by
        /// `aws s3 sync <data>/lake s3://...`).
        #[arg(long, value_name = "S3_URL")]
        location: String,
        /// Glue database names are <PREFIX>_<zone>.
        #[arg(long, default_value = "shoplake", value_name = "PREFIX")]
        database_prefix: String,
        /// Zones to register (default: curated and processed).
        #[arg(long = "zone", value_name = "ZONE", value_parser = ["curated", "processed", "quarantine"])]
        zones: Vec<String>,
        /// AWS region (default: AWS_REGION or the profile's).
        #[arg(long)]
        region: Option<String>,
    },
}

const GLUE_AFTER: &str = "Example:
  AWS_PROFILE=analytics shoplake catalog glue --location s3://acme-lake/shoplake --region eu-west-1
  # then in Athena:  SELECT * FROM shoplake_curated.daily_kpis ORDER BY date DESC LIMIT 7

Run it again after an upgrade that adds columns; it is safe to run after every
pipeline run. AWS_ENDPOINT_URL points it at a Glue-compatible endpoint.";
