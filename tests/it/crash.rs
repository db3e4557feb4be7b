//! A pipeline killed at any point, then run again, gives the same tables as a
//! run that was never interrupted: no duplicates, nothing missing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shoplake_core::config::Config;
use shoplake_core::schema::{Storage, TABLES, Zone};
use shoplake_jobs::store::Store;
use shoplake_lake::Lake;
use shoplake_query::QueryEngine;
use shoplake_query::output::{OutputFormat, to_string};

const BIN: &str = env!("CARGO_BIN_EXE_shoplake");

fn shoplake(data: &Path, args: &[&str], failpoint: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data").arg(data).args(args).env("CI", "true");
    match failpoint {
        Some(f) => cmd.env("SHOPLAKE_FAILPOINT", f),
        None => cmd.env_remove("SHOPLAKE_FAILPOINT"),
    };
    cmd.output().expect("run shoplake")
}

fn generate(data: &Path) {
    let out = shoplake(
        data,
        &[
            "generate",
            "--days",
            "6",
            "--customers",
            "300",
            "--products",
            "60",
            "--transactions",
            "1500",
            "--clickstream",
            "8000",
            "--reviews",
            "150",
            "--seed",
            "7",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every processed, curated and quarantine table as sorted text, without the
/// columns that record wall-clock time.
async fn dump(data: &Path) -> Vec<(String, String)> {
    let lake = Lake::open(data, &Config::default().lake).unwrap();
    let engine = QueryEngine::new(&lake, &Config::default().query).unwrap();
    let mut out = Vec::new();
    // (ops.quality records each run, crashed or not: it differs by design)
    for t in TABLES
        .iter()
        .filter(|t| t.storage == Storage::Delta && t.zone != Zone::Ops)
    {
        let cols: Vec<&str> = t
            .columns
            .iter()
            .map(|c| c.name)
            .filter(|c| !matches!(*c, "received_at" | "quarantined_at" | "products"))
            .collect();
        let list = cols
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {list} FROM {} ORDER BY {list}", t.qualified());
        let batches = engine
            .query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.push((
            t.qualified(),
            to_string(&batches, OutputFormat::Csv).unwrap(),
        ));
    }
    out
}

fn assert_same(reference: &[(String, String)], got: &[(String, String)], what: &str) {
    for ((name, want), (_, have)) in reference.iter().zip(got) {
        if want != have {
            let wl = want.lines().count();
            let hl = have.lines().count();
            panic!("{what}: {name} differs from the uninterrupted run ({wl} vs {hl} lines)");
        }
    }
    assert!(
        reference
            .iter()
            .any(|(n, t)| n.starts_with(Zone::Processed.name()) && t.lines().count() > 100),
        "the reference run wrote data"
    );
}

fn run_ok(data: &Path) {
    let out = shoplake(data, &["pipeline", "run"], None);
    assert!(
        out.status.success(),
        "pipeline run: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_killed_after_any_step_then_rerun_gives_the_same_tables() {
    let root = tempfile::tempdir().unwrap();
    let reference_dir = root.path().join("reference");
    generate(&reference_dir);
    run_ok(&reference_dir);
    let reference = dump(&reference_dir).await;

    for step in [
        "catalog",
        "product_enrichment",
        "transactions_etl",
        "clickstream_sessions",
        "reviews_etl",
        "quality",
        "curate",
    ] {
        let dir = root.path().join(step);
        generate(&dir);
        let out = shoplake(&dir, &["pipeline", "run"], Some(step));
        assert!(
            !out.status.success(),
            "the failpoint after {step} must abort the run"
        );
        run_ok(&dir);
        assert_same(
            &reference,
            &dump(&dir).await,
            &format!("crash after {step}"),
        );
        // the run history says what happened: the crashed run was found
        // and marked, the rerun succeeded
        let runs = Store::open(&dir.join("state")).unwrap().runs(10).unwrap();
        let statuses: Vec<&str> = runs.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(statuses, ["succeeded", "interrupted"], "after {step}");
        let (_, steps) = Store::open(&dir.join("state"))
            .unwrap()
            .run(&runs[1].run_id)
            .unwrap()
            .unwrap();
        let status = |name: &str| {
            steps
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.status.as_str())
        };
        assert_eq!(
            status(step),
            Some("succeeded"),
            "the crash came right after {step} finished: {steps:?}"
        );
        // the ETL steps run side by side; nothing that depends on the step
        // had begun
        let dependants: &[&str] = match step {
            "catalog" => &["transactions_etl", "reviews_etl", "quality", "curate"],
            "quality" => &["curate"],
            "curate" => &[],
            _ => &["quality", "curate"],
        };
        for d in dependants {
            assert_eq!(status(d), None, "{d} began before {step} ended: {steps:?}");
        }
        // and a further run finds nothing to do
        let out = shoplake(&dir, &["pipeline", "run"], None);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("nothing new"),
            "after {step}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_killed_at_random_moments_then_rerun_gives_the_same_tables() {
    let root = tempfile::tempdir().unwrap();
    let reference_dir = root.path().join("reference");
    generate(&reference_dir);
    let t0 = Instant::now();
    run_ok(&reference_dir);
    let full = t0.elapsed();
    let reference = dump(&reference_dir).await;

    let dir = root.path().join("killed");
    generate(&dir);
    // kill -9 at several points spread over a run's length, each time
    // resuming from whatever the previous kill left
    let mut killed = 0;
    for i in 1..=6u32 {
        // early enough that a run slowed by other tests is still going
        let at = full.mul_f64(f64::from(i) / 9.0);
        let mut child = Command::new(BIN)
            .arg("--data")
            .arg(&dir)
            .args(["pipeline", "run", "--force"])
            .env("CI", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at.max(Duration::from_millis(50)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    assert!(killed >= 3, "only {killed} runs were killed mid-way");
    run_ok(&dir);
    assert_same(&reference, &dump(&dir).await, "after random kill -9");
}
