//! The collector end to end: real HTTP requests of every protocol into a
//! running server, then the lake tables they must land in; limits and
//! refusals; `kill -9` under load; the tracker in a real headless Chromium.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoplake_core::config::{Config, SourceConfig};
use shoplake_lake::Lake;
use shoplake_query::QueryEngine;
use tempfile::TempDir;

use crate::common::{Cell, Rows, query};

const BIN: &str = env!("CARGO_BIN_EXE_shoplake");
pub(crate) const KEY: &str = "web-key-123456";

/// A response: status, headers (lower-case names) and body.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    })
}

fn post_json(addr: SocketAddr, path: &str, body: &str) -> Resp {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json"), ("User-Agent", UA)],
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// A server running in this process.
pub(crate) struct Server {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Where the PostgreSQL endpoint listens ([`Server::start_with_pg`]).
    pub(crate) pg_addr: Option<SocketAddr>,
    data: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<shoplake_server::Result<()>>,
}

impl Server {
    pub(crate) async fn start(data: &Path, config: Config) -> Server {
        Server::start_on(data, config, false).await
    }

    /// [`Server::start`] with the PostgreSQL endpoint on too.
    pub(crate) async fn start_with_pg(data: &Path, config: Config) -> Server {
        Server::start_on(data, config, true).await
    }

    async fn start_on(data: &Path, config: Config, pg: bool) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let postgres = match pg {
            true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let pg_addr = postgres.as_ref().map(|l| l.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = shoplake_server::ServeOptions {
            data_dir: data.to_path_buf(),
            config,
            write_keys: vec![
                shoplake_server::keys::parse_write_key(&format!("web={KEY}")).unwrap(),
            ],
        };
        let listeners = shoplake_server::Listeners {
            http: listener,
            postgres,
        };
        let task = tokio::spawn(shoplake_server::serve_on(opts, listeners, async move {
            let _ = rx.await;
        }));
        let s = Server {
            addr,
            pg_addr,
            data: data.to_path_buf(),
            stop: Some(tx),
            task,
        };
        s.wait_ready(Duration::from_secs(30));
        s
    }

    fn wait_ready(&self, timeout: Duration) {
        wait_ready(self.addr, timeout);
    }

    /// Graceful stop: everything acknowledged is committed when it returns.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().expect("server stopped cleanly");
    }

    fn engine(&self) -> QueryEngine {
        engine(&self.data)
    }
}

fn wait_ready(addr: SocketAddr, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http(addr, "GET", "/readyz", &[], b"")
            && r.status == 200
        {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "server at {addr} not ready after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn engine(data: &Path) -> QueryEngine {
    let lake = Lake::open(data, &Default::default()).unwrap();
    QueryEngine::new(&lake, &Default::default()).unwrap()
}

fn test_config() -> Config {
    let mut c = Config::default();
    c.server.commit_interval_ms = 200;
    c.sources.push(SourceConfig {
        name: "limited".into(),
        key: "limited-key-1234".into(),
        origins: vec!["https://shop.example".into()],
        rate_limit: 5.0,
    });
    c
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn b64url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A cell as plain text ("" for NULL).
fn cell(rows: &Rows, r: usize, c: &str) -> String {
    if r >= rows.len() {
        panic!("no row {r} for column {c}: {}", rows.dump(10));
    }
    match rows.row(r).get(c) {
        Cell::Str(s) => s.clone(),
        Cell::Null => String::new(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_lands_in_the_lake_once() {
    let dir = TempDir::new().unwrap();
    let srv = Server::start(dir.path(), test_config()).await;
    let a = srv.addr;

    // Segment batch: batch-level context merged, an order with products, a
    // bad item (no identity) and a retry of the first message
    let batch = format!(
        r#"{{"writeKey":"{KEY}","context":{{"ip":"203.0.113.77","page":{{"url":"https://shop.example/p/P0001?utm_source=news&utm_medium=email&utm_campaign=w1"}}}},
        "batch":[
          {{"type":"track","event":"Product Viewed","messageId":"seg-1","anonymousId":"anon-1","timestamp":"2026-11-20T10:00:00Z","properties":{{"product_id":"P0001","name":"Mug","price":12.5,"category":"Kitchen"}}}},
          {{"type":"track","event":"Order Completed","messageId":"seg-2","anonymousId":"anon-1","userId":"C42","timestamp":"2026-11-20T10:05:00Z",
            "properties":{{"order_id":"O-100","revenue":37.5,"currency":"EUR","products":[{{"product_id":"P0001","price":12.5,"quantity":3}}]}}}},
          {{"type":"track","event":"Product Added","messageId":"seg-bad"}},
          {{"type":"page","messageId":"seg-3","anonymousId":"anon-1","name":"Home","timestamp":"2026-11-20T09:59:00Z"}}
        ]}}"#
    );
    let r = post_json(a, "/v1/batch", &batch);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["accepted"], 3);
    assert_eq!(v["rejected"], 1);
    // the same batch again (a client retry): nothing new may land
    assert_eq!(post_json(a, "/v1/batch", &batch).status, 200);

    // Segment track with HTTP Basic auth
    let auth = format!("Basic {}", b64(&format!("{KEY}:")));
    let r = http(
        a,
        "POST",
        "/v1/track",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        br#"{"event":"Products Searched","messageId":"seg-4","userId":"C42","properties":{"query":"blue mug"}}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Segment pixel
    let pixel = b64(&format!(
        r#"{{"writeKey":"{KEY}","event":"Cart Viewed","messageId":"seg-5","anonymousId":"anon-2"}}"#
    ));
    let r = http(
        a,
        "GET",
        &format!("/v1/pixel/track?data={pixel}"),
        &[("User-Agent", UA)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/gif"));

    // Snowplow tp2: a self-describing e-commerce action with a product entity
    let ue = b64url(
        r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2","data":{"type":"add_to_cart"}}}"#,
    );
    let co = b64url(
        r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0","data":{"id":"P0002","name":"Tea","category":"Food","price":4.2,"currency":"EUR","quantity":2}}]}"#,
    );
    let tp2 = format!(
        r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{{"e":"ue","eid":"sp-1","aid":"web","p":"web","tv":"js-3.0.0","duid":"d-1","sid":"s-1","dtm":"1763632800000","stm":"1763632800000","url":"https://shop.example/p/P0002","ue_px":"{ue}","cx":"{co}"}}]}}"#
    );
    let r = post_json(a, "/com.snowplowanalytics.snowplow/tp2", &tp2);
    assert_eq!(r.status, 200, "{}", r.text());
    // Snowplow GET pixel page view
    let r = http(
        a,
        "GET",
        "/i?e=pv&eid=sp-2&aid=web&p=web&tv=js-3&duid=d-1&sid=s-1&url=https%3A%2F%2Fshop.example%2F&dtm=1763632801000",
        &[("User-Agent", UA)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);

    // GA4 purchase
    let r = post_json(
        a,
        &format!("/mp/collect?measurement_id=G-1&api_secret={KEY}"),
        r#"{"client_id":"ga-1","user_id":"C7","events":[{"name":"purchase","params":{"transaction_id":"T-9","value":30.03,"currency":"USD","session_id":"ga-s","items":[{"item_id":"P0003","item_name":"Pen","price":10.01,"quantity":3}]}}]}"#,
    );
    assert_eq!(r.status, 204, "{}", r.text());

    // PostHog capture and batch
    let r = post_json(
        a,
        "/capture/",
        &format!(
            r#"{{"api_key":"{KEY}","event":"$pageview","distinct_id":"ph-1","uuid":"ph-uuid-1","properties":{{"$current_url":"https://shop.example/c/kitchen"}}}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(
        a,
        "/batch/",
        &format!(
            r#"{{"api_key":"{KEY}","batch":[{{"event":"Product Added","distinct_id":"ph-1","uuid":"ph-uuid-2","properties":{{"product_id":"P0004","price":5,"quantity":1}}}}]}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // AWS Clickstream (gzip, appId names the source)
    let aws = r#"[{"event_type":"_page_view","event_id":"aws-1","app_id":"web","unique_id":"u-1","device_id":"dv-1","timestamp":1763632802000,"platform":"Web","attributes":{"_page_url":"https://shop.example/"}}]"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(aws.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let r = http(
        a,
        "POST",
        "/collect?appId=web&platform=Web&compression=gzip",
        &[("Content-Type", "application/json")],
        &gz,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // refusals
    let r = post_json(
        a,
        "/v1/track",
        r#"{"writeKey":"wrong-key-000","event":"x","anonymousId":"a"}"#,
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let r = post_json(a, "/v1/track", r#"{"event":"x","anonymousId":"a"}"#);
    assert_eq!(r.status, 401);
    let r = post_json(a, "/v1/track", "this is not json");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("JSON"), "{}", r.text());
    let big = format!(
        r#"{{"writeKey":"{KEY}","event":"x","anonymousId":"a","properties":{{"pad":"{}"}}}}"#,
        "x".repeat(600 * 1024)
    );
    assert_eq!(post_json(a, "/v1/track", &big).status, 413);
    let r = http(
        a,
        "POST",
        "/v1/track",
        &[
            ("Origin", "https://evil.example"),
            ("Content-Type", "application/json"),
        ],
        br#"{"writeKey":"limited-key-1234","event":"x","anonymousId":"a"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 403);
    let r = http(
        a,
        "OPTIONS",
        "/v1/batch",
        &[
            ("Origin", "https://shop.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let mut limited: i64 = 0;
    for i in 0..20 {
        let r = http(
            a,
            "POST",
            "/v1/track",
            &[("Origin", "https://shop.example"), ("Content-Type", "application/json")],
            format!(r#"{{"writeKey":"limited-key-1234","event":"x","anonymousId":"a","messageId":"lim-{i}"}}"#).as_bytes(),
        )
        .unwrap();
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            limited += 1;
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!(
        limited > 0,
        "rate limit of 5 events/s never applied to 20 quick events"
    );

    // live: queryable while the server runs
    let t0 = Instant::now();
    loop {
        let rows = query(&srv.engine(), "SELECT count(*) AS n FROM processed.events").await;
        if cell(&rows, 0, "n").parse::<i64>().unwrap_or(0) >= 10 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "events not queryable after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // metrics: for a token (a scraper's `metrics` one will do), not for anyone
    let anon = http(a, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(anon.status, 401, "{}", anon.text());
    let store = shoplake_jobs::store::Store::open(&dir.path().join("state")).unwrap();
    let (scraper, _) = shoplake_server::auth::create_token(
        &store,
        "prometheus",
        shoplake_jobs::accounts::Role::Metrics,
        None,
    )
    .unwrap();
    let scraper = format!("Bearer {scraper}");
    let m = http(a, "GET", "/metrics", &[("Authorization", &scraper)], b"")
        .unwrap()
        .text();
    assert!(
        m.contains("shoplake_events_accepted_total{protocol=\"ga4\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "shoplake_events_rejected_total{protocol=\"segment\",reason=\"unauthorized\"} 2"
        ),
        "{m}"
    );
    assert!(
        m.contains("shoplake_events_rejected_total{protocol=\"segment\",reason=\"invalid\"} 2"),
        "{m}"
    );
    assert!(m.contains("shoplake_wal_fsyncs_total"));
    srv.stop().await;

    let e = engine(dir.path());
    let rows = query(
        &e,
        "SELECT event_id, count(*) AS n FROM processed.events GROUP BY event_id HAVING count(*) > 1",
    )
    .await;
    assert_eq!(rows.len(), 0, "duplicated events: {rows:?}");
    let rows = query(
        &e,
        "SELECT protocol, count(*) AS n FROM processed.events WHERE source = 'web' GROUP BY protocol ORDER BY protocol",
    )
    .await;
    let by: Vec<(String, String)> = (0..rows.len())
        .map(|i| (cell(&rows, i, "protocol"), cell(&rows, i, "n")))
        .collect();
    assert_eq!(
        by,
        [
            ("aws_clickstream".into(), "1".into()),
            ("ga4".into(), "1".into()),
            ("posthog".into(), "2".into()),
            ("segment".into(), "5".into()),
            ("snowplow".into(), "2".into()),
        ]
    );
    let rows = query(
        &e,
        "SELECT event_type, order_id, CAST(revenue AS VARCHAR) AS revenue, currency, user_id, products[1]['product_id'] AS p, products[1]['quantity'] AS q, utm_source, utm_campaign, ip_anon, device_type, browser, is_bot
         FROM processed.events WHERE event_id = 'seg-2'",
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(cell(&rows, 0, "event_type"), "purchase");
    assert_eq!(cell(&rows, 0, "order_id"), "O-100");
    assert_eq!(cell(&rows, 0, "revenue"), "37.50");
    assert_eq!(cell(&rows, 0, "currency"), "EUR");
    assert_eq!(cell(&rows, 0, "user_id"), "C42");
    assert_eq!(cell(&rows, 0, "p"), "P0001");
    assert_eq!(cell(&rows, 0, "q"), "3");
    assert_eq!(cell(&rows, 0, "utm_source"), "news");
    assert_eq!(cell(&rows, 0, "utm_campaign"), "w1");
    assert_eq!(cell(&rows, 0, "ip_anon"), "203.0.113.0");
    assert_eq!(cell(&rows, 0, "device_type"), "desktop");
    assert_eq!(cell(&rows, 0, "is_bot"), "false");
    let rows = query(&e, "SELECT event_type, CAST(revenue AS VARCHAR) AS revenue, order_id, session_id FROM processed.events WHERE protocol = 'ga4'").await;
    assert_eq!(cell(&rows, 0, "event_type"), "purchase");
    assert_eq!(cell(&rows, 0, "revenue"), "30.03");
    assert_eq!(cell(&rows, 0, "order_id"), "T-9");
    let rows = query(
        &e,
        "SELECT event_type, product_id, session_id FROM processed.events WHERE event_id = 'sp-1'",
    )
    .await;
    assert_eq!(cell(&rows, 0, "event_type"), "add_to_cart");
    assert_eq!(cell(&rows, 0, "product_id"), "P0002");
    assert_eq!(cell(&rows, 0, "session_id"), "s-1");
    let rows = query(
        &e,
        "SELECT search_query FROM processed.events WHERE event_id = 'seg-4'",
    )
    .await;
    assert_eq!(cell(&rows, 0, "search_query"), "blue mug");

    // raw.events: every accepted event once, payload kept, full IP never stored
    let rows = query(
        &e,
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM raw.events WHERE source = 'web'",
    )
    .await;
    assert_eq!(cell(&rows, 0, "n"), cell(&rows, 0, "d"));
    assert_eq!(cell(&rows, 0, "n"), "11");
    let rows = query(
        &e,
        "SELECT count(*) AS n FROM raw.events WHERE source = 'limited'",
    )
    .await;
    let limited_ok: i64 = cell(&rows, 0, "n").parse().unwrap();
    assert_eq!(
        limited_ok,
        20 - limited,
        "every 2xx of the rate-limited source is in the lake once"
    );
    let rows = query(
        &e,
        "SELECT count(*) AS n FROM raw.events WHERE payload LIKE '%web-key-123456%'",
    )
    .await;
    assert_eq!(
        cell(&rows, 0, "n"),
        "0",
        "a write key was stored in the lake"
    );
    let rows = query(
        &e,
        "SELECT count(*) AS n FROM raw.events WHERE payload LIKE '%203.0.113.77%'",
    )
    .await;
    assert_eq!(cell(&rows, 0, "n"), "0", "a full IP address was stored");
    // quarantine: the item without identity, with a reason and its payload,
    // once although the batch was sent twice (a retry)
    let rows = query(
        &e,
        "SELECT stage, source_file, line, reason, payload FROM quarantine.events",
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(cell(&rows, 0, "stage"), "collect");
    assert_eq!(cell(&rows, 0, "source_file"), "web:segment:/v1/batch");
    assert_eq!(cell(&rows, 0, "line"), "3");
    assert!(cell(&rows, 0, "payload").contains("seg-bad"));
    assert!(!cell(&rows, 0, "reason").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bytes_get_an_answer_below_500_and_never_a_crash() {
    let dir = TempDir::new().unwrap();
    let srv = Server::start(dir.path(), test_config()).await;
    let paths = [
        "/v1/batch",
        "/v1/track",
        "/com.snowplowanalytics.snowplow/tp2",
        "/mp/collect?api_secret=web-key-123456",
        "/i/v0/e/",
        "/batch/",
        "/collect?appId=web",
        "/collect?appId=web&compression=gzip",
    ];
    let seeds: [&[u8]; 5] = [
        br#"{"writeKey":"web-key-123456","batch":[{"type":"track","event":"Order Completed","anonymousId":"a","properties":{"revenue":1e400,"products":[{"price":"x","quantity":-1}]}}]}"#,
        br#"{"api_key":"web-key-123456","batch":[{"event":"$pageview","distinct_id":null}]}"#,
        br#"{"schema":"iglu:x","data":[{"e":"ue","aid":"web","ue_px":"!!!","dtm":"abc"}]}"#,
        br#"{"client_id":"c","events":[{"name":"purchase","params":{"items":[{}],"value":"NaN"}}]}"#,
        b"[{\"event_type\":\"_page_view\",\"timestamp\":-99999999999999999999}]",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400 {
        let path = paths[rnd() as usize % paths.len()];
        let mut body = seeds[rnd() as usize % seeds.len()].to_vec();
        match i % 4 {
            0 => {
                for _ in 0..1 + rnd() % 8 {
                    let at = rnd() as usize % body.len();
                    body[at] = rnd() as u8;
                }
            }
            1 => body.truncate(rnd() as usize % body.len()),
            2 => body = (0..rnd() % 512).map(|_| rnd() as u8).collect(),
            _ => {}
        }
        let enc = if i % 9 == 0 {
            Some(("Content-Encoding", "gzip"))
        } else {
            None
        };
        let mut h = vec![("Content-Type", "application/json")];
        h.extend(enc);
        let r = http(srv.addr, "POST", path, &h, &body)
            .unwrap_or_else(|e| panic!("request {i} to {path}: no answer: {e}"));
        assert!(
            r.status < 500,
            "request {i} to {path}: {} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(
        http(srv.addr, "GET", "/healthz", &[], b"").unwrap().status,
        200
    );
    srv.stop().await;
}

fn shoplake_serve(data: &Path, addr: SocketAddr) -> Child {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args([
            "serve",
            "--addr",
            &addr.to_string(),
            "--write-key",
            &format!("web={KEY}"),
        ])
        .env("SHOPLAKE_SERVER__COMMIT_INTERVAL_MS", "300")
        // the sink's upkeep a second after start: kills land in compactions too
        .env("SHOPLAKE_LAKE__STREAM_UPKEEP_SECS", "1")
        .env("SHOPLAKE_LAKE__COMPACT_AFTER_FILES", "4")
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shoplake serve")
}

/// A Segment batch of `n` track events named `event` with ids
/// `{prefix}-0` … `{prefix}-{n-1}`, from `anonymous_id`, each with
/// `properties` (a JSON object; none when empty): the ids and the body.
fn track_batch(
    prefix: &str,
    n: usize,
    event: &str,
    anonymous_id: &str,
    properties: &str,
) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let properties = match properties {
        "" => String::new(),
        p => format!(r#","properties":{p}"#),
    };
    let items: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"type":"track","event":"{event}","messageId":"{id}","anonymousId":"{anonymous_id}"{properties}}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"writeKey":"{KEY}","batch":[{}]}}"#, items.join(","));
    (ids, body)
}

pub(crate) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Waits until `processed.events` holds at least `n` distinct events (the
/// sink has committed everything acknowledged); fails once the count has
/// not grown for `within`, saying how many are there, so a slow catch-up
/// after a long run is told apart from a loss.
async fn wait_for_events(e: &QueryEngine, n: usize, within: Duration, what: &str) {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let rows = query(
            e,
            "SELECT count(DISTINCT event_id) AS n FROM processed.events",
        )
        .await;
        let have = cell(&rows, 0, "n").parse::<usize>().unwrap();
        if have >= n {
            return;
        }
        if have > last {
            (last, since) = (have, Instant::now());
        }
        assert!(
            since.elapsed() < within,
            "acknowledged events missing {what}: {have} of {n} in processed.events, \
             no progress for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `raw.events` and `processed.events` hold each event once, and every
/// acknowledged id is in `processed.events`; `context` goes into the
/// messages. Returns the row count of each table, raw first.
async fn assert_acknowledged_once(e: &QueryEngine, acked: &[String], context: &str) -> [usize; 2] {
    let mut counts = [0; 2];
    for (i, table) in ["raw.events", "processed.events"].into_iter().enumerate() {
        let rows = query(
            e,
            &format!("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM {table}"),
        )
        .await;
        assert_eq!(
            cell(&rows, 0, "n"),
            cell(&rows, 0, "d"),
            "duplicates in {table}{context}"
        );
        counts[i] = cell(&rows, 0, "n").parse().unwrap();
    }
    let rows = query(e, "SELECT event_id FROM processed.events").await;
    let have: std::collections::HashSet<String> = (0..rows.len())
        .map(|i| cell(&rows, i, "event_id"))
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !have.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}{context}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_and_duplicates_nothing_acknowledged() {
    let dir = TempDir::new().unwrap();
    let addr = free_addr();
    let mut child = shoplake_serve(dir.path(), addr);
    wait_ready(addr, Duration::from_secs(60));

    // four clients send batches of 50 until the server dies; each remembers
    // the ids of batches that got a 2xx
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let stop = stop.clone();
        clients.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (ids, body) = track_batch(
                    &format!("k{c}-{n}"),
                    50,
                    "Product Viewed",
                    &format!("a{c}"),
                    r#"{"product_id":"P1"}"#,
                );
                n += 1;
                match http(
                    addr,
                    "POST",
                    "/v1/batch",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ) {
                    Ok(r) if r.status == 200 => acked.extend(ids),
                    _ => {}
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    child.kill().expect("kill -9"); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        acked.len() >= 1000,
        "only {} events acknowledged before the kill",
        acked.len()
    );

    // restart: recovery, then the sink commits the rest; then a clean stop
    let mut child = shoplake_serve(dir.path(), addr);
    wait_ready(addr, Duration::from_secs(60));
    let e = engine(dir.path());
    wait_for_events(&e, acked.len(), Duration::from_secs(30), "after restart").await;
    unsafe_sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    assert_acknowledged_once(&e, &acked, "").await;
}

/// The crash loop: the server is `kill -9`ed at 20 random moments (in WAL
/// fsyncs, sink commits, recovery, whatever it is doing) while clients keep
/// sending with retries: a batch that got no 2xx is sent again with the same
/// event ids, as SDKs do. Afterwards every acknowledged event is in
/// `raw.events` and `processed.events` exactly once and every table reads.
/// The seed is printed; `CRASH_SEED=n` replays a run, `CRASH_KILLS=n` runs
/// a longer soak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_of_kill_9s_under_retrying_load_loses_and_duplicates_nothing() {
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash loop: {kills} kills, CRASH_SEED={seed}");
    let mut x = seed;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let dir = TempDir::new().unwrap();
    let addr = free_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..3 {
        let stop = stop.clone();
        clients.push(std::thread::spawn(move || {
            let (mut acked, mut attempts) = (Vec::new(), 0u64);
            let mut n = 0;
            let mut pending: Option<(Vec<String>, String)> = None;
            while !stop.load(Ordering::Relaxed) {
                let (ids, body) = pending.get_or_insert_with(|| {
                    track_batch(
                        &format!("c{c}-{n}"),
                        50,
                        "Product Viewed",
                        &format!("a{c}"),
                        &format!(r#"{{"product_id":"P{n}"}}"#),
                    )
                });
                attempts += 1;
                match http(
                    addr,
                    "POST",
                    "/v1/batch",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ) {
                    Ok(r) if r.status == 200 => {
                        acked.append(ids);
                        pending = None;
                        n += 1;
                    }
                    // refused, reset or no server: the same batch again
                    _ => std::thread::sleep(Duration::from_millis(25)),
                }
            }
            (acked, attempts)
        }));
    }
    let t0 = Instant::now();
    for _ in 0..kills {
        let mut child = shoplake_serve(dir.path(), addr);
        wait_ready(addr, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100 + rnd() % 1400));
        child.kill().expect("kill -9");
        child.wait().unwrap();
    }
    // a last life: the clients' pending batches get through, then they stop
    // (killed on the way out if a check fails)
    let mut child = Reaped(shoplake_serve(dir.path(), addr));
    wait_ready(addr, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut acked: Vec<String> = Vec::new();
    let mut attempts = 0;
    for c in clients {
        let (a, n) = c.join().unwrap();
        acked.extend(a);
        attempts += n;
    }
    eprintln!(
        "crash loop: {kills} kills in {:.1}s, {} events acknowledged, {attempts} requests",
        t0.elapsed().as_secs_f64(),
        acked.len()
    );
    assert!(
        acked.len() >= 50 * kills,
        "too little got through: {}",
        acked.len()
    );

    let e = engine(dir.path());
    wait_for_events(
        &e,
        acked.len(),
        Duration::from_secs(60),
        "after the crash loop",
    )
    .await;
    unsafe_sigterm(&child.0);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");

    let context = format!(" (CRASH_SEED={seed})");
    for (table, n) in ["raw.events", "processed.events"]
        .into_iter()
        .zip(assert_acknowledged_once(&e, &acked, &context).await)
    {
        assert_eq!(
            n % 50,
            0,
            "{table} holds part of a batch: a torn request{context}"
        );
    }
    // every table still reads whole
    for t in shoplake_core::schema::TABLES
        .iter()
        .filter(|t| t.storage == shoplake_core::schema::Storage::Delta)
    {
        query(&e, &format!("SELECT count(*) AS n FROM {}", t.qualified())).await;
    }
}

/// Secrets never reach the log, even at debug level: the write key (in the
/// body, in Basic auth and in a URL), passwords (right and wrong, on
/// `/login` and on the PostgreSQL port), an API token and the pseudonym key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_logged() {
    let dir = TempDir::new().unwrap();
    let data = dir.path();
    let bin = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg("--data").arg(data).args(args).env("CI", "true");
        c
    };
    const PASSWORD: &str = "correct-horse-battery-9";
    const WRONG: &str = "wrong-horse-battery-7";
    const PII_KEY: &str = "pii-key-0123456789abcdef0123456789abcdef";
    let mut add = bin(&[
        "users",
        "add",
        "ana",
        "--role",
        "analyst",
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success(), "users add");
    let out = bin(&["tokens", "create", "ci", "--role", "analyst"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("slt_"))
        .expect("the token is printed once")
        .to_owned();

    let (addr, pg) = (free_addr(), free_addr());
    let log = data.join("serve.log");
    let mut child = bin(&[
        "serve",
        "--addr",
        &addr.to_string(),
        "--pg-addr",
        &pg.to_string(),
        "--write-key",
        &format!("web={KEY}"),
    ])
    .env("SHOPLAKE_LOG_LEVEL", "debug")
    .env("SHOPLAKE_PII_KEY", PII_KEY)
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    wait_ready(addr, Duration::from_secs(60));
    let json = [("Content-Type", "application/json")];
    let body = format!(
        r#"{{"writeKey":"{KEY}","type":"identify","userId":"u1","traits":{{"email":"ann@shop.example"}}}}"#
    );
    assert_eq!(
        http(addr, "POST", "/v1/identify", &json, body.as_bytes())
            .unwrap()
            .status,
        200
    );
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{KEY}:")
        )
    );
    let body = r#"{"type":"track","event":"x","anonymousId":"a"}"#;
    assert_eq!(
        http(
            addr,
            "POST",
            "/v1/track",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &basic)
            ],
            body.as_bytes()
        )
        .unwrap()
        .status,
        200
    );
    let _ = http(
        addr,
        "POST",
        &format!("/mp/collect?api_secret={KEY}&measurement_id=G-1"),
        &json,
        b"{not json",
    );
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for pw in [WRONG, PASSWORD] {
        let _ = http(
            addr,
            "POST",
            "/login",
            &form,
            format!("name=ana&password={pw}").as_bytes(),
        );
    }
    let bearer = format!("Bearer {token}");
    assert_eq!(
        http(addr, "GET", "/api/me", &[("Authorization", &bearer)], b"")
            .unwrap()
            .status,
        200
    );
    for pw in [WRONG, PASSWORD] {
        let _ = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=ana password={pw} dbname=shoplake connect_timeout=10",
                pg.port()
            ),
            tokio_postgres::NoTls,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await; // a sink commit
    unsafe_sigterm(&child);
    assert!(child.wait().unwrap().success());

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 20 && text.contains("DEBUG"),
        "debug logs were written: {text}"
    );
    for (what, secret) in [
        ("write key", KEY),
        ("password", PASSWORD),
        ("wrong password", WRONG),
        ("API token", token.as_str()),
        ("pseudonym key", PII_KEY),
        ("e-mail address", "ann@shop.example"),
    ] {
        assert!(
            !text.contains(secret),
            "the {what} is in the log: {}",
            text.lines().find(|l| l.contains(secret)).unwrap()
        );
    }
}

/// Unmounts a test's tmpfs however the test ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A server process killed and reaped when the test ends, also when it
/// fails: a failed assertion must not leave a server running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A full disk: the data directory on an 8 MiB tmpfs fills up under load.
/// Every request gets a 200 or a 503 with `Retry-After` (never another 5xx,
/// never a crash), `/readyz` says why while `/healthz` stays alive, and once
/// space comes back the same process takes events again within seconds and
/// every acknowledged event is in the lake exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_and_recovers_without_a_restart() {
    let dir = TempDir::new().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(dir.path())
        .output()
        .expect("run mount");
    if !mounted.status.success() {
        let why = String::from_utf8_lossy(&mounted.stderr).into_owned();
        assert!(
            std::env::var_os("CI").is_none(),
            "this test mounts a tmpfs (needs root): {why}"
        );
        eprintln!("skipped: cannot mount a tmpfs here: {why}");
        return;
    }
    let _guard = Mounted(dir.path().to_path_buf());
    let addr = free_addr();
    let serve = || {
        Command::new(BIN)
            .arg("--data")
            .arg(dir.path())
            .args([
                "serve",
                "--addr",
                &addr.to_string(),
                "--write-key",
                &format!("web={KEY}"),
            ])
            .env("SHOPLAKE_SERVER__COMMIT_INTERVAL_MS", "300")
            .env("SHOPLAKE_SERVER__WAL_SEGMENT_MB", "1")
            .env("CI", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoplake serve")
    };
    let mut child = Reaped(serve());
    wait_ready(addr, Duration::from_secs(60));
    let json = [("Content-Type", "application/json")];
    let pad = "p".repeat(400);
    let (mut acked, mut refused, mut n) = (Vec::new(), 0, 0);
    let t0 = Instant::now();
    while refused < 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the disk never filled"
        );
        let (ids, body) = track_batch(
            &format!("f{n}"),
            50,
            "x",
            "a",
            &format!(r#"{{"pad":"{pad}"}}"#),
        );
        n += 1;
        let r =
            http(addr, "POST", "/v1/batch", &json, body.as_bytes()).expect("the server answers");
        match r.status {
            200 => acked.extend(ids),
            503 => {
                assert!(r.header("retry-after").is_some(), "503 without Retry-After");
                refused += 1;
            }
            s => panic!("a full disk answered {s}: {}", r.text()),
        }
    }
    assert!(
        acked.len() >= 500,
        "only {} events got in before the disk filled",
        acked.len()
    );
    let ready = http(addr, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(ready.status, 503, "not ready while the disk is full");
    assert!(ready.text().contains("cannot write"), "{}", ready.text());
    let health = http(addr, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(health.status, 200, "alive: no restart is needed");
    assert!(health.text().contains("paused"), "{}", health.text());

    // space comes back: the same process resumes by itself
    let grown = Command::new("mount")
        .args(["-o", "remount,size=256m"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(grown.success(), "remount");
    let t0 = Instant::now();
    while http(addr, "GET", "/readyz", &[], b"").unwrap().status != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still not ready 10 s after space came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for k in 0..20 {
        let (ids, body) = track_batch(&format!("after{k}"), 50, "x", "a", "");
        let r = http(addr, "POST", "/v1/batch", &json, body.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "after space came back: {}", r.text());
        acked.extend(ids);
    }
    let e = engine(dir.path());
    wait_for_events(
        &e,
        acked.len(),
        Duration::from_secs(60),
        "after the disk-full episode, without a restart",
    )
    .await;
    unsafe_sigterm(&child.0);
    assert!(child.0.wait().unwrap().success());
    assert_acknowledged_once(&e, &acked, " after the disk-full episode").await;
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A read-only lake stalls the sink: the event log takes events until its
/// disk budget is spent, then every request gets 503 with `Retry-After`
/// (backpressure reaches the clients), the server's memory stays flat while
/// refusing (the backlog is on disk, not in memory), and once the lake is
/// writable again the backlog lands, exactly once, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_lake_backs_up_into_the_log_with_flat_memory() {
    let dir = TempDir::new().unwrap();
    let addr = free_addr();
    let mut child = Reaped(
        Command::new(BIN)
            .arg("--data")
            .arg(dir.path())
            .args([
                "serve",
                "--addr",
                &addr.to_string(),
                "--write-key",
                &format!("web={KEY}"),
            ])
            .env("SHOPLAKE_SERVER__COMMIT_INTERVAL_MS", "200")
            .env("SHOPLAKE_SERVER__WAL_SEGMENT_MB", "1")
            .env("SHOPLAKE_SERVER__WAL_MAX_MB", "6")
            .env("CI", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoplake serve"),
    );
    wait_ready(addr, Duration::from_secs(60));
    let json = [("Content-Type", "application/json")];
    let pad = "p".repeat(400);
    let mut n = 0;
    let mut send = |acked: &mut Vec<String>| {
        let (ids, body) = track_batch(
            &format!("ro{n}"),
            50,
            "x",
            "a",
            &format!(r#"{{"pad":"{pad}"}}"#),
        );
        n += 1;
        let r =
            http(addr, "POST", "/v1/batch", &json, body.as_bytes()).expect("the server answers");
        match r.status {
            200 => {
                acked.extend(ids);
                true
            }
            503 => {
                assert!(r.header("retry-after").is_some(), "503 without Retry-After");
                false
            }
            s => panic!("a stalled lake answered {s}: {}", r.text()),
        }
    };
    let mut acked = Vec::new();
    for _ in 0..5 {
        assert!(send(&mut acked));
    }
    let e = engine(dir.path());
    wait_for_events(&e, acked.len(), Duration::from_secs(30), "before the stall").await;

    // the lake turns read-only (a bind mount over itself)
    let lake = dir.path().join("lake");
    let bind = Command::new("mount")
        .arg("--bind")
        .arg(&lake)
        .arg(&lake)
        .output()
        .unwrap();
    if !bind.status.success() {
        let why = String::from_utf8_lossy(&bind.stderr).into_owned();
        assert!(
            std::env::var_os("CI").is_none(),
            "this test bind-mounts (needs root): {why}"
        );
        eprintln!("skipped: cannot bind-mount here: {why}");
        return;
    }
    let _guard = Mounted(lake.clone());
    let ro = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&lake)
        .status()
        .unwrap();
    assert!(ro.success(), "remount read-only");

    let t0 = Instant::now();
    while send(&mut acked) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the log never pushed back"
        );
    }
    let stalled_at = acked.len();
    let rss_at_first_refusal = rss_kib(child.0.id());
    // refused load for a while: the sink retries its commit every second
    // (a sawtooth of its batch's memory), but nothing may pile up
    let stall: u64 = std::env::var("STALL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let (mut refused, mut halves, t1) = (0, [0u64; 2], Instant::now());
    while t1.elapsed() < Duration::from_secs(stall) {
        if !send(&mut acked) {
            refused += 1;
        }
        let half = usize::from(t1.elapsed().as_secs() * 2 >= stall);
        halves[half] = halves[half].max(rss_kib(child.0.id()));
    }
    let mib = |k: u64| k / 1024;
    eprintln!(
        "stalled lake: {stalled_at} events acknowledged into the log; then {refused} requests \
         refused in {stall} s; RSS {} MiB at the first refusal, at most {} MiB in the first half \
         and {} MiB in the second",
        mib(rss_at_first_refusal),
        mib(halves[0]),
        mib(halves[1])
    );
    assert_eq!(
        acked.len(),
        stalled_at,
        "nothing is taken while the lake is stalled"
    );
    assert!(refused >= 20, "only {refused} requests in {stall} s");
    assert!(
        halves[1] <= halves[0] + 16 * 1024,
        "memory kept growing while refusing: {halves:?} KiB"
    );
    assert!(
        halves[0].max(halves[1]) <= rss_at_first_refusal + 64 * 1024,
        "memory grew from {rss_at_first_refusal} KiB to {halves:?} KiB while refusing"
    );
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").unwrap().status, 200);

    // the lake is writable again: the backlog lands and new events get in
    drop(_guard);
    wait_for_events(
        &e,
        acked.len(),
        Duration::from_secs(60),
        "after the lake came back",
    )
    .await;
    let t2 = Instant::now();
    while !send(&mut acked) {
        assert!(
            t2.elapsed() < Duration::from_secs(10),
            "still refused after the backlog landed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_events(&e, acked.len(), Duration::from_secs(30), "the last batch").await;
    unsafe_sigterm(&child.0);
    assert!(child.0.wait().unwrap().success());
    assert_acknowledged_once(&e, &acked, " after the stalled lake").await;
}

/// Concurrency: while clients send and the sink commits several times a
/// second, lake maintenance compacts `processed.events` and `raw.events`
/// over and over, a pipeline run rebuilds the sessions and curated tables,
/// and queries count the events. No query may see a row twice (a torn read
/// of a compaction would see the old and the new files) or fewer rows than
/// the one before, no maintenance or pipeline run may fail, and afterwards
/// every acknowledged event is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_commits_and_compactions_never_see_a_row_twice() {
    use shoplake_jobs::maintain::{MaintainRun, run};
    let dir = TempDir::new().unwrap();
    let srv = Server::start(dir.path(), test_config()).await;
    let addr = srv.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let json = [("Content-Type", "application/json")];
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (ids, body) = track_batch(
                    &format!("cc{n}"),
                    50,
                    "Product Viewed",
                    &format!("a{}", n % 7),
                    r#"{"product_id":"P1"}"#,
                );
                let r = http(addr, "POST", "/v1/batch", &json, body.as_bytes()).unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                acked.extend(ids);
                std::thread::sleep(Duration::from_millis(5));
            }
            acked
        })
    };
    let lake = Lake::open(dir.path(), &Default::default()).unwrap();
    let cfg = Config::default();
    let maintainer = {
        let (lake, cfg, stop) = (lake.clone(), cfg.clone(), stop.clone());
        tokio::spawn(async move {
            let m = MaintainRun {
                tables: ["processed.events", "raw.events"]
                    .map(|t| shoplake_core::schema::find(t).unwrap())
                    .to_vec(),
                compact_above: Some(2),
                vacuum: false,
                vacuum_retain: None,
                raw_retention_days: None,
                today: 0,
                dry_run: false,
            };
            let mut compacted = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = run(&lake, &cfg, &m).await.expect("maintenance under load");
                compacted += r.tables.iter().map(|t| t.compacted).sum::<u64>();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            compacted
        })
    };
    let e = srv.engine();
    let (mut seen, mut queries) = (0i64, 0);
    let t0 = Instant::now();
    let mut pipeline_ran = false;
    while t0.elapsed() < Duration::from_secs(10) {
        let rows = query(
            &e,
            "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM processed.events",
        )
        .await;
        let (n, d): (i64, i64) = (
            cell(&rows, 0, "n").parse().unwrap(),
            cell(&rows, 0, "d").parse().unwrap(),
        );
        assert_eq!(n, d, "a query saw rows twice");
        assert!(n >= seen, "a query saw {n} rows after one saw {seen}");
        seen = n;
        queries += 1;
        if !pipeline_ran && t0.elapsed() > Duration::from_secs(3) {
            let opts = shoplake_jobs::pipeline::PipelineOptions::default();
            shoplake_jobs::pipeline::run(&lake, &cfg, &opts, &shoplake_jobs::pipeline::Quiet)
                .await
                .expect("a pipeline run under load and maintenance");
            pipeline_ran = true;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let acked = sender.join().unwrap();
    let compacted = maintainer.await.unwrap();
    eprintln!(
        "{} events acknowledged, {queries} queries, {compacted} files compacted",
        acked.len()
    );
    assert!(compacted > 0, "maintenance never compacted anything");
    assert!(queries >= 10, "only {queries} queries");
    wait_for_events(&e, acked.len(), Duration::from_secs(30), "after the race").await;
    srv.stop().await;
    assert_acknowledged_once(&e, &acked, " after commits, compactions and a pipeline run").await;
}

/// The sink's upkeep (`lake.stream_upkeep_secs`): under a steady load of
/// many small commits the tables the sink writes keep few data files (each
/// commit adds one), the sink never fails a commit beside the compactions,
/// and every acknowledged event is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_tables_stay_compact_under_many_commits() {
    // the server's warnings and errors in the test's output: a sink commit
    // that failed beside a compaction says why (nextest runs each test in a
    // process of its own, so the global subscriber is this test's)
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,deltalake_core::kernel::transaction=error")
        .with_test_writer()
        .try_init();
    let dir = TempDir::new().unwrap();
    let mut cfg = test_config();
    cfg.server.commit_interval_ms = 50;
    cfg.server.metrics_public = true;
    cfg.lake.stream_upkeep_secs = 1;
    cfg.lake.compact_after_files = 4;
    let srv = Server::start(dir.path(), cfg).await;
    let addr = srv.addr;
    let json = [("Content-Type", "application/json")];
    let mut acked = Vec::new();
    let lake = Lake::open(dir.path(), &Default::default()).unwrap();
    let t = &shoplake_core::schema::EVENTS;
    let version = async || {
        lake.load(t)
            .await
            .unwrap()
            .and_then(|t| t.version())
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    let mut n = 0;
    // until the sink has made 100 commits (a slow machine takes longer)
    while version().await < 100 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the sink made only {} commits in 120 s",
            version().await
        );
        let (ids, body) = track_batch(
            &format!("up{n}"),
            20,
            "Product Viewed",
            &format!("a{}", n % 5),
            "",
        );
        n += 1;
        let r = http(addr, "POST", "/v1/batch", &json, body.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        acked.extend(ids);
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = srv.engine();
    wait_for_events(&e, acked.len(), Duration::from_secs(30), "under upkeep").await;
    let commits = version().await;
    let files = lake.data_files(t).await.unwrap();
    let m = http(addr, "GET", "/metrics", &[], b"").unwrap().text();
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    };
    eprintln!(
        "{} events, {commits} commits to processed.events, {files} data files, {} files compacted",
        acked.len(),
        value("shoplake_sink_files_compacted_total")
    );
    // one upkeep round a second, a commit every 50 ms: about 20 new files
    // between rounds, against one per commit without the upkeep
    assert!(
        files <= 40,
        "{files} data files after {commits} commits: the upkeep did not keep up"
    );
    assert!(value("shoplake_sink_files_compacted_total") > 0.0);
    assert_eq!(value("shoplake_sink_upkeep_errors_total"), 0.0);
    assert_eq!(
        value("shoplake_sink_errors_total"),
        0.0,
        "a sink commit failed beside the compactions"
    );
    srv.stop().await;
    assert_acknowledged_once(&e, &acked, " under upkeep").await;
}

/// SIGTERM through the `kill` command (the crate forbids unsafe code).
fn unsafe_sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Where the browser test's tools are: node, the npm packages and Chromium.
pub(crate) fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk/js");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (node_ok && chromium.exists() && root.join("node_modules/playwright-core").exists())
        .then_some((root, chromium))
}

/// Runs a browser flow script (`sdk/js/test/*-cli.mjs`) with `args` in
/// `chromium` and returns the JSON line it prints; panics with its output
/// if it fails.
pub(crate) async fn node_flow(
    script: PathBuf,
    args: Vec<String>,
    chromium: PathBuf,
) -> serde_json::Value {
    let name = script.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .env("CHROMIUM", chromium)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("a JSON line"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_in_headless_chromium_buys_and_the_lake_has_it() {
    let Some((sdk, chromium)) = browser_tools() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "node, sdk/js/node_modules or Chromium missing: scripts/setup-test-env installs them"
        );
        eprintln!(
            "SKIPPED locally: node, sdk/js/node_modules or Chromium missing (run scripts/setup-test-env)"
        );
        return;
    };
    let dir = TempDir::new().unwrap();
    let srv = Server::start(dir.path(), test_config()).await;
    let base = format!("http://{}", srv.addr);
    let flow = node_flow(
        sdk.join("test/store-flow-cli.mjs"),
        vec![base, KEY.to_string()],
        chromium,
    )
    .await;
    let order_id = flow["orderId"].as_str().expect("orderId").to_string();
    srv.stop().await;

    let e = engine(dir.path());
    let rows = query(
        &e,
        &format!(
            "SELECT CAST(revenue AS VARCHAR) AS revenue, anonymous_id, session_id, device_type, browser, is_bot, protocol, cardinality(products) AS items
             FROM processed.events WHERE event_type = 'purchase' AND order_id = '{order_id}'"
        ),
    )
    .await;
    assert_eq!(
        rows.len(),
        1,
        "the purchase of order {order_id} is not in the lake once"
    );
    let revenue: f64 = cell(&rows, 0, "revenue").parse().unwrap();
    assert!(
        (revenue - flow["revenue"].as_f64().unwrap()).abs() < 0.005,
        "revenue {revenue} vs {}",
        flow["revenue"]
    );
    assert_eq!(cell(&rows, 0, "protocol"), "native");
    assert_eq!(cell(&rows, 0, "device_type"), "desktop");
    assert_eq!(cell(&rows, 0, "is_bot"), "false");
    assert_eq!(
        cell(&rows, 0, "anonymous_id"),
        flow["anonymousId"].as_str().unwrap()
    );
    let session = cell(&rows, 0, "session_id");
    assert!(!session.is_empty());
    let rows = query(
        &e,
        &format!(
            "SELECT event_type, count(*) AS n FROM processed.events WHERE session_id = '{session}' GROUP BY 1 ORDER BY 1"
        ),
    )
    .await;
    let types: Vec<String> = (0..rows.len())
        .map(|i| cell(&rows, i, "event_type"))
        .collect();
    for t in [
        "add_to_cart",
        "checkout_started",
        "page_view",
        "product_view",
        "purchase",
    ] {
        assert!(
            types.iter().any(|x| x == t),
            "no {t} in the session: {types:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_sessionises_collected_events_and_curates_their_days() {
    let dir = TempDir::new().unwrap();
    let srv = Server::start(dir.path(), test_config()).await;
    let steps = [
        ("page", "Home", ""),
        (
            "track",
            "Product Viewed",
            r#","properties":{"product_id":"P0009","price":20}"#,
        ),
        (
            "track",
            "Product Added",
            r#","properties":{"product_id":"P0009","price":20,"quantity":2}"#,
        ),
        ("track", "Checkout Started", ""),
        (
            "track",
            "Order Completed",
            r#","properties":{"order_id":"O-7","revenue":40,"products":[{"product_id":"P0009","price":20,"quantity":2}]}"#,
        ),
    ];
    let items: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, (ty, name, props))| {
            let name_field = if *ty == "page" { "name" } else { "event" };
            format!(
                r#"{{"type":"{ty}","{name_field}":"{name}","messageId":"flow-{i}","anonymousId":"shopper-1","timestamp":"2026-03-04T12:0{i}:00Z","context":{{"sessionId":"sess-flow"}}{props}}}"#
            )
        })
        .collect();
    let r = post_json(
        srv.addr,
        "/v1/batch",
        &format!(r#"{{"writeKey":"{KEY}","batch":[{}]}}"#, items.join(",")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    srv.stop().await;

    let lake = Lake::open(dir.path(), &Default::default()).unwrap();
    let marks = shoplake_lake::state::collected_days(&lake);
    assert_eq!(
        marks
            .iter()
            .map(|(d, _)| shoplake_core::time::format_date(*d))
            .collect::<Vec<_>>(),
        ["2026-03-04"],
        "the sink marks the day for the pipeline"
    );
    let cfg = Config::default();
    let opts = shoplake_jobs::pipeline::PipelineOptions::default();
    let quiet = shoplake_jobs::pipeline::Quiet;
    let summary = shoplake_jobs::pipeline::run(&lake, &cfg, &opts, &quiet)
        .await
        .unwrap();
    assert_eq!(summary.dates, ["2026-03-04"]);
    assert!(
        summary.steps.iter().any(|s| s.name == "collected_sessions"),
        "{:?}",
        summary.steps
    );

    let e = engine(dir.path());
    let rows = query(
        &e,
        "SELECT session_id, events, product_views, add_to_carts, purchases, converted, device_type FROM processed.sessions",
    )
    .await;
    assert_eq!(rows.len(), 1, "{}", rows.dump(5));
    assert_eq!(cell(&rows, 0, "session_id"), "sess-flow");
    assert_eq!(cell(&rows, 0, "events"), "5");
    assert_eq!(cell(&rows, 0, "product_views"), "1");
    assert_eq!(cell(&rows, 0, "add_to_carts"), "1");
    assert_eq!(cell(&rows, 0, "purchases"), "1");
    assert_eq!(cell(&rows, 0, "converted"), "true");
    let rows = query(
        &e,
        "SELECT count(*) AS n FROM curated.funnel_daily WHERE date = DATE '2026-03-04'",
    )
    .await;
    assert_ne!(cell(&rows, 0, "n"), "0", "the day's funnel was curated");

    // the mark is gone, and a second run has nothing to do
    assert!(shoplake_lake::state::collected_days(&lake).is_empty());
    let again = shoplake_jobs::pipeline::run(&lake, &cfg, &opts, &quiet)
        .await
        .unwrap();
    assert!(again.nothing_to_do(), "{:?}", again.dates);
}

/// What a hostile request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// A 4xx with a reason in the body.
    Refused,
    /// A 2xx whose event is in `quarantine.events` with a reason, not in
    /// `processed.events`.
    Quarantined,
    /// A 2xx whose event is in `processed.events`.
    Kept,
}

/// One hostile request: what it is, its headers, its body, what it must get.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, Want);

fn segment_track(id: &str, event: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"writeKey":"{KEY}","type":"track","event":{event},"messageId":"{id}","anonymousId":"hostile-anon"{extra}}}"#
    )
    .into_bytes()
}

/// `server.ip_requests_per_sec`: one address gets its burst, then 429 with
/// `Retry-After` before its body is even read; a forged `X-Forwarded-For`
/// does not buy a new allowance unless the proxy is trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_limited_per_second() {
    let dir = TempDir::new().unwrap();
    let mut cfg = test_config();
    cfg.server.ip_requests_per_sec = 2.0;
    let srv = Server::start(dir.path(), cfg).await;
    let json = [("Content-Type", "application/json")];
    let body = segment_track("ip-1", r#""Product Viewed""#, "");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http(srv.addr, "POST", "/v1/track", &json, &body).unwrap();
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            assert!(r.text().contains("address"), "{}", r.text());
        }
    }
    assert_eq!(&statuses[..4], &[200; 4], "a burst of two seconds' worth");
    assert_eq!(statuses[5], 429, "{statuses:?}");
    let forged = [
        ("Content-Type", "application/json"),
        ("X-Forwarded-For", "203.0.113.77"),
    ];
    let r = http(srv.addr, "POST", "/v1/track", &forged, &body).unwrap();
    assert_eq!(r.status, 429, "X-Forwarded-For is not trusted by default");
    std::thread::sleep(Duration::from_millis(1100));
    let r = http(srv.addr, "POST", "/v1/track", &json, &body).unwrap();
    assert_eq!(r.status, 200, "the allowance refills");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_reason_and_the_server_stays_up() {
    use std::io::Write as _;
    let dir = TempDir::new().unwrap();
    let srv = Server::start(dir.path(), test_config()).await;
    let a = srv.addr;
    let json = [("Content-Type", "application/json")];
    let deep = format!(
        r#"{{"writeKey":"{KEY}","type":"track","event":"x","messageId":"h-deep","anonymousId":"a","properties":{}1{}}}"#,
        r#"{"a":"#.repeat(5_000),
        "}".repeat(5_000)
    );
    let huge_string = segment_track(
        "h-huge",
        r#""Product Viewed""#,
        &format!(r#","properties":{{"name":"{}"}}"#, "x".repeat(600 * 1024)),
    );
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&segment_track("h-bomb", r#""Product Viewed""#, ""))
        .unwrap();
    bomb.write_all(&vec![b' '; 20 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    let order = |id: &str, qty: &str, price: &str| {
        segment_track(
            id,
            r#""Order Completed""#,
            &format!(
                r#","properties":{{"order_id":"O-{id}","revenue":10,"products":[{{"product_id":"P1","quantity":{qty},"price":{price}}}]}}"#
            ),
        )
    };
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            json.to_vec(),
            br#"{"writeKey":"web-key-123456","event":"#.to_vec(),
            Want::Refused,
        ),
        (
            "invalid UTF-8",
            json.to_vec(),
            [
                segment_track(
                    "h-utf8",
                    "\"Product Viewed\"",
                    ",\"properties\":{\"name\":\"",
                )
                .as_slice(),
                &[0xff, 0xfe, b'"', b'}', b'}'],
            ]
            .concat(),
            Want::Refused,
        ),
        (
            "deep nesting",
            json.to_vec(),
            deep.into_bytes(),
            Want::Refused,
        ),
        (
            "a string past the request limit",
            json.to_vec(),
            huge_string,
            Want::Refused,
        ),
        (
            "a gzip bomb",
            vec![
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            bomb,
            Want::Refused,
        ),
        // scalars where text is expected are read as text (SDKs send ids as numbers)
        (
            "a number as the event name",
            json.to_vec(),
            segment_track("h-type", "123", ""),
            Want::Kept,
        ),
        (
            "an object as the event name",
            json.to_vec(),
            segment_track("h-obj", r#"{"a":1}"#, ""),
            Want::Refused,
        ),
        (
            "properties of the wrong type",
            json.to_vec(),
            segment_track("h-props", r#""Product Viewed""#, r#","properties":"x""#),
            Want::Refused,
        ),
        (
            "a negative quantity",
            json.to_vec(),
            order("h-neg", "-3", "5"),
            Want::Quarantined,
        ),
        (
            "an absurd price",
            json.to_vec(),
            order("h-absurd", "1", "1e15"),
            Want::Quarantined,
        ),
        (
            "a price that is not a number",
            json.to_vec(),
            order("h-nan", "1", r#""abc""#),
            Want::Quarantined,
        ),
        (
            "a timestamp in 1970",
            json.to_vec(),
            segment_track(
                "h-1970",
                r#""Product Viewed""#,
                r#","timestamp":"1970-01-01T00:00:00Z""#,
            ),
            Want::Quarantined,
        ),
        // a client clock ahead is clamped to one day past the server's time
        (
            "a timestamp in 2100",
            json.to_vec(),
            segment_track(
                "h-2100",
                r#""Product Viewed""#,
                r#","timestamp":"2100-01-01T00:00:00Z""#,
            ),
            Want::Kept,
        ),
        (
            "an unknown event name (kept as a custom event)",
            json.to_vec(),
            segment_track("h-custom", r#""Gift Wrapped""#, ""),
            Want::Kept,
        ),
    ];
    let mut report = Vec::new();
    for (what, headers, body, want) in &cases {
        let r = http(a, "POST", "/v1/track", headers, body)
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        if *what == "deep nesting" {
            assert!(
                r.text().contains("nested deeper than 64 levels"),
                "{}",
                r.text()
            );
            assert_eq!(r.status, 400);
        }
        report.push(format!(
            "{what}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
                .chars()
                .take(160)
                .collect::<String>()
        ));
        match want {
            Want::Refused => assert!(
                (400..500).contains(&r.status) && !r.body.is_empty(),
                "{what}: {} {}",
                r.status,
                r.text()
            ),
            _ => assert_eq!(r.status, 200, "{what}: {}", r.text()),
        }
    }
    // header tricks: a header value with a control character never reaches
    // the handlers; a forged X-Forwarded-For is not trusted by default
    let r = http(
        a,
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("X-Evil", "a\u{1}b")],
        &segment_track("h-hdr", r#""Product Viewed""#, ""),
    );
    if let Ok(r) = r {
        assert!(
            r.status < 500,
            "control character in a header: {}",
            r.status
        );
    }
    assert_eq!(
        http(a, "GET", "/healthz", &[], b"").unwrap().status,
        200,
        "{report:#?}"
    );
    srv.stop().await;

    let e = engine(dir.path());
    let quarantined = query(&e, "SELECT payload, reason FROM quarantine.events").await;
    let kept = query(&e, "SELECT event_id FROM processed.events").await;
    let future = query(
        &e,
        "SELECT count(*) AS n FROM processed.events WHERE event_ts > now() + INTERVAL '2 days'",
    )
    .await;
    assert_eq!(
        cell(&future, 0, "n"),
        "0",
        "a 2100 event time was kept as is"
    );
    let in_quarantine = |id: &str| {
        (0..quarantined.len())
            .find(|&i| cell(&quarantined, i, "payload").contains(&format!("\"{id}\"")))
            .map(|i| cell(&quarantined, i, "reason"))
    };
    let kept_ids: Vec<String> = (0..kept.len())
        .map(|i| cell(&kept, i, "event_id"))
        .collect();
    for (what, _, body, want) in &cases {
        let text = String::from_utf8_lossy(body);
        let Some(id) = text
            .split("\"messageId\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        match want {
            Want::Quarantined => {
                let reason = in_quarantine(id)
                    .unwrap_or_else(|| panic!("{what}: {id} not in quarantine\n{report:#?}"));
                assert!(!reason.is_empty(), "{what}: no reason");
                assert!(!kept_ids.iter().any(|k| k == id), "{what}: {id} also kept");
            }
            Want::Kept => assert!(kept_ids.iter().any(|k| k == id), "{what}: {id} not kept"),
            Want::Refused => assert!(
                !kept_ids.iter().any(|k| k == id),
                "{what}: refused, yet {id} is in the lake"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_the_others_served() {
    use std::io::{Read as _, Write as _};
    let dir = TempDir::new().unwrap();
    let srv = Server::start(dir.path(), test_config()).await;
    // slowloris: headers that never end
    let mut slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
            s.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-A: ")
                .unwrap();
            s
        })
        .collect();
    // the others are served meanwhile
    let r = post_json(
        srv.addr,
        "/v1/track",
        &String::from_utf8(segment_track("slow-ok", r#""Product Viewed""#, "")).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t0 = Instant::now();
    std::thread::sleep(shoplake_server::HEADER_TIMEOUT + Duration::from_secs(2));
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        // closed by the server (0 bytes, or an error answer then close)
        match s.read(&mut buf) {
            Ok(_) | Err(_) => {}
        }
        let again = s.write_all(b"b\r\n\r\n").and_then(|_| s.read(&mut buf));
        assert!(
            matches!(again, Ok(0) | Err(_)),
            "a connection with unfinished headers is still open after {:?}",
            t0.elapsed()
        );
    }
    assert_eq!(
        http(srv.addr, "GET", "/healthz", &[], b"").unwrap().status,
        200
    );
    srv.stop().await;
}
