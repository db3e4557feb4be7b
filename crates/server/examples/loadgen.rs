//! Load generator for `shoplake serve` (used by `bench/collect`).
//!
//! ```text
//! loadgen ADDR KEY [--connections N] [--batch N] [--seconds S] [--rate EVENTS_PER_S]
//!                  [--probe-data DIR]
//! ```
//!
//! Keeps N keep-alive HTTP/1.1 connections busy with Segment `/v1/batch`
//! requests of `--batch` realistic e-commerce events (unique message ids),
//! optionally paced to `--rate` events/s, and prints one JSON line: events
//! acknowledged per second, request latency percentiles, refusals. With
//! `--probe-data`, it also sends a marked event every 250 ms and measures how
//! long each takes to be queryable in `processed.events` after its 2xx.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ID_DIGITS: usize = 16;

struct Template {
    body: Vec<u8>,
    id_at: Vec<usize>,
}

fn template(key: &str, batch: usize) -> Template {
    let mut body = format!(r#"{{"writeKey":"{key}","sentAt":"2026-11-22T10:00:00.000Z","batch":["#)
        .into_bytes();
    let mut id_at = Vec::new();
    let kinds = [
        (
            "Product Viewed",
            r#""product_id":"P0042","name":"Walnut serving board","category":"Kitchen","brand":"Oakline","price":34.9"#,
        ),
        (
            "Product Added",
            r#""product_id":"P0042","name":"Walnut serving board","category":"Kitchen","brand":"Oakline","price":34.9,"quantity":1"#,
        ),
        ("Products Searched", r#""query":"serving board""#),
    ];
    for i in 0..batch {
        if i > 0 {
            body.push(b',');
        }
        let (name, props) = kinds[i % kinds.len()];
        body.extend_from_slice(br#"{"type":"track","messageId":"lg-"#);
        id_at.push(body.len());
        body.extend_from_slice(&[b'0'; ID_DIGITS]);
        body.extend_from_slice(
            format!(
                r#"","event":"{name}","anonymousId":"anon-{a}","timestamp":"2026-11-22T09:59:59.000Z","properties":{{{props}}},"context":{{"ip":"198.51.100.23","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36","page":{{"url":"https://shop.example/products/P0042?utm_source=newsletter&utm_medium=email","referrer":"https://www.google.com/"}},"library":{{"name":"analytics.js","version":"4.1.0"}},"sessionId":"s-{a}"}}}}"#,
                a = i % 7
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"]}");
    Template { body, id_at }
}

fn stamp(t: &Template, out: &mut Vec<u8>, first_id: u64) {
    out.clear();
    out.extend_from_slice(&t.body);
    for (i, at) in t.id_at.iter().enumerate() {
        let mut n = first_id + i as u64;
        for d in (0..ID_DIGITS).rev() {
            out[at + d] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
}

/// One request on a keep-alive connection; returns the status.
async fn send(
    s: &mut TcpStream,
    addr: &SocketAddr,
    path: &str,
    body: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    buf.clear();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed"));
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            return Ok(status);
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!(
            "usage: loadgen ADDR KEY [--connections N] [--batch N] [--seconds S] [--rate EVENTS_PER_S] [--probe-data DIR]"
        );
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR as host:port");
    let key = args[2].clone();
    let conns: usize = arg(&args, "--connections", 64);
    let batch: usize = arg(&args, "--batch", 50);
    let seconds: f64 = arg(&args, "--seconds", 10.0);
    let rate: f64 = arg(&args, "--rate", 0.0);
    let probe_data: Option<String> = args
        .iter()
        .position(|a| a == "--probe-data")
        .and_then(|i| args.get(i + 1).cloned());
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 100_000;

    let t = Arc::new(template(&key, batch));
    let next_id = Arc::new(AtomicU64::new(run_id * 100_000_000_000));
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (t, next_id, acked, refused, stop) = (
            t.clone(),
            next_id.clone(),
            acked.clone(),
            refused.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).ok();
            let mut body = Vec::new();
            let mut buf = Vec::new();
            // paced: each connection sends at rate/conns events per second
            let interval =
                (rate > 0.0).then(|| Duration::from_secs_f64(batch as f64 * conns as f64 / rate));
            let mut due = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / conns as f64));
            while !stop.load(Relaxed) {
                if let Some(i) = interval {
                    tokio::time::sleep_until(due.into()).await;
                    due += i;
                }
                stamp(&t, &mut body, next_id.fetch_add(batch as u64, Relaxed));
                let t0 = Instant::now();
                match send(&mut s, &addr, "/v1/batch", &body, &mut buf).await {
                    Ok(200) => {
                        acked.fetch_add(batch as u64, Relaxed);
                        lat.push(t0.elapsed().as_micros() as u64);
                    }
                    Ok(_) => {
                        refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => {
                        refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        match TcpStream::connect(addr).await {
                            Ok(n) => s = n,
                            Err(_) => break,
                        }
                    }
                }
            }
            lat
        }));
    }

    // queryability probes: one marked event every 250 ms; a poller looks for
    // every outstanding one each 100 ms, and keeps looking after the load
    // stops (up to 30 s), so a slow sink shows as long waits, not few probes
    let probes = probe_data.map(|dir| {
        let (stop, key) = (stop.clone(), key.clone());
        let acked: Arc<std::sync::Mutex<Vec<(String, Instant, i64)>>> = Default::default();
        let sender = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let mut buf = Vec::new();
                let mut n = 0;
                while !stop.load(Relaxed) {
                    n += 1;
                    let id = format!("probe-{run_id}-{n}");
                    let body = format!(r#"{{"writeKey":"{key}","type":"track","event":"Probe","messageId":"{id}","anonymousId":"probe"}}"#);
                    let sent_at = now_micros();
                    if send(&mut s, &addr, "/v1/track", body.as_bytes(), &mut buf).await.ok() == Some(200) {
                        acked.lock().unwrap().push((id, Instant::now(), sent_at));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        tokio::spawn(async move {
            let lake = shoplake_lake::Lake::open(std::path::Path::new(&dir), &Default::default()).unwrap();
            let mut waits = Vec::new();
            let mut outstanding: Vec<(String, Instant, i64)> = Vec::new();
            loop {
                let done_sending = stop.load(Relaxed);
                outstanding.append(&mut acked.lock().unwrap());
                if done_sending && outstanding.is_empty() {
                    break;
                }
                if let Some(since) = outstanding.iter().map(|p| p.2).min() {
                    let engine = shoplake_query::QueryEngine::new(&lake, &Default::default()).unwrap();
                    // received_at lets the scan skip files older than the probes
                    let sql = format!(
                        "SELECT event_id FROM processed.events WHERE received_at >= to_timestamp_micros({}) AND event_id LIKE 'probe-{run_id}-%'",
                        since - 5_000_000
                    );
                    let found: std::collections::HashSet<String> = match engine.run_internal(&sql).await {
                        Ok(batches) => batches
                            .iter()
                            .flat_map(|b| {
                                let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
                                let c = c.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
                                c.iter().flatten().map(str::to_string).collect::<Vec<_>>()
                            })
                            .collect(),
                        Err(_) => Default::default(),
                    };
                    outstanding.retain(|(id, at, _)| {
                        if found.contains(id) {
                            waits.push(at.elapsed().as_micros() as u64);
                            false
                        } else if at.elapsed() > Duration::from_secs(30) {
                            waits.push(u64::MAX);
                            false
                        } else {
                            true
                        }
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sender.await.ok();
            waits
        })
    });

    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat: Vec<u64> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    lat.sort_unstable();
    let mut waits = match probes {
        Some(p) => p.await.unwrap_or_default(),
        None => Vec::new(),
    };
    waits.sort_unstable();
    let acked = acked.load(Relaxed);
    let out = serde_json::json!({
        "connections": conns,
        "batch": batch,
        "target_rate": rate,
        "seconds": elapsed,
        "events_acked": acked,
        "events_per_s": acked as f64 / elapsed,
        "requests_refused": refused.load(Relaxed),
        "latency_ms": {"p50": pct(&lat, 0.5), "p90": pct(&lat, 0.9), "p99": pct(&lat, 0.99), "max": pct(&lat, 1.0)},
        "queryable_ms": {"probes": waits.len(), "p50": pct(&waits, 0.5), "p99": pct(&waits, 0.99), "max": pct(&waits, 1.0)},
    });
    println!("{out}");
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
