//! A DataFusion session over the lake: catalog `shoplake`, one schema per zone
//! (`raw`, `processed`, `curated`, `quarantine`), default schema `curated`.
//! Tables are resolved when a query names them, so a query pays only for the
//! Delta logs it reads.

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SessionContext};
use shoplake_core::config::QueryConfig;
use shoplake_core::schema::{Storage, TABLES, Table, Zone};
use shoplake_lake::Lake;

use crate::error::{QueryError, Result};
use crate::guard::{self, CATALOG};
use crate::raw::RawFilesTable;

/// A SQL session over one lake.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    timeout: Duration,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl QueryEngine {
    /// A session over `lake` with the limits of `cfg`.
    pub fn new(lake: &Lake, cfg: &QueryConfig) -> Result<QueryEngine> {
        let mut rt = RuntimeEnvBuilder::new();
        if cfg.memory_limit_mb > 0 {
            rt = rt.with_memory_limit(cfg.memory_limit_mb << 20, 1.0);
        }
        Self::with_runtime(lake, cfg, rt)
    }

    /// An engine for jobs that scan more than memory holds: its sorts and
    /// aggregates share `limit_mb` MiB fairly and spill to disk past their
    /// share (a greedy pool would let one partition's sort take it all and
    /// leave another none to start with).
    pub fn spilling(lake: &Lake, cfg: &QueryConfig, limit_mb: usize) -> Result<QueryEngine> {
        use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(limit_mb.max(1) << 20),
            std::num::NonZeroUsize::new(5).expect("5 > 0"),
        );
        let rt = RuntimeEnvBuilder::new().with_memory_pool(Arc::new(pool));
        Self::with_runtime(lake, cfg, rt)
    }

    fn with_runtime(lake: &Lake, cfg: &QueryConfig, rt: RuntimeEnvBuilder) -> Result<QueryEngine> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut config = guard::session_config(threads);
        config.options_mut().execution.parquet.pushdown_filters = true;
        config.options_mut().execution.parquet.reorder_filters = true;
        let runtime = Arc::new(rt.build()?);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let catalog = MemoryCatalogProvider::new();
        for zone in Zone::ALL {
            catalog.register_schema(
                zone.name(),
                Arc::new(LakeSchema {
                    lake: lake.clone(),
                    zone,
                }),
            )?;
        }
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        guard::restrict_table_functions(&ctx);
        Ok(QueryEngine {
            ctx,
            timeout: Duration::from_secs(cfg.timeout_secs),
        })
    }

    /// The DataFusion context (for jobs that build plans themselves).
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans a read-only query (see [`guard`]): no DDL, DML or `SET`, no
    /// table but the lake's; a wrong table or column name is an error that
    /// lists what exists.
    pub async fn plan(&self, sql: &str) -> Result<DataFrame> {
        guard::screen(sql, false).map_err(QueryError::ReadOnly)?;
        let df = self
            .ctx
            .sql_with_options(sql, guard::options())
            .await
            .map_err(|e| explain_error(e, sql))?;
        guard::reads_only(df.logical_plan())
            .map_err(|why| QueryError::ReadOnly(format!("the plan holds {why}")))?;
        Ok(df)
    }

    /// Runs a read-only query to completion within the configured timeout.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let df = self.plan(sql).await?;
        let schema = df.schema().inner().clone();
        match tokio::time::timeout(self.timeout, df.collect()).await {
            Ok(Ok(batches)) if batches.is_empty() => Ok(vec![RecordBatch::new_empty(schema)]),
            Ok(r) => r.map_err(|e| explain_error(e, sql)),
            Err(_) => Err(QueryError::Timeout(self.timeout)),
        }
    }

    /// [`QueryEngine::query`] returning at most `max_rows` rows; true when
    /// the query had more.
    pub async fn query_limited(
        &self,
        sql: &str,
        max_rows: usize,
    ) -> Result<(Vec<RecordBatch>, bool)> {
        let df = self.plan(sql).await?;
        let schema = df.schema().inner().clone();
        let df = df
            .limit(0, Some(max_rows.saturating_add(1)))
            .map_err(|e| explain_error(e, sql))?;
        let mut batches = match tokio::time::timeout(self.timeout, df.collect()).await {
            Ok(r) => r.map_err(|e| explain_error(e, sql))?,
            Err(_) => return Err(QueryError::Timeout(self.timeout)),
        };
        let mut left = max_rows;
        let mut truncated = false;
        for b in &mut batches {
            if b.num_rows() > left {
                *b = b.slice(0, left);
                truncated = true;
            }
            left -= b.num_rows();
        }
        batches.retain(|b| b.num_rows() > 0);
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok((batches, truncated))
    }

    /// Runs a query on behalf of shoplake's own jobs (no read-only check, no timeout).
    pub async fn run_internal(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let df = self.ctx.sql(sql).await.map_err(|e| explain_error(e, sql))?;
        df.collect().await.map_err(|e| explain_error(e, sql))
    }

    /// [`QueryEngine::run_internal`] handing the rows over as they come,
    /// so a job can fold a result larger than memory (a sort past the
    /// memory limit spills to disk).
    pub async fn stream_internal(
        &self,
        sql: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
        use futures::StreamExt;
        let df = self.ctx.sql(sql).await.map_err(|e| explain_error(e, sql))?;
        let stream = df
            .execute_stream()
            .await
            .map_err(|e| explain_error(e, sql))?;
        let sql = sql.to_string();
        Ok(stream
            .map(move |b| b.map_err(|e| explain_error(e, &sql)))
            .boxed())
    }
}

