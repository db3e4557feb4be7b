//! The lake is open: engines that are not shoplake read its Delta tables and
//! Parquet files and find the same rows and sums; `shoplake export` writes
//! files they read too, locally and to S3 (a local moto server).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoplake_jobs::pipeline::PipelineOptions;

use crate::common::{Fixture, query, small_config};
use crate::pg::test_python;

/// Tables checked, with the sums compared (integer and money columns).
const CHECKED: &[(&str, &[&str])] = &[
    ("processed.events", &[]),
    ("processed.transactions", &["quantity", "price"]),
    (
        "curated.daily_kpis",
        &["orders", "gross_revenue", "net_revenue"],
    ),
    ("curated.order_lines", &["quantity", "line_total"]),
];

/// For each table: row count, distinct days, and the sums, as text; read by
/// deltalake (the Delta log), DuckDB and pyarrow (plain Parquet readers over
/// the files the log lists, with the date taken from the Hive-style path).
const READERS: &str = r#"
import json, sys, duckdb, pyarrow.dataset as ds, pyarrow.compute as pc
from deltalake import DeltaTable
lake, tables = sys.argv[1], json.loads(sys.argv[2])
out = {}
def fmt(v):
    return "0" if v is None else str(v)
for name, cols in tables.items():
    root = lake + "/" + name.replace(".", "/")
    dt = DeltaTable(root)
    t = dt.to_pyarrow_table()
    files = dt.file_uris()
    r = {"deltalake": [t.num_rows, len(pc.unique(t["date"]))] + [fmt(pc.sum(t[c]).as_py()) for c in cols]}
    sums = "".join(f", CAST(sum({c}) AS VARCHAR)" for c in cols)
    con = duckdb.connect()
    row = con.execute(
        f"SELECT count(*), count(DISTINCT date){sums} FROM read_parquet(?, hive_partitioning = true)",
        [files]).fetchone()
    r["duckdb"] = [row[0], row[1]] + [fmt(v) for v in row[2:]]
    parts = "date" in dt.metadata().partition_columns
    d = ds.dataset(files, format="parquet", partitioning="hive" if parts else None,
                   partition_base_dir=root if parts else None)
    p = d.to_table()
    r["pyarrow"] = [p.num_rows, len(pc.unique(p["date"]))] + [fmt(pc.sum(p[c]).as_py()) for c in cols]
    out[name] = r
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltalake_duckdb_and_plain_parquet_readers_see_the_same_lake() {
    let Some(py) = test_python() else { return };
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    // a second run rewrites partitions: readers must follow the Delta log,
    // not list the folder
    fx.run(&PipelineOptions::default()).await;
    let engine = fx.engine();
    let mut want = BTreeMap::new();
    for (table, cols) in CHECKED {
        let sums: String = cols
            .iter()
            .map(|c| format!(", CAST(sum({c}) AS VARCHAR) AS s_{c}"))
            .collect();
        let r = query(
            &engine,
            &format!("SELECT count(*) AS n, count(DISTINCT date) AS days{sums} FROM {table}"),
        )
        .await;
        let row = r.row(0);
        let mut v = vec![
            serde_json::json!(row.i64("n")),
            serde_json::json!(row.i64("days")),
        ];
        for c in *cols {
            v.push(serde_json::json!(row.str(&format!("s_{c}"))));
        }
        assert!(row.i64("n") > 0, "{table} is empty");
        want.insert(table.to_string(), v);
    }
    let tables: BTreeMap<&str, &[&str]> = CHECKED.iter().copied().collect();
    let out = ok(Command::new(&py)
        .args(["-c", READERS])
        .arg(fx.lake.root())
        .arg(serde_json::to_string(&tables).unwrap()));
    let got: BTreeMap<String, BTreeMap<String, Vec<serde_json::Value>>> =
        serde_json::from_str(&out).unwrap();
    for (table, readers) in &got {
        for (reader, v) in readers {
            assert_eq!(
                v, &want[table],
                "{reader} reads {table} differently from shoplake (count, days, sums)"
            );
        }
    }
    assert_eq!(got.len(), CHECKED.len());
}

/// Reads an exported file back: rows and, for Parquet, the sum of `orders`.
const READ_BACK: &str = r#"
import csv, json, sys, pyarrow.parquet as pq, pyarrow.compute as pc
path, fmt = sys.argv[1], sys.argv[2]
if fmt == "parquet":
    t = pq.read_table(path)
    print(json.dumps({"rows": t.num_rows, "orders": pc.sum(t["orders"]).as_py(), "first": str(t["date"][0])}))
elif fmt == "csv":
    rows = list(csv.DictReader(open(path)))
    print(json.dumps({"rows": len(rows), "orders": sum(int(r["orders"]) for r in rows), "first": rows[0]["date"]}))
else:
    rows = [json.loads(l) for l in open(path) if l.strip()]
    print(json.dumps({"rows": len(rows), "orders": sum(int(r["orders"]) for r in rows), "first": rows[0]["date"]}))
"#;

const S3: &str = r#"
import os, sys, io, json, boto3, pyarrow.parquet as pq
endpoint, op = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
if op == "create":
    s3.create_bucket(Bucket="lake-exports")
else:
    body = s3.get_object(Bucket="lake-exports", Key=sys.argv[3])["Body"].read()
    t = pq.read_table(io.BytesIO(body))
    print(json.dumps({"rows": t.num_rows}), flush=True)
# boto3's and pyarrow's threads can abort the interpreter's shutdown
os._exit(0)
"#;

fn shoplake(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shoplake"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOPLAKE_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("CI", "true").arg("--data").arg(data);
    c
}

