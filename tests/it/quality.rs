//! Data quality, run history and alerts, on planted faults: a duplicate key
//! that blocks the curated tables, a blank key and an out-of-range value
//! written behind the pipeline's back, a day whose revenue halves; alerts
//! received by a local webhook, once per condition.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use shoplake_core::config::{Severity, WebhookConfig, WebhookFormat};
use shoplake_core::schema;
use shoplake_jobs::JobError;
use shoplake_jobs::pipeline::{PipelineOptions, Quiet, run};
use shoplake_jobs::quality::{self, CheckResult, Scope};
use shoplake_jobs::store::Store;
use shoplake_lake::WriteMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::common::{Fixture, gen_config, small_config, ymd};

/// A local HTTP listener that answers 200 and hands over every body.
async fn webhook() -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // headers, then Content-Length bytes of body
                let (head_end, len) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed mid-request");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse::<usize>().unwrap())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body: serde_json::Value =
                    serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                tx.send(body).unwrap();
                sock.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            });
        }
    });
    (url, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<serde_json::Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Ok(v) = rx.try_recv() {
        out.push((
            v["state"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        ));
    }
    out.sort();
    out
}

fn find<'a>(results: &'a [CheckResult], table: &str, check: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.table == table && r.check == check)
        .unwrap_or_else(|| panic!("no result for {table} {check}: {results:#?}"))
}