/// Rewrites DataFusion's errors so a wrong name lists what exists.
fn explain_error(e: DataFusionError, _sql: &str) -> QueryError {
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("table") && lower.contains("not found") {
        let tables: Vec<String> = TABLES.iter().map(Table::qualified).collect();
        return QueryError::Plan(format!(
            "{}\navailable tables: {}",
            msg.trim(),
            tables.join(", ")
        ));
    }
    if [
        "ddl not supported",
        "dml not supported",
        "statement not supported",
        "not allowed",
    ]
    .iter()
    .any(|p| lower.contains(p))
    {
        return QueryError::ReadOnly(msg);
    }
    // the stream hands a memory-pool refusal up wrapped (in an Arrow or a
    // shared error): what counts is the cause
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(..)) {
        return QueryError::Resources(msg);
    }
    match e {
        // what the engine does not support is the query's to change, not a
        // server fault (several statements at once, say)
        DataFusionError::SQL(..)
        | DataFusionError::Plan(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(..) => QueryError::Plan(msg),
        DataFusionError::ResourcesExhausted(..) => QueryError::Resources(msg),
        other => QueryError::DataFusion(Box::new(other)),
    }
}

#[derive(Debug)]
struct LakeSchema {
    lake: Lake,
    zone: Zone,
}

