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
