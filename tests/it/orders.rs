//! The orders API end to end: who may call it, idempotent creation, RFC 7807
//! refusals, the status machine and its audit trail, listing and search;
//! every change in `processed.orders` and `processed.transactions` within
//! seconds, exactly once across restarts; curated models after a pipeline
//! run; and the reconciliation of backend orders with browser purchases.
//! The store's own suite (`shoplake-orders`) runs on SQLite and PostgreSQL;
//! here the server runs on SQLite, and once on PostgreSQL.

use std::time::{Duration, Instant};

use shoplake_core::config::Config;
use shoplake_jobs::accounts::Role;
use shoplake_jobs::pipeline::PipelineOptions;
use shoplake_jobs::store::Store;
use shoplake_server::auth;

use crate::collect::{KEY, Resp, Server, http};
use crate::common::{Fixture, query, run_report, small_config};

fn json(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{} is not JSON ({e}): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

fn header<'r>(r: &'r Resp, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn order(id: &str, customer: &str, lines: &[(&str, &str, u32, &str)]) -> serde_json::Value {
    serde_json::json!({
        "order_id": id,
        "customer_id": customer,
        "email": format!("{customer}@example.com"),
        "currency": "EUR",
        "tax": "1.50",
        "shipping": 4.9,
        "lines": lines.iter().map(|(p, name, q, price)| serde_json::json!({
            "product_id": p, "name": name, "category": "shoes", "quantity": q, "unit_price": price
        })).collect::<Vec<_>>(),
    })
}

/// Polls `sql`'s first row's `n` until it is `want` (10 s at most).
async fn eventually(engine: &shoplake_query::QueryEngine, sql: &str, want: i64) {
    let t0 = Instant::now();
    loop {
        let n = query(engine, sql).await.row(0).i64("n");
        if n == want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "`{sql}` stayed {n}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_created_once_changed_by_the_rules_and_reach_the_lake_within_seconds() {
    let fx = Fixture::with(&small_config());
    let store = Store::open(&fx.lake.state_dir()).unwrap();
    let token = |name: &str, role| {
        let (t, _) = auth::create_token(&store, name, role, None).unwrap();
        format!("Bearer {t}")
    };
    let backend = token("shop-backend", Role::Orders);
    let admin = token("ops", Role::Admin);
    let analyst = token("notebook", Role::Analyst);
    let viewer = token("dash", Role::Viewer);
    let mut cfg = Config::default();
    cfg.orders.sync_interval_ms = 200;
    cfg.server.commit_interval_ms = 200;
    let s = Server::start(fx.dir.path(), cfg.clone()).await;
    let call = |method: &str, path: &str, auth: &str, extra: &[(&str, &str)], body: &str| {
        let mut h = vec![("Content-Type", "application/json")];
        if !auth.is_empty() {
            h.push(("Authorization", auth));
        }
        h.extend_from_slice(extra);
        http(s.addr, method, path, &h, body.as_bytes()).unwrap()
    };
    let o1 = order(
        "o-1001",
        "c-ann",
        &[
            ("P1", "Trail runner", 2, "59.90"),
            ("P2", "Wool socks", 3, "7.10"),
        ],
    )
    .to_string();

    // who may call what: every refusal is a problem document
    for (method, path, body) in [
        ("POST", "/api/orders", o1.as_str()),
        ("GET", "/api/orders", ""),
        ("GET", "/api/orders/o-1001", ""),
        ("PATCH", "/api/orders/o-1001", r#"{"status":"paid"}"#),
    ] {
        let r = call(method, path, "", &[], body);
        assert_eq!(r.status, 401, "{method} {path} anonymous");
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        assert_eq!(json(&r)["status"], 401);
        let r = call(method, path, &viewer, &[], body);
        assert_eq!(r.status, 403, "{method} {path} as a viewer");
        let write = method != "GET";
        let r = call(method, path, &analyst, &[], body);
        if write {
            assert_eq!(r.status, 403, "{method} {path} as an analyst");
            assert!(
                json(&r)["detail"]
                    .as_str()
                    .unwrap()
                    .contains("orders or admin")
            );
        } else {
            assert_ne!(r.status, 403, "{method} {path} as an analyst reads");
        }
    }
    // an orders token is for orders only
    assert_eq!(call("GET", "/api/reports", &backend, &[], "").status, 403);
    let r = call("POST", "/api/sql", &backend, &[], r#"{"sql":"SELECT 1"}"#);
    assert_eq!(r.status, 403);

    // creation: 201 with Location; money exact; retries replay
    let r = call("POST", "/api/orders", &backend, &[], &o1);
    assert_eq!(r.status, 201, "{}", json(&r));
    assert_eq!(header(&r, "location"), Some("/api/orders/o-1001"));
    let created = json(&r);
    assert_eq!(created["status"], "placed");
    assert_eq!(created["subtotal"], "141.10");
    assert_eq!(created["total"], "147.50");
    assert_eq!(created["version"], 1);
    let r = call("POST", "/api/orders", &backend, &[], &o1);
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "idempotent-replayed"), Some("true"));
    assert_eq!(json(&r)["created_at"], created["created_at"]);
    let changed = o1.replace("c-ann@example.com", "other@example.com");
    let r = call("POST", "/api/orders", &backend, &[], &changed);
    assert_eq!(r.status, 409);
    assert_eq!(json(&r)["type"], "urn:shoplake:problem:conflict");
    // the same Idempotency-Key with another body is a conflict too
    let o2 = order("o-1002", "c-bob", &[("P3", "Rain jacket", 1, "120")]).to_string();
    let key = [("Idempotency-Key", "k-42")];
    assert_eq!(call("POST", "/api/orders", &backend, &key, &o2).status, 201);
    assert_eq!(call("POST", "/api/orders", &backend, &key, &o2).status, 200);
    let o3 = order("o-1003", "c-cat", &[("P1", "Trail runner", 1, "59.90")]).to_string();
    let r = call("POST", "/api/orders", &backend, &key, &o3);
    assert_eq!(r.status, 409, "{}", json(&r));
    assert_eq!(call("POST", "/api/orders", &admin, &[], &o3).status, 201);

    // refusals: malformed (400), and every rule broken at once (422)
    let r = call("POST", "/api/orders", &backend, &[], "{not json");
    assert_eq!(r.status, 400);
    assert_eq!(json(&r)["type"], "urn:shoplake:problem:malformed");
    let r = call(
        "POST",
        "/api/orders",
        &backend,
        &[],
        r#"{"order_id":"o-9","customer_id":"c","currency":"EUR","lines":[],"colour":"red"}"#,
    );
    assert_eq!(r.status, 422, "an unknown field");
    assert!(
        json(&r)["errors"].to_string().contains("colour"),
        "{}",
        json(&r)
    );
    // money is never rounded: a third decimal place is refused
    let r = call(
        "POST",
        "/api/orders",
        &backend,
        &[],
        &o3.replace("59.90", "19.999"),
    );
    assert_eq!(r.status, 422, "{}", json(&r));
    assert_eq!(
        json(&r)["errors"][0]["field"],
        "/lines/0/unit_price",
        "{}",
        json(&r)
    );
    let bad = serde_json::json!({
        "order_id": "o-bad",
        "customer_id": "c-x",
        "currency": "XYZ",
        "lines": [{"product_id": "P1", "quantity": 0, "unit_price": "0"},
                  {"product_id": "P2", "quantity": 1, "unit_price": "-5"}],
    })
    .to_string();
    let r = call("POST", "/api/orders", &backend, &[], &bad);
    assert_eq!(r.status, 422, "{}", json(&r));
    let p = json(&r);
    assert_eq!(p["type"], "urn:shoplake:problem:invalid-order");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "/currency",
        "/lines/0/quantity",
        "/lines/0/unit_price",
        "/lines/1/unit_price",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }

    // the status machine: allowed moves go, others are refused with the allowed ones
    let patch =
        |id: &str, body: &str| call("PATCH", &format!("/api/orders/{id}"), &backend, &[], body);
    assert_eq!(
        patch("o-1001", r#"{"status":"paid","note":"card"}"#).status,
        200
    );
    let r = patch("o-1001", r#"{"status":"delivered"}"#);
    assert_eq!(r.status, 409);
    let p = json(&r);
    assert_eq!(p["type"], "urn:shoplake:problem:invalid-transition");
    let mut allowed: Vec<&str> = p["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    allowed.sort_unstable();
    assert_eq!(allowed, ["cancelled", "refunded", "shipped"]);
    assert_eq!(patch("o-1001", r#"{"status":"lost"}"#).status, 422);
    assert_eq!(patch("o-nope", r#"{"status":"paid"}"#).status, 404);
    let r = patch("o-1001", r#"{"status":"shipped","expected_version":1}"#);
    assert_eq!(r.status, 409, "a stale version");
    for st in ["shipped", "delivered", "returned"] {
        let r = patch("o-1001", &format!(r#"{{"status":"{st}"}}"#));
        assert_eq!(r.status, 200, "{st}: {}", json(&r));
    }
    assert_eq!(patch("o-1003", r#"{"status":"cancelled"}"#).status, 200);
    let got = json(&call("GET", "/api/orders/o-1001", &analyst, &[], ""));
    assert_eq!(got["status"], "returned");
    assert_eq!(got["version"], 5);
    let history = got["history"].as_array().unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0]["actor"], "shop-backend");
    assert_eq!(history[0]["note"], "card");
    assert_eq!(
        (history[3]["from"].as_str(), history[3]["to"].as_str()),
        (Some("delivered"), Some("returned"))
    );

    // listing: filters, search, pages
    let page = json(&call(
        "GET",
        "/api/orders?customer_id=c-bob",
        &analyst,
        &[],
        "",
    ));
    assert_eq!(page["orders"].as_array().unwrap().len(), 1);
    assert_eq!(page["orders"][0]["order_id"], "o-1002");
    let page = json(&call("GET", "/api/orders?q=rain", &analyst, &[], ""));
    assert_eq!(page["orders"][0]["order_id"], "o-1002", "{page}");
    let page = json(&call(
        "GET",
        "/api/orders?status=cancelled",
        &analyst,
        &[],
        "",
    ));
    assert_eq!(page["orders"][0]["order_id"], "o-1003");
    let first = json(&call("GET", "/api/orders?limit=2", &analyst, &[], ""));
    assert_eq!(first["orders"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let rest = json(&call(
        "GET",
        &format!("/api/orders?limit=2&cursor={cursor}"),
        &analyst,
        &[],
        "",
    ));
    assert_eq!(rest["orders"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    assert_eq!(
        call("GET", "/api/orders?limit=x", &analyst, &[], "").status,
        400
    );
    assert_eq!(
        call("GET", "/api/orders?cursor=zz", &analyst, &[], "").status,
        422
    );

    // the lake follows within seconds: one row per order, its lines (not a
    // cancelled order's) with the line status of the order's
    let engine = fx.engine();
    eventually(
        &engine,
        "SELECT count(*) AS n FROM processed.orders WHERE status = 'returned' AND version = 5",
        1,
    )
    .await;
    eventually(
        &engine,
        "SELECT count(*) AS n FROM processed.orders WHERE status = 'cancelled'",
        1,
    )
    .await;
    let lines = query(
        &engine,
        "SELECT order_id, status, CAST(sum(total_amount) AS VARCHAR) AS total, count(*) AS n \
         FROM processed.transactions WHERE source = 'orders_api' GROUP BY 1, 2 ORDER BY 1",
    )
    .await;
    let got: Vec<(String, String, String, i64)> = lines
        .iter()
        .map(|r| {
            (
                r.str("order_id").to_string(),
                r.str("status").to_string(),
                r.str("total").to_string(),
                r.i64("n"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("o-1001".into(), "returned".into(), "141.10".into(), 2),
            ("o-1002".into(), "completed".into(), "120.00".into(), 1),
        ]
    );

    // the Live page counts the backend's orders of today (not a cancelled one)
    let live = json(&call("GET", "/api/live", &admin, &[], ""));
    assert_eq!(live["backend_orders_today"], 2, "{live}");
    assert!(
        (live["backend_revenue_today"].as_f64().unwrap() - 273.90).abs() < 0.001,
        "{live}"
    );

    // browser purchases for the reconciliation: one matching, one whose
    // revenue differs, one with no backend order
    for (id, revenue) in [
        ("o-1002", "120.00"),
        ("o-1001", "99.00"),
        ("o-ghost", "15.00"),
    ] {
        let body = format!(
            r#"{{"writeKey":"{KEY}","event":"Order Completed","anonymousId":"a-{id}","messageId":"m-{id}","properties":{{"order_id":"{id}","revenue":"{revenue}","currency":"EUR"}}}}"#
        );
        let r = http(
            s.addr,
            "POST",
            "/v1/track",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    s.stop().await;

    // a restart copies nothing twice; a change made meanwhile arrives
    let s = Server::start(fx.dir.path(), cfg).await;
    let r = http(
        s.addr,
        "PATCH",
        "/api/orders/o-1002",
        &[("Authorization", backend.as_str())],
        br#"{"status":"paid"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    eventually(
        &engine,
        "SELECT count(*) AS n FROM processed.orders WHERE order_id = 'o-1002' AND status = 'paid'",
        1,
    )
    .await;
    s.stop().await;
    let n = query(&engine, "SELECT count(*) AS n FROM processed.orders")
        .await
        .row(0)
        .i64("n");
    assert_eq!(n, 3, "one row per order");
    let n = query(
        &engine,
        "SELECT count(*) AS n FROM processed.transactions WHERE source = 'orders_api'",
    )
    .await
    .row(0)
    .i64("n");
    assert_eq!(n, 3, "one row per line of the orders not cancelled");

    // a pipeline run takes the orders' days into the curated models
    let marks = fx.lake.state_dir().join("orders");
    assert!(std::fs::read_dir(&marks).unwrap().count() > 0);
    fx.run(&PipelineOptions::default()).await;
    assert_eq!(std::fs::read_dir(&marks).unwrap().count(), 0);
    let curated = query(
        &engine,
        "SELECT count(*) AS n FROM curated.order_lines WHERE order_id IN ('o-1001', 'o-1002')",
    )
    .await
    .row(0)
    .i64("n");
    assert_eq!(curated, 3);

    // reconciliation: each outcome, and the tracking loss
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let rows = run_report(
        &engine,
        "order_reconciliation",
        &[("from", &today), ("to", &today)],
    )
    .await;
    let summary: std::collections::BTreeMap<String, i64> = rows
        .iter()
        .filter(|r| r.str("level") == "summary")
        .map(|r| (r.str("outcome").to_string(), r.i64("orders")))
        .collect();
    let want: std::collections::BTreeMap<String, i64> =
        ["matched", "no_order", "not_tracked", "revenue_mismatch"]
            .into_iter()
            .map(|o| (o.to_string(), 1))
            .collect();
    assert_eq!(summary, want);
    let detail: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.str("level") == "order")
        .map(|r| (r.str("outcome"), r.str("order_id")))
        .collect();
    assert_eq!(
        detail,
        [
            ("no_order", "o-ghost"),
            ("not_tracked", "o-1003"),
            ("revenue_mismatch", "o-1001"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_orders_in_postgresql_when_told_to() {
    let url = "postgres://postgres@127.0.0.1:5432/test";
    let schema = format!("it_orders_{}", std::process::id());
    // creates the schema and its tables; the server then finds them there
    let store = match shoplake_orders::OrderStore::open_postgres_in_schema(url, &schema).await {
        Ok(s) => s,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED locally: PostgreSQL at {url} is not reachable: {e}");
            return;
        }
        Err(e) => panic!("PostgreSQL at {url} is needed (CI): {e}"),
    };
    let fx = Fixture::with(&small_config());
    let accounts = Store::open(&fx.lake.state_dir()).unwrap();
    let (t, _) = auth::create_token(&accounts, "backend", Role::Orders, None).unwrap();
    let bearer = format!("Bearer {t}");
    let mut cfg = Config::default();
    cfg.orders.sync_interval_ms = 200;
    cfg.orders.db = format!("{url}?options=-c%20search_path%3D{schema}");
    let s = Server::start(fx.dir.path(), cfg).await;
    let o = order("pg-1", "c-pg", &[("P9", "Lamp", 2, "30.00")]).to_string();
    let r = http(
        s.addr,
        "POST",
        "/api/orders",
        &[("Authorization", bearer.as_str())],
        o.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // it is in PostgreSQL, not in a SQLite file
    assert_eq!(store.get("pg-1").await.unwrap().customer_id, "c-pg");
    assert!(!fx.lake.state_dir().join("orders.db").exists());
    eventually(
        &fx.engine(),
        "SELECT count(*) AS n FROM processed.transactions WHERE order_id = 'pg-1'",
        1,
    )
    .await;
    s.stop().await;
    store.close().await;
    crate::common::drop_pg_schema(&schema);
}

/// The last commit of `table`'s Delta log: its `commitInfo` line.
fn last_commit_info(fx: &Fixture, table: &shoplake_core::schema::Table) -> serde_json::Value {
    let log = fx.lake.table_dir(table).join("_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    let text = std::fs::read_to_string(commits.last().unwrap()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find_map(|a| a.get("commitInfo").cloned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_copy_appends_new_orders_replaces_changed_ones_and_resumes_between_the_two() {
    use shoplake_core::schema::{ORDERS, TRANSACTIONS};
    use shoplake_orders::{NewOrder, OrderStore, Status};
    use shoplake_server::orders::{sync, sync_appends_only};

    let fx = Fixture::with(&small_config());
    let store = OrderStore::open_sqlite(fx.dir.path().join("orders.db"))
        .await
        .unwrap();
    let engine = fx.engine();
    let create = |id: &str| {
        let new: NewOrder = serde_json::from_value(order(
            id,
            "c-1",
            &[("P1", "Trail runner", 1, "59.90"), ("P2", "Socks", 2, "7")],
        ))
        .unwrap();
        let store = &store;
        async move { store.create(&new, None).await.unwrap() }
    };
    let to = |id: &'static str, st: Status| {
        let store = &store;
        async move { store.transition(id, st, None, "test", None).await.unwrap() }
    };
    let table = |sql: &'static str| {
        let engine = &engine;
        async move {
            let rows = query(engine, sql).await;
            (0..rows.len())
                .map(|i| {
                    let r = rows.row(i);
                    format!("{}:{}", r.str("order_id"), r.str("s"))
                })
                .collect::<Vec<_>>()
        }
    };
    let orders = || table("SELECT order_id, status AS s FROM processed.orders ORDER BY 1");
    let lines = || {
        table(
            "SELECT order_id, CAST(count(*) AS VARCHAR) || status AS s FROM processed.transactions \
             WHERE source = 'orders_api' GROUP BY order_id, status ORDER BY 1",
        )
    };

    // new orders only: blind appends, whatever the day already holds
    create("o-1").await;
    create("o-2").await;
    assert_eq!(sync(&store, &fx.lake).await.unwrap(), 2);
    assert_eq!(orders().await, ["o-1:placed", "o-2:placed"]);
    assert_eq!(lines().await, ["o-1:2completed", "o-2:2completed"]);
    create("o-3").await;
    assert_eq!(sync(&store, &fx.lake).await.unwrap(), 1);
    for t in [&ORDERS, &TRANSACTIONS] {
        let info = last_commit_info(&fx, t);
        assert_eq!(
            info["operationParameters"]["mode"],
            "Append",
            "{}: {info}",
            t.qualified()
        );
    }

    // a change to an order already copied is a replace; a crash between the
    // append of new orders and that replace loses and repeats nothing
    to("o-1", Status::Paid).await;
    create("o-4").await;
    sync_appends_only(&store, &fx.lake).await.unwrap();
    assert_eq!(
        orders().await,
        ["o-1:placed", "o-2:placed", "o-3:placed", "o-4:placed"]
    );
    sync(&store, &fx.lake).await.unwrap();
    assert_eq!(
        orders().await,
        ["o-1:paid", "o-2:placed", "o-3:placed", "o-4:placed"]
    );
    assert_eq!(
        last_commit_info(&fx, &ORDERS)["operationParameters"]["mode"],
        "Overwrite",
        "a replace"
    );

    // created and cancelled between two copies: appended as cancelled, no
    // lines; a cancelled order loses its lines; a refund marks them
    create("o-5").await;
    to("o-5", Status::Cancelled).await;
    to("o-2", Status::Cancelled).await;
    to("o-1", Status::Refunded).await;
    sync(&store, &fx.lake).await.unwrap();
    assert_eq!(
        orders().await,
        [
            "o-1:refunded",
            "o-2:cancelled",
            "o-3:placed",
            "o-4:placed",
            "o-5:cancelled"
        ]
    );
    assert_eq!(
        lines().await,
        ["o-1:2refunded", "o-3:2completed", "o-4:2completed"]
    );
    // nothing new: nothing read, nothing committed
    let version = fx.lake.load(&ORDERS).await.unwrap().unwrap().version();
    assert_eq!(sync(&store, &fx.lake).await.unwrap(), 0);
    assert_eq!(
        fx.lake.load(&ORDERS).await.unwrap().unwrap().version(),
        version
    );
}

/// Thousands of orders changed between two copies are replaced by a task on
/// a 2 MiB stack (tokio's default): delta-rs walks an `IN` list's items
/// recursively, and one of 10,000 order ids overflowed the stack and
/// aborted `serve`.
#[test]
fn thousands_of_changed_orders_are_copied_on_a_default_sized_stack() {
    use shoplake_orders::{NewOrder, OrderStore, Status};
    const N: usize = 5_000;
    let fx = Fixture::with(&small_config());
    let lake = fx.lake.clone();
    let db = fx.dir.path().join("orders.db");
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let store = OrderStore::open_sqlite(&db).await.unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..N {
                let store = store.clone();
                tasks.spawn(async move {
                    let id = format!("o-{i:05}");
                    let new: NewOrder =
                        serde_json::from_value(order(&id, "c-1", &[("P1", "Mug", 1, "9.50")]))
                            .unwrap();
                    store.create(&new, None).await.unwrap();
                    id
                });
            }
            let ids = tasks.join_all().await;
            while shoplake_server::orders::sync(&store, &lake).await.unwrap() > 0 {}
            let mut tasks = tokio::task::JoinSet::new();
            for id in ids {
                let store = store.clone();
                tasks.spawn(async move {
                    store
                        .transition(&id, Status::Paid, None, "test", None)
                        .await
                        .unwrap();
                });
            }
            tasks.join_all().await;
            let read = shoplake_server::orders::sync(&store, &lake).await.unwrap();
            assert_eq!(read, N, "the changes are read in one batch");
        });
    };
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
    let engine = fx.engine();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let paid = rt.block_on(query(
        &engine,
        "SELECT count(*) AS n FROM processed.orders WHERE status = 'paid'",
    ));
    assert_eq!(paid.row(0).i64("n"), N as i64);
}
