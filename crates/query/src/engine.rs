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
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use shoplake_core::config::QueryConfig;
use shoplake_core::schema::{Storage, TABLES, Table, Zone};
use shoplake_lake::Lake;

use crate::error::{QueryError, Result};
use crate::raw::RawFilesTable;

/// The catalog name of the lake in SQL.
pub const CATALOG: &str = "shoplake";

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
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "curated")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(threads);
        config.options_mut().execution.parquet.pushdown_filters = true;
        config.options_mut().execution.parquet.reorder_filters = true;
        let mut rt = RuntimeEnvBuilder::new();
        if cfg.memory_limit_mb > 0 {
            rt = rt.with_memory_limit(cfg.memory_limit_mb << 20, 1.0);
        }
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
        Ok(QueryEngine {
            ctx,
            timeout: Duration::from_secs(cfg.timeout_secs),
        })
    }

    /// The DataFusion context (for jobs that build plans themselves).
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans a read-only query: no DDL, DML or `SET`; a wrong table or column
    /// name is an error that lists what exists.
    pub async fn plan(&self, sql: &str) -> Result<DataFrame> {
        let opts = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.ctx
            .sql_with_options(sql, opts)
            .await
            .map_err(|e| explain_error(e, sql))
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
