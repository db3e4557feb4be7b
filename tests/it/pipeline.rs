//! Import → pipeline → reports, in-process, against values computed
//! independently from the raw files (see `common::model`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::datatypes::DataType;
use shoplake_core::sources::Source;
use shoplake_jobs::pipeline::PipelineOptions;
use shoplake_lake::import::{ImportReport, Outcome, import_file};

use crate::common::model::{Model, Tx, read_transactions_csv};
use crate::common::{
    Fixture, Rows, SUB_FROM, all_reports, assert_reports_match, day, gen_config, small_config, ymd,
};

const HEADER: &str =
    "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status";

/// "Now" of the imports: the partition of rejected rows.
const NOW: &str = "2025-03-01T09:30:00Z";

/// One planted row: its text and, for a bad row, the column and a fragment
/// of the reason the import must give.
struct Planted {
    text: String,
    bad: Option<(&'static str, &'static str)>,
}

fn good(text: String) -> Planted {
    Planted { text, bad: None }
}

fn bad(text: String, column: &'static str, reason: &'static str) -> Planted {
    Planted {
        text,
        bad: Some((column, reason)),
    }
}

/// Existing ids to plant rows with: three customers and four products of the
/// generated data.
struct Ids {
    c: [String; 3],
    p: [String; 4],
}

fn ids(m: &Model) -> Ids {
    let mut customers: Vec<&str> = m.txs.iter().map(|t| t.customer.as_str()).collect();
    customers.sort();
    customers.dedup();
    let products: Vec<&String> = m.products.keys().collect();
    Ids {
        c: [0, 1, 2].map(|i| customers[i].to_string()),
        p: [0, 1, 2, 3].map(|i| products[i].clone()),
    }
}

/// The planted file: 13 good rows for 2025-01-25 and 2025-01-29 (new ids,
/// existing products, one new customer), 8 bad ones, a blank line and a
/// quoted field spanning two lines. Returns its text and, per bad row, the
/// 1-based physical line where it starts.
fn planted_file(ids: &Ids) -> (String, Vec<(u64, Planted)>) {
    let [c1, c2, c3] = &ids.c;
    let [p1, p2, p3, p4] = &ids.p;
    let rows = vec![
        good(format!(
            "X0001,{c1},{p1},2,19.99,39.98,2025-01-25,completed"
        )),
        good(format!("X0002,{c1},{p2},1,5.00,5.00,2025-01-25,returned")),
        bad(
            format!("X0003,{c2},{p1},1,abc,19.99,2025-01-25,completed"),
            "price",
            "not a decimal number: \"abc\"",
        ),
        // a discounted line (total < quantity × price), status in capitals
        good(format!(
            "X0004,CNEW0001,{p3},3,7.50,20.00,2025-01-29,Completed"
        )),
        bad(
            format!("X0005,{c2},{p2},0,5.00,0.00,2025-01-25,completed"),
            "quantity",
            "must be > 0, got 0",
        ),
        good(String::new()), // a blank line: no row, but it counts as a line
        good(format!(
            "X0006,CNEW0001,{p4},1,12.00,12.00,2025-01-29,refunded"
        )),
        bad(
            format!("X0007,{c3},{p1},1,19.99,19.99,2025-01-25,lost"),
            "status",
            "\"lost\" is not one of completed, returned, refunded",
        ),
        bad(
            format!("X0008,{c3},{p1},1,19.99,19.99,2025-02-30,completed"),
            "transaction_date",
            "not a date (YYYY-MM-DD): \"2025-02-30\"",
        ),
        bad(
            format!("X0009,,{p1},1,19.99,19.99,2025-01-25,completed"),
            "customer_id",
            "empty",
        ),
        bad(
            format!("\"X00\n10\",{c3},{p1},1,19.99,19.99,2025-01-25,completed"),
            "transaction_id",
            "contains control characters",
        ),
        bad(
            format!("X0011,{c3},{p2},1,9.999,9.99,2025-01-25,completed"),
            "price",
            "more than 2 decimal places: \"9.999\"",
        ),
        bad(
            format!("X0012,{c3},{p3},2,5.00,10.02,2025-01-29,completed"),
            "total_amount",
            "10.02 exceeds quantity × price = 10.00",
        ),
        good(format!("X0013,{c3},{p3},2,5.00,10.00,2025-01-29,completed")),
        good(format!(
            "\"X0014\",{c2},{p4},1,12.00,12.00,2025-01-25,completed"
        )),
        good(format!(
            "X0015,{c2},{p1},4,19.99,79.96,2025-01-25,completed"
        )),
        good(format!("X0016,{c3},{p2},1,5.00,5.00,2025-01-29,refunded")),
        good(format!(
            "X0017,{c1},{p4},1,12.00,11.99,2025-01-29,completed"
        )),
        good(format!(
            "X0018,CNEW0001,{p1},1,19.99,19.99,2025-01-29,returned"
        )),
        good(format!("X0019,{c2},{p3},2,7.50,15.00,2025-01-25,completed")),
        good(format!(
            "X0020,{c3},{p4},3,12.00,36.00,2025-01-25,completed"
        )),
        good(format!("X0021,{c1},{p3},1,7.50,7.50,2025-01-29,completed")),
    ];
    let mut text = format!("{HEADER}\n");
    let mut line = 2u64;
    let mut out = Vec::new();
    for r in rows {
        text.push_str(&r.text);
        text.push('\n');
        let start = line;
        line += 1 + r.text.matches('\n').count() as u64;
        out.push((start, r));
    }
    (text, out)
}

