//! How a stream commit's cost grows with the table's data files, and what
//! compaction beside the commits does to it (the sink's situation in a long
//! run of `serve`).
//!
//! `cargo run --release -p shoplake-server --example commitbench -- [COMMITS] [ROWS] [COMPACT]`
//! commits COMMITS batches of ROWS events to `processed.events` of a fresh
//! lake in a temporary folder, one after the other as the sink does; with
//! COMPACT = `yes` the stream compactor runs beside them. Prints, every 100
//! commits, the mean commit time and the table's data files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoplake_core::config::LakeConfig;
use shoplake_core::event::{Event, EventBatchBuilder};
use shoplake_core::schema;
use shoplake_lake::Lake;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let commits: usize = args.get(1).map_or(Ok(1_000), |a| a.parse())?;
    let rows: usize = args.get(2).map_or(Ok(5_000), |a| a.parse())?;
    let compact = args.get(3).is_some_and(|a| a == "yes");
    let dir = std::env::temp_dir().join(format!("shoplake-commitbench-{}", std::process::id()));
    let lake = Lake::open(&dir, &LakeConfig::default())?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let compactor = compact.then(|| {
        let lake = lake.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut removed = 0;
            loop {
                tokio::select! {
                    _ = stop.notified() => return removed,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                match lake
                    .tidy_stream_table(&schema::EVENTS, false)
                    .await
                    .map(|m| m.compacted)
                {
                    Ok(n) => removed += n,
                    Err(e) => eprintln!("compaction failed: {e}"),
                }
            }
        })
    });
    let app = "bench";
    let started = Instant::now();
    let mut window = Duration::ZERO;
    let mut id = 0u64;
    for c in 1..=commits {
        let mut b = EventBatchBuilder::new(rows);
        for _ in 0..rows {
            id += 1;
            let eid = format!("e{id:012}");
            let anon = format!("a{}", id % 50_000);
            b.push(&Event {
                event_id: eid.into(),
                event_type: "page_view",
                event_name: "page_view".into(),
                event_ts: 1_764_892_800_000_000 + id as i64 * 1_000,
                received_at: 1_764_892_800_000_000 + id as i64 * 1_000,
                anonymous_id: Some(anon.into()),
                page_path: Some("/products/sku-123".into()),
                page_url: Some("https://shop.example/products/sku-123".into()),
                device_type: "desktop",
                source: "web".into(),
                protocol: "segment",
                ..Default::default()
            });
        }
        let batch = b.finish()?;
        let t = Instant::now();
        let mut a = lake.begin_append(&schema::EVENTS, app, c as i64).await?;
        a.write(batch).await?;
        a.commit().await?;
        window += t.elapsed();
        if c % 100 == 0 {
            let files = lake.data_files(&schema::EVENTS).await?;
            println!(
                "commits {c:>6}  mean commit {:>7.1} ms  data files {files:>5}  elapsed {:>6.1} s",
                window.as_secs_f64() * 1000.0 / 100.0,
                started.elapsed().as_secs_f64()
            );
            window = Duration::ZERO;
        }
    }
    stop.notify_one();
    if let Some(c) = compactor {
        println!("compaction removed {} files", c.await?);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