const UNIQUE_TX: &str = "quality:processed.transactions:unique(transaction_id)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_key_blocks_curated_tables_alerts_once_and_clears() {
    let mut fx = Fixture::with(&small_config());
    let (url, mut hooks) = webhook().await;
    fx.cfg.alerts.webhooks.push(WebhookConfig {
        url,
        format: WebhookFormat::Json,
        min_severity: Severity::Warn,
    });
    let first = fx.run(&PipelineOptions::default()).await;
    let blocking: Vec<&CheckResult> = first.quality.iter().filter(|r| r.blocks()).collect();
    assert!(blocking.is_empty(), "clean data fails: {blocking:#?}");
    assert!(
        first
            .quality
            .iter()
            .any(|r| r.check == "unique(transaction_id)" && r.status == "pass"),
        "{:#?}",
        first.quality
    );
    assert!(
        drain(&mut hooks)
            .iter()
            .all(|(_, k)| !k.ends_with("unique(transaction_id)")),
        "nothing to alert about yet"
    );
    let kpis = "SELECT * FROM curated.daily_kpis ORDER BY date";
    let before = fx.query(kpis).await.dump(1000);

    // a transaction id of the first day, re-used in a new file of the last day
    let tx = fx
        .query(&format!(
            "SELECT transaction_id, customer_id, product_id FROM processed.transactions \
             WHERE date = to_date('{}') ORDER BY transaction_id LIMIT 1",
            crate::common::START
        ))
        .await;
    let row = tx.row(0);
    let last = crate::common::day(crate::common::START) + crate::common::DAYS as i32 - 1;
    let dir = fx
        .raw_root()
        .join("transactions")
        .join(format!("date={}", ymd(last)));
    let planted = dir.join("planted.csv");
    std::fs::write(
        &planted,
        format!(
            "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status\n\
             {},{},{},1,10.00,10.00,{},completed\n",
            row.str("transaction_id"),
            row.str("customer_id"),
            row.str("product_id"),
            ymd(last)
        ),
    )
    .unwrap();

    let err = run(&fx.lake, &fx.cfg, &PipelineOptions::default(), &Quiet)
        .await
        .expect_err("a duplicate transaction id must stop the run");
    assert!(
        matches!(&err, JobError::QualityBlocked(m) if m.contains("unique(transaction_id)")),
        "{err}"
    );
    assert_eq!(
        fx.query(kpis).await.dump(1000),
        before,
        "the curated tables keep their last good state"
    );
    let store = Store::open(&fx.lake.state_dir()).unwrap();
    let (failed, steps) = store.run("latest").unwrap().unwrap();
    assert_eq!(failed.status, "failed");
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("unique(transaction_id)")
    );
    assert!(failed.dates.contains(&ymd(last)), "{}", failed.dates);
    let status = |name: &str| {
        steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.status.clone())
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
    };
    assert_eq!(status("transactions_etl"), "succeeded");
    assert_eq!(status("quality"), "succeeded");
    assert_eq!(status("curate"), "skipped");
    // the result is in ops.quality under the run's id
    let rows = fx
        .query(&format!(
            "SELECT status, failing, sample FROM ops.quality WHERE run_id = '{}' \
             AND table_name = 'processed.transactions' AND check_name = 'unique(transaction_id)'",
            failed.run_id
        ))
        .await;
    assert_eq!(rows.len(), 1, "{}", rows.dump(10));
    assert_eq!(rows.row(0).str("status"), "fail");
    assert_eq!(rows.row(0).i64("failing"), 1);
    assert_eq!(rows.row(0).str("sample"), row.str("transaction_id"));
    let sent = drain(&mut hooks);
    assert!(
        sent.contains(&("firing".into(), UNIQUE_TX.into())),
        "{sent:?}"
    );
    assert!(
        sent.contains(&("firing".into(), "pipeline".into())),
        "{sent:?}"
    );

    // the same fault on the next run: counted, not sent again
    run(&fx.lake, &fx.cfg, &PipelineOptions::default(), &Quiet)
        .await
        .expect_err("still duplicated");
    let again = drain(&mut hooks);
    assert!(
        !again.iter().any(|(_, k)| k == UNIQUE_TX || k == "pipeline"),
        "alerts are sent once per condition: {again:?}"
    );
    let open = store.open_alert(UNIQUE_TX).unwrap().unwrap();
    assert_eq!(open.repeats, 1);
    assert!(open.delivery.contains("200"), "{}", open.delivery);

    // fixed: the run succeeds, the conditions clear, the tables are as before
    std::fs::remove_file(&planted).unwrap();
    let fixed = fx.run(&PipelineOptions::default()).await;
    assert!(fixed.quality.iter().all(|r| !r.blocks()));
    let resolved = drain(&mut hooks);
    assert!(
        resolved.contains(&("resolved".into(), UNIQUE_TX.into())),
        "{resolved:?}"
    );
    assert!(
        resolved.contains(&("resolved".into(), "pipeline".into())),
        "{resolved:?}"
    );
    assert!(store.open_alert(UNIQUE_TX).unwrap().is_none());
    assert_eq!(fx.query(kpis).await.dump(1000), before);
    let statuses: Vec<String> = store
        .runs(10)
        .unwrap()
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "failed", "succeeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_find_a_blank_key_a_bad_quantity_and_a_halved_day() {
    let fx = Fixture::with(&gen_config());
    let first = fx.run(&PipelineOptions::default()).await;
    let blocking: Vec<&CheckResult> = first.quality.iter().filter(|r| r.blocks()).collect();
    assert!(blocking.is_empty(), "clean data fails: {blocking:#?}");
    // (the generated data grows 30 % in 16 days: a steep ramp the
    // detector may flag; the last day, judged on its own, is ordinary)
    let last = crate::common::day(crate::common::START) + crate::common::DAYS as i32 - 1;
    for m in ["anomaly(revenue)", "anomaly(orders)"] {
        let r = find(&first.quality, "processed.transactions", m);
        assert!(
            r.sample.as_deref().is_none_or(|s| !s.contains(&ymd(last))),
            "{r:#?}"
        );
    }

    // half of the last day's orders (a basket is a customer's lines of a
    // day) go missing: every other customer's lines
    let dir = fx
        .raw_root()
        .join("transactions")
        .join(format!("date={}", ymd(last)));
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let mut customers: Vec<&str> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(1))
            .collect();
        customers.sort();
        customers.dedup();
        let dropped: std::collections::HashSet<&str> =
            customers.iter().copied().skip(1).step_by(2).collect();
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, l)| *i == 0 || !l.split(',').nth(1).is_some_and(|c| dropped.contains(c)))
            .map(|(_, l)| l)
            .collect();
        std::fs::write(&p, kept.join("\n") + "\n").unwrap();
    }
    let second = fx.run(&PipelineOptions::default()).await;
    let revenue = find(
        &second.quality,
        "processed.transactions",
        "anomaly(revenue)",
    );
    assert_eq!(revenue.status, "fail", "{revenue:#?}");
    assert!(revenue.message.contains(&ymd(last)), "{}", revenue.message);
    assert_eq!(
        revenue.severity,
        Severity::Warn,
        "an anomaly alerts, it does not block"
    );
    let orders = find(&second.quality, "processed.transactions", "anomaly(orders)");
    assert_eq!(orders.status, "fail", "{orders:#?}");

    // a row written behind the pipeline's back: blank product id, quantity 0
    let sample = fx
        .engine()
        .run_internal("SELECT * FROM processed.transactions ORDER BY transaction_id LIMIT 1")
        .await
        .unwrap();
    let b = &sample[0];
    let table = schema::TRANSACTIONS.schema();
    let idx = |n: &str| table.index_of(n).unwrap();
    // the query's column types (views) cast back to the table's
    let mut cols: Vec<ArrayRef> = table
        .fields()
        .iter()
        .map(|f| {
            let c = b.column(b.schema().index_of(f.name()).unwrap());
            arrow::compute::cast(c, f.data_type()).unwrap()
        })
        .collect();
    cols[idx("transaction_id")] = Arc::new(StringArray::from(vec!["planted-1"]));
    cols[idx("product_id")] = Arc::new(StringArray::from(vec!["  "]));
    cols[idx("quantity")] = Arc::new(Int32Array::from(vec![0]));
    let bad = RecordBatch::try_new(table.clone(), cols).unwrap();
    fx.lake
        .write(&schema::TRANSACTIONS, vec![bad], WriteMode::Append)
        .await
        .unwrap();

    let checks = quality::checks(&fx.cfg.quality).unwrap();
    let scope = Scope {
        dates: None,
        tables: vec!["processed.transactions".into()],
        now_micros: chrono::Utc::now().timestamp_micros(),
    };
    let results = quality::run_checks(&fx.lake, &fx.engine(), &fx.cfg.quality, &checks, &scope)
        .await
        .unwrap();
    assert!(
        results.iter().all(|r| r.table == "processed.transactions"),
        "--table limits the checks"
    );
    let nn = find(
        &results,
        "processed.transactions",
        "not_null(transaction_id,customer_id,product_id)",
    );
    assert_eq!((nn.status.as_str(), nn.failing), ("fail", 1), "{nn:#?}");
    assert_eq!(nn.sample.as_deref(), Some("empty: product_id"));
    assert!(nn.blocks());
    let q = find(&results, "processed.transactions", "range(quantity)");
    assert_eq!((q.status.as_str(), q.failing), ("fail", 1), "{q:#?}");
    assert_eq!(q.sample.as_deref(), Some("0"));
    let p = find(&results, "processed.transactions", "range(price)");
    assert_eq!(p.status, "pass", "{p:#?}");
    let refs = find(&results, "processed.transactions", "references(product_id)");
    assert_eq!(
        (refs.status.as_str(), refs.failing),
        ("fail", 1),
        "the blank id is no product: {refs:#?}"
    );
    let schema_ok = find(&results, "processed.transactions", "schema");
    assert_eq!(schema_ok.status, "pass");
    // the report goes to ops.quality
    quality::record(&fx.lake, "check-test", scope.now_micros, &results)
        .await
        .unwrap();
    let stored = fx
        .query(
            "SELECT count(*) AS n FROM ops.quality WHERE run_id = 'check-test' AND status = 'fail'",
        )
        .await;
    assert_eq!(
        stored.row(0).i64("n") as usize,
        results.iter().filter(|r| r.status == "fail").count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_and_a_stalled_step_times_out() {
    use shoplake_jobs::pipeline::{Fault, FaultInjector};
    // two failures, then success: the run goes through on the third attempt
    let mut fx = Fixture::with(&small_config());
    fx.cfg.pipeline.retry_backoff_ms = 10;
    let opts = PipelineOptions {
        faults: Some(FaultInjector(Arc::new(|step: &str, attempt: u32| {
            (step == "transactions_etl" && attempt <= 2)
                .then(|| Fault::Fail(format!("injected failure {attempt}")))
        }))),
        ..Default::default()
    };
    let summary = fx.run(&opts).await;
    let store = Store::open(&fx.lake.state_dir()).unwrap();
    let (run_rec, steps) = store.run(&summary.run_id).unwrap().unwrap();
    assert_eq!(run_rec.status, "succeeded");
    let tx = steps.iter().find(|s| s.name == "transactions_etl").unwrap();
    assert_eq!(
        (tx.status.as_str(), tx.attempts),
        ("succeeded", 3),
        "{tx:?}"
    );
    let rows = fx
        .query("SELECT count(*) AS n FROM processed.transactions")
        .await;
    assert_eq!(
        rows.row(0).i64("n"),
        1500,
        "the retried commit wrote each row once"
    );

    // a step that stalls past the timeout on every attempt fails the run
    let mut fx = Fixture::with(&small_config());
    fx.cfg.pipeline.retry_backoff_ms = 10;
    fx.cfg.pipeline.step_timeout_secs = 10; // the other steps, side by side on a busy machine, must fit
    let opts = PipelineOptions {
        faults: Some(FaultInjector(Arc::new(|step: &str, _| {
            (step == "curate").then_some(Fault::Stall(std::time::Duration::from_secs(300)))
        }))),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let err = run(&fx.lake, &fx.cfg, &opts, &Quiet)
        .await
        .expect_err("curate never finishes");
    assert!(
        matches!(err, JobError::Timeout(ref s, 10) if s == "curate"),
        "{err}"
    );
    assert!(
        t0.elapsed().as_secs() < 120,
        "three 10 s attempts, not a 300 s stall"
    );
    let store = Store::open(&fx.lake.state_dir()).unwrap();
    let (run_rec, steps) = store.run("latest").unwrap().unwrap();
    assert_eq!(run_rec.status, "failed");
    assert!(run_rec.error.unwrap().contains("timed out"));
    let curate = steps.iter().find(|s| s.name == "curate").unwrap();
    assert_eq!(
        (curate.status.as_str(), curate.attempts),
        ("failed", 3),
        "{curate:?}"
    );
    let kpis = fx
        .query("SELECT count(*) AS n FROM curated.daily_kpis")
        .await;
    assert_eq!(kpis.row(0).i64("n"), 0, "nothing published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_columns_evolve_the_table_and_a_file_missing_one_is_quarantined_and_alerted() {
    let mut fx = Fixture::with(&small_config());
    let (url, mut hooks) = webhook().await;
    fx.cfg.alerts.webhooks.push(WebhookConfig {
        url,
        format: WebhookFormat::Json,
        min_severity: Severity::Warn,
    });
    fx.run(&PipelineOptions::default()).await;
    drain(&mut hooks);
    let total = fx
        .query("SELECT count(*) AS n FROM processed.transactions")
        .await
        .row(0)
        .i64("n");

    // the shop's export gains two columns on the last day; another file of
    // that day lacks `price`
    let known = fx
        .query("SELECT customer_id, product_id FROM processed.transactions LIMIT 1")
        .await;
    let (cust, prod) = (
        known.row(0).str("customer_id"),
        known.row(0).str("product_id"),
    );
    let last = crate::common::day(crate::common::START) + crate::common::DAYS as i32 - 1;
    let dir = fx
        .raw_root()
        .join("transactions")
        .join(format!("date={}", ymd(last)));
    std::fs::write(
        dir.join("coupons.csv"),
        format!(
            "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status,Coupon Code,gift wrap,source\n\
             T-EVOLVED-1,{cust},{prod},1,10.00,10.00,{d},completed,SPRING10,yes,web\n\
             T-EVOLVED-2,{cust},{prod},2,5.00,10.00,{d},completed,,no,web\n",
            d = ymd(last)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.csv"),
        format!(
            "transaction_id,customer_id,product_id,quantity,total_amount,transaction_date,status\n\
             T-BROKEN-1,{cust},{prod},1,10.00,{d},completed\n",
            d = ymd(last)
        ),
    )
    .unwrap();
    let summary = fx.run(&PipelineOptions::default()).await;
    let cols = find(&summary.quality, "processed.transactions", "new_columns");
    assert_eq!(
        (cols.status.as_str(), cols.failing),
        ("fail", 2),
        "{cols:?}"
    );
    assert!(
        cols.message
            .contains("coupon_code (first in raw/transactions/")
            && cols.message.contains("gift_wrap"),
        "{}",
        cols.message
    );
    let ignored = find(&summary.quality, "raw.transactions", "ignored_fields");
    assert_eq!(
        (ignored.status.as_str(), ignored.failing),
        ("fail", 1),
        "{ignored:?}"
    );
    assert!(
        ignored.message.contains("\"source\""),
        "{}",
        ignored.message
    );
    let files = find(&summary.quality, "raw.transactions", "file_schema");
    assert_eq!(
        (files.status.as_str(), files.failing),
        ("fail", 1),
        "{files:?}"
    );
    assert!(
        files.message.contains("broken.csv") && files.message.contains("price"),
        "{}",
        files.message
    );
    assert!(
        !cols.blocks() && !files.blocks(),
        "drift warns, it does not block"
    );
    let tx = summary
        .steps
        .iter()
        .find(|s| s.name == "transactions_etl")
        .unwrap();
    assert!(
        tx.detail.contains("new columns: coupon_code, gift_wrap"),
        "{}",
        tx.detail
    );

    // the new columns hold the values; every older row reads null
    let rows = fx
        .query(
            "SELECT transaction_id, coupon_code, gift_wrap, source FROM processed.transactions \
             WHERE gift_wrap IS NOT NULL ORDER BY transaction_id",
        )
        .await;
    assert_eq!(rows.len(), 2, "{}", rows.dump(10));
    assert_eq!(rows.row(0).opt_str("coupon_code"), Some("SPRING10"));
    assert_eq!(
        rows.row(1).opt_str("coupon_code"),
        None,
        "an empty field is null"
    );
    assert_eq!(rows.row(1).opt_str("gift_wrap"), Some("no"));
    assert_eq!(
        rows.row(0).str("source"),
        "file",
        "a raw field never overwrites a column the pipeline derives"
    );
    let n = fx
        .query("SELECT count(*) AS n FROM processed.transactions WHERE gift_wrap IS NULL")
        .await
        .row(0)
        .i64("n");
    assert_eq!(n, total, "older rows read the new columns as null");
    let q = fx
        .query(
            "SELECT line, reason FROM quarantine.transactions WHERE source_file LIKE '%broken.csv'",
        )
        .await;
    assert_eq!(q.len(), 1, "{}", q.dump(10));
    assert_eq!(q.row(0).i64("line"), 0, "the whole file is refused");
    assert!(q.row(0).str("reason").contains("price"), "{}", q.dump(10));
    assert!(
        fx.lake.outdated_tables().await.unwrap().is_empty(),
        "an evolved table is not mistaken for one of another layout"
    );
    let sent = drain(&mut hooks);
    for key in [
        "quality:processed.transactions:new_columns",
        "quality:raw.transactions:file_schema",
        "quality:raw.transactions:ignored_fields",
    ] {
        assert!(sent.contains(&("firing".into(), key.into())), "{sent:?}");
    }

    // a later file without the new columns, for another day: its rows read
    // null there; the conditions clear
    std::fs::remove_file(dir.join("broken.csv")).unwrap();
    let first = crate::common::day(crate::common::START);
    let dir0 = fx
        .raw_root()
        .join("transactions")
        .join(format!("date={}", ymd(first)));
    std::fs::write(
        dir0.join("late.csv"),
        format!(
            "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status\n\
             T-LATE-1,{cust},{prod},1,10.00,10.00,{d},completed\n",
            d = ymd(first)
        ),
    )
    .unwrap();
    let summary = fx.run(&PipelineOptions::default()).await;
    let cols = find(&summary.quality, "processed.transactions", "new_columns");
    assert_eq!(cols.status, "pass", "{cols:?}");
    let late = fx
        .query("SELECT coupon_code FROM processed.transactions WHERE transaction_id = 'T-LATE-1'")
        .await;
    assert_eq!(late.len(), 1);
    assert_eq!(late.row(0).opt_str("coupon_code"), None);
    let kept = fx
        .query("SELECT count(*) AS n FROM processed.transactions WHERE coupon_code = 'SPRING10'")
        .await;
    assert_eq!(kept.row(0).i64("n"), 1, "the last day keeps its values");
    let sent = drain(&mut hooks);
    for key in [
        "quality:processed.transactions:new_columns",
        "quality:raw.transactions:file_schema",
    ] {
        assert!(sent.contains(&("resolved".into(), key.into())), "{sent:?}");
    }
    assert!(
        sent.iter().all(|(_, k)| !k.ends_with("ignored_fields")),
        "`source` is still dropped: no new alert, no resolution: {sent:?}"
    );
}

/// Records the order steps start and finish in.
#[derive(Default)]
struct Order(std::sync::Mutex<Vec<String>>);

impl shoplake_jobs::pipeline::Observer for Order {
    fn step_started(&self, name: &str) {
        self.0.lock().unwrap().push(format!("start {name}"));
    }
    fn step_finished(&self, r: &shoplake_jobs::pipeline::StepReport) {
        self.0.lock().unwrap().push(format!("end {}", r.name));
    }
}

impl Order {
    fn at(&self, what: &str) -> usize {
        let v = self.0.lock().unwrap();
        v.iter()
            .position(|e| e == what)
            .unwrap_or_else(|| panic!("no {what:?} in {v:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_run_side_by_side_and_a_failed_one_stops_only_its_dependants() {
    use shoplake_jobs::pipeline::{Fault, FaultInjector};
    // transactions_etl is slow: the other ETL steps finish meanwhile (8 s:
    // a debug build on a loaded 2-core machine took over 3 s for them)
    let mut fx1 = Fixture::with(&small_config());
    fx1.cfg.pipeline.retry_backoff_ms = 10;
    let opts = PipelineOptions {
        faults: Some(FaultInjector(Arc::new(|step: &str, attempt: u32| {
            (step == "transactions_etl" && attempt == 1)
                .then_some(Fault::Stall(std::time::Duration::from_secs(8)))
        }))),
        ..Default::default()
    };
    let order = Order::default();
    run(&fx1.lake, &fx1.cfg, &opts, &order).await.unwrap();
    for step in ["reviews_etl", "clickstream_sessions", "product_enrichment"] {
        assert!(
            order.at(&format!("end {step}")) < order.at("end transactions_etl"),
            "{step} waited for transactions_etl: {:?}",
            order.0.lock().unwrap()
        );
    }
    assert!(order.at("end transactions_etl") < order.at("start quality"));
    assert!(order.at("end quality") < order.at("start curate"));

    // reviews_etl fails on every attempt: the other ETL steps finish, the
    // steps after them do not run
    let mut fx = Fixture::with(&small_config());
    fx.cfg.pipeline.retry_backoff_ms = 10;
    let opts = PipelineOptions {
        faults: Some(FaultInjector(Arc::new(|step: &str, attempt: u32| {
            (step == "reviews_etl").then(|| Fault::Fail(format!("injected failure {attempt}")))
        }))),
        ..Default::default()
    };
    let err = run(&fx.lake, &fx.cfg, &opts, &Quiet)
        .await
        .expect_err("reviews_etl never succeeds");
    assert!(err.to_string().contains("injected failure 3"), "{err}");
    let store = Store::open(&fx.lake.state_dir()).unwrap();
    let (run_rec, steps) = store.run("latest").unwrap().unwrap();
    assert_eq!(run_rec.status, "failed");
    let status = |name: &str| {
        steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| (s.status.clone(), s.attempts))
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
    };
    assert_eq!(status("reviews_etl"), ("failed".into(), 3));
    assert_eq!(status("transactions_etl").0, "succeeded");
    assert_eq!(status("clickstream_sessions").0, "succeeded");
    assert_eq!(status("quality").0, "skipped");
    assert_eq!(status("curate").0, "skipped");
    let kpis = fx
        .query("SELECT count(*) AS n FROM curated.daily_kpis")
        .await;
    assert_eq!(kpis.row(0).i64("n"), 0, "nothing published");
    // the next run, without the fault, does the whole job
    let summary = fx.run(&PipelineOptions::default()).await;
    assert!(summary.dates.len() > 1, "{:?}", summary.dates);
    let count = "SELECT count(*) AS n FROM processed.reviews";
    let reviews = fx.query(count).await.row(0).i64("n");
    assert!(reviews > 0);
    assert_eq!(reviews, fx1.query(count).await.row(0).i64("n"));
}
