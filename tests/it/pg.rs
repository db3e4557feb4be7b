//! The PostgreSQL wire-protocol endpoint, through real clients: the Rust
//! driver tokio-postgres (simple and extended protocol), `psql` itself, and
//! Python's psycopg. Each sees the same numbers as shoplake's own SQL, logs
//! in as a shoplake user (or with an API token), and cannot change anything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use shoplake_core::config::Config;
use shoplake_jobs::accounts::Role;
use shoplake_jobs::pipeline::PipelineOptions;
use shoplake_jobs::store::Store;
use shoplake_server::auth;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::collect::Server;
use crate::common::{Fixture, query, small_config};

/// What Grafana's PostgreSQL data source sends to list tables.
const GRAFANA_TABLES: &str = r#"SELECT
        CASE WHEN
              quote_ident(table_schema) IN (
              SELECT
                CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
              FROM
                generate_series(
                  array_lower(string_to_array(current_setting('search_path'),','),1),
                  array_upper(string_to_array(current_setting('search_path'),','),1)
                ) as i,
                string_to_array(current_setting('search_path'),',') s
              )
          THEN quote_ident(table_name)
          ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
        END AS "table"
        FROM information_schema.tables
        WHERE quote_ident(table_schema) NOT IN ('information_schema',
                                 'pg_catalog',
                                 '_timescaledb_cache',
                                 '_timescaledb_catalog',
                                 '_timescaledb_internal',
                                 '_timescaledb_config',
                                 'timescaledb_information',
                                 'timescaledb_experimental')
        ORDER BY 1"#;

const ANALYST_PW: &str = "analyst-password-1";
const VIEWER_PW: &str = "viewer-password-1";

fn conninfo(addr: SocketAddr, user: &str, password: &str, db: &str) -> String {
    format!(
        "host={} port={} user={user} password={password} dbname={db} connect_timeout=10",
        addr.ip(),
        addr.port()
    )
}

async fn connect(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    connect_to(addr, user, password, "shoplake").await
}

async fn connect_to(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) =
        tokio_postgres::connect(&conninfo(addr, user, password, db), NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The SQLSTATE of a failed call.
fn code<T: std::fmt::Debug>(r: Result<T, tokio_postgres::Error>) -> String {
    let e = r.expect_err("should have failed");
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| panic!("no SQLSTATE in {e:?}"))
}

/// Every row of a simple query, as text.
async fn simple_rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The first cell of every row of a simple query, as text.
async fn simple_column(c: &Client, sql: &str) -> Vec<Option<String>> {
    simple_rows(c, sql)
        .await
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect()
}

/// The test virtualenv's Python (scripts/setup-test-env makes it), or None
/// locally when it is missing; in CI a missing one fails the test.
pub(crate) fn test_python() -> Option<PathBuf> {
    let py = std::env::var_os("SHOPLAKE_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/shoplake-test-venv/bin/python"))
        })
        .filter(|p| p.exists());
    if py.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the test virtualenv (~/.cache/shoplake-test-venv) is missing: scripts/setup-test-env makes it"
        );
        eprintln!("SKIPPED locally: no test virtualenv (run scripts/setup-test-env)");
    }
    py
}

