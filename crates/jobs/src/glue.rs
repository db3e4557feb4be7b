//! Registers the lake's Delta tables in an AWS Glue Data Catalog, so Athena
//! (and Redshift Spectrum, EMR, Glue jobs) query the same files shoplake
//! writes, with no copy.
//!
//! One Glue database per zone (`<prefix>_curated`, `<prefix>_processed`,
//! ...), one Glue table per Delta table of that zone, pointing at the table's
//! folder under the lake's S3 location. Tables are marked as Delta
//! (`table_type = DELTA`), which is how Athena reads a Delta table natively
//! (through its log, so a rewritten partition's old files are never read);
//! the columns are listed too, in Hive types, for catalog browsers. Re-running
//! updates what is there: it is safe after every pipeline run or upgrade.
//!
//! Credentials, region and endpoint come from the standard AWS chain
//! (environment, profile, SSO, container and instance roles), as for the
//! `aws` command.

use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};
use shoplake_core::schema::{ColType, Storage, TABLES, Table, Zone};

use crate::error::{JobError, Result};

/// What to register, and where.
#[derive(Debug, Clone)]
pub struct GlueOptions {
    /// Glue database names are `<prefix>_<zone>`.
    pub database_prefix: String,
    /// The lake's root in S3 (`s3://bucket/prefix`): each table is at
    /// `<location>/<zone>/<table>`.
    pub location: String,
    /// Only these zones (empty: curated and processed).
    pub zones: Vec<Zone>,
    /// The AWS region (default: the standard chain's).
    pub region: Option<String>,
}

/// What one table's registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// `database.table` in Glue.
    pub name: String,
    /// Created (true) or updated.
    pub created: bool,
    /// The S3 folder it points at.
    pub location: String,
}

/// A Hive/Athena type for a column type.
pub fn hive_type(t: ColType) -> &'static str {
    match t {
        ColType::Text => "string",
        ColType::Int => "int",
        ColType::BigInt => "bigint",
        ColType::Float => "double",
        ColType::Bool => "boolean",
        ColType::Date => "date",
        ColType::Timestamp => "timestamp",
        ColType::Money => "decimal(18,2)",
        ColType::LineItems => {
            "array<struct<product_id:string,sku:string,name:string,category:string,brand:string,price:decimal(18,2),quantity:int>>"
        }
    }
}

/// Glue names are lowercase letters, digits and underscores.
fn glue_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The Glue database of a zone.
pub fn database_name(prefix: &str, zone: Zone) -> String {
    glue_name(&format!("{prefix}_{}", zone.name()))
}

/// The Glue table of `t` at `location` (the lake's root).
pub fn table_input(t: &Table, location: &str) -> Result<TableInput> {
    let folder = format!("{}/{}", location.trim_end_matches('/'), t.rel_path());
    let invalid = |e: aws_sdk_glue::error::BuildError| JobError::Invalid(e.to_string());
    let mut sd = StorageDescriptor::builder()
        .location(&folder)
        .input_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
        .output_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(
                    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                )
                .build(),
        );
    for c in t.columns {
        sd = sd.columns(
            Column::builder()
                .name(c.name)
                .r#type(hive_type(c.ty))
                .comment(truncate(c.doc, 255))
                .build()
                .map_err(invalid)?,
        );
    }
    TableInput::builder()
        .name(glue_name(t.name))
        .description(truncate(t.doc, 2048))
        .table_type("EXTERNAL_TABLE")
        .parameters("table_type", "DELTA")
        .parameters("EXTERNAL", "TRUE")
        .parameters("classification", "delta")
        .parameters("spark.sql.sources.provider", "delta")
        .parameters("shoplake.table", t.qualified())
        .storage_descriptor(sd.build())
        .build()
        .map_err(invalid)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Creates the databases and creates or updates a Glue table for every Delta
/// table of the chosen zones.
pub async fn register(opts: &GlueOptions) -> Result<Vec<Registered>> {
    let location = opts.location.trim();
    if !location.starts_with("s3://") {
        return Err(JobError::Invalid(format!(
            "--location {location:?}: Glue tables point at S3; give the lake's S3 root (s3://bucket/prefix)"
        )));
    }
    let zones = if opts.zones.is_empty() {
        vec![Zone::Curated, Zone::Processed]
    } else {
        opts.zones.clone()
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = &opts.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    let glue = aws_sdk_glue::Client::new(&loader.load().await);
    let failed = |what: String| move |e: String| JobError::Catalog(format!("{what}: {e}"));
    let mut done = Vec::new();
    for zone in zones {
        let db = database_name(&opts.database_prefix, zone);
        let input = DatabaseInput::builder()
            .name(&db)
            .description(format!(
                "shoplake's {} zone: Delta tables under {location}/{}",
                zone.name(),
                zone.name()
            ))
            .build()
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        match glue.create_database().database_input(input).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) => {}
            Err(e) => {
                return Err(failed(format!("creating database {db}"))(
                    aws_sdk_glue::error::DisplayErrorContext(e).to_string(),
                ));
            }
        }
        for t in TABLES
            .iter()
            .filter(|t| t.zone == zone && t.storage == Storage::Delta)
        {
            let input = table_input(t, location)?;
            let name = format!("{db}.{}", glue_name(t.name));
            let exists = match glue
                .get_table()
                .database_name(&db)
                .name(glue_name(t.name))
                .send()
                .await
            {
                Ok(_) => true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_entity_not_found_exception()) =>
                {
                    false
                }
                Err(e) => {
                    return Err(failed(format!("reading {name}"))(
                        aws_sdk_glue::error::DisplayErrorContext(e).to_string(),
                    ));
                }
            };
            let sent = if exists {
                glue.update_table()
                    .database_name(&db)
                    .table_input(input)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws_sdk_glue::error::DisplayErrorContext(e).to_string())
            } else {
                glue.create_table()
                    .database_name(&db)
                    .table_input(input)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws_sdk_glue::error::DisplayErrorContext(e).to_string())
            };
            sent.map_err(failed(format!("registering {name}")))?;
            done.push(Registered {
                name,
                created: !exists,
                location: format!("{}/{}", location.trim_end_matches('/'), t.rel_path()),
            });
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delta_table_maps_to_a_glue_table_with_hive_types() {
        for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
            let input = table_input(t, "s3://bucket/lake/").unwrap();
            let sd = input.storage_descriptor().unwrap();
            assert_eq!(
                sd.location(),
                Some(format!("s3://bucket/lake/{}/{}", t.zone.name(), t.name).as_str())
            );
            assert_eq!(sd.columns().len(), t.columns.len());
            assert_eq!(
                input
                    .parameters()
                    .unwrap()
                    .get("table_type")
                    .map(String::as_str),
                Some("DELTA")
            );
        }
        assert_eq!(
            database_name("Shop-Lake", Zone::Curated),
            "shop_lake_curated"
        );
        assert_eq!(hive_type(ColType::Money), "decimal(18,2)");
    }
}
