//! `raw.<source>`: the landing files as a table, every value as the text it
//! was received as (JSON numbers included), `date` from the folder. Read with
//! the same reader as the import and the ETL, so compressed files and JSON
//! arrays are visible too; rows that do not parse are not rows (they are in
//! quarantine). Scanned whole on each query (a `LIMIT` without filters stops
//! early): the raw zone is for inspection, the processed tables for analysis.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use shoplake_core::schema::Table;
use shoplake_core::sources::Source;
use shoplake_lake::Lake;
use shoplake_lake::catalog::list_raw_files;
use shoplake_lake::files;

/// A raw landing-file table.
#[derive(Debug)]
pub struct RawFilesTable {
    lake: Lake,
    source: Source,
    schema: SchemaRef,
}

impl RawFilesTable {
    /// The table of `t` (a raw zone table).
    pub fn new(lake: &Lake, t: &Table) -> Self {
        let source = Source::parse(t.name).expect("raw file tables are sources");
        let schema = Arc::new(Schema::new(
            t.columns
                .iter()
                .map(|c| {
                    let ty = if Some(c.name) == t.partition {
                        DataType::Date32
                    } else {
                        DataType::Utf8
                    };
                    Field::new(c.name, ty, true)
                })
                .collect::<Vec<_>>(),
        ));
        RawFilesTable {
            lake: lake.clone(),
            source,
            schema,
        }
    }

    fn read(&self, limit: Option<usize>) -> Result<Vec<RecordBatch>> {
        let ncols = self.source.columns().len();
        let mut out = Vec::new();
        let mut rows = 0usize;
        for f in list_raw_files(&self.lake.raw_dir(self.source))
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        {
            if limit.is_some_and(|l| rows >= l) {
                break;
            }
            let Ok(date) = shoplake_core::time::parse_date(&f.partition) else {
                continue;
            };
            let bytes = std::fs::read(&f.path)?;
            let Ok(bytes) = files::decompress(bytes, u64::MAX) else {
                continue;
            };
            let Ok((text, format)) = files::into_text(&f.path, bytes) else {
                continue;
            };
            let text = text.as_str();
            let mut builders: Vec<StringBuilder> =
                (0..ncols).map(|_| StringBuilder::new()).collect();
            let mut n = 0usize;
            let _ = files::for_each_row(self.source, format, text, 1, |_, rec| {
                if let Ok(rec) = rec {
                    for (b, v) in builders.iter_mut().zip(&rec.vals) {
                        b.append_option(v.as_text());
                    }
                    n += 1;
                }
            });
            if n == 0 {
                continue;
            }
            let mut d = Date32Builder::with_capacity(n);
            d.append_value_n(date, n);
            let mut cols: Vec<ArrayRef> = builders
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            cols.push(Arc::new(d.finish()));
            out.push(RecordBatch::try_new(self.schema.clone(), cols)?);
            rows += n;
        }
        Ok(out)
    }
}

#[async_trait]
impl TableProvider for RawFilesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let limit = if filters.is_empty() { limit } else { None };
        let this = RawFilesTable {
            lake: self.lake.clone(),
            source: self.source,
            schema: self.schema.clone(),
        };
        let batches = tokio::task::spawn_blocking(move || this.read(limit))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
