//! `shoplake load postgres` against the machine's PostgreSQL
//! (postgres://postgres@127.0.0.1:5432/test): every test loads into a fresh
//! schema of its own and drops it afterwards, also when it fails. Without
//! PostgreSQL the tests are skipped locally and fail when `CI` is set.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, LargeStringArray,
    ListBuilder, RecordBatch, StringArray, StringBuilder, StringViewArray, StructBuilder,
    TimestampMicrosecondArray, TimestampNanosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use shoplake_core::schema::{
    ColType, EVENTS, ORDER_LINES, PRODUCT_PERFORMANCE, Storage, TABLES, TRANSACTIONS, Table, Zone,
};
use shoplake_jobs::pgcopy::{CopyEncoder, HEADER, PgType, TRAILER};
use shoplake_jobs::pipeline::{PipelineOptions, Quiet};
use shoplake_jobs::warehouse::{self, Action, LoadOptions, LoadReport, TableLoad};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::common::{Cell, DAYS, Fixture, START, day, small_config, ymd};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of one test, dropped (with `psql`) when the test ends.
struct PgSchema {
    name: String,
    conn: PgConnection,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        crate::common::drop_pg_schema(&self.name);
    }
}

/// A fresh schema `it_load_<what>_<pid>`, or `None` (skipped) when
/// PostgreSQL is unreachable and `CI` is not set.
async fn fresh_schema(what: &str) -> Option<PgSchema> {
    let name = format!("it_load_{what}_{}", std::process::id());
    let mut conn = match warehouse::connect(URL).await {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED locally: PostgreSQL at {URL} is not reachable: {e}");
            return None;
        }
        Err(e) => panic!("PostgreSQL at {URL} is needed (CI): {e}"),
    };
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    Some(PgSchema { name, conn })
}

async fn load(fx: &Fixture, schema: &str, tables: &[&'static Table]) -> LoadReport {
    try_load(fx, schema, tables)
        .await
        .unwrap_or_else(|e| panic!("load {tables:?} into {schema}: {e}"))
}

async fn try_load(
    fx: &Fixture,
    schema: &str,
    tables: &[&'static Table],
) -> shoplake_jobs::Result<LoadReport> {
    let opts = LoadOptions {
        url: URL.into(),
        schema: schema.into(),
        tables: tables.to_vec(),
        ..Default::default()
    };
    warehouse::load_postgres(&fx.lake, &opts, &Quiet).await
}

fn entry<'a>(r: &'a LoadReport, table: &Table) -> &'a TableLoad {
    r.tables
        .iter()
        .find(|t| t.table == table.qualified())
        .unwrap_or_else(|| panic!("{} not in the report: {r:#?}", table.qualified()))
}

/// One text value per query row and column (NULL: `None`).
async fn pg_text(conn: &mut PgConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<Option<String>, _>(i))
                .collect()
        })
        .collect()
}

async fn pg_one(conn: &mut PgConnection, sql: &str) -> Option<String> {
    pg_text(conn, sql).await.remove(0).remove(0)
}

/// A decimal cell as PostgreSQL prints a numeric of that scale.
fn dec_text(v: i128, scale: i8) -> String {
    let s = scale as u32;
    let neg = v < 0;
    let a = v.unsigned_abs();
    let p = 10u128.pow(s);
    let body = if s == 0 {
        (a / p).to_string()
    } else {
        format!("{}.{:0w$}", a / p, a % p, w = s as usize)
    };
    if neg { format!("-{body}") } else { body }
}

/// Per column: the aggregates compared between the lake and PostgreSQL.
fn aggregates(t: &Table) -> Vec<(String, String, String)> {
    let mut out = vec![(
        "rows".to_string(),
        "count(*)".to_string(),
        "count(*)::text".to_string(),
    )];
    for c in t.columns {
        let q = format!("\"{}\"", c.name);
        out.push((
            format!("{}: non-null", c.name),
            format!("count({q})"),
            format!("count({q})::text"),
        ));
        let (lake, pg) = match c.ty {
            ColType::Money | ColType::Int | ColType::BigInt | ColType::Float => {
                (format!("sum({q})"), format!("sum({q})::text"))
            }
            ColType::Text => (
                format!("sum(character_length({q}))"),
                format!("sum(char_length({q}))::text"),
            ),
            ColType::Bool => (
                format!("sum(CASE WHEN {q} THEN 1 ELSE 0 END)"),
                format!("sum(CASE WHEN {q} THEN 1 ELSE 0 END)::text"),
            ),
            ColType::Date => (format!("min({q})"), format!("min({q})::text")),
            ColType::Timestamp => (
                format!("max({q})"),
                format!("(extract(epoch FROM max({q})) * 1000000)::bigint::text"),
            ),
            ColType::LineItems => continue,
        };
        out.push((format!("{}: {lake}", c.name), lake, pg));
    }
    out
}

