//! The benchmark harness cannot rot: `bench/run --smoke` generates 20,000
//! events, runs the pipeline and every report with this build, then the
//! same reports in DuckDB (from PyPI, in the bench virtualenv) over the same
//! Delta tables, and fails when any answer differs.

use std::process::Command;

#[test]
fn the_benchmark_harness_runs_and_duckdb_agrees_with_every_report() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/bench/run"))
        .args(["--smoke", "--bin", env!("CARGO_BIN_EXE_shoplake")])
        .current_dir(root)
        .output()
        .expect("bash runs bench/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench/run --smoke failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for report in ["daily_kpis", "top_products", "conversion_funnel"] {
        assert!(
            stdout.contains(report),
            "{report} not benchmarked:\n{stdout}"
        );
    }
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
}
