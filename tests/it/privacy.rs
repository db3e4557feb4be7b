//! `shoplake privacy erase`: a person leaves every table, the raw landing
//! files and the Delta history, everyone else stays, and the next pipeline
//! run does not bring them back.

use shoplake_core::schema::{Storage, TABLES};
use shoplake_jobs::pipeline::PipelineOptions;
use shoplake_jobs::privacy::{Person, erase};

use crate::common::{Fixture, files_under, small_config};

/// `(table, rows of the person, rows of everyone)` for every table with a
/// person column.
async fn census(fx: &Fixture, id: &str) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
        let cols: Vec<&str> = t
            .columns
            .iter()
            .map(|c| c.name)
            .filter(|c| matches!(*c, "customer_id" | "user_id" | "anonymous_id"))
            .collect();
        if cols.is_empty() {
            continue;
        }
        let cond: Vec<String> = cols.iter().map(|c| format!("{c} = '{id}'")).collect();
        let r = fx
            .query(&format!(
                "SELECT count(*) FILTER (WHERE {}) AS mine, count(*) AS all_rows FROM {}",
                cond.join(" OR "),
                t.qualified()
            ))
            .await;
        out.push((
            t.qualified(),
            r.row(0).i64("mine"),
            r.row(0).i64("all_rows"),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_removes_a_person_everywhere_and_keeps_everyone_else() {
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    let top = fx
        .query("SELECT customer_id, count(*) AS n FROM processed.transactions GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")
        .await;
    let id = top.row(0).str("customer_id").to_owned();
    let before = census(&fx, &id).await;
    let held: Vec<&str> = before
        .iter()
        .filter(|(_, mine, _)| *mine > 0)
        .map(|(t, _, _)| t.as_str())
        .collect();
    for t in [
        "processed.transactions",
        "processed.events",
        "curated.customers",
        "curated.order_lines",
    ] {
        assert!(
            held.contains(&t),
            "the fixture's top customer is in {t}: {before:?}"
        );
    }
    let quoted = format!("\"{id}\"");
    let in_raw = |fx: &Fixture| {
        files_under(&fx.raw_root())
            .into_iter()
            .filter(|(_, bytes)| {
                String::from_utf8_lossy(bytes)
                    .lines()
                    .any(|l| l.split(',').any(|f| f.trim_matches('"') == id))
            })
            .count()
    };
    assert!(in_raw(&fx) > 0, "the raw landing files hold {id}");

    let person = Person {
        user_ids: vec![id.clone()],
        anonymous_ids: vec![],
    };
    let dry = erase(&fx.lake, &person, None, true).await.expect("dry run");
    assert_eq!(census(&fx, &id).await, before, "a dry run changes nothing");
    let done = erase(&fx.lake, &person, None, false).await.expect("erase");
    assert!(done.proven(), "{:?}", done.remaining);
    assert_eq!(
        dry.rows(),
        done.rows(),
        "the dry run counted what was erased"
    );

    let after = census(&fx, &id).await;
    for ((t, mine, all), (_, mine_after, all_after)) in before.iter().zip(&after) {
        assert_eq!(*mine_after, 0, "{t} still holds {id}");
        assert_eq!(*all_after, all - mine, "{t}: only {id}'s rows went");
        if *mine > 0 {
            let e = done
                .tables
                .iter()
                .find(|e| &e.table == t)
                .expect("reported");
            assert!(e.rows >= *mine as u64, "{t}: {e:?}");
        }
    }
    assert_eq!(in_raw(&fx), 0, "the raw landing files no longer hold {id}");

    // the Delta history is gone too: no log entry names the person (column
    // statistics, the delete's predicate), no data file outside the current
    // version is left on disk
    for t in TABLES
        .iter()
        .filter(|t| done.tables.iter().any(|e| e.table == t.qualified()))
    {
        let dir = fx.lake.table_dir(t);
        let files = files_under(&dir);
        for (name, bytes) in files.iter().filter(|(n, _)| n.ends_with(".json")) {
            assert!(
                !String::from_utf8_lossy(bytes).contains(&quoted),
                "{}/{name} still names {id}",
                t.qualified()
            );
        }
        if let Some(table) = fx.lake.load(t).await.unwrap() {
            let live = table.snapshot().unwrap().log_data().num_files();
            let on_disk = files
                .keys()
                .filter(|n| n.ends_with(".parquet") && !n.contains("_delta_log"))
                .count();
            assert_eq!(
                on_disk,
                live,
                "{}: every data file on disk is live",
                t.qualified()
            );
        }
    }

    // the next run re-processes the rewritten raw days without them
    fx.run(&PipelineOptions::default()).await;
    let again = census(&fx, &id).await;
    assert!(again.iter().all(|(_, mine, _)| *mine == 0), "{again:?}");
    let t = |c: &[(String, i64, i64)], name: &str| c.iter().find(|r| r.0 == name).unwrap().2;
    assert_eq!(
        t(&again, "processed.transactions"),
        t(&after, "processed.transactions"),
        "a re-run keeps everyone else"
    );

    // naming no one is an error, not an erasure of everything
    let err = erase(&fx.lake, &Person::default(), None, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--user-id"), "{err}");
}

/// `shoplake privacy mask`: a copy for a test environment. Every processed
/// and curated table is there with all its rows; no person id of the
/// original appears in it, yet each id maps to one pseudonym (joins and
/// per-customer figures are the same); payloads and addresses are gone,
/// URLs lost their query strings; raw and quarantine stay behind; and
/// reports on the copy answer what they answer on the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masked_copy_keeps_the_figures_and_no_person() {
    use shoplake_core::schema::Zone;
    let fx = Fixture::with(&small_config());
    fx.run(&PipelineOptions::default()).await;
    // a few events as the collector stores them: properties and an address
    let t = shoplake_core::schema::find("processed.events").unwrap();
    let collected = fx
        .engine()
        .query(
            "SELECT * REPLACE ('{\"coupon\":\"ANN-2024\"}' AS properties, '198.51.100.0' AS ip_anon) \
             FROM processed.events LIMIT 5",
        )
        .await
        .unwrap()
        .into_iter()
        .map(|b| shoplake_lake::conform(t, &b).unwrap())
        .collect();
    fx.lake
        .write(t, collected, shoplake_lake::WriteMode::Append)
        .await
        .unwrap();
    let to = tempfile::TempDir::new().unwrap();
    let copy_dir = to.path().join("copy");
    let made = shoplake_jobs::privacy::mask_copy(&fx.lake, &copy_dir)
        .await
        .unwrap();
    let copy = shoplake_lake::Lake::open(&copy_dir, &Default::default()).unwrap();
    let ce = shoplake_query::QueryEngine::new(&copy, &Default::default()).unwrap();
    let q = |sql: String| {
        let ce = &ce;
        async move { crate::common::query(ce, &sql).await }
    };

    let original = fx.delta_row_counts().await;
    for (table, rows) in &made.tables {
        let t = TABLES.iter().find(|t| &t.qualified() == table).unwrap();
        assert!(
            !matches!(t.zone, Zone::Raw | Zone::Quarantine),
            "{table} copied"
        );
        let n = q(format!("SELECT count(*) AS n FROM {table}"))
            .await
            .row(0)
            .i64("n");
        assert_eq!(n as u64, *rows, "{table}");
        if let Some(&want) = original.get(table) {
            assert_eq!(n, want, "{table}: every row copied");
        }
    }
    for t in [
        "processed.events",
        "processed.transactions",
        "curated.customers",
    ] {
        assert!(
            made.tables.iter().any(|(n, r)| n == t && *r > 0),
            "{t} copied"
        );
    }
    assert!(made.left_behind.contains(&"raw.events".to_string()));

    // no original id, but one pseudonym per id
    for (table, col) in [
        ("processed.transactions", "customer_id"),
        ("processed.events", "user_id"),
        ("processed.events", "anonymous_id"),
        ("processed.events", "session_id"),
        ("curated.customers", "customer_id"),
    ] {
        let ids = |rows: crate::common::Rows| -> std::collections::BTreeSet<String> {
            (0..rows.len())
                .map(|i| rows.row(i).str("v").to_owned())
                .collect()
        };
        let sql = format!("SELECT DISTINCT {col} AS v FROM {table} WHERE {col} IS NOT NULL");
        let before = ids(fx.query(&sql).await);
        let after = ids(q(sql).await);
        assert!(!before.is_empty(), "{table}.{col} has ids");
        assert_eq!(
            before.len(),
            after.len(),
            "{table}.{col}: one pseudonym per id"
        );
        assert!(
            before.is_disjoint(&after),
            "{table}.{col}: an original id in the copy"
        );
        assert!(after.iter().all(|v| v.starts_with("m-")), "{table}.{col}");
    }
    // the same per-customer figures, across a join of two tables
    let per_customer = "SELECT t.n, c.total FROM (SELECT customer_id, count(*) AS n FROM processed.transactions GROUP BY 1) t \
         JOIN (SELECT customer_id, count(*) AS total FROM curated.customers GROUP BY 1) c ON t.customer_id = c.customer_id \
         ORDER BY 1, 2";
    let a = fx.query(per_customer).await;
    let b = q(per_customer.into()).await;
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len(), "joins match as before");
    for i in 0..a.len() {
        assert_eq!(
            (a.row(i).i64("n"), a.row(i).i64("total")),
            (b.row(i).i64("n"), b.row(i).i64("total"))
        );
    }
    let held = "SELECT count(properties) AS p, count(ip_anon) AS ip, \
                count(*) FILTER (WHERE page_url LIKE '%?%') AS queries FROM processed.events";
    let had = fx.query(held).await;
    eprintln!(
        "the original: {} with properties, {} with an address, {} URLs with a query string",
        had.row(0).i64("p"),
        had.row(0).i64("ip"),
        had.row(0).i64("queries")
    );
    assert!(
        had.row(0).i64("p") >= 5 && had.row(0).i64("ip") >= 5 && had.row(0).i64("queries") > 0,
        "the original holds what the copy must not"
    );
    let gone = q(held.into()).await;
    assert_eq!(
        (
            gone.row(0).i64("p"),
            gone.row(0).i64("ip"),
            gone.row(0).i64("queries")
        ),
        (0, 0, 0)
    );
    let texts = q("SELECT count(review_text) AS n FROM processed.reviews".into()).await;
    assert_eq!(texts.row(0).i64("n"), 0);

    // a report answers the same
    let kpis = "SELECT date, orders, net_revenue FROM curated.daily_kpis ORDER BY date";
    let (a, b) = (fx.query(kpis).await, q(kpis.into()).await);
    assert_eq!(a.len(), b.len());
    for i in 0..a.len() {
        assert_eq!(a.row(i).i64("orders"), b.row(i).i64("orders"));
    }

    // not into a directory with something in it
    let again = shoplake_jobs::privacy::mask_copy(&fx.lake, &copy_dir).await;
    assert!(again.unwrap_err().to_string().contains("not empty"));
}
