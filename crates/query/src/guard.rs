//! The read-only guard of the SQL API and the Postgres-wire endpoint, in
//! two layers:
//!
//! 1. DataFusion's statement options refuse DDL, DML, `COPY` and `SET`
//!    while the query is planned ([`options`]); the session knows no file
//!    or URL tables and no table function but [`TABLE_FUNCTIONS`].
//! 2. Every plan the first layer accepts is walked, subqueries included
//!    ([`reads_only`]): it may scan only the lake's tables,
//!    `information_schema` and the table functions that read nothing, and
//!    hold no write, DDL, `COPY`, statement or extension node.
//!
//! The second layer is what a change of DataFusion (a new statement kind,
//! a new table function) would have to get past as well. The fuzz target
//! `sql_guard` (fuzz/) plans arbitrary input through the first layer and
//! fails if the second refuses what it accepted, so each layer is checked
//! against the other.
//!
//! This file uses nothing but DataFusion and shoplake-core: the fuzz target
//! compiles it as it is, without the lake.

use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use shoplake_core::schema::TABLES;

/// The catalog name of the lake in SQL.
pub const CATALOG: &str = "shoplake";

/// The table functions a query may call: they generate rows and read
/// nothing (a date spine for a report, say).
pub const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// The first layer: no DDL, no DML or `COPY`, no `SET` or other statement.
pub fn options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The session every query runs in: the lake's catalog by default and no
/// other (a name outside it does not resolve), `information_schema` for
/// tools that list tables.
pub fn session_config(target_partitions: usize) -> SessionConfig {
    SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, "curated")
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_target_partitions(target_partitions)
}

/// The second layer: Ok when `plan` only reads the lake, else what it does
/// besides.
pub fn reads_only(plan: &LogicalPlan) -> Result<(), String> {
    reads_only_and(plan, |_| false)
}

/// [`reads_only`] letting `also` scan too (the PostgreSQL endpoint's
/// `pg_catalog`).
pub fn reads_only_and(
    plan: &LogicalPlan,
    also: impl Fn(&TableReference) -> bool,
) -> Result<(), String> {
    let mut bad = None;
    plan.apply_with_subqueries(|node| {
        let why = match node {
            LogicalPlan::Dml(d) => Some(format!("writes ({})", d.op)),
            LogicalPlan::Ddl(d) => Some(format!("DDL ({})", d.name())),
            LogicalPlan::Copy(_) => Some("COPY".to_string()),
            LogicalPlan::Statement(s) => Some(format!("a statement ({})", s.name())),
            LogicalPlan::Extension(e) => Some(format!("an extension node ({})", e.node.name())),
            LogicalPlan::TableScan(scan) => {
                let r = &scan.table_name;
                let ours = r.catalog().is_none_or(|c| c == CATALOG)
                    && TABLES.iter().any(|t| {
                        r.table().eq_ignore_ascii_case(t.name)
                            && r.schema()
                                .is_none_or(|s| s.eq_ignore_ascii_case(t.zone.name()))
                    });
                // DataFusion answers `information_schema` under any catalog
                // name, from the one catalog the session has
                let info = r.schema() == Some("information_schema");
                let generated = r.schema().is_none()
                    && TABLE_FUNCTIONS
                        .iter()
                        .any(|f| r.table().trim_end_matches("()") == *f);
                (!(ours || info || generated || also(r))).then(|| format!("a scan of {r}"))
            }
            _ => None,
        };
        match why {
            Some(w) => {
                bad = Some(w);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    })
    .map_err(|e| e.to_string())?;
    bad.map_or(Ok(()), Err)
}

/// What the fuzz target and the generated tests check of `sql` in `ctx`:
/// screened and planned through the first layer as [`crate::QueryEngine::plan`]
/// does; Ok(true) when the first layer accepted it (and so did the second),
/// Ok(false) when it refused it, Err with what the second layer refused in
/// a plan the first let through.
pub async fn first_layer_holds(ctx: &SessionContext, sql: &str) -> Result<bool, String> {
    if screen(sql, false).is_err() {
        return Ok(false);
    }
    match ctx.sql_with_options(sql, options()).await {
        Ok(df) => reads_only(df.logical_plan()).map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Drops every table function of `ctx` but [`TABLE_FUNCTIONS`].
pub fn restrict_table_functions(ctx: &SessionContext) {
    let names: Vec<String> = ctx.state().table_functions().keys().cloned().collect();
    for name in names {
        if !TABLE_FUNCTIONS.contains(&name.as_str()) {
            ctx.deregister_udtf(&name);
        }
    }
}

/// Refuses, in time linear in its length, text whose parse alone could
/// take hours. sqlparser reads the value of a `SET` by trying it first as a
/// subquery and then as an expression, at every level of brackets, so a
/// 200-byte `SET a = x[y(z[…` takes time exponential in its depth (found by
/// the fuzz target `sql_guard`). The SQL API runs no `SET` or `RESET`
/// (`allow_set` false): they are refused before the parser sees them. The
/// PostgreSQL endpoint acknowledges drivers' settings (`allow_set` true):
/// it refuses only a `SET` whose value holds brackets, which no driver sends.
pub fn screen(sql: &str, allow_set: bool) -> Result<(), String> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        // not SQL: the parser fails fast and says why
        return Ok(());
    };
    let mut in_set = false;
    for token in tokens {
        match token {
            Token::Word(w)
                if w.quote_style.is_none()
                    && matches!(w.keyword, Keyword::SET | Keyword::RESET) =>
            {
                if !allow_set {
                    return Err(format!(
                        "{} is not allowed here: queries only",
                        w.value.to_ascii_uppercase()
                    ));
                }
                in_set = true;
            }
            Token::SemiColon => in_set = false,
            Token::LParen | Token::LBracket if in_set => {
                return Err("a SET value with brackets is not supported".to_string());
            }
            _ => {}
        }
    }
    Ok(())
}