/// Metadata calls and a prepared statement through pgjdbc (Debian's
/// libpostgresql-jdbc-java, run as a single-file Java program).
const JDBC: &str = r#"
import java.sql.*;
public class Jdbc {
  public static void main(String[] a) throws Exception {
    try (Connection c = DriverManager.getConnection(a[0], a[1], a[2])) {
      DatabaseMetaData md = c.getMetaData();
      System.out.println("product " + md.getDatabaseProductName());
      try (ResultSet rs = md.getSchemas()) {
        while (rs.next()) System.out.println("schema " + rs.getString("TABLE_SCHEM"));
      }
      try (ResultSet rs = md.getTables(null, "curated", "%", new String[]{"TABLE", "VIEW"})) {
        while (rs.next()) System.out.println("table " + rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
      }
      try (ResultSet rs = md.getColumns(null, "curated", "daily_kpis", "%")) {
        while (rs.next()) System.out.println("column " + rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME"));
      }
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM curated.daily_kpis WHERE orders >= ?")) {
        ps.setLong(1, Long.parseLong(a[3]));
        try (ResultSet rs = ps.executeQuery()) { rs.next(); System.out.println("count " + rs.getLong(1)); }
      }
    }
  }
}
"#;

const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Runs [`JDBC`]; its output lines. Without Java or the driver: fails in CI
/// (scripts/setup-test-env installs them), an empty list locally.
fn run_jdbc(pg: SocketAddr, min_orders: i64) -> Vec<String> {
    let have_java = Command::new("java").arg("-version").output().is_ok();
    if !have_java || !std::path::Path::new(JDBC_JAR).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "java or {JDBC_JAR} missing: scripts/setup-test-env installs them"
        );
        eprintln!("SKIPPED locally: java or {JDBC_JAR} missing");
        return vec!["product PostgreSQL".into()];
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("Jdbc.java");
    std::fs::write(&src, JDBC).unwrap();
    let out = Command::new("java")
        .args(["-cp", JDBC_JAR])
        .arg(&src)
        .arg(format!("jdbc:postgresql://{pg}/shoplake"))
        .args(["ana", ANALYST_PW, &min_orders.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgjdbc: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_clients_query_the_lake_read_only_as_shoplake_users() {
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    let store = Store::open(&fx.lake.state_dir()).unwrap();
    store
        .add_user(
            "ana",
            Role::Analyst,
            &auth::hash_password(ANALYST_PW).unwrap(),
        )
        .unwrap();
    store
        .add_user(
            "vic",
            Role::Viewer,
            &auth::hash_password(VIEWER_PW).unwrap(),
        )
        .unwrap();
    let (token, _) = auth::create_token(&store, "grafana", Role::Analyst, None).unwrap();
    let (viewer_token, _) = auth::create_token(&store, "wall", Role::Viewer, None).unwrap();
    let mut cfg = Config::default();
    cfg.query.timeout_secs = 5;
    let s = Server::start_with_pg(fx.dir.path(), cfg).await;
    let pg = s.pg_addr.unwrap();

    // what shoplake's own SQL says
    let engine = fx.engine();
    let want = query(
        &engine,
        "SELECT count(*) AS days, sum(orders) AS orders, CAST(sum(gross_revenue) AS VARCHAR) AS revenue FROM curated.daily_kpis",
    )
    .await;
    let (days, orders) = (want.row(0).i64("days"), want.row(0).i64("orders"));
    let revenue = want.row(0).str("revenue").to_string();
    assert!(days > 10 && orders > 100, "{}", want.dump(3));

    // --- logins: who gets in, and what the others are told
    let c = connect(pg, "ana", ANALYST_PW)
        .await
        .expect("analyst logs in");
    assert_eq!(
        code(connect(pg, "ana", "wrong-password").await),
        SqlState::INVALID_PASSWORD.code()
    );
    assert_eq!(
        code(connect(pg, "nobody", ANALYST_PW).await),
        SqlState::INVALID_PASSWORD.code(),
        "an unknown user is told the same as a wrong password"
    );
    let e = connect(pg, "vic", VIEWER_PW)
        .await
        .expect_err("a viewer is refused");
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
    let why = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(why.contains("needs the analyst or admin role"), "{why}");
    assert_eq!(
        code(connect_to(pg, "ana", ANALYST_PW, "postgres").await),
        SqlState::INVALID_CATALOG_NAME.code()
    );
    let t = connect(pg, "grafana", &token)
        .await
        .expect("an analyst API token logs in");
    assert_eq!(
        simple_column(&t, "SELECT count(*) FROM curated.daily_kpis").await,
        vec![Some(days.to_string())]
    );
    assert_eq!(
        code(connect(pg, "wall", &viewer_token).await),
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code()
    );
    store.revoke_token("grafana").unwrap();
    assert_eq!(
        code(connect(pg, "grafana", &token).await),
        SqlState::INVALID_PASSWORD.code(),
        "a revoked token no longer logs in"
    );

    // --- simple protocol: the same numbers as shoplake's SQL
    let rows = simple_rows(
        &c,
        "SELECT count(*), sum(orders), CAST(sum(gross_revenue) AS VARCHAR) FROM curated.daily_kpis",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            Some(days.to_string()),
            Some(orders.to_string()),
            Some(revenue.clone())
        ]]
    );
    // the default schema is curated
    assert_eq!(
        simple_column(&c, "SELECT count(*) FROM daily_kpis").await,
        vec![Some(days.to_string())]
    );

    // --- extended protocol: prepared statements with typed parameters and
    // binary results
    let median = query(
        &engine,
        "SELECT orders FROM curated.daily_kpis ORDER BY orders LIMIT 1 OFFSET 5",
    )
    .await
    .row(0)
    .i64("orders");
    let want_busy = query(
        &engine,
        &format!("SELECT count(*) AS n FROM curated.daily_kpis WHERE orders >= {median}"),
    )
    .await
    .row(0)
    .i64("n");
    let stmt = c
        .prepare("SELECT CAST(date AS VARCHAR) AS day, orders FROM curated.daily_kpis WHERE orders >= $1 ORDER BY date")
        .await
        .unwrap();
    let busy = c.query(&stmt, &[&median]).await.unwrap();
    assert_eq!(busy.len() as i64, want_busy);
    assert!(busy.iter().all(|r| r.get::<_, i64>("orders") >= median));
    let first: String = busy[0].get("day");
    assert_eq!(first.len(), 10, "{first}");

    // --- read-only, whatever the protocol
    for sql in [
        "DROP TABLE curated.daily_kpis",
        "CREATE TABLE t AS SELECT 1 AS a",
        "INSERT INTO curated.daily_kpis SELECT * FROM curated.daily_kpis",
        "DELETE FROM curated.daily_kpis",
        "COPY (SELECT 1) TO '/tmp/shoplake-pg-leak.csv'",
    ] {
        assert_eq!(
            code(c.batch_execute(sql).await),
            SqlState::READ_ONLY_SQL_TRANSACTION.code(),
            "{sql}"
        );
        assert_eq!(
            code(c.prepare(sql).await),
            SqlState::READ_ONLY_SQL_TRANSACTION.code(),
            "{sql} (extended)"
        );
    }
    assert!(!std::path::Path::new("/tmp/shoplake-pg-leak.csv").exists());
    // DataFusion's own DDL is not even PostgreSQL: a syntax error
    assert_eq!(
        code(
            c.batch_execute("CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'")
                .await
        ),
        SqlState::SYNTAX_ERROR.code()
    );
    assert_eq!(
        code(c.batch_execute("SELECT * FROM curated.no_such_table").await),
        SqlState::UNDEFINED_TABLE.code()
    );
    assert_eq!(
        code(
            c.batch_execute("SET datafusion.execution.target_partitions = 1000")
                .await
        ),
        SqlState::INSUFFICIENT_PRIVILEGE.code()
    );
    // what drivers send at connect time is acknowledged
    c.batch_execute("SET extra_float_digits = 3; SET application_name = 'it'; SET client_min_messages = warning")
        .await
        .unwrap();
    // nothing changed
    assert_eq!(
        simple_column(&c, "SELECT count(*) FROM curated.daily_kpis").await,
        vec![Some(days.to_string())]
    );

    // --- the catalog, as BI tools list it
    let tables = simple_column(
        &c,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'curated' ORDER BY table_name",
    )
    .await;
    assert!(tables.contains(&Some("daily_kpis".into())), "{tables:?}");
    let pg_class = simple_column(
        &c,
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'processed' AND c.relkind = 'r' ORDER BY 1",
    )
    .await;
    assert!(pg_class.contains(&Some("events".into())), "{pg_class:?}");
    let columns = simple_column(
        &c,
        "SELECT column_name FROM information_schema.columns \
         WHERE table_schema = 'curated' AND table_name = 'daily_kpis' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(columns.first(), Some(&Some("date".into())), "{columns:?}");
    assert!(columns.contains(&Some("net_revenue".into())));
    assert_eq!(
        simple_column(&c, "SELECT current_database()").await,
        vec![Some("shoplake".into())]
    );

    // Grafana's table picker: the query its PostgreSQL data source sends;
    // and the settings tools read
    assert_eq!(
        simple_column(&c, "SELECT current_setting('search_path')").await,
        vec![Some("curated".into())]
    );
    assert_eq!(
        code(
            c.simple_query("SELECT current_setting('no_such_setting')")
                .await
        ),
        SqlState::UNDEFINED_OBJECT.code()
    );
    let picked = simple_column(&c, GRAFANA_TABLES).await;
    assert!(
        picked
            .iter()
            .flatten()
            .any(|t| t == "daily_kpis" || t == "curated.daily_kpis"),
        "{picked:?}"
    );
    assert!(
        picked.iter().flatten().any(|t| t.ends_with("events")),
        "{picked:?}"
    );

    // --- psql itself: \dt lists the tables, a query answers
    let psql = |args: &[&str]| {
        let out = Command::new("psql")
            .arg(conninfo(pg, "ana", ANALYST_PW, "shoplake"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .output()
            .expect("psql is installed (scripts/setup-test-env)");
        assert!(
            out.status.success(),
            "psql {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dt = psql(&["-c", r"\dt curated.*"]);
    assert!(dt.contains("curated|daily_kpis|table"), "{dt}");
    let n = psql(&["-c", "SELECT count(*) FROM curated.daily_kpis"]);
    assert_eq!(n.trim(), days.to_string());

    // --- Python's psycopg (what notebooks, Superset and dbt use)
    if let Some(py) = test_python() {
        let script = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    cur = conn.execute(
        "SELECT count(*), sum(orders) FROM curated.daily_kpis WHERE orders >= %s", (int(sys.argv[2]),))
    n, total = cur.fetchone()
    print(n, total)
"#;
        let got = crate::interop::ok(
            Command::new(py)
                .args(["-c", script, &conninfo(pg, "ana", ANALYST_PW, "shoplake")])
                .arg(median.to_string()),
        );
        let want_sum = query(
            &engine,
            &format!("SELECT sum(orders) AS s FROM curated.daily_kpis WHERE orders >= {median}"),
        )
        .await
        .row(0)
        .i64("s");
        assert_eq!(got.trim(), format!("{want_busy} {want_sum}"));
    }

    // --- pgjdbc, the driver of Metabase, Tableau and DBeaver: the metadata
    // calls their schema browsers make, and a prepared statement
    let jdbc = run_jdbc(pg, median);
    assert!(jdbc.contains(&"product PostgreSQL".to_string()), "{jdbc:?}");
    for line in [
        "schema curated",
        "schema processed",
        "table curated.daily_kpis",
        "table curated.customers",
        "column date date",
        "column net_revenue numeric",
        "column orders int8",
    ] {
        assert!(jdbc.iter().any(|l| l == line), "no {line:?} in {jdbc:?}");
    }
    assert!(jdbc.contains(&format!("count {want_busy}")), "{jdbc:?}");

    // --- a query past query.timeout_secs is cancelled; the endpoint goes on
    let t0 = Instant::now();
    let slow = c
        .simple_query(
            "SELECT count(*) FROM generate_series(1, 1000000000000) AS t(x) WHERE x % 7 = 3",
        )
        .await;
    assert_eq!(code(slow), SqlState::QUERY_CANCELED.code());
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());

    // --- a client's cancel request (psql's Ctrl-C) stops a running query,
    // by the simple and by the extended protocol, well before the timeout
    const ENDLESS: &str =
        "SELECT count(*) FROM generate_series(1, 1000000000000) AS t(x) WHERE x % 7 = 3";
    for extended in [false, true] {
        let token = c.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            token.cancel_query(NoTls).await
        });
        let t0 = Instant::now();
        let e = match extended {
            false => c.simple_query(ENDLESS).await.map(drop),
            true => c.query(ENDLESS, &[]).await.map(drop),
        }
        .expect_err("cancelled");
        canceller.await.unwrap().unwrap();
        assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
        let why = e.as_db_error().map(|d| d.message().to_string());
        assert!(
            why.as_deref().is_some_and(|m| m.contains("user request")),
            "extended {extended}: not the cancel request but {e:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    }

    // --- a SET whose parse alone would take hours is refused before it is
    // parsed, by the simple and by the extended protocol
    let deep = format!("SET application_name = x{}", "y.c[h%m(p-r.c".repeat(16));
    assert_eq!(
        code(c.simple_query(&deep).await),
        SqlState::STATEMENT_TOO_COMPLEX.code()
    );
    assert_eq!(
        code(c.query(&deep, &[]).await),
        SqlState::STATEMENT_TOO_COMPLEX.code()
    );
    assert_eq!(
        simple_column(&c, "SELECT count(*) FROM curated.daily_kpis").await,
        vec![Some(days.to_string())]
    );
    s.stop().await;
}

/// With `server.tls_cert` and `server.tls_key`, the HTTP port speaks HTTPS
/// only (curl checks the certificate) and the PostgreSQL port takes logins
/// over TLS only: `psql` with `sslmode=require` queries, without TLS it is
/// refused before it sends the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_the_http_and_postgres_ports() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let data = dir.path().join("data");
    let store = Store::open(&data.join("state")).unwrap();
    store
        .add_user(
            "ana",
            Role::Analyst,
            &auth::hash_password(ANALYST_PW).unwrap(),
        )
        .unwrap();
    let mut cfg = Config::default();
    cfg.server.tls_cert = Some(cert.clone());
    cfg.server.tls_key = Some(key.clone());
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pg_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, pg) = (
        http.local_addr().unwrap(),
        pg_listener.local_addr().unwrap(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = shoplake_server::ServeOptions {
        data_dir: data.clone(),
        config: cfg,
        write_keys: vec![],
    };
    let listeners = shoplake_server::Listeners {
        http,
        postgres: Some(pg_listener),
    };
    let task = tokio::spawn(shoplake_server::serve_on(opts, listeners, async move {
        let _ = rx.await;
    }));

    let curl = |path: &str| {
        let out = Command::new("curl")
            .args([
                "--silent",
                "--max-time",
                "10",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&cert)
            .arg(format!("https://127.0.0.1:{}{path}", addr.port()))
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let t0 = Instant::now();
    while curl("/readyz") != "200" {
        assert!(t0.elapsed() < Duration::from_secs(30), "no HTTPS answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(curl("/healthz"), "200");
    let plain = crate::collect::http(addr, "GET", "/healthz", &[], b"");
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "plain HTTP is not served next to HTTPS"
    );

    let psql = |sslmode: &str| {
        Command::new("psql")
            .arg(format!(
                "{} sslmode={sslmode}",
                conninfo(pg, "ana", ANALYST_PW, "shoplake")
            ))
            .args(["-X", "-A", "-t", "-c", "SELECT 40 + 2"])
            .output()
            .expect("psql is installed (scripts/setup-test-env)")
    };
    let out = psql("require");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let out = psql("disable");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS only"), "{err}");
    assert_eq!(
        code(connect(pg, "ana", ANALYST_PW).await),
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code()
    );

    let _ = tx.send(());
    task.await.unwrap().expect("server stopped cleanly");
}
