//! One day of collected events at soak scale, written straight into a data
//! directory's `processed.events` (as the sink would, marked as collected),
//! so `shoplake pipeline run` can be measured on it without an hour of load.
//!
//! `cargo run --release -p shoplake-server --example bigday -- DATA EVENTS [SESSIONS]`
//! writes EVENTS events of today (UTC) spread over SESSIONS client session
//! ids (default 7, what `loadgen` sends: a handful of sessions of millions of
//! events each), in commits of 500,000. Then run
//! `/usr/bin/time -v shoplake pipeline run --data DATA` and read its peak
//! memory ("Maximum resident set size").

use std::time::Instant;

use shoplake_core::config::LakeConfig;
use shoplake_core::event::{Event, EventBatchBuilder};
use shoplake_core::schema;
use shoplake_lake::{Lake, state};

const COMMIT_EVENTS: u64 = 500_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(data), Some(events)) = (args.get(1), args.get(2)) else {
        return Err("usage: bigday DATA EVENTS [SESSIONS]".into());
    };
    let events: u64 = events.parse()?;
    let sessions: u64 = args.get(3).map_or(Ok(7), |a| a.parse())?;
    let lake = Lake::open(std::path::Path::new(data), &LakeConfig::default())?;
    lake.ensure_tables().await?;
    let now = chrono::Utc::now().timestamp_micros();
    let day_start = now - now.rem_euclid(86_400_000_000);
    let day = (day_start / 86_400_000_000) as i32;
    // spread over the day so far
    let step = ((now - day_start) / events.max(1) as i64).max(1);
    let types = [
        "page_view",
        "product_view",
        "add_to_cart",
        "checkout_started",
        "purchase",
    ];
    let started = Instant::now();
    let mut id = 0u64;
    let mut commit = 0i64;
    while id < events {
        let n = COMMIT_EVENTS.min(events - id);
        let mut b = EventBatchBuilder::new(n as usize);
        for _ in 0..n {
            id += 1;
            let s = id % sessions.max(1);
            let t = types[(id % 31 % 5) as usize];
            b.push(&Event {
                event_id: format!("bigday-{id:012}").into(),
                event_type: t,
                event_name: t.into(),
                event_ts: day_start + id as i64 * step,
                received_at: day_start + id as i64 * step,
                anonymous_id: Some(format!("anon-{s}").into()),
                session_id: Some(format!("s-{s}").into()),
                page_path: Some("/products/P0042".into()),
                page_url: Some(
                    "https://shop.example/products/P0042?utm_source=newsletter&utm_medium=email"
                        .into(),
                ),
                referrer: Some("https://www.google.com/".into()),
                utm_source: Some("newsletter".into()),
                utm_medium: Some("email".into()),
                product_id: Some(format!("P{:04}", id % 500).into()),
                browser: Some("Chrome".into()),
                country: Some("DE".into()),
                device_type: "desktop",
                source: "web".into(),
                protocol: "segment",
                ..Default::default()
            });
        }
        commit += 1;
        let mut a = lake.begin_append(&schema::EVENTS, "bigday", commit).await?;
        a.write(b.finish()?).await?;
        a.commit().await?;
        if commit % 20 == 0 {
            println!(
                "{id:>12} events  {:>6.0} s  {:>9.0} events/s",
                started.elapsed().as_secs_f64(),
                id as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    state::mark_collected(&lake, day);
    println!(
        "{events} events in {sessions} sessions on day {day} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