/// The good rows of a planted file as the model reads them.
fn good_rows(rows: &[(u64, Planted)]) -> Vec<Tx> {
    let mut csv = format!("{HEADER}\n");
    for (_, r) in rows {
        if r.bad.is_none() && !r.text.is_empty() {
            csv.push_str(&r.text);
            csv.push('\n');
        }
    }
    read_transactions_csv(&csv)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn import(fx: &Fixture, path: &Path) -> ImportReport {
    import_file(
        &fx.lake,
        Source::Transactions,
        path,
        &fx.import_options(NOW),
    )
    .await
    .unwrap_or_else(|e| panic!("import {} failed: {e}", path.display()))
}

/// Everything an import could change: Delta row counts, raw files, manifest.
async fn lake_state(fx: &Fixture) -> (BTreeMap<String, i64>, BTreeMap<String, Vec<u8>>, String) {
    (fx.delta_row_counts().await, fx.raw_files(), fx.manifest())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_routes_good_rows_and_quarantines_bad_ones_once() {
    let fx = Fixture::new();
    let m = Model::from_raw(&fx.raw_root());
    let (text, rows) = planted_file(&ids(&m));
    let incoming = fx.dir.path().join("incoming");
    let path = write(&incoming, "extra.csv", &text);
    let good = good_rows(&rows);
    let n_bad = rows.iter().filter(|(_, r)| r.bad.is_some()).count() as u64;
    let n_rows = rows.iter().filter(|(_, r)| !r.text.is_empty()).count() as u64;
    assert_eq!((good.len(), n_bad, n_rows), (13, 8, 21), "the planted file");

    let before = fx.raw_files();
    let rep = import(&fx, &path).await;
    assert_eq!(rep.outcome, Outcome::Imported, "{rep:?}");
    assert_eq!(
        (rep.rows, rep.good, rep.quarantined),
        (n_rows, good.len() as u64, n_bad),
        "rows, good, quarantined: {rep:?}"
    );
    let mut want_parts = BTreeMap::new();
    for t in &good {
        *want_parts.entry(t.date).or_insert(0u64) += 1;
    }
    assert_eq!(rep.partitions, want_parts, "good rows per date partition");
    assert_eq!(rep.hash.len(), 64, "a BLAKE3 hex digest: {:?}", rep.hash);

    // the good rows, as received, landed in raw under their dates
    let after = fx.raw_files();
    let new: BTreeMap<&String, &Vec<u8>> = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .collect();
    assert_eq!(
        new.len(),
        want_parts.len(),
        "one new raw file per date: {:?}",
        new.keys()
    );
    for (date, n) in &want_parts {
        let name = format!(
            "transactions/date={}/extra-{}.csv",
            ymd(*date),
            &rep.hash[..16]
        );
        let bytes = new
            .get(&name)
            .unwrap_or_else(|| panic!("no raw file {name}; new files: {:?}", new.keys()));
        let landed = read_transactions_csv(std::str::from_utf8(bytes).unwrap());
        let want: Vec<&Tx> = good.iter().filter(|t| t.date == *date).collect();
        assert_eq!(landed.len() as u64, *n, "{name}");
        assert_eq!(
            landed.iter().collect::<Vec<_>>(),
            want,
            "{name}: the good rows, in order"
        );
    }
    assert!(
        before.iter().all(|(k, v)| after.get(k) == Some(v)),
        "the generated raw files must not change"
    );

    // the bad rows, with line, column and reason, in quarantine.transactions
    let q = fx
        .query(
            "SELECT line, \"column\", reason, payload, stage, source_file, file_hash, date \
             FROM quarantine.transactions ORDER BY line",
        )
        .await;
    let want: Vec<(u64, &Planted)> = rows
        .iter()
        .filter(|(_, r)| r.bad.is_some())
        .map(|(l, r)| (*l, r))
        .collect();
    assert_eq!(q.len(), want.len(), "quarantined rows:\n{}", q.dump(20));
    for (i, (line, p)) in want.iter().enumerate() {
        let r = q.row(i);
        let (col, reason) = p.bad.unwrap();
        let ctx = format!("quarantine row {i} (planted line {line}: {:?})", p.text);
        assert_eq!(r.i64("line"), *line as i64, "{ctx}: line");
        assert_eq!(r.opt_str("column"), Some(col), "{ctx}: column");
        assert!(
            r.str("reason").contains(reason),
            "{ctx}: reason {:?} should say {reason:?}",
            r.str("reason")
        );
        assert_eq!(
            r.str("payload"),
            p.text,
            "{ctx}: payload is the row as received"
        );
        assert_eq!(r.str("stage"), "import", "{ctx}");
        assert_eq!(r.str("source_file"), path.display().to_string(), "{ctx}");
        assert_eq!(r.str("file_hash"), rep.hash, "{ctx}");
        assert_eq!(
            r.date("date"),
            day("2025-03-01"),
            "{ctx}: partition = day of the import"
        );
    }

    // the same content again: nothing changes
    let state = lake_state(&fx).await;
    let copy = write(&incoming, "extra-again.csv", &text);
    for p in [&path, &copy] {
        let again = import(&fx, p).await;
        match &again.outcome {
            Outcome::AlreadyImported { file, .. } => {
                assert_eq!(file, &path.display().to_string(), "names the first import")
            }
            other => panic!("re-importing {} gave {other:?}", p.display()),
        }
        assert_eq!(again.hash, rep.hash);
        assert!(
            lake_state(&fx).await == state,
            "re-import of {} changed the lake",
            p.display()
        );
    }

    // files that are not what they claim are refused whole, writing nothing
    let mostly_bad = {
        let mut t = format!("{HEADER}\n");
        for i in 0..5 {
            t.push_str(&format!("M{i:03},C1,P1,1,1.00,1.00,2025-01-25,completed\n"));
        }
        for i in 5..25 {
            t.push_str(&format!("M{i:03},C1,P1,0,1.00,1.00,2025-01-25,completed\n"));
        }
        t
    };
    let cases = [
        (
            "json-content.csv",
            "{\"transaction_id\":\"T1\",\"customer_id\":\"C1\"}\n".to_string(),
            "named .csv but the content is JSON",
        ),
        (
            "short-header.csv",
            "transaction_id,customer_id,price\nT1,C1,1.00\n".to_string(),
            "lacks required columns product_id, quantity, total_amount, transaction_date, status",
        ),
        (
            "mostly-bad.csv",
            mostly_bad,
            "80% of 25 rows are invalid (limit 50%)",
        ),
        ("empty.csv", "\n\n".to_string(), "empty"),
    ];
    for (name, text, why) in cases {
        let p = write(&incoming, name, &text);
        let r = import(&fx, &p).await;
        match &r.outcome {
            Outcome::Refused(reason) => assert!(
                reason.contains(why),
                "{name}: refusal {reason:?} should say {why:?}"
            ),
            other => panic!("{name} should be refused, got {other:?}"),
        }
        assert!(r.partitions.is_empty(), "{name}: {r:?}");
        assert!(
            lake_state(&fx).await == state,
            "refused {name} changed the lake"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_matches_an_independent_computation() {
    let fx = Fixture::new();
    let mut m = Model::from_raw(&fx.raw_root());
    assert_eq!(
        m.txs.len(),
        gen_config().transactions,
        "the model read every line"
    );

    let (text, rows) = planted_file(&ids(&m));
    let path = write(&fx.dir.path().join("incoming"), "extra.csv", &text);
    let rep = import(&fx, &path).await;
    assert_eq!(
        (rep.outcome.clone(), rep.good),
        (Outcome::Imported, 13),
        "{rep:?}"
    );
    m.add_transactions(&good_rows(&rows));

    let summary = fx.run(&PipelineOptions::default()).await;
    let all_days: Vec<String> = m.kpi_dates().into_iter().map(ymd).collect();
    assert_eq!(
        summary.dates, all_days,
        "the first run processes every date"
    );
    assert!(summary.products_rebuilt);
    assert!(!summary.nothing_to_do());

    // the processed tables hold what the raw zone holds, nothing rejected
    let counts = fx.delta_row_counts().await;
    let want = [
        ("processed.transactions", m.txs.len()),
        ("processed.events", gen_config().clickstream),
        ("processed.sessions", m.sessions.len()),
        ("processed.reviews", m.reviews.len()),
        ("processed.products", m.products.len()),
        ("curated.order_lines", m.txs.len()),
        ("curated.customers", m.customers().len()),
        ("curated.daily_kpis", m.kpi_dates().len()),
        ("quarantine.transactions", 8),
        ("quarantine.products", 0),
        ("quarantine.clickstream", 0),
        ("quarantine.reviews", 0),
    ];
    for (t, n) in want {
        assert_eq!(counts[t], n as i64, "rows of {t}");
    }
    let tables: BTreeMap<String, i64> = summary
        .tables
        .iter()
        .map(|(t, n)| (t.clone(), *n as i64))
        .collect();
    for (t, n) in &tables {
        assert_eq!(
            counts.get(t),
            Some(n),
            "run summary rows of {t} vs COUNT(*)"
        );
    }

    // the data set is rich enough for every report to say something
    let months: std::collections::BTreeSet<String> = m
        .kpi_dates()
        .into_iter()
        .map(|d| ymd(d)[..7].to_string())
        .collect();
    assert_eq!(months.len(), 2, "January and February: {months:?}");
    let cohorts: std::collections::BTreeSet<String> = m
        .customers()
        .values()
        .map(|c| ymd(c.first)[..7].to_string())
        .collect();
    assert_eq!(cohorts.len(), 2, "customers first bought in both months");
    assert!(
        m.customers()
            .values()
            .map(|c| c.segment)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= 5,
        "several RFM segments"
    );

    assert_reports_match(&fx.engine(), &m).await;
    assert_customers_match(&fx, &m).await;
}

/// RFM scores and segment of every customer in curated.customers.
async fn assert_customers_match(fx: &Fixture, m: &Model) {
    let got = fx
        .query(
            "SELECT customer_id, orders, lifetime_value, recency_days, r_score, f_score, m_score, \
             rfm_segment FROM curated.customers ORDER BY customer_id",
        )
        .await;
    let want = m.customers();
    assert_eq!(got.len(), want.len(), "customers");
    let mut errs = Vec::new();
    for (r, (id, c)) in got.iter().zip(&want) {
        let g = (
            r.str("customer_id").to_string(),
            r.i64("orders"),
            r.cents("lifetime_value"),
            r.i64("recency_days"),
            (r.i64("r_score"), r.i64("f_score"), r.i64("m_score")),
            r.str("rfm_segment").to_string(),
        );
        let w = (
            id.clone(),
            c.orders,
            c.ltv(),
            c.recency,
            (c.r, c.f, c.m),
            c.segment.to_string(),
        );
        if g != w {
            errs.push(format!("got {g:?}\n   want {w:?}"));
        }
    }
    assert!(
        errs.is_empty(),
        "curated.customers: {} of {} customers differ (id, orders, ltv cents, recency, (r, f, m), segment):\n   {}",
        errs.len(),
        want.len(),
        errs.iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n   ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_is_incremental_and_idempotent() {
    let fx = Fixture::with(&small_config());
    let first = fx.run(&PipelineOptions::default()).await;
    assert_eq!(first.dates.len(), gen_config().days as usize);
    let counts = fx.delta_row_counts().await;
    let engine = fx.engine();
    let reports = all_reports(&engine).await;

    // nothing new: nothing done, nothing changed
    let second = fx.run(&PipelineOptions::default()).await;
    assert!(
        second.nothing_to_do(),
        "second run: dates {:?}, products rebuilt {}",
        second.dates,
        second.products_rebuilt
    );
    assert_eq!(
        fx.delta_row_counts().await,
        counts,
        "row counts after a run with nothing new"
    );
    assert_eq!(second.tables, first.tables);

    // forced: everything again, same results
    let forced = fx
        .run(&PipelineOptions {
            force: true,
            ..Default::default()
        })
        .await;
    assert_eq!(
        forced.dates, first.dates,
        "a forced run reprocesses every date"
    );
    assert_eq!(
        fx.delta_row_counts().await,
        counts,
        "row counts after a forced run"
    );
    assert_reports_equal("after a forced run", &all_reports(&engine).await, &reports);

    // a new file for one date: only that date is processed
    let mut m = Model::from_raw(&fx.raw_root());
    let d = day("2025-01-31");
    let existing = m
        .customers()
        .into_iter()
        .find(|(_, c)| c.first < d && c.last < d)
        .map(|(id, _)| id)
        .expect("a customer who bought before 2025-01-31 only");
    let p: Vec<String> = m.products.keys().take(2).cloned().collect();
    let text = format!(
        "{HEADER}\n\
         L0001,{existing},{p0},1,10.00,10.00,2025-01-31,completed\n\
         L0002,{existing},{p1},2,3.50,7.00,2025-01-31,returned\n\
         L0003,CLATE001,{p0},1,10.00,10.00,2025-01-31,completed\n",
        p0 = p[0],
        p1 = p[1]
    );
    let path = write(&fx.dir.path().join("incoming"), "late.csv", &text);
    let rep = import(&fx, &path).await;
    assert_eq!(
        (rep.outcome.clone(), rep.good, rep.quarantined),
        (Outcome::Imported, 3, 0),
        "{rep:?}"
    );
    let third = fx.run(&PipelineOptions::default()).await;
    assert_eq!(
        third.dates,
        vec!["2025-01-31".to_string()],
        "only the date of the new file"
    );
    assert!(!third.products_rebuilt);
    let tx_step = third
        .steps
        .iter()
        .find(|s| s.name == "transactions_etl")
        .expect("a transactions step");
    let day_lines = m.txs.iter().filter(|t| t.date == d).count() as u64;
    assert_eq!(
        tx_step.rows_in,
        day_lines + 3,
        "only that date's files were read"
    );

    m.add_transactions(&read_transactions_csv(&text));
    let after = all_reports(&engine).await;

    // daily KPIs: that day moved by exactly the file's rows, no other day moved
    let (old, new) = (&reports["daily_kpis"], &after["daily_kpis"]);
    assert_eq!(old.len(), new.len());
    for (i, (o, n)) in old.iter().zip(new.iter()).enumerate() {
        assert_eq!(o.date("date"), n.date("date"));
        if o.date("date") != d {
            assert_eq!(
                old.rows[i],
                new.rows[i],
                "daily_kpis of {} changed",
                ymd(o.date("date"))
            );
            continue;
        }
        let delta = |c: &str| n.cents(c) - o.cents(c);
        assert_eq!(delta("gross_revenue"), 2700, "gross revenue of the day");
        assert_eq!(delta("net_revenue"), 2000, "net revenue of the day");
        assert_eq!(n.i64("orders") - o.i64("orders"), 2, "two new baskets");
        assert_eq!(n.i64("customers") - o.i64("customers"), 2);
        assert_eq!(
            n.i64("new_customers") - o.i64("new_customers"),
            1,
            "CLATE001"
        );
        assert_eq!(
            n.i64("sessions"),
            o.i64("sessions"),
            "sessions are untouched"
        );
    }
    assert_reports_match(&engine, &m).await;
}

fn assert_reports_equal(
    when: &str,
    got: &BTreeMap<&'static str, Rows>,
    want: &BTreeMap<&'static str, Rows>,
) {
    for (name, w) in want {
        let g = &got[name];
        assert!(
            g == w,
            "{when}: report {name} changed\n-- before:\n{}\n-- after:\n{}",
            w.dump(30),
            g.dump(30)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_zone_reads_as_text() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let mut errs = Vec::new();
    for (source, n) in &fx.generated.rows {
        let t = format!("raw.{}", source.name());
        match engine
            .query(&format!("SELECT COUNT(*) AS n FROM {t}"))
            .await
        {
            Ok(b) => {
                let got = Rows::from_batches(&b).row(0).i64("n");
                if got != *n as i64 {
                    errs.push(format!("{t}: {got} rows, the generator wrote {n}"));
                }
            }
            Err(e) => errs.push(format!("SELECT COUNT(*) FROM {t}: {e}")),
        }
        match engine.query(&format!("SELECT * FROM {t} LIMIT 5")).await {
            Ok(b) => {
                let rows = Rows::from_batches(&b);
                for (c, ty) in rows.columns.iter().zip(&rows.types) {
                    let text = matches!(
                        ty,
                        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                    );
                    if c != "date" && !text {
                        errs.push(format!("{t}.{c} is {ty}, not text"));
                    }
                }
                if rows.len() != 5 {
                    errs.push(format!("{t}: LIMIT 5 gave {} rows", rows.len()));
                }
            }
            Err(e) => errs.push(format!("SELECT * FROM {t}: {e}")),
        }
    }
    assert!(
        errs.is_empty(),
        "the raw zone must read as text (`raw.*`: \"As received, every value as text\"):\n{}",
        errs.join("\n")
    );
}

/// A hand-written clickstream file with what the generator never writes:
/// events out of time order, a device and UTM parameters that change within
/// a session, event names in other dialects, an offset timestamp, a product
/// view identified by `?product_id=`, a `utm_source` without `utm_medium`
/// and a session with no funnel event at all.
fn crafted_clickstream(p: &[String]) -> String {
    let ev = |sid: &str, cust: Option<&str>, name: &str, page: &str, ts: &str, dev: &str| {
        let mut o = serde_json::json!({
            "session_id": sid, "event_type": name, "page": page, "timestamp": ts, "device": dev,
        });
        if let Some(c) = cust {
            o["customer_id"] = c.into();
        }
        o.to_string()
    };
    let lines = [
        // SX1: the first event by time is the second line: tablet, newsletter/email
        ev(
            "SX1",
            Some(""),
            "Product Viewed",
            &format!("/product/{}", p[2]),
            "2025-01-26T10:00:05Z",
            "Desktop",
        ),
        ev(
            "SX1",
            Some(""),
            "page_view",
            "/?utm_source=newsletter&utm_medium=email&utm_campaign=digest",
            "2025-01-26T12:00:00+02:00",
            "tablet",
        ),
        ev(
            "SX1",
            None,
            "add-to-cart",
            &format!("/cart?product_id={}", p[2]),
            "2025-01-26T10:01:00Z",
            "mobile",
        ),
        ev(
            "SX1",
            None,
            "begin_checkout",
            "/checkout?utm_source=late&utm_medium=late",
            "2025-01-26T10:02:00Z",
            "mobile",
        ),
        ev(
            "SX1",
            None,
            "Order Completed",
            "/checkout/confirmation",
            "2025-01-26T10:03:00.250Z",
            "mobile",
        ),
        // SX2: utm_source without utm_medium; a view by query parameter; cart view
        ev(
            "SX2",
            Some("C00001"),
            "view_item",
            &format!("/item?product_id={}&utm_source=partner", p[3]),
            "2025-01-26T11:00:00Z",
            "mobile",
        ),
        ev(
            "SX2",
            Some("C00001"),
            "Cart Viewed",
            "/cart",
            "2025-01-26T11:00:30Z",
            "mobile",
        ),
        // SX3: no funnel event at all (stage 0)
        ev(
            "SX3",
            Some(""),
            "scroll",
            "/blog/lamps",
            "2025-01-26T12:00:00Z",
            "desktop",
        ),
        ev(
            "SX3",
            Some(""),
            "identify",
            "/blog/lamps",
            "2025-01-26T12:00:40Z",
            "desktop",
        ),
        // SX4: a single search
        ev(
            "SX4",
            Some(""),
            "products_searched",
            "/search?q=lamp&utm_source=google&utm_medium=cpc",
            "2025-01-26T13:00:00Z",
            "tablet",
        ),
    ];
    lines.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_clickstream_follows_the_session_rules() {
    let fx = Fixture::with(&small_config());
    let probe = Model::from_raw(&fx.raw_root());
    let products: Vec<String> = probe.products.keys().cloned().collect();
    write(
        &fx.raw_root().join("clickstream/date=2025-01-26"),
        "crafted.json",
        &crafted_clickstream(&products),
    );
    let m = Model::from_raw(&fx.raw_root());
    fx.run(&PipelineOptions::default()).await;

    let mut failures = Vec::new();
    let got = fx
        .query(
            "SELECT session_id, device_type, traffic_source, traffic_medium, funnel_stage, events, \
             converted, is_bounce, duration_s FROM processed.sessions \
             WHERE session_id LIKE 'SX%' ORDER BY session_id",
        )
        .await;
    let want: Vec<crate::common::WantRow> = m
        .sessions
        .iter()
        .filter(|s| s.id.starts_with("SX"))
        .map(|s| {
            use crate::common::Want;
            vec![
                ("session_id", Want::s(s.id.clone())),
                ("device_type", Want::s(s.device.clone())),
                ("traffic_source", Want::s(s.source.clone())),
                ("traffic_medium", Want::s(s.medium.clone())),
                ("funnel_stage", Want::Int(i64::from(s.stage))),
                ("events", Want::Int(s.events as i64)),
                ("duration_s", Want::Int(s.duration_s)),
                ("converted", Want::Bool(s.converted)),
                ("is_bounce", Want::Bool(s.events == 1)),
            ]
        })
        .collect();
    assert_eq!(want.len(), 4, "the model's crafted sessions");
    if let Err(e) = crate::common::diff_rows("processed.sessions (crafted sessions)", &got, &want) {
        failures.push(e);
    }
    failures.extend(crate::common::reports_differences(&fx.engine(), &m).await);
    assert!(
        failures.is_empty(),
        "{} difference(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_rejections_carry_the_line_where_the_element_starts() {
    let fx = Fixture::new();
    // a pretty-printed array: elements on lines 2, 3–6 and 7; the last two are bad
    let text = "[\n\
                {\"product_id\":\"PA1\",\"name\":\"A\",\"category\":\"Toys\",\"price\":1.50},\n\
                {\n  \"product_id\": \"PA2\",\n  \"name\": \"B\", \"category\": \"Toys\",\n  \"price\": -1},\n\
                {\"product_id\":\"PA3\",\"name\":\"C\",\"category\":\"Toys\",\"price\":\"x\"}\n\
                ]\n";
    let path = write(&fx.dir.path().join("incoming"), "catalogue.json", text);
    let rep = import_file(&fx.lake, Source::Products, &path, &fx.import_options(NOW))
        .await
        .unwrap();
    assert_eq!(
        (rep.outcome.clone(), rep.rows, rep.good, rep.quarantined),
        (Outcome::Imported, 3, 1, 2),
        "{rep:?}"
    );
    let q = fx
        .query("SELECT line, \"column\", reason, payload FROM quarantine.products ORDER BY line")
        .await;
    let got: Vec<(i64, Option<&str>)> = q
        .iter()
        .map(|r| (r.i64("line"), r.opt_str("column")))
        .collect();
    // quarantine line: "1-based physical line where the row starts"
    assert_eq!(
        got,
        vec![(3, Some("price")), (7, Some("price"))],
        "quarantine.products lines of the bad elements:\n{}",
        q.dump(5)
    );
    assert!(q.row(0).str("payload").contains("\"PA2\""), "{}", q.dump(5));
    // the good element landed in raw, as one line
    let raw: Vec<String> = fx
        .raw_files()
        .into_iter()
        .filter(|(k, _)| k.contains(&rep.hash[..16]))
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .collect();
    assert_eq!(raw.len(), 1, "one raw products file");
    assert_eq!(raw[0].lines().count(), 1, "{:?}", raw[0]);
    assert!(raw[0].contains("\"PA1\""), "{:?}", raw[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_clickstream_files_are_split_without_losing_or_renumbering_rows() {
    // two days of 20 000 events: ~4 MiB files, parsed in several chunks each
    let config = shoplake_gen::GenConfig {
        customers: 200,
        products: 50,
        transactions: 300,
        clickstream: 40_000,
        reviews: 0,
        days: 2,
        start_date: day(SUB_FROM),
        ..gen_config()
    };
    let fx = Fixture::with(&config);
    let file = fx
        .raw_root()
        .join("clickstream/date=2025-01-26/clickstream.json");
    let mut text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.len() > 3 << 20,
        "a file large enough to be split: {} bytes",
        text.len()
    );
    // a bad row at the very end (no event_type)
    text.push_str("{\"session_id\":\"S_BAD\",\"timestamp\":\"2025-01-26T23:59:59Z\"}\n");
    std::fs::write(&file, &text).unwrap();
    let bad_line = text.lines().count() as i64;
    let m = Model::from_raw_skipping_bad_events(&fx.raw_root());

    fx.run(&PipelineOptions::default()).await;

    let q = fx
        .query("SELECT line, \"column\", stage FROM quarantine.clickstream")
        .await;
    assert_eq!(q.len(), 1, "{}", q.dump(5));
    assert_eq!(q.row(0).i64("line"), bad_line, "the bad row's line");
    assert_eq!(q.row(0).opt_str("column"), Some("event_type"));

    // every good line is one event whose id ends in its own line number
    let ev = fx
        .query(
            "SELECT event_id, session_id, CAST(event_ts AS BIGINT) AS ts FROM processed.events \
             WHERE date = DATE '2025-01-26'",
        )
        .await;
    assert_eq!(ev.len() as i64, bad_line - 1, "events of 2025-01-26");
    let mut by_line: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    for r in ev.iter() {
        let line: i64 = r
            .str("event_id")
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let prev = by_line.insert(line, (r.str("session_id").to_string(), r.i64("ts")));
        assert!(prev.is_none(), "two events claim line {line}");
    }
    for (i, l) in text.lines().enumerate().take(bad_line as usize - 1) {
        let o: serde_json::Value = serde_json::from_str(l).unwrap();
        let ts = chrono::DateTime::parse_from_rfc3339(o["timestamp"].as_str().unwrap())
            .unwrap()
            .timestamp_micros();
        let want = (o["session_id"].as_str().unwrap().to_string(), ts);
        assert_eq!(
            by_line.get(&(i as i64 + 1)),
            Some(&want),
            "event of line {}",
            i + 1
        );
    }
    assert_reports_match(&fx.engine(), &m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_over_a_range_without_data_count_zero_not_null() {
    let fx = Fixture::with(&shoplake_gen::GenConfig {
        customers: 100,
        products: 40,
        transactions: 400,
        clickstream: 3_000,
        reviews: 20,
        days: 3,
        ..gen_config()
    });
    let m = Model::from_raw(&fx.raw_root());
    fx.run(&PipelineOptions::default()).await;
    let engine = fx.engine();
    let empty = crate::common::model::Range::new("2030-01-01", "2030-01-31");
    let p: &[(&str, &str)] = &[("from", "2030-01-01"), ("to", "2030-01-31")];
    let runs = [
        ("daily_kpis", m.daily_kpis(empty)),
        ("revenue_trends", m.revenue_trends(empty, "week")),
        ("top_products", m.top_products(empty, 20)),
        ("revenue_by_category", m.revenue_by_category(empty)),
        ("conversion_funnel", m.conversion_funnel(empty)),
        ("customer_ltv", m.customer_ltv(empty)),
        ("return_rate", m.return_rate(empty, 20, 10)),
        ("product_affinity", m.product_affinity(empty, 20, 5)),
        ("traffic_sources", m.traffic_sources(empty)),
    ];
    let mut failures = Vec::new();
    for (name, want) in runs {
        let got = crate::common::run_report(&engine, name, p).await;
        if let Err(e) = crate::common::diff_rows(&format!("report {name} {p:?}"), &got, &want) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
