//! The `shoplake` binary as a user runs it: exit codes, messages, formats.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use shoplake_core::schema::{DAILY_KPIS, Storage, TABLES};
use shoplake_query::reports::BUILTIN;

use crate::common::{START, files_under};

/// `shoplake --data <data> …` with `CI=true`, no `SHOPLAKE_*` variables from
/// the outside, run from `data`'s parent (so no stray `./shoplake.toml`).
fn shoplake(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shoplake"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOPLAKE_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.env("CI", "true")
        .current_dir(data.parent().unwrap())
        .arg("--data")
        .arg(data);
    c
}

/// What a run printed.
struct Out {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    what: String,
}

impl Out {
    fn both(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics unless the command succeeded.
    fn success(self) -> Out {
        assert!(
            self.ok,
            "`{}` failed ({:?})\n-- stdout:\n{}\n-- stderr:\n{}",
            self.what, self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed.
    fn failure(self) -> Out {
        assert!(
            !self.ok && self.code.is_some(),
            "`{}` should fail with an exit code, got {:?}\n-- stdout:\n{}\n-- stderr:\n{}",
            self.what,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

fn run(data: &Path, args: &[&str]) -> Out {
    run_cmd(shoplake(data).args(args), args)
}

fn run_cmd(c: &mut Command, args: &[&str]) -> Out {
    let o = c.output().expect("run shoplake");
    Out {
        ok: o.status.success(),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        what: format!("shoplake {}", args.join(" ")),
    }
}

const GENERATE: &[&str] = &[
    "generate",
    "--customers",
    "200",
    "--products",
    "80",
    "--transactions",
    "1500",
    "--clickstream",
    "10000",
    "--reviews",
    "100",
    "--days",
    "16",
    "--start-date",
    START,
];

/// A data directory with generated data, processed by `pipeline run`.
fn populated() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut args = GENERATE.to_vec();
    args.extend(["--seed", "7"]);
    run(&data, &args).success();
    run(&data, &["pipeline", "run"]).success();
    (tmp, data)
}

/// Data rows of an aligned table: lines starting with `|`, minus the header.
fn table_rows(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .count()
        .saturating_sub(1)
}

fn csv_records(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn json_rows(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    v.as_array()
        .unwrap_or_else(|| panic!("not a JSON array:\n{text}"))
        .iter()
        .map(|r| r.as_object().expect("an object per row").clone())
        .collect()
}

#[test]
fn generate_twice_with_the_same_seed_writes_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_into = |name: &str, seed: &str| {
        let data = tmp.path().join(name);
        let mut args = GENERATE.to_vec();
        args.extend(["--seed", seed]);
        run(&data, &args).success();
        files_under(&data.join("lake").join("raw"))
    };
    let a = gen_into("a", "11");
    let b = gen_into("b", "11");
    assert!(a.len() > 40, "files per source and day: {:?}", a.keys());
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (k, v) in &a {
        assert!(
            v == &b[k],
            "{k} differs between two runs with the same seed"
        );
    }
    let c = gen_into("c", "12");
    assert!(
        a.iter().any(|(k, v)| c.get(k) != Some(v)),
        "another seed should give other data"
    );
}

#[test]
fn sql_errors_name_the_wrong_table_or_column_and_list_what_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = run(&data, &["sql", "SELECT * FROM curated.no_such_table"]).failure();
    assert!(
        o.stderr.contains("no_such_table"),
        "names the table:\n{}",
        o.stderr
    );
    for t in TABLES {
        assert!(
            o.stderr.contains(&t.qualified()),
            "lists {} among the tables:\n{}",
            t.qualified(),
            o.stderr
        );
    }

    let o = run(
        &data,
        &["sql", "SELECT no_such_column FROM curated.daily_kpis"],
    )
    .failure();
    assert!(
        o.stderr.contains("no_such_column"),
        "names the column:\n{}",
        o.stderr
    );
    for c in DAILY_KPIS.columns {
        assert!(
            o.stderr.contains(c.name),
            "lists the valid field {}:\n{}",
            c.name,
            o.stderr
        );
    }
}

#[test]
fn sql_refuses_statements_that_write_as_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for stmt in [
        "DROP TABLE x",
        "DROP TABLE curated.daily_kpis",
        "INSERT INTO curated.daily_kpis SELECT * FROM curated.daily_kpis",
        "CREATE TABLE t AS SELECT 1 AS a",
        "CREATE VIEW v AS SELECT 1 AS a",
    ] {
        let o = run(&data, &["sql", stmt]).failure();
        assert!(
            o.stderr.contains("read-only"),
            "`{stmt}` must be refused as a read-only violation (QueryError::ReadOnly: \
             \"only read-only queries are allowed\"), stderr was:\n{}",
            o.stderr
        );
    }
    let o = run(&data, &["sql", "SELECT * FROM t"]).failure();
    assert!(o.stderr.contains("not found"), "{}", o.stderr);
}

#[test]
fn reports_catalog_formats_and_pipes_on_a_processed_lake() {
    let (_tmp, data) = populated();

    // report --list: every built-in report
    let o = run(&data, &["report", "--list"]).success();
    for (name, _) in BUILTIN {
        assert!(
            o.stdout.contains(name),
            "report --list lacks {name}:\n{}",
            o.stdout
        );
    }
    let o = run(&data, &["report", "--list", "--format", "csv"]).success();
    let (_, rows) = csv_records(&o.stdout);
    let mut names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    names.sort();
    let mut want: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    want.sort();
    assert_eq!(names, want, "report --list rows");
    assert_eq!(names.len(), 12);

    // an unknown report fails and lists the available ones
    let o = run(&data, &["report", "nope"]).failure();
    assert!(o.stderr.contains("nope"), "{}", o.stderr);
    for (name, _) in BUILTIN {
        assert!(o.stderr.contains(name), "lists {name}:\n{}", o.stderr);
    }

    // the three formats agree
    for args in [
        vec!["report", "daily_kpis"],
        vec![
            "report",
            "revenue_trends",
            "--param",
            "grain=day",
            "--from",
            "2025-01-25",
        ],
        vec!["report", "conversion_funnel"],
        vec![
            "sql",
            "SELECT date, orders FROM curated.daily_kpis WHERE orders > 25 ORDER BY date",
        ],
    ] {
        let table = run(&data, &args).success();
        let mut a = args.clone();
        a.extend(["--format", "csv"]);
        let csv = run(&data, &a).success();
        let mut a = args.clone();
        a.extend(["--format", "json"]);
        let json = run(&data, &a).success();
        let n = table_rows(&table.stdout);
        let (header, csv_rows) = csv_records(&csv.stdout);
        let json_rows = json_rows(&json.stdout);
        assert!(n > 0, "{args:?}: no rows\n{}", table.stdout);
        assert_eq!(
            csv_rows.len(),
            n,
            "{args:?}: CSV rows vs table rows\n{}",
            csv.stdout
        );
        assert_eq!(
            json_rows.len(),
            n,
            "{args:?}: JSON rows vs table rows\n{}",
            json.stdout
        );
        let first = &header[0];
        for (c, j) in csv_rows.iter().zip(&json_rows) {
            let jv = match &j[first] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(c[0], jv, "{args:?}: column {first} in CSV vs JSON");
        }
    }
    let o = run(&data, &["report", "daily_kpis", "--format", "json"]).success();
    assert_eq!(json_rows(&o.stdout).len(), 16, "one row per generated day");

    // catalog list: every table
    let o = run(&data, &["catalog", "list"]).success();
    for t in TABLES {
        assert!(
            o.stdout.contains(&t.qualified()),
            "catalog list lacks {}",
            t.qualified()
        );
    }
    let o = run(&data, &["catalog", "list", "--format", "json"]).success();
    let infos = json_rows(&o.stdout);
    let names: Vec<&str> = infos.iter().map(|i| i["name"].as_str().unwrap()).collect();
    let want: Vec<String> = TABLES.iter().map(|t| t.qualified()).collect();
    assert_eq!(names, want, "catalog list --format json");
    let kpis = infos
        .iter()
        .find(|i| i["name"] == "curated.daily_kpis")
        .unwrap();
    assert_eq!(kpis["rows"], 16, "curated.daily_kpis rows: {kpis:?}");

    // catalog describe: the columns
    let o = run(&data, &["catalog", "describe", "curated.daily_kpis"]).success();
    for c in DAILY_KPIS.columns {
        assert!(
            o.stdout.contains(c.name),
            "describe lacks column {}:\n{}",
            c.name,
            o.stdout
        );
    }
    let o = run(
        &data,
        &[
            "catalog",
            "describe",
            "curated.daily_kpis",
            "--format",
            "csv",
        ],
    )
    .success();
    let (_, rows) = csv_records(&o.stdout);
    let cols: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let want: Vec<&str> = DAILY_KPIS.columns.iter().map(|c| c.name).collect();
    assert_eq!(cols, want, "catalog describe --format csv");
    let o = run(&data, &["catalog", "describe", "curated.nope"]).failure();
    assert!(
        o.stderr.contains("curated.daily_kpis"),
        "lists the tables:\n{}",
        o.stderr
    );

    // `shoplake sql … | head -1`: a closed pipe is not an error
    let mut child = shoplake(&data)
        .args([
            "sql",
            "SELECT event_id, event_type, page_url FROM processed.events",
            "--format",
            "csv",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("event_id,"), "{line:?}");
    drop(out);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "a closed stdout must exit 0, got {:?}; stderr:\n{stderr}",
        o.status
    );
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn configuration_errors_name_the_unknown_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("shoplake-test.toml");

    std::fs::write(&cfg, "[query]\ntimeout_secs = 7\n").unwrap();
    let o = run(&data, &["--config", cfg.to_str().unwrap(), "config"]).success();
    assert!(o.stdout.contains("timeout_secs = 7"), "{}", o.stdout);

    std::fs::write(&cfg, "[query]\ntimeout_secs = 7\nnope = 1\n").unwrap();
    let o = run(&data, &["--config", cfg.to_str().unwrap(), "config"]).failure();
    assert!(o.stderr.contains("nope"), "names the key:\n{}", o.stderr);

    let o = run_cmd(
        shoplake(&data)
            .env("SHOPLAKE_QUERY__NOPE", "1")
            .arg("config"),
        &["config (SHOPLAKE_QUERY__NOPE=1)"],
    )
    .failure();
    assert!(o.stderr.contains("nope"), "names the key:\n{}", o.stderr);

    let o = run_cmd(
        shoplake(&data)
            .env("SHOPLAKE_QUERY__TIMEOUT_SECS", "9")
            .arg("config"),
        &["config (SHOPLAKE_QUERY__TIMEOUT_SECS=9)"],
    )
    .success();
    assert!(o.stdout.contains("timeout_secs = 9"), "{}", o.stdout);
}

#[test]
fn import_of_a_refused_file_fails_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let f = tmp.path().join("orders.csv");
    std::fs::write(&f, "[{\"transaction_id\": \"T1\"}]\n").unwrap();
    let o = run(
        &data,
        &["import", "--source", "transactions", f.to_str().unwrap()],
    )
    .failure();
    assert!(
        o.both().contains("named .csv but the content is JSON"),
        "the reason:\n{}",
        o.both()
    );
    assert!(o.both().contains("refused"), "{}", o.both());
    assert!(
        files_under(&data.join("lake").join("raw")).is_empty(),
        "nothing lands in raw"
    );

    let f = tmp.path().join("good.csv");
    std::fs::write(
        &f,
        "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status\n\
         T1,C1,P1,1,2.50,2.50,2025-01-25,completed\n",
    )
    .unwrap();
    let o = run(
        &data,
        &[
            "import",
            "--source",
            "transactions",
            "--format",
            "json",
            f.to_str().unwrap(),
        ],
    )
    .success();
    let r = &json_rows(&o.stdout)[0];
    assert_eq!(r["status"], "imported", "{r:?}");
    assert_eq!(
        (r["rows"].as_u64(), r["good"].as_u64()),
        (Some(1), Some(1)),
        "{r:?}"
    );
}

#[test]
fn every_lake_table_prints_in_every_format() {
    let (_tmp, data) = populated();
    let mut errs = Vec::new();
    // (the raw zone is checked in-process by `pipeline::raw_zone_reads_as_text`)
    for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
        let sql = format!("SELECT * FROM {} LIMIT 3", t.qualified());
        let mut counts = Vec::new();
        for f in ["table", "csv", "json"] {
            let o = run(&data, &["sql", &sql, "--format", f]);
            if !o.ok {
                errs.push(format!("`{sql}` --format {f}: {}", o.stderr.trim()));
                continue;
            }
            counts.push(match f {
                "table" => table_rows(&o.stdout),
                "csv" => csv_records(&o.stdout).1.len(),
                _ => match serde_json::from_str::<Vec<serde_json::Value>>(&o.stdout) {
                    Ok(v) => v.len(),
                    Err(e) => {
                        errs.push(format!(
                            "`{sql}` --format json is not a JSON array ({e}): {:?}",
                            o.stdout
                        ));
                        continue;
                    }
                },
            });
        }
        if counts.windows(2).any(|w| w[0] != w[1]) {
            errs.push(format!(
                "`{sql}`: rows per format (table, csv, json) {counts:?}"
            ));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn keys_are_created_listed_and_revoked_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(
        &data,
        &["keys", "create", "web", "--origin", "https://shop.example"],
    );
    assert!(out.ok, "{}", out.both());
    let key = out.stdout.trim().to_string();
    assert!(key.starts_with("sk_") && key.len() == 35, "{key:?}");
    let stored = std::fs::read_to_string(data.join("state/keys.json")).unwrap();
    assert!(!stored.contains(&key), "the key itself was stored");
    let list = run(&data, &["keys", "list", "--format", "csv"]);
    assert!(list.ok, "{}", list.both());
    let (header, rows) = csv_records(&list.stdout);
    assert_eq!(header[..2], ["source", "key"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "web");
    assert!(rows[0][1].starts_with(&key[..7]));
    assert_eq!(rows[0][3], "", "not revoked yet");
    assert_eq!(rows[0][4], "https://shop.example");
    let bad = run(&data, &["keys", "create", "no spaces"]);
    assert!(
        !bad.ok && bad.stderr.contains("source name"),
        "{}",
        bad.both()
    );
    assert!(run(&data, &["keys", "revoke", "web"]).ok);
    let (_, rows) = csv_records(&run(&data, &["keys", "list", "--format", "csv"]).stdout);
    assert!(!rows[0][3].is_empty(), "revoked_at is set");
    let again = run(&data, &["keys", "revoke", "web"]);
    assert!(
        !again.ok && again.stderr.contains("no live key"),
        "{}",
        again.both()
    );
}

#[test]
fn serve_refuses_a_malformed_write_key_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &dir.path().join("data"),
        &["serve", "--addr", "127.0.0.1:0", "--write-key", "nokey"],
    );
    assert!(!out.ok);
    assert!(out.stderr.contains("NAME=KEY"), "{}", out.both());
}

#[test]
fn users_and_tokens_are_managed_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut add = shoplake(&data);
    add.args([
        "users",
        "add",
        "ana",
        "--role",
        "analyst",
        "--password-stdin",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = add.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = run(
        &data,
        &[
            "users",
            "add",
            "ana",
            "--role",
            "viewer",
            "--password",
            "another password",
        ],
    )
    .failure();
    assert!(again.stderr.contains("exists"), "{}", again.both());
    let short = run(
        &data,
        &[
            "users",
            "add",
            "bo",
            "--role",
            "viewer",
            "--password",
            "short",
        ],
    )
    .failure();
    assert!(short.stderr.contains("8 characters"), "{}", short.both());
    let no_tty = run(&data, &["users", "add", "cy", "--role", "viewer"]).failure();
    assert!(
        no_tty.stderr.contains("--password-stdin"),
        "{}",
        no_tty.both()
    );
    let (header, rows) = csv_records(
        &run(&data, &["users", "list", "--format", "csv"])
            .success()
            .stdout,
    );
    assert_eq!(header[..2], ["name", "role"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][..2], ["ana", "analyst"]);
    run(&data, &["users", "passwd", "ana", "--role", "admin"]).success();
    let (_, rows) = csv_records(&run(&data, &["users", "list", "--format", "csv"]).stdout);
    assert_eq!(rows[0][1], "admin");

    let token = run(
        &data,
        &[
            "tokens",
            "create",
            "grafana",
            "--role",
            "viewer",
            "--expires-days",
            "30",
        ],
    )
    .success()
    .stdout
    .trim()
    .to_string();
    assert!(token.starts_with("slt_") && token.len() > 30, "{token:?}");
    let db = std::fs::read(data.join("state/shoplake.db")).unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token itself was stored"
    );
    assert!(
        !db.windows(22).any(|w| w == b"a long enough password"),
        "the password itself was stored"
    );
    let (header, rows) = csv_records(
        &run(&data, &["tokens", "list", "--format", "csv"])
            .success()
            .stdout,
    );
    assert_eq!(header[..4], ["id", "name", "role", "token"]);
    assert_eq!(rows[0][1..3], ["grafana", "viewer"]);
    assert!(rows[0][3].starts_with(&token[..8]) && !rows[0][3].contains(&token[8..]));
    assert!(!rows[0][5].is_empty(), "expires_at is set");
    run(&data, &["tokens", "revoke", "grafana"]).success();
    let none = run(&data, &["tokens", "revoke", "grafana"]).failure();
    assert!(none.stderr.contains("no live token"), "{}", none.both());
    run(&data, &["users", "remove", "ana"]).success();
    assert!(
        run(&data, &["users", "remove", "ana"])
            .failure()
            .stderr
            .contains("no user")
    );
}

#[test]
fn demo_serve_creates_an_admin_whose_one_time_password_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = crate::collect::free_addr();
    let mut args = vec!["demo", "--serve"];
    let a = addr.to_string();
    args.push(&a);
    args.extend_from_slice(&GENERATE[1..]);
    let mut child = shoplake(&data)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut password = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("Log in as admin with the password ").nth(1) {
            password = rest.split(' ').next().map(str::to_string);
            assert!(line.contains(&format!("http://{addr}/")), "{line}");
            break;
        }
    }
    let password = password.expect("demo printed no admin password");
    let login = || {
        crate::collect::http(
            addr,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("name=admin&password={password}").as_bytes(),
        )
    };
    let t0 = std::time::Instant::now();
    let r = loop {
        match login() {
            Ok(r) => break r,
            Err(_) if t0.elapsed().as_secs() < 60 => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(e) => panic!("the server never answered: {e}"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    // a second demo keeps the users it finds
    let again = run(&data, &["demo", "--no-serve"]).success();
    assert!(
        !again.stdout.contains("Log in as admin"),
        "{}",
        again.stdout
    );
    let (_, rows) = csv_records(&run(&data, &["users", "list", "--format", "csv"]).stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][..2], ["admin", "admin"]);
}