/// Runs `c`; its standard output, or a panic with both outputs.
pub(crate) fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?}\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn py_json(py: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = ok(Command::new(py).args(["-c", script]).args(args));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"))
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_parquet_csv_and_jsonl_locally_and_to_s3() {
    let Some(py) = test_python() else { return };
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    let data = fx.dir.path();
    let r = query(
        &fx.engine(),
        "SELECT count(*) AS n, sum(orders) AS o, CAST(min(date) AS VARCHAR) AS first, \
         CAST(min(date) + INTERVAL '3 days' AS VARCHAR) AS fourth FROM curated.daily_kpis",
    )
    .await;
    let (n, orders) = (r.row(0).i64("n"), r.row(0).i64("o"));
    let (first, fourth) = (
        r.row(0).str("first").to_string(),
        r.row(0).str("fourth").to_string(),
    );
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("exports");

    // every format, read back by another reader
    for fmt in ["parquet", "csv", "jsonl"] {
        let said = ok(shoplake(data).args([
            "export",
            "daily_kpis",
            "--format",
            fmt,
            "--to",
            dir.to_str().unwrap(),
        ]));
        let file = dir.join(format!("curated.daily_kpis.{fmt}"));
        assert!(said.contains(&format!("{n} rows")), "{said}");
        let got = py_json(&py, READ_BACK, &[file.to_str().unwrap(), fmt]);
        assert_eq!(got["rows"], n, "{fmt}");
        assert_eq!(got["orders"], orders, "{fmt}");
        assert_eq!(got["first"], first.as_str(), "{fmt}");
    }
    // a date range, to a file path
    let file = out.path().join("four-days.parquet");
    ok(shoplake(data).args([
        "export",
        "curated.daily_kpis",
        "--from",
        &first,
        "--until",
        &fourth,
        "--to",
        file.to_str().unwrap(),
    ]));
    assert_eq!(
        py_json(&py, READ_BACK, &[file.to_str().unwrap(), "parquet"])["rows"],
        4
    );
    // mistakes are explained
    let o = shoplake(data)
        .args(["export", "no_such_table", "--to", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("available tables"));

    // to S3: a local moto server
    let (_moto, endpoint) = start_moto(&py);
    py_json_unit(&py, &[&endpoint, "create"]);
    let said = ok(shoplake(data)
        .env("AWS_ENDPOINT", &endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .args([
            "export",
            "curated.daily_kpis",
            "--to",
            "s3://lake-exports/shoplake/",
        ]));
    assert!(
        said.contains("s3://lake-exports/shoplake/curated.daily_kpis.parquet"),
        "{said}"
    );
    let got = py_json(
        &py,
        S3,
        &[&endpoint, "get", "shoplake/curated.daily_kpis.parquet"],
    );
    assert_eq!(got["rows"], n);
}

/// A moto server (S3, Glue, ... on loopback) and its endpoint.
fn start_moto(py: &Path) -> (Moto, String) {
    let moto_bin = py.with_file_name("moto_server");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moto = Moto(
        Command::new(&moto_bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", moto_bin.display())),
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(30), "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (moto, format!("http://127.0.0.1:{port}"))
}

const GLUE: &str = r#"
import os, sys, json, boto3
glue = boto3.client("glue", endpoint_url=sys.argv[1], region_name="us-east-1",
                    aws_access_key_id="test", aws_secret_access_key="test")
out = {}
for db in ("shoplake_curated", "shoplake_processed"):
    for t in glue.get_tables(DatabaseName=db)["TableList"]:
        sd = t["StorageDescriptor"]
        out[db + "." + t["Name"]] = {
            "location": sd["Location"],
            "table_type": t.get("Parameters", {}).get("table_type"),
            "columns": [c["Name"] + " " + c["Type"] for c in sd["Columns"]],
        }
print(json.dumps(out), flush=True)
os._exit(0)
"#;

#[test]
fn glue_registration_creates_then_updates_a_table_per_delta_table() {
    use shoplake_core::schema::{Storage, TABLES, Zone};
    let Some(py) = test_python() else { return };
    let (_moto, endpoint) = start_moto(&py);
    let data = tempfile::tempdir().unwrap();
    let glue = |expect: &str| {
        let said = ok(shoplake(data.path())
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .args(["catalog", "glue", "--location", "s3://acme-lake/shoplake/"]));
        assert!(
            said.contains(&format!(
                "{expect} shoplake_curated.daily_kpis -> s3://acme-lake/shoplake/curated/daily_kpis"
            )),
            "{said}"
        );
    };
    glue("created");
    glue("updated");
    let got: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(py_json(&py, GLUE, &[&endpoint])).unwrap();
    let delta: Vec<_> = TABLES
        .iter()
        .filter(|t| {
            matches!(t.zone, Zone::Curated | Zone::Processed) && t.storage == Storage::Delta
        })
        .collect();
    assert_eq!(got.len(), delta.len(), "{:?}", got.keys());
    for t in delta {
        let g = &got[&format!("shoplake_{}.{}", t.zone.name(), t.name)];
        assert_eq!(
            g["location"],
            format!("s3://acme-lake/shoplake/{}/{}", t.zone.name(), t.name)
        );
        assert_eq!(g["table_type"], "DELTA");
        assert_eq!(g["columns"].as_array().unwrap().len(), t.columns.len());
    }
    let kpis = &got["shoplake_curated.daily_kpis"]["columns"];
    assert_eq!(kpis[0], "date date");
    assert!(
        kpis.as_array()
            .unwrap()
            .contains(&serde_json::json!("net_revenue decimal(18,2)"))
    );
}

fn py_json_unit(py: &PathBuf, args: &[&str]) {
    ok(Command::new(py).args(["-c", S3]).args(args));
}