/// The lake's and PostgreSQL's aggregates of `t` agree: row counts,
/// non-null counts, sums (money to the cent), text lengths, dates.
async fn assert_same(fx: &Fixture, conn: &mut PgConnection, schema: &str, t: &Table) {
    let aggs = aggregates(t);
    let lake_sql = format!(
        "SELECT {} FROM {}",
        aggs.iter()
            .enumerate()
            .map(|(i, (_, l, _))| format!("{l} AS a{i}"))
            .collect::<Vec<_>>()
            .join(", "),
        t.qualified()
    );
    let lake = fx.query(&lake_sql).await;
    let pg_sql = format!(
        "SELECT {} FROM {schema}.{}",
        aggs.iter()
            .map(|(_, _, p)| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        warehouse::target_name(t)
    );
    let pg = pg_text(conn, &pg_sql).await.remove(0);
    for (i, (what, _, _)) in aggs.iter().enumerate() {
        let got = pg[i].as_deref();
        let cell = lake.row(0).get(&format!("a{i}")).clone();
        let ok = match (&cell, got) {
            (Cell::Null, None) => true,
            (Cell::Int(v), Some(g)) => g == v.to_string(),
            (Cell::Dec(v, s), Some(g)) => g == dec_text(*v, *s),
            (Cell::Float(v), Some(g)) => {
                let g: f64 = g.parse().unwrap();
                (g - v).abs() <= 1e-9 * v.abs().max(1.0)
            }
            (Cell::Date(d), Some(g)) => g == ymd(*d),
            (Cell::Ts(us), Some(g)) => g == us.to_string(),
            _ => false,
        };
        assert!(
            ok,
            "{}.{what}: lake {cell}, PostgreSQL {got:?}",
            t.qualified()
        );
    }
}

/// `format_type` of each column of a target table.
async fn column_types(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> BTreeMap<String, String> {
    pg_text(
        conn,
        &format!(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = '{schema}.{table}'::regclass AND attnum > 0 AND NOT attisdropped"
        ),
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
    .collect()
}

fn curated() -> Vec<&'static Table> {
    TABLES
        .iter()
        .filter(|t| t.zone == Zone::Curated && t.storage == Storage::Delta)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_copies_the_lake_exactly_and_a_second_run_loads_nothing() {
    let Some(mut s) = fresh_schema("exact").await else {
        return;
    };
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;

    // the command as a user runs it: every curated table by default
    let cli = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_shoplake"))
            .env("CI", "true")
            .env_remove("SHOPLAKE_WAREHOUSE_URL")
            .arg("--data")
            .arg(fx.dir.path())
            .args(["-q", "load", "postgres", "--url", URL, "--schema", &s.name])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "load postgres {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let first = cli(&["--format", "json"]);
    let loaded: Vec<&str> = first["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    let want: Vec<String> = curated().iter().map(|t| t.qualified()).collect();
    assert_eq!(loaded, want, "every curated table, in schema order");
    // processed tables by name
    let r = load(&fx, &s.name, &[&EVENTS, &TRANSACTIONS]).await;
    assert_eq!(
        entry(&r, &EVENTS).target,
        format!("{}.processed_events", s.name)
    );
    assert_eq!(entry(&r, &EVENTS).action, Action::Full);

    for t in curated().into_iter().chain([&EVENTS, &TRANSACTIONS]) {
        let lake_rows = fx
            .query(&format!("SELECT count(*) AS n FROM {}", t.qualified()))
            .await
            .row(0)
            .i64("n");
        let action = first["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["table"] == t.qualified())
            .map(|e| e["action"].as_str().unwrap().to_string());
        if action.as_deref() == Some("absent") {
            assert_eq!(lake_rows, 0, "{} absent but has rows", t.qualified());
            continue;
        }
        assert_same(&fx, &mut s.conn, &s.name, t).await;
    }
    assert!(
        fx.query("SELECT count(*) AS n FROM curated.order_lines")
            .await
            .row(0)
            .i64("n")
            > 1000,
        "the data set is not trivially small"
    );

    // the lake's types, as PostgreSQL types
    let ol = column_types(&mut s.conn, &s.name, "order_lines").await;
    for (col, ty) in [
        ("transaction_id", "text"),
        ("quantity", "integer"),
        ("unit_price", "numeric(18,2)"),
        ("net_amount", "numeric(18,2)"),
        ("is_returned", "boolean"),
        ("date", "date"),
    ] {
        assert_eq!(ol[col], ty, "order_lines.{col}");
    }
    let kpis = column_types(&mut s.conn, &s.name, "daily_kpis").await;
    assert_eq!(kpis["orders"], "bigint");
    assert_eq!(kpis["return_rate"], "double precision");
    let ev = column_types(&mut s.conn, &s.name, "processed_events").await;
    assert_eq!(ev["event_ts"], "timestamp with time zone");
    assert_eq!(ev["products"], "jsonb");
    assert_eq!(ev["revenue"], "numeric(18,2)");
    let not_null = pg_one(
        &mut s.conn,
        &format!(
            "SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = '{}.order_lines'::regclass AND attnum > 0 AND NOT attnotnull",
            s.name
        ),
    )
    .await;
    assert_eq!(
        not_null.as_deref(),
        Some("order_id,product_name,brand,price_band"),
        "the lake's nullable columns, and only those, allow NULL"
    );

    // one event, value by value
    let e = fx
        .query("SELECT event_id, event_ts, received_at FROM processed.events ORDER BY event_id LIMIT 1")
        .await;
    let id = e.row(0).str("event_id");
    let got = pg_text(
        &mut s.conn,
        &format!(
            "SELECT (extract(epoch FROM event_ts) * 1000000)::bigint::text, \
                    (extract(epoch FROM received_at) * 1000000)::bigint::text \
             FROM {}.processed_events WHERE event_id = '{id}'",
            s.name
        ),
    )
    .await;
    let want = |c: &str| match e.row(0).get(c) {
        Cell::Ts(us) => Some(us.to_string()),
        other => panic!("{c}: {other}"),
    };
    assert_eq!(got, vec![vec![want("event_ts"), want("received_at")]]);

    // nothing new: nothing loaded, nothing written
    let state = format!(
        "SELECT lake_table, delta_version::text, loaded_at::text, xmin::text FROM {}.shoplake_load_state ORDER BY 1",
        s.name
    );
    let before = pg_text(&mut s.conn, &state).await;
    let again = cli(&[
        "--format",
        "json",
        "--tables",
        "order_lines,daily_kpis,processed.events",
    ]);
    for t in again["tables"].as_array().unwrap() {
        assert_eq!(t["action"], "unchanged", "{t}");
        assert_eq!(t["rows"], 0, "{t}");
    }
    assert_eq!(
        pg_text(&mut s.conn, &state).await,
        before,
        "the state is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_replaces_only_the_changed_day_adds_new_columns_and_a_failed_load_changes_nothing() {
    let Some(mut s) = fresh_schema("incr").await else {
        return;
    };
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    let tables = [&TRANSACTIONS, &ORDER_LINES, &PRODUCT_PERFORMANCE];
    let r = load(&fx, &s.name, &tables).await;
    assert!(r.tables.iter().all(|t| t.action == Action::Full), "{r:#?}");
    let first_version = entry(&r, &ORDER_LINES).version.unwrap();
    let ol = format!("{}.order_lines", s.name);
    // which transaction wrote each day's rows
    let by_day = format!(
        "SELECT date::text, count(*)::text, min(xmin::text::bigint)::text, max(xmin::text::bigint)::text \
         FROM {ol} GROUP BY date ORDER BY date"
    );
    let before = pg_text(&mut s.conn, &by_day).await;
    assert_eq!(before.len(), DAYS as usize);

    // the shop's export of one day gains a column and two lines
    let changed = ymd(day(START) + 5);
    let known = fx
        .query("SELECT customer_id, product_id FROM processed.transactions LIMIT 1")
        .await;
    let (cust, prod) = (
        known.row(0).str("customer_id"),
        known.row(0).str("product_id"),
    );
    std::fs::write(
        fx.raw_root()
            .join("transactions")
            .join(format!("date={changed}"))
            .join("late.csv"),
        format!(
            "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status,coupon_code\n\
             T-LATE-1,{cust},{prod},3,10.99,32.97,{changed},completed,SPRING10\n\
             T-LATE-2,{cust},{prod},1,0.05,0.05,{changed},completed,\n"
        ),
    )
    .unwrap();
    fx.run(&PipelineOptions::default()).await;

    // PostgreSQL refuses one of the new rows: that table's load fails whole
    let check =
        format!("ALTER TABLE {ol} ADD CONSTRAINT it_refuse CHECK (transaction_id <> 'T-LATE-2')");
    sqlx::raw_sql(AssertSqlSafe(check))
        .execute(&mut s.conn)
        .await
        .unwrap();
    let state_of = |t: &Table| {
        format!(
            "SELECT delta_version::text, mode, partitions::text FROM {}.shoplake_load_state WHERE lake_table = '{}'",
            s.name,
            t.qualified()
        )
    };
    let ol_state = pg_text(&mut s.conn, &state_of(&ORDER_LINES)).await;
    let err = try_load(&fx, &s.name, &tables)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("it_refuse"), "{err}");
    assert_eq!(
        pg_text(&mut s.conn, &by_day).await,
        before,
        "no row of order_lines changed"
    );
    assert_eq!(
        pg_text(&mut s.conn, &state_of(&ORDER_LINES)).await,
        ol_state,
        "nor its state"
    );
    // processed.transactions, loaded first in its own transaction, went in
    let tx_state = pg_text(&mut s.conn, &state_of(&TRANSACTIONS)).await;
    assert_eq!(tx_state[0][1].as_deref(), Some("partitions"));
    assert_eq!(tx_state[0][2], Some(format!("{{{changed}}}")));

    // allowed again: only the changed day is replaced
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE {ol} DROP CONSTRAINT it_refuse"
    )))
    .execute(&mut s.conn)
    .await
    .unwrap();
    let r = load(&fx, &s.name, &tables).await;
    let e = entry(&r, &ORDER_LINES);
    assert_eq!(e.action, Action::Partitions, "{e:#?}");
    assert_eq!(e.partitions, vec![changed.clone()]);
    assert_eq!(entry(&r, &TRANSACTIONS).action, Action::Unchanged);
    // a day-grain table without partitions: the day its commit replaced
    let pp = entry(&r, &PRODUCT_PERFORMANCE);
    assert_eq!(
        (&pp.action, pp.key.as_deref(), &pp.partitions),
        (&Action::Partitions, Some("date"), &vec![changed.clone()]),
        "{pp:#?}"
    );
    let after = pg_text(&mut s.conn, &by_day).await;
    for (b, a) in before.iter().zip(&after) {
        if b[0].as_deref() == Some(changed.as_str()) {
            assert_eq!(
                a[1].as_ref().unwrap().parse::<i64>().unwrap(),
                b[1].as_ref().unwrap().parse::<i64>().unwrap() + 2,
                "the changed day has its two new lines"
            );
            assert_ne!(a[2], b[2], "the changed day was rewritten");
        } else {
            assert_eq!(a, b, "another day was rewritten");
        }
    }
    let st = pg_text(&mut s.conn, &state_of(&ORDER_LINES)).await;
    assert_eq!(st[0][2], Some(format!("{{{changed}}}")));
    let line = pg_text(
        &mut s.conn,
        &format!(
            "SELECT quantity::text, line_total::text FROM {ol} WHERE transaction_id = 'T-LATE-2'"
        ),
    )
    .await;
    assert_eq!(line, vec![vec![Some("1".into()), Some("0.05".into())]]);
    for t in tables {
        assert_same(&fx, &mut s.conn, &s.name, t).await;
    }

    // the lake's new column is a PostgreSQL column, null in older rows
    // (added by the failed run, whose first table committed)
    let types = column_types(&mut s.conn, &s.name, "processed_transactions").await;
    assert_eq!(types.get("coupon_code").map(String::as_str), Some("text"));
    let coupons = pg_text(
        &mut s.conn,
        &format!(
            "SELECT coupon_code, count(*)::text FROM {}.processed_transactions GROUP BY 1 ORDER BY 1",
            s.name
        ),
    )
    .await;
    let lake_rows = fx
        .query("SELECT count(*) AS n FROM processed.transactions")
        .await
        .row(0)
        .i64("n");
    assert_eq!(
        coupons,
        vec![
            vec![Some("SPRING10".into()), Some("1".into())],
            vec![None, Some((lake_rows - 1).to_string())],
        ]
    );

    // --full copies everything again, in place
    let opts = LoadOptions {
        url: URL.into(),
        schema: s.name.clone(),
        tables: vec![&ORDER_LINES],
        full: true,
        ..Default::default()
    };
    let r = warehouse::load_postgres(&fx.lake, &opts, &Quiet)
        .await
        .unwrap();
    let e = entry(&r, &ORDER_LINES);
    assert_eq!(e.action, Action::Full);
    assert_eq!(e.rows, e.deleted, "every row out, every row in");
    assert_same(&fx, &mut s.conn, &s.name, &ORDER_LINES).await;

    // a column added to the lake table alone (a commit that moves no rows)
    fx.lake
        .evolve(&ORDER_LINES, &["gift_wrap".to_string()])
        .await
        .unwrap();
    let r = load(&fx, &s.name, &[&ORDER_LINES]).await;
    let e = entry(&r, &ORDER_LINES);
    assert_eq!(e.action, Action::Partitions, "{e:#?}");
    assert!(
        e.partitions.is_empty() && e.rows == 0,
        "no row moves: {e:#?}"
    );
    assert_eq!(e.columns_added, vec!["gift_wrap".to_string()]);
    let types = column_types(&mut s.conn, &s.name, "order_lines").await;
    assert_eq!(types.get("gift_wrap").map(String::as_str), Some("text"));
    let r = load(&fx, &s.name, &[&ORDER_LINES]).await;
    assert_eq!(r.tables[0].action, Action::Unchanged);

    // many commits behind: the files of the two versions are compared
    // instead of reading every commit; the same day comes out
    sqlx::raw_sql(AssertSqlSafe(format!(
        "UPDATE {}.shoplake_load_state SET delta_version = {first_version} WHERE lake_table = 'curated.order_lines'",
        s.name
    )))
    .execute(&mut s.conn)
    .await
    .unwrap();
    let opts = LoadOptions {
        url: URL.into(),
        schema: s.name.clone(),
        tables: vec![&ORDER_LINES],
        log_reads_max: 0,
        ..Default::default()
    };
    let r = warehouse::load_postgres(&fx.lake, &opts, &Quiet)
        .await
        .unwrap();
    let e = entry(&r, &ORDER_LINES);
    assert_eq!(
        (&e.action, &e.partitions),
        (&Action::Partitions, &vec![changed.clone()]),
        "{e:#?}"
    );
    assert_same(&fx, &mut s.conn, &s.name, &ORDER_LINES).await;
}

/// Every Arrow type the encoder knows, with nulls and edge values, written
/// with binary COPY and read back as PostgreSQL prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_round_trips_every_type_through_postgresql() {
    let Some(mut s) = fresh_schema("types").await else {
        return;
    };
    let mut items = ListBuilder::new(StructBuilder::from_fields(
        vec![
            Field::new("product_id", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(18, 2), true),
        ],
        0,
    ));
    {
        let st = items.values();
        st.field_builder::<StringBuilder>(0)
            .unwrap()
            .append_value("P1 \"x\"");
        st.field_builder::<arrow::array::Decimal128Builder>(1)
            .unwrap()
            .append_value(1999);
        st.append(true);
    }
    items.append(true);
    items.append(false);
    items.append(true);
    let items = items.finish();
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "b",
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        ),
        (
            "i8",
            Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
        ),
        (
            "i16",
            Arc::new(Int16Array::from(vec![Some(-32768), None, Some(7)])),
        ),
        (
            "i32",
            Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(i32::MAX)])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(i64::MAX)])),
        ),
        (
            "u32",
            Arc::new(UInt32Array::from(vec![Some(u32::MAX), None, Some(0)])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(1.5),
                None,
                Some(f32::NEG_INFINITY),
            ])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![Some(-0.1), Some(f64::NAN), None])),
        ),
        (
            "money",
            Arc::new(
                Decimal128Array::from(vec![Some(-123_456_789), Some(5), Some(0)])
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
        ),
        (
            "wide",
            Arc::new(
                Decimal128Array::from(vec![Some(10i128.pow(38) - 1), None, Some(-10_000_000_001)])
                    .with_precision_and_scale(38, 10)
                    .unwrap(),
            ),
        ),
        (
            "whole",
            Arc::new(
                Decimal128Array::from(vec![Some(100_000_000), Some(-1), None])
                    .with_precision_and_scale(12, 0)
                    .unwrap(),
            ),
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("é 🛒 'q'"),
                Some("a\0b"),
                None,
            ])),
        ),
        (
            "ls",
            Arc::new(LargeStringArray::from(vec![None, Some(""), Some("x")])),
        ),
        (
            "vs",
            Arc::new(StringViewArray::from(vec![
                Some("a view longer than twelve bytes"),
                None,
                Some("v"),
            ])),
        ),
        (
            "bin",
            Arc::new(BinaryArray::from(vec![
                Some(&[0u8, 255][..]),
                None,
                Some(&b""[..]),
            ])),
        ),
        (
            "d",
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(day("2025-01-22")),
                None,
            ])),
        ),
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(-1), Some(1_737_504_000_123_456), None])
                    .with_timezone("UTC"),
            ),
        ),
        (
            "ts_ntz",
            Arc::new(TimestampNanosecondArray::from(vec![
                None,
                Some(946_684_800_000_001_999),
                Some(0),
            ])),
        ),
        ("items", Arc::new(items)),
        (
            "dict",
            Arc::new(DictionaryArray::<Int32Type>::from_iter([
                Some("web"),
                None,
                Some("web"),
            ])),
        ),
    ];
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        cols.iter().map(|(_, a)| a.clone()).collect(),
    )
    .unwrap();
    let mut enc = CopyEncoder::new(schema.fields()).unwrap();
    let ddl: Vec<String> = schema
        .fields()
        .iter()
        .zip(enc.types())
        .map(|(f, t)| format!("{} {}", f.name(), t.ddl()))
        .collect();
    assert_eq!(enc.types()[0], PgType::Bool);
    let table = format!("{}.t", s.name);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA {}; CREATE TABLE {table} (n serial, {})",
        s.name,
        ddl.join(", ")
    )))
    .execute(&mut s.conn)
    .await
    .unwrap();
    let mut bytes = HEADER.to_vec();
    // two batches: rows continue across them
    enc.encode(&batch, &mut bytes).unwrap();
    enc.encode(&batch.slice(0, 1), &mut bytes).unwrap();
    bytes.extend_from_slice(TRAILER);
    assert_eq!(enc.nul_dropped(), 1);
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let mut copy = s
        .conn
        .copy_in_raw(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            names.join(", ")
        ))
        .await
        .unwrap();
    // in pieces that split rows and values
    for piece in bytes.chunks(7) {
        copy.send(piece).await.unwrap();
    }
    assert_eq!(copy.finish().await.unwrap(), 4);
    sqlx::raw_sql(AssertSqlSafe("SET TIME ZONE 'UTC'".to_string()))
        .execute(&mut s.conn)
        .await
        .unwrap();
    let got = pg_text(
        &mut s.conn,
        &format!(
            "SELECT {} FROM {table} ORDER BY n",
            names
                .iter()
                .map(|n| format!("{n}::text"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .await;
    let o = |s: &str| Some(s.to_string());
    let want: Vec<Vec<Option<String>>> = vec![
        vec![
            o("true"),
            o("-128"),
            o("-32768"),
            o("-2147483648"),
            o("-9223372036854775808"),
            o("4294967295"),
            o("1.5"),
            o("-0.1"),
            o("-1234567.89"),
            o("9999999999999999999999999999.9999999999"),
            o("100000000"),
            o("é 🛒 'q'"),
            None,
            o("a view longer than twelve bytes"),
            o("\\x00ff"),
            o("1970-01-01"),
            o("1969-12-31 23:59:59.999999+00"),
            None,
            o(r#"[{"price": 19.99, "product_id": "P1 \"x\""}]"#),
            o("web"),
        ],
        vec![
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            o("NaN"),
            o("0.05"),
            None,
            o("-1"),
            o("ab"),
            o(""),
            None,
            None,
            o("2025-01-22"),
            o("2025-01-22 00:00:00.123456+00"),
            o("2000-01-01 00:00:00.000001"),
            None,
            None,
        ],
        vec![
            o("false"),
            o("127"),
            o("7"),
            o("2147483647"),
            o("9223372036854775807"),
            o("0"),
            o("-Infinity"),
            None,
            o("0.00"),
            o("-1.0000000001"),
            None,
            None,
            o("x"),
            o("v"),
            o("\\x"),
            None,
            None,
            o("1970-01-01 00:00:00"),
            o("[]"),
            o("web"),
        ],
    ];
    for (i, w) in want.iter().enumerate() {
        for (j, name) in names.iter().enumerate() {
            assert_eq!(got[i][j], w[j], "row {i}, column {name}");
        }
    }
    assert_eq!(got[3], got[0], "the second batch's row");
}