impl LakeSchema {
    async fn delta(
        &self,
        t: &'static Table,
    ) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        match self
            .lake
            .load(t)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        {
            Some(table) => Ok(Some(table.table_provider().await?)),
            None => Ok(None),
        }
    }

    fn find(&self, name: &str) -> Option<&'static Table> {
        TABLES
            .iter()
            .find(|t| t.zone == self.zone && t.name.eq_ignore_ascii_case(name))
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES
            .iter()
            .filter(|t| t.zone == self.zone)
            .map(|t| t.name.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(t) = self.find(name) else {
            return Ok(None);
        };
        let provider: Arc<dyn TableProvider> = match t.storage {
            Storage::Delta => match self.delta(t).await? {
                Some(provider) => provider,
                None => Arc::new(MemTable::try_new(t.schema(), vec![vec![]])?),
            },
            Storage::Files => Arc::new(RawFilesTable::new(&self.lake, t)),
        };
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

#[cfg(test)]
mod guard_tests {
    //! The read-only guard under generated hostile SQL: thousands of
    //! statements built from writes, DDL, settings, file and URL tables,
    //! table functions and catalog tricks, mixed with harmless queries and
    //! then mutated byte by byte. Whatever the guard's first layer accepts
    //! must pass its second ([`guard::reads_only`]), and nothing may panic.
    //! The seed is printed; `GUARD_SEED=<n>` replays a run and
    //! `GUARD_CASES=<n>` makes it longer. The fuzz target `sql_guard` does
    //! the same coverage-guided.

    use super::*;

    const HOSTILE: &[&str] = &[
        "INSERT INTO curated.daily_kpis SELECT * FROM curated.daily_kpis",
        "INSERT INTO processed.events VALUES (1)",
        "DELETE FROM processed.events",
        "UPDATE processed.orders SET status = 'x'",
        "DROP TABLE curated.daily_kpis",
        "DROP SCHEMA curated CASCADE",
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION 's3://bucket/x'",
        "CREATE SCHEMA evil",
        "CREATE FUNCTION f() RETURNS INT RETURN 1",
        "COPY processed.events TO '/tmp/out.csv'",
        "COPY (SELECT 1) TO 'file:///tmp/x.parquet' STORED AS PARQUET",
        "SET datafusion.execution.target_partitions = 1",
        "SET datafusion.catalog.information_schema = false",
        "RESET datafusion.execution.batch_size",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT * FROM 'https://example.com/x.parquet'",
        "SELECT * FROM \"/etc/passwd\"",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM shoplake.nowhere.t",
        "SELECT * FROM nowhere.curated.daily_kpis",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM parquet_metadata('/etc/passwd')",
        "SELECT * FROM other_catalog.public.t",
        "SELECT * FROM datafusion.public.t",
        "EXPLAIN ANALYZE INSERT INTO curated.daily_kpis SELECT * FROM curated.daily_kpis",
        "EXPLAIN COPY (SELECT 1) TO '/tmp/x'",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DEALLOCATE p",
        "BEGIN",
        "COMMIT",
        "TRUNCATE processed.events",
        "ALTER TABLE processed.events ADD COLUMN x INT",
        "ATTACH DATABASE '/tmp/x' AS y",
    ];

    const BENIGN: &[&str] = &[
        "SELECT 1",
        "SELECT count(*) FROM processed.events",
        "SELECT date, net_revenue FROM curated.daily_kpis ORDER BY date",
        "SELECT * FROM raw.clickstream LIMIT 3",
        "SELECT * FROM information_schema.tables",
        "SELECT table_catalog FROM datafusion.information_schema.tables",
        "WITH t AS (SELECT product_id FROM processed.transactions) SELECT count(*) FROM t",
        "SELECT e.event_id FROM processed.events e JOIN processed.sessions s ON e.session_id = s.session_id",
        "SELECT (SELECT max(date) FROM curated.daily_kpis) AS d",
        "SELECT * FROM processed.events WHERE event_id IN (SELECT event_id FROM raw.events)",
        "DESCRIBE processed.events",
        "EXPLAIN SELECT 1",
        "VALUES (1), (2)",
        "SHOW ALL",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT d FROM range(DATE '2026-01-01', DATE '2026-02-01', INTERVAL '1 day') AS t(d)",
    ];

    const JOINERS: &[&str] = &[
        "; ",
        " UNION ALL ",
        " -- ",
        " /* ",
        " */ ",
        ") ",
        "(",
        " WHERE 1=1 AND ",
        "\n",
        "\u{0}",
        "é",
        "'",
        "\"",
    ];

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    fn statement(rng: &mut Rng) -> String {
        let mut s = String::new();
        for _ in 0..1 + rng.below(3) {
            let part = if rng.below(3) == 0 {
                rng.pick(BENIGN)
            } else {
                rng.pick(HOSTILE)
            };
            if !s.is_empty() {
                s.push_str(rng.pick(JOINERS));
            }
            if rng.below(4) == 0 {
                s.push_str(&part.to_lowercase());
            } else {
                s.push_str(part);
            }
        }
        // byte-level mutations, kept to valid UTF-8
        let mut bytes = s.into_bytes();
        for _ in 0..rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, b" ;()'\"*,.-/x0"[rng.below(13)]),
                2 => bytes.truncate(at),
                _ => {
                    let j = rng.below(bytes.len());
                    bytes.swap(at, j);
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn generated_hostile_sql_never_gets_past_the_read_only_guard() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), &Default::default()).unwrap();
        let engine = QueryEngine::new(&lake, &Default::default()).unwrap();
        let seed = std::env::var("GUARD_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        let cases: usize = std::env::var("GUARD_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000);
        eprintln!("GUARD_SEED={seed} GUARD_CASES={cases}");
        let mut rng = Rng(seed);
        let (mut planned, mut refused) = (0, 0);
        for hostile in HOSTILE {
            assert!(
                engine.plan(hostile).await.is_err(),
                "the guard let through {hostile:?}"
            );
        }
        for benign in BENIGN {
            if let Err(e) = engine.plan(benign).await {
                panic!("the guard refused {benign:?}: {e}");
            }
        }
        for _ in 0..cases {
            let sql = statement(&mut rng);
            // the first layer alone, as the fuzz target plans
            match guard::first_layer_holds(engine.ctx(), &sql).await {
                Ok(true) => planned += 1,
                Ok(false) => refused += 1,
                Err(why) => panic!("the guard let through {why}: {sql:?} (GUARD_SEED={seed})"),
            }
        }
        eprintln!("{planned} planned (all read-only), {refused} refused");
        assert!(
            planned > 0 && refused > 0,
            "{planned} planned, {refused} refused"
        );
    }

    /// The fuzz target's kept corpus (`fuzz/corpus/sql_guard`), through the
    /// same check as the fuzzer: inputs that once mattered stay covered
    /// without libFuzzer.
    #[tokio::test]
    async fn the_kept_fuzz_corpus_replays_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), &Default::default()).unwrap();
        let engine = QueryEngine::new(&lake, &Default::default()).unwrap();
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sql_guard");
        let (mut n, mut planned) = (0, 0);
        for e in std::fs::read_dir(root).expect("the corpus is in the repository") {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            let Ok(sql) = std::str::from_utf8(&bytes) else {
                continue;
            };
            n += 1;
            match guard::first_layer_holds(engine.ctx(), sql).await {
                Ok(true) => planned += 1,
                Ok(false) => {}
                Err(why) => panic!("the guard let through {why}: {sql:?}"),
            }
        }
        // the reports are in the corpus: they plan
        assert!(n >= 50 && planned >= 12, "{n} inputs, {planned} planned");
    }

    /// What the fuzz target found: a `SET` whose value nests brackets took
    /// the parser time exponential in its depth (seconds at 8 levels, hours
    /// at 16). The screen refuses it before the parser sees it; without it
    /// this test would not end.
    #[tokio::test]
    async fn a_set_that_would_take_the_parser_hours_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), &Default::default()).unwrap();
        let engine = QueryEngine::new(&lake, &Default::default()).unwrap();
        let deep = format!("SET a = x{}", "y.c[h%m(p-r.c".repeat(16));
        for sql in [
            deep.clone(),
            format!("EXPLAIN {deep}"),
            format!("SELECT 1; {deep}"),
            format!("/* */ {}", deep.to_lowercase()),
        ] {
            match engine.plan(&sql).await {
                Err(QueryError::ReadOnly(why)) => assert!(why.contains("SET"), "{why}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
        // the PostgreSQL endpoint's screen: drivers' settings pass, brackets do not
        guard::screen(
            "SET extra_float_digits = 3; SET application_name = 'x'",
            true,
        )
        .unwrap();
        guard::screen("SELECT \"set\", 'SET' FROM t", false).unwrap();
        assert!(guard::screen(&deep, true).is_err());
    }

    #[tokio::test]
    async fn the_second_layer_refuses_a_table_outside_the_lake() {
        // a session whose first layer is as tight as ours but that knows a
        // table of its own: only the walk of the plan can tell
        let ctx = SessionContext::new();
        let secret = MemTable::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int64, false),
            ])),
            vec![vec![]],
        )
        .unwrap();
        ctx.register_table("secret", Arc::new(secret)).unwrap();
        for sql in [
            "SELECT * FROM secret",
            "SELECT 1 WHERE EXISTS (SELECT x FROM secret)",
            "SELECT * FROM (SELECT 1) AS a UNION ALL SELECT x FROM secret",
        ] {
            let df = ctx.sql_with_options(sql, guard::options()).await.unwrap();
            let why = guard::reads_only(df.logical_plan()).unwrap_err();
            assert!(why.contains("secret"), "{sql}: {why}");
        }
        let df = ctx
            .sql_with_options("SELECT * FROM generate_series(1, 2)", guard::options())
            .await
            .unwrap();
        guard::reads_only(df.logical_plan()).unwrap();
    }
}
