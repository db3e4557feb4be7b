//! Upgrades, compaction and concurrent runs: what an operator meets after
//! months of unattended runs.

use std::process::Command;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use shoplake_core::schema::{self, Table};
use shoplake_jobs::pipeline::PipelineOptions;
use shoplake_lake::catalog;

use crate::common::model::Model;
use crate::common::{Fixture, all_reports, assert_reports_match, day, small_config, ymd};

/// Replaces `t` with a table of the same rows but one column fewer, as an
/// older shoplake would have written it.
async fn downgrade(fx: &Fixture, t: &Table, drop_column: &str) {
    let engine = fx.engine();
    let batches = engine
        .run_internal(&format!("SELECT * FROM {}", t.qualified()))
        .await
        .unwrap();
    let keep: Vec<usize> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name != drop_column)
        .map(|(i, _)| i)
        .collect();
    let schema = Arc::new(t.schema().project(&keep).unwrap());
    let old: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let cols = keep
                .iter()
                .map(|i| {
                    arrow::compute::cast(
                        b.column(*i),
                        schema
                            .field(keep.iter().position(|k| k == i).unwrap())
                            .data_type(),
                    )
                    .unwrap()
                })
                .collect();
            RecordBatch::try_new(Arc::new(Schema::new(schema.fields().clone())), cols).unwrap()
        })
        .collect();
    let old = if old.is_empty() {
        vec![RecordBatch::new_empty(Arc::new(Schema::new(
            schema.fields().clone(),
        )))]
    } else {
        old
    };
    fx.lake.drop_table(t).unwrap();
    std::fs::create_dir_all(fx.lake.table_dir(t)).unwrap();
    let mut w = shoplake_lake::deltalake::DeltaTable::try_from_url(fx.lake.table_url(t))
        .await
        .unwrap()
        .write(old);
    if let Some(p) = t.partition {
        w = w.with_partition_columns(vec![p.to_string()]);
    }
    w.await.unwrap();
    assert_eq!(
        fx.lake
            .outdated_tables()
            .await
            .unwrap()
            .iter()
            .filter(|x| x.qualified() == t.qualified())
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_written_by_an_older_version_are_rebuilt_from_raw() {
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    let before = all_reports(&fx.engine()).await;

    downgrade(&fx, &schema::SESSIONS, "country").await;
    downgrade(&fx, &schema::FUNNEL_DAILY, "page_view_sessions").await;
    // an upgrade: the bookmarks were written by another build
    let path = fx.lake.state_dir().join("pipeline.json");
    let mut marks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    marks["layout"] = serde_json::json!(0);
    std::fs::write(&path, serde_json::to_vec(&marks).unwrap()).unwrap();

    let summary = fx.run(&PipelineOptions::default()).await;
    let catalog_step = summary.steps.iter().find(|s| s.name == "catalog").unwrap();
    assert!(
        catalog_step.detail.contains("processed.sessions")
            && catalog_step.detail.contains("curated.funnel_daily"),
        "{}",
        catalog_step.detail
    );
    assert!(fx.lake.outdated_tables().await.unwrap().is_empty());
    assert_eq!(
        all_reports(&fx.engine()).await,
        before,
        "the rebuilt tables give the same answers"
    );
    // and the next run has nothing to do
    assert!(fx.run(&PipelineOptions::default()).await.nothing_to_do());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_the_session_tables_keeps_the_days_only_the_collector_saw() {
    use shoplake_core::event::{Event, EventBatchBuilder};
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    // a day after the files' last one, known only from collected events
    let d = day(crate::common::START) + crate::common::DAYS as i32 + 3;
    let midnight = i64::from(d) * 86_400 * 1_000_000;
    let mut b = EventBatchBuilder::new(4);
    for (i, (t, page)) in [("page_view", "/"), ("product_view", "/p/P0001")]
        .into_iter()
        .enumerate()
    {
        b.push(&Event {
            event_id: format!("col-{i}").into(),
            event_type: t,
            event_name: t.into(),
            event_ts: midnight + 3_600_000_000 + i as i64 * 60_000_000,
            received_at: midnight + 3_600_000_000 + i as i64 * 60_000_000,
            session_id: Some("col-session".into()),
            anonymous_id: Some("anon-col".into()),
            page_url: Some(format!("https://shop.example{page}").into()),
            page_path: Some(page.into()),
            referrer: Some("https://www.google.com/search?q=shoes".into()),
            browser: Some("Firefox".into()),
            product_id: (t == "product_view").then(|| "P0001".into()),
            device_type: "desktop",
            source: "web".into(),
            protocol: "segment",
            ..Default::default()
        });
    }
    fx.lake
        .write(
            &schema::EVENTS,
            vec![b.finish().unwrap()],
            shoplake_lake::WriteMode::Append,
        )
        .await
        .unwrap();

    // an upgrade changes processed.sessions: it is rebuilt with that day
    downgrade(&fx, &schema::SESSIONS, "browser").await;
    let path = fx.lake.state_dir().join("pipeline.json");
    let mut marks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    marks["layout"] = serde_json::json!(0);
    std::fs::write(&path, serde_json::to_vec(&marks).unwrap()).unwrap();
    let summary = fx.run(&PipelineOptions::default()).await;
    assert!(
        summary.steps.iter().any(|s| s.name == "collected_sessions"),
        "{:?}",
        summary.steps.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let rows = fx
        .query(&format!(
            "SELECT session_id, events, browser, referrer_host FROM processed.sessions \
             WHERE date = DATE '{}'",
            ymd(d)
        ))
        .await;
    assert_eq!(rows.len(), 1, "the collected day's session is back");
    let r = rows.row(0);
    assert_eq!(
        (
            r.str("session_id"),
            r.i64("events"),
            r.str("browser"),
            r.str("referrer_host")
        ),
        ("col-session", 2, "Firefox", "google.com")
    );
    let views = fx
        .query(&format!(
            "SELECT views FROM processed.product_activity WHERE date = DATE '{}'",
            ymd(d)
        ))
        .await;
    assert_eq!(views.row(0).i64("views"), 1);
    // the files' days are all there too
    let days = fx
        .query("SELECT count(DISTINCT date) AS n FROM processed.sessions")
        .await;
    assert_eq!(days.row(0).i64("n"), i64::from(crate::common::DAYS) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day_grain_models_stay_compact_over_many_incremental_runs() {
    let mut fx = Fixture::with(&small_config());
    fx.cfg.lake.compact_after_files = 3;
    let first = day(crate::common::START);
    let last = first + crate::common::DAYS as i32 - 1;
    // a backfill of the first days, then one run per day, as a daily schedule would
    fx.run(&PipelineOptions {
        from: None,
        to: Some(first + 4),
        ..Default::default()
    })
    .await;
    for d in first + 5..=last {
        let s = fx
            .run(&PipelineOptions {
                from: Some(d),
                to: Some(d),
                ..Default::default()
            })
            .await;
        if s.products_rebuilt {
            // a catalogue file landed that day: every day's product attributes are redone
            assert!(s.dates.contains(&ymd(d)));
        } else {
            assert_eq!(s.dates, vec![ymd(d)], "one day per run");
        }
    }
    for t in [
        &schema::PRODUCT_PERFORMANCE,
        &schema::PRODUCT_PAIRS,
        &schema::FUNNEL_DAILY,
        &schema::SESSIONS_DAILY,
    ] {
        let info = catalog::describe(&fx.lake, t).await.unwrap();
        assert!(
            info.files <= 4,
            "{} has {} files after {} runs",
            t.qualified(),
            info.files,
            last - first - 3
        );
    }
    assert_reports_match(&fx.engine(), &Model::from_raw(&fx.raw_root())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pipeline_runs_wait_for_each_other() {
    let fx = Fixture::with(&small_config());
    let reference = Fixture::with(&small_config());
    reference.run(&PipelineOptions::default()).await;
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_shoplake"))
            .arg("--data")
            .arg(fx.dir.path())
            .args(["pipeline", "run", "--format", "json"])
            .env("CI", "true")
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // one did the work, the other waited and found nothing left to do
    let dates = |o: &std::process::Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["dates"].as_array().unwrap().len()
    };
    let mut counts = [dates(&a), dates(&b)];
    counts.sort();
    assert_eq!(counts[0], 0, "the second run found nothing to do");
    assert_eq!(counts[1], crate::common::DAYS as usize);
    assert_eq!(
        fx.delta_row_counts().await,
        reference.delta_row_counts().await
    );
    assert_eq!(
        all_reports(&fx.engine()).await,
        all_reports(&reference.engine()).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_quarantine_table_stops_the_run_before_anything_is_deleted() {
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    let reviews_before = fx.delta_row_counts().await["processed.reviews"];
    downgrade(&fx, &schema::REVIEWS, "sentiment").await;
    downgrade(&fx, &schema::Q_TRANSACTIONS, "column").await;
    let path = fx.lake.state_dir().join("pipeline.json");
    let mut marks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    marks["layout"] = serde_json::json!(0);
    std::fs::write(&path, serde_json::to_vec(&marks).unwrap()).unwrap();

    let err = shoplake_jobs::pipeline::run(
        &fx.lake,
        &fx.cfg,
        &PipelineOptions::default(),
        &shoplake_jobs::pipeline::Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("quarantine.transactions") && err.contains("delete its folder"),
        "{err}"
    );
    // the derived table that also changed was left alone, rows and all
    assert!(
        fx.lake
            .table_dir(&schema::REVIEWS)
            .join("_delta_log")
            .exists()
    );
    let rows = fx
        .engine()
        .run_internal("SELECT COUNT(*) FROM processed.reviews")
        .await
        .unwrap();
    let n = rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, reviews_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tables_show_compressed_files_and_empty_results_keep_their_columns() {
    let fx = Fixture::with(&small_config());
    let dir = fx.raw_root().join("products").join("date=2025-02-01");
    std::fs::create_dir_all(&dir).unwrap();
    let text =
        "{\"product_id\":\"PZ1\",\"name\":\"Zip\",\"category\":\"x\",\"price\":2.5,\"stock\":1}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    std::fs::write(dir.join("extra.json.gz"), gz.finish().unwrap()).unwrap();
    let engine = fx.engine();
    let rows = engine
        .query("SELECT name, price, date FROM raw.products WHERE product_id = 'PZ1'")
        .await
        .unwrap();
    let out = shoplake_query::output::to_string(&rows, shoplake_query::output::OutputFormat::Csv)
        .unwrap();
    assert_eq!(out, "name,price,date\nZip,2.5,2025-02-01\n");
    let empty = engine
        .query("SELECT product_id, price FROM raw.products WHERE product_id = 'none'")
        .await
        .unwrap();
    let table =
        shoplake_query::output::to_string(&empty, shoplake_query::output::OutputFormat::Table)
            .unwrap();
    assert!(
        table.contains("product_id") && table.contains("price"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_compacts_vacuums_and_retires_old_raw_partitions_keeping_their_rows() {
    use shoplake_jobs::maintain::{MaintainRun, run};
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    // forced reruns replace every partition: the old files are unreferenced
    for _ in 0..2 {
        fx.run(&PipelineOptions {
            force: true,
            ..Default::default()
        })
        .await;
    }
    let before = fx.delta_row_counts().await;
    let files_on_disk = |t: &Table| {
        crate::common::files_under(&fx.lake.table_dir(t))
            .keys()
            .filter(|k| k.ends_with(".parquet"))
            .count()
    };
    let on_disk = files_on_disk(&schema::TRANSACTIONS);
    let first = day(crate::common::START);
    let m = MaintainRun {
        tables: Vec::new(),
        compact_above: Some(2),
        vacuum: true,
        vacuum_retain: Some(std::time::Duration::ZERO),
        raw_retention_days: Some(10),
        today: first + 15,
        dry_run: false,
    };
    let dry = run(
        &fx.lake,
        &fx.cfg,
        &MaintainRun {
            dry_run: true,
            ..m.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        files_on_disk(&schema::TRANSACTIONS),
        on_disk,
        "a dry run deletes nothing"
    );
    let mut old_parts: Vec<String> = fx
        .raw_files()
        .keys()
        .filter_map(|k| {
            let (source, rest) = k.split_once('/')?;
            let date = rest.strip_prefix("date=")?.split('/').next()?;
            (day(date) < first + 5).then(|| format!("{source}/{date}"))
        })
        .collect();
    old_parts.sort();
    old_parts.dedup();
    assert!(old_parts.len() >= 10, "{old_parts:?}");
    let mut planned = dry.raw_partitions_removed.clone();
    planned.sort();
    assert_eq!(
        planned, old_parts,
        "the partitions older than ten days back"
    );
    let r = run(&fx.lake, &fx.cfg, &m).await.unwrap();
    let tx = r
        .tables
        .iter()
        .find(|t| t.table == "processed.transactions")
        .unwrap();
    // one file per date partition: nothing to compact, the replaced ones to vacuum
    assert_eq!((tx.files_before, tx.compacted), (16, 0), "{tx:?}");
    assert!(tx.vacuumed > 0, "{tx:?}");
    // ops.quality gains a small file per run: three become one
    let q = r.tables.iter().find(|t| t.table == "ops.quality").unwrap();
    assert_eq!((q.files_before, q.compacted, q.written), (3, 3, 1), "{q:?}");
    assert!(
        files_on_disk(&schema::TRANSACTIONS) < on_disk,
        "{} files before, {} after",
        on_disk,
        files_on_disk(&schema::TRANSACTIONS)
    );
    // the raw partitions of the first five days are gone ...
    assert_eq!(r.raw_partitions_removed, dry.raw_partitions_removed);
    assert!(r.raw_bytes_removed > 0);
    let raw = fx.raw_files();
    assert!(
        !raw.keys()
            .any(|k| k.contains(&format!("date={}", ymd(first))))
    );
    assert!(
        raw.keys()
            .any(|k| k.contains(&format!("date={}", ymd(first + 5))))
    );
    // ... but every table holds what it held, and still does after the
    // next run (which finds nothing to do)
    assert_eq!(fx.delta_row_counts().await, before);
    let next = fx.run(&PipelineOptions::default()).await;
    assert!(next.nothing_to_do(), "{:?}", next.dates);
    assert_eq!(fx.delta_row_counts().await, before);
}
