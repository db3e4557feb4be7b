//! The dashboard: server-rendered pages over the curated tables, SVG charts
//! drawn here, a date-range picker on every page, and `GET /api/live` for the
//! Live page. Pages need a login (`/login`; a request without one is sent
//! there) and the role each page names (see [`html::PAGES`]).

mod charts;
pub(crate) mod html;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};
use shoplake_core::time;
use shoplake_jobs::accounts::Role;

use self::charts::{Series, fmt_count, fmt_money, fmt_short};
use self::html::{Range, esc, page, stat, table, tile};
use crate::api::Api;
use crate::auth::{self, Principal};

pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/funnel", get(funnel))
        .route("/products", get(products))
        .route("/customers", get(customers))
        .route("/traffic", get(traffic))
        .route("/live", get(live))
        .route("/pipeline", get(pipeline))
        .route("/sql", get(sql_page))
        .route("/api/live", get(live_api))
        .with_state(api)
}

type Row = Map<String, Value>;
type Params = Query<HashMap<String, String>>;

/// A page that could not be drawn: a redirect to the login, a refusal, or
/// an error shown as a page.
pub(crate) struct PageError(Box<Response>);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

fn error_page(status: StatusCode, msg: &str) -> PageError {
    PageError(Box::new(
        (
            status,
            Html(format!(
                r#"<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>shoplake</title><body style="font:16px system-ui;max-width:40rem;margin:3rem auto;padding:0 1rem"><h1>shoplake</h1><p>{}</p><p><a href="/">Overview</a> · <a href="/login">Log in</a></p></body>"#,
                esc(msg)
            )),
        )
            .into_response(),
    ))
}

/// The request's principal for page `path`: without a login, a redirect
/// to `/login`; below `role`, 403.
pub(crate) fn gate(api: &Api, headers: &HeaderMap, role: Role) -> Result<Principal, PageError> {
    match auth::authenticate(&api.store, api.oidc.as_deref(), headers) {
        Ok(p) => {
            p.require(role)
                .map_err(|d| error_page(d.status, &d.reason))?;
            Ok(p)
        }
        Err(d) if d.status == StatusCode::UNAUTHORIZED => Err(PageError(Box::new(
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response(),
        ))),
        Err(d) => Err(error_page(d.status, &d.reason)),
    }
}

/// Rows of `sql` as JSON objects.
async fn rows(api: &Api, sql: String) -> Result<Vec<Row>, PageError> {
    let answer = api
        .query(sql, None)
        .await
        .map_err(|e| error_page(e.0, &e.1))?;
    let text = shoplake_query::output::to_string(
        &answer.batches,
        shoplake_query::output::OutputFormat::Json,
    )
    .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => Ok(a
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect()),
        _ => Err(error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "query rows were not JSON",
        )),
    }
}

/// A number from a row (JSON number or decimal string; null: 0).
fn num(r: &Row, k: &str) -> f64 {
    match r.get(k) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Text from a row (null: "").
fn text(r: &Row, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "–".into()
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The range asked for (`from`, `to`), else the last 30 days with data.
async fn range(api: &Api, q: &HashMap<String, String>) -> Result<Range, PageError> {
    let last = rows(
        api,
        "SELECT CAST(max(date) AS VARCHAR) AS d FROM curated.daily_kpis".into(),
    )
    .await?
    .first()
    .map(|r| text(r, "d"))
    .filter(|d| !d.is_empty())
    .unwrap_or_else(|| time::format_date((chrono::Utc::now().timestamp() / 86_400) as i32));
    let last_day = time::parse_date(&last).unwrap_or(0);
    let parse = |k: &str| q.get(k).and_then(|v| time::parse_date(v).ok());
    let to = parse("to").unwrap_or(last_day);
    let from = parse("from").unwrap_or(to - 29).min(to);
    Ok(Range {
        from: time::format_date(from),
        to: time::format_date(to),
        last,
    })
}

/// `date BETWEEN ...` for a range (dates were parsed, so safe to inline).
fn between(r: &Range) -> String {
    format!("date BETWEEN DATE '{}' AND DATE '{}'", r.from, r.to)
}

/// The same number of days just before the range.
fn previous(r: &Range) -> Range {
    let f = time::parse_date(&r.from).unwrap_or(0);
    let t = time::parse_date(&r.to).unwrap_or(0);
    let len = (t - f + 1).min(366 * 20);
    Range {
        from: time::format_date(f - len),
        to: time::format_date(f - 1),
        last: r.last.clone(),
    }
}

fn html(s: String) -> Response {
    Html(s).into_response()
}

async fn overview(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Viewer)?;
    let r = range(&api, &q).await?;
    let totals = |r: &Range| {
        format!(
            "SELECT CAST(sum(net_revenue) AS DOUBLE) AS revenue, CAST(sum(gross_revenue) AS DOUBLE) AS gross, \
             sum(orders) AS orders, sum(sessions) AS sessions, sum(converted_sessions) AS converted, count(*) AS days \
             FROM curated.daily_kpis WHERE {}",
            between(r)
        )
    };
    let buyers = |r: &Range| {
        format!(
            "SELECT count(DISTINCT customer_id) AS customers FROM curated.order_lines WHERE {}",
            between(r)
        )
    };
    let p = previous(&r);
    let (now, before, c_now, c_before) = tokio::join!(
        rows(&api, totals(&r)),
        rows(&api, totals(&p)),
        rows(&api, buyers(&r)),
        rows(&api, buyers(&p)),
    );
    let (now, before, c_now, c_before) = (now?, before?, c_now?, c_before?);
    let empty = Row::new();
    let n = now.first().unwrap_or(&empty);
    let b = before.first().unwrap_or(&empty);
    let had_before = num(b, "days") > 0.0;
    let change = |a: f64, z: f64| (had_before && z != 0.0).then(|| (a - z) / z.abs());
    let kpi = |row: &Row, customers: f64| {
        [
            num(row, "revenue"),
            num(row, "orders"),
            ratio(num(row, "gross"), num(row, "orders")),
            ratio(num(row, "converted"), num(row, "sessions")),
            num(row, "sessions"),
            customers,
        ]
    };
    let cn = c_now.first().map_or(0.0, |r| num(r, "customers"));
    let cb = c_before.first().map_or(0.0, |r| num(r, "customers"));
    let k = kpi(n, cn);
    let kb = kpi(b, cb);
    let mut body = String::from(r#"<div class="tiles">"#);
    body += &tile("Revenue (net)", &fmt_money(k[0]), change(k[0], kb[0]));
    body += &tile("Orders", &fmt_count(k[1]), change(k[1], kb[1]));
    body += &tile(
        "Average order value",
        &if k[2].is_finite() {
            fmt_money(k[2])
        } else {
            "–".into()
        },
        change(k[2], kb[2]),
    );
    body += &tile("Conversion rate", &pct(k[3]), change(k[3], kb[3]));
    body += &tile("Sessions", &fmt_count(k[4]), change(k[4], kb[4]));
    body += &tile("Active customers", &fmt_count(k[5]), change(k[5], kb[5]));
    body += "</div>";
    // the trend: days, or weeks over long ranges
    let days = time::parse_date(&r.to).unwrap_or(0) - time::parse_date(&r.from).unwrap_or(0) + 1;
    let (bucket, grain) = if days > 120 {
        ("CAST(date_trunc('week', date) AS DATE)", "week")
    } else {
        ("date", "day")
    };
    let trend = rows(
        &api,
        format!(
            "SELECT CAST({bucket} AS VARCHAR) AS d, CAST(sum(net_revenue) AS DOUBLE) AS revenue, sum(orders) AS orders \
             FROM curated.daily_kpis WHERE {} GROUP BY 1 ORDER BY 1",
            between(&r)
        ),
    )
    .await?;
    let rev: Vec<(String, f64)> = trend
        .iter()
        .map(|t| (text(t, "d"), num(t, "revenue")))
        .collect();
    let ord: Vec<(String, f64)> = trend
        .iter()
        .map(|t| (text(t, "d"), num(t, "orders")))
        .collect();
    body += &charts::line_bars(
        &format!("Revenue and orders by {grain}"),
        &Series {
            name: "net revenue",
            points: &rev,
            fmt: &fmt_short,
        },
        Some(&Series {
            name: "orders",
            points: &ord,
            fmt: &|v| fmt_count(v),
        }),
    );
    Ok(html(page("Overview", "/", &who, Some(&r), &body)))
}

const FUNNEL_STEPS: [(&str, &str); 5] = [
    ("page_view_sessions", "Page view"),
    ("product_view_sessions", "Product view"),
    ("cart_sessions", "Add to cart"),
    ("checkout_sessions", "Checkout"),
    ("purchase_sessions", "Purchase"),
];

async fn funnel(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Viewer)?;
    let r = range(&api, &q).await?;
    let sums: Vec<String> = FUNNEL_STEPS
        .iter()
        .map(|(c, _)| format!("sum({c}) AS {c}"))
        .collect();
    let sums = sums.join(", ");
    let by = |dim: &str| {
        format!(
            "SELECT {dim} AS k, sum(sessions) AS sessions, {sums} FROM curated.funnel_daily WHERE {} \
             GROUP BY 1 ORDER BY sessions DESC LIMIT 12",
            between(&r)
        )
    };
    let (all, device, source) = tokio::join!(
        rows(
            &api,
            format!(
                "SELECT sum(sessions) AS sessions, {sums} FROM curated.funnel_daily WHERE {}",
                between(&r)
            )
        ),
        rows(&api, by("device_type")),
        rows(&api, by("traffic_source")),
    );
    let (all, device, source) = (all?, device?, source?);
    let empty = Row::new();
    let a = all.first().unwrap_or(&empty);
    let steps: Vec<(&str, f64)> = FUNNEL_STEPS.iter().map(|(c, n)| (*n, num(a, c))).collect();
    let mut body = charts::funnel("Sessions reaching each step", &steps);
    let split = |rows: &[Row], what: &str| {
        let data: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                let mut v = vec![text(row, "k"), fmt_count(num(row, "sessions"))];
                for w in FUNNEL_STEPS.windows(2) {
                    v.push(pct(ratio(num(row, w[1].0), num(row, w[0].0))));
                }
                v.push(pct(ratio(
                    num(row, "purchase_sessions"),
                    num(row, "sessions"),
                )));
                v
            })
            .collect();
        table(
            &format!("funnel-{what}"),
            &[
                what,
                "#sessions",
                "#→ product",
                "#→ cart",
                "#→ checkout",
                "#→ purchase",
                "#conversion",
            ],
            &data,
        )
    };
    body += "<h2>By device</h2>";
    body += &split(&device, "device");
    body += "<h2>By traffic source</h2>";
    body += &split(&source, "source");
    Ok(html(page("Funnel", "/funnel", &who, Some(&r), &body)))
}

async fn products(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Viewer)?;
    let r = range(&api, &q).await?;
    let w = between(&r);
    let (top, cats, pairs) = tokio::join!(
        rows(
            &api,
            format!(
                "SELECT product_id, max(product_name) AS name, max(category) AS category, sum(units) AS units, \
                 CAST(sum(net_revenue) AS DOUBLE) AS revenue, sum(views) AS views, sum(carts) AS carts, \
                 sum(orders) AS orders, sum(returned_lines) AS returned, sum(order_lines) AS lines, \
                 sum(rating_sum) AS stars, sum(reviews) AS reviews \
                 FROM curated.product_performance WHERE {w} GROUP BY product_id ORDER BY revenue DESC, product_id LIMIT 20"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT category, CAST(sum(net_revenue) AS DOUBLE) AS revenue, sum(units) AS units \
                 FROM curated.product_performance WHERE {w} GROUP BY category ORDER BY revenue DESC LIMIT 15"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT p.product_a, p.product_b, a.name AS name_a, b.name AS name_b, p.baskets FROM \
                 (SELECT product_a, product_b, sum(baskets) AS baskets FROM curated.product_pairs WHERE {w} \
                  GROUP BY 1, 2 ORDER BY baskets DESC, product_a, product_b LIMIT 10) p \
                 LEFT JOIN processed.products a ON a.product_id = p.product_a \
                 LEFT JOIN processed.products b ON b.product_id = p.product_b ORDER BY p.baskets DESC, p.product_a, p.product_b"
            )
        ),
    );
    let (top, cats, pairs) = (top?, cats?, pairs?);
    let mut body = String::from(r#"<div class="grid2">"#);
    let bars: Vec<(String, f64, String)> = top
        .iter()
        .take(10)
        .map(|t| {
            let name = text(t, "name");
            let label = if name.is_empty() {
                text(t, "product_id")
            } else {
                name
            };
            (label, num(t, "revenue"), fmt_money(num(t, "revenue")))
        })
        .collect();
    body += &charts::hbars("Top products by net revenue", &bars);
    let cbars: Vec<(String, f64, String)> = cats
        .iter()
        .map(|c| {
            (
                text(c, "category"),
                num(c, "revenue"),
                fmt_money(num(c, "revenue")),
            )
        })
        .collect();
    body += &charts::hbars("Categories by net revenue", &cbars);
    body += "</div>";
    let data: Vec<Vec<String>> = top
        .iter()
        .map(|t| {
            let reviews = num(t, "reviews");
            vec![
                text(t, "product_id"),
                text(t, "name"),
                text(t, "category"),
                fmt_count(num(t, "units")),
                fmt_money(num(t, "revenue")),
                fmt_count(num(t, "views")),
                pct(ratio(num(t, "carts"), num(t, "views"))),
                pct(ratio(num(t, "orders"), num(t, "carts"))),
                pct(ratio(num(t, "returned"), num(t, "lines"))),
                if reviews > 0.0 {
                    format!("{:.2} ({})", num(t, "stars") / reviews, fmt_count(reviews))
                } else {
                    "–".into()
                },
            ]
        })
        .collect();
    body += "<h2>Top 20 products</h2>";
    body += &table(
        "products",
        &[
            "product",
            "name",
            "category",
            "#units",
            "#net revenue",
            "#views",
            "#view→cart",
            "#cart→order",
            "#return rate",
            "#rating",
        ],
        &data,
    );
    let pdata: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            vec![
                format!("{} {}", text(p, "product_a"), text(p, "name_a")),
                format!("{} {}", text(p, "product_b"), text(p, "name_b")),
                fmt_count(num(p, "baskets")),
            ]
        })
        .collect();
    body += "<h2>Bought together</h2>";
    body += &table("affinity", &["product", "with", "#baskets"], &pdata);
    Ok(html(page("Products", "/products", &who, Some(&r), &body)))
}

async fn customers(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Viewer)?;
    let r = range(&api, &q).await?;
    let (segments, ltv, cohorts, risk) = tokio::join!(
        rows(
            &api,
            "SELECT rfm_segment, count(*) AS customers, CAST(sum(lifetime_value) AS DOUBLE) AS value, \
             max(as_of_date) AS as_of FROM curated.customers GROUP BY 1 ORDER BY value DESC"
                .into()
        ),
        rows(
            &api,
            "SELECT CAST(floor(log10(greatest(CAST(lifetime_value AS DOUBLE), 1.0)) * 2) AS INT) AS b, count(*) AS n \
             FROM curated.customers GROUP BY 1 ORDER BY 1"
                .into()
        ),
        rows(
            &api,
            format!(
                "SELECT substr(CAST(date_trunc('month', c.first_purchase_date) AS VARCHAR), 1, 7) AS cohort, \
                 CAST((date_part('year', o.date) - date_part('year', c.first_purchase_date)) * 12 \
                   + date_part('month', o.date) - date_part('month', c.first_purchase_date) AS INT) AS k, \
                 count(DISTINCT o.customer_id) AS n \
                 FROM curated.order_lines o JOIN curated.customers c ON c.customer_id = o.customer_id \
                 WHERE c.first_purchase_date BETWEEN DATE '{}' AND DATE '{}' GROUP BY 1, 2 ORDER BY 1, 2",
                r.from, r.to
            )
        ),
        // the churn model's riskiest customers with the most at stake
        rows(
            &api,
            "SELECT customer_id, churn_probability, recency_days, CAST(lifetime_value AS DOUBLE) AS value, \
             horizon_days, model FROM curated.churn_scores WHERE risk_decile <= 2 \
             ORDER BY lifetime_value DESC, customer_id LIMIT 15"
                .into()
        ),
    );
    let (segments, ltv, cohorts, risk) = (segments?, ltv?, cohorts?, risk?);
    let mut body = String::from(r#"<div class="grid2">"#);
    let sbars: Vec<(String, f64, String)> = segments
        .iter()
        .map(|s| {
            (
                text(s, "rfm_segment"),
                num(s, "customers"),
                format!(
                    "{} · {}",
                    fmt_count(num(s, "customers")),
                    fmt_money(num(s, "value"))
                ),
            )
        })
        .collect();
    body += &charts::hbars("RFM segments: customers · lifetime value", &sbars);
    let lbars: Vec<(String, f64, String)> = ltv
        .iter()
        .map(|l| {
            let b = num(l, "b");
            let lo = 10f64.powf(b / 2.0);
            let hi = 10f64.powf((b + 1.0) / 2.0);
            (
                format!("{} – {}", fmt_short(lo), fmt_short(hi)),
                num(l, "n"),
                fmt_count(num(l, "n")),
            )
        })
        .collect();
    body += &charts::hbars("Lifetime value: customers per band", &lbars);
    body += "</div>";
    // cohort retention: share of each first-purchase month buying k months later
    let mut names: Vec<String> = Vec::new();
    let mut grid: HashMap<(String, i64), f64> = HashMap::new();
    let mut maxk = 0;
    for c in &cohorts {
        let name = text(c, "cohort");
        if !names.contains(&name) {
            names.push(name.clone());
        }
        let k = num(c, "k") as i64;
        maxk = maxk.max(k);
        grid.insert((name, k), num(c, "n"));
    }
    let maxk = maxk.min(12);
    let cols: Vec<String> = (0..=maxk).map(|k| format!("M{k}")).collect();
    let cells: Vec<Vec<Option<(f64, String)>>> = names
        .iter()
        .map(|name| {
            let size = grid.get(&(name.clone(), 0)).copied().unwrap_or(0.0);
            (0..=maxk)
                .map(|k| {
                    grid.get(&(name.clone(), k))
                        .map(|n| (ratio(*n, size), format!("{:.0}%", 100.0 * ratio(*n, size))))
                })
                .collect()
        })
        .collect();
    let labels: Vec<String> = names
        .iter()
        .map(|n| {
            let size = grid.get(&(n.clone(), 0)).copied().unwrap_or(0.0);
            format!("{n} ({})", fmt_count(size))
        })
        .collect();
    body += &charts::heatmap(
        "Cohort retention: customers by first-purchase month buying again k months later",
        &labels,
        &cols,
        &cells,
    );
    body += "<h2>Churn risk</h2>";
    if risk.is_empty() {
        body += r#"<p class="muted">No churn model yet: <code>shoplake ml train churn</code> scores every customer.</p>"#;
    } else {
        let horizon = text(&risk[0], "horizon_days");
        let cells: Vec<Vec<String>> = risk
            .iter()
            .map(|c| {
                vec![
                    text(c, "customer_id"),
                    pct(num(c, "churn_probability")),
                    fmt_count(num(c, "recency_days")),
                    fmt_money(num(c, "value")),
                ]
            })
            .collect();
        let _ = write!(
            body,
            r#"<p class="muted">The riskiest fifth of customers (no purchase expected in the next {} days), by lifetime value at stake.</p>"#,
            esc(&horizon)
        );
        body += &table(
            "churn-risk",
            &[
                "customer",
                "#churn probability",
                "#days since last order",
                "#lifetime value",
            ],
            &cells,
        );
    }
    let as_of = segments
        .first()
        .map(|s| text(s, "as_of"))
        .unwrap_or_default();
    let _ = write!(
        body,
        r#"<p class="muted">Segments and lifetime value as of {}; cohorts are customers whose first purchase falls in the chosen range.</p>"#,
        esc(&as_of)
    );
    Ok(html(page("Customers", "/customers", &who, Some(&r), &body)))
}

async fn traffic(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Viewer)?;
    let r = range(&api, &q).await?;
    let w = between(&r);
    let (device, sources, landing, browsers, referrers) = tokio::join!(
        rows(
            &api,
            format!(
                "SELECT device_type AS k, sum(sessions) AS sessions FROM curated.sessions_daily WHERE {w} \
                 GROUP BY 1 ORDER BY sessions DESC"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT traffic_source, traffic_medium, coalesce(campaign, '') AS campaign, sum(sessions) AS sessions, \
                 sum(bounces) AS bounces, sum(converted_sessions) AS converted, sum(page_views) AS page_views \
                 FROM curated.sessions_daily WHERE {w} GROUP BY 1, 2, 3 ORDER BY sessions DESC LIMIT 25"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT coalesce(landing_page, '(none)') AS page, count(*) AS sessions, \
                 sum(CASE WHEN converted THEN 1 ELSE 0 END) AS converted \
                 FROM processed.sessions WHERE {w} GROUP BY 1 ORDER BY sessions DESC LIMIT 15"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT coalesce(browser, '(unknown)') AS k, count(*) AS sessions \
                 FROM processed.sessions WHERE {w} GROUP BY 1 ORDER BY sessions DESC LIMIT 10"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT coalesce(referrer_host, '(none)') AS k, count(*) AS sessions, \
                 sum(CASE WHEN converted THEN 1 ELSE 0 END) AS converted \
                 FROM processed.sessions WHERE {w} GROUP BY 1 ORDER BY sessions DESC LIMIT 15"
            )
        ),
    );
    let (device, sources, landing, browsers, referrers) =
        (device?, sources?, landing?, browsers?, referrers?);
    // bars of sessions per `k`
    let bars = |rows: &[Row]| -> Vec<(String, f64, String)> {
        rows.iter()
            .map(|d| {
                let n = num(d, "sessions");
                (text(d, "k"), n, fmt_count(n))
            })
            .collect()
    };
    let mut body = format!(
        r#"<div class="grid2">{}{}</div>"#,
        charts::hbars("Sessions by device", &bars(&device)),
        charts::hbars("Sessions by browser", &bars(&browsers))
    );
    let sdata: Vec<Vec<String>> = sources
        .iter()
        .map(|s| {
            vec![
                text(s, "traffic_source"),
                text(s, "traffic_medium"),
                text(s, "campaign"),
                fmt_count(num(s, "sessions")),
                pct(ratio(num(s, "bounces"), num(s, "sessions"))),
                pct(ratio(num(s, "converted"), num(s, "sessions"))),
                format!("{:.1}", ratio(num(s, "page_views"), num(s, "sessions"))),
            ]
        })
        .collect();
    body += "<h2>Source / medium / campaign</h2>";
    body += &table(
        "sources",
        &[
            "source",
            "medium",
            "campaign",
            "#sessions",
            "#bounce rate",
            "#conversion",
            "#pages/session",
        ],
        &sdata,
    );
    let ldata: Vec<Vec<String>> = landing
        .iter()
        .map(|l| {
            vec![
                text(l, "page"),
                fmt_count(num(l, "sessions")),
                pct(ratio(num(l, "converted"), num(l, "sessions"))),
            ]
        })
        .collect();
    let rdata: Vec<Vec<String>> = referrers
        .iter()
        .map(|l| {
            vec![
                text(l, "k"),
                fmt_count(num(l, "sessions")),
                pct(ratio(num(l, "converted"), num(l, "sessions"))),
            ]
        })
        .collect();
    body += r#"<div class="grid2"><div><h2>Landing pages</h2>"#;
    body += &table(
        "landing",
        &["landing page", "#sessions", "#conversion"],
        &ldata,
    );
    body += "</div><div><h2>Referrers</h2>";
    body += &table(
        "referrers",
        &["referring site", "#sessions", "#conversion"],
        &rdata,
    );
    body += "</div></div>";
    Ok(html(page("Traffic", "/traffic", &who, Some(&r), &body)))
}

/// `GET /api/live`: the last minute of collected events, sessions active in
/// the last 30 minutes, today's orders and revenue, the newest events.
async fn live_api(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Response> {
    let p = auth::authenticate(&api.store, api.oidc.as_deref(), &headers).map_err(|d| {
        (d.status, axum::Json(serde_json::json!({"error": d.reason}))).into_response()
    })?;
    p.require(Role::Viewer).map_err(|d| {
        (d.status, axum::Json(serde_json::json!({"error": d.reason}))).into_response()
    })?;
    let now = chrono::Utc::now();
    let today = now.format("%Y-%m-%d").to_string();
    let yesterday = (now - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let recent =
        format!("protocol <> 'file' AND date BETWEEN DATE '{yesterday}' AND DATE '{today}'");
    let (per_sec, active, today_rows, newest, backend) = tokio::join!(
        rows(
            &api,
            format!(
                "SELECT CAST(date_part('epoch', date_trunc('second', received_at)) AS BIGINT) AS s, count(*) AS n \
                 FROM processed.events WHERE {recent} AND received_at >= now() - INTERVAL '60 seconds' GROUP BY 1 ORDER BY 1"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT count(DISTINCT session_id) AS n FROM processed.events \
                 WHERE {recent} AND received_at >= now() - INTERVAL '30 minutes'"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT count(*) AS events, sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS orders, \
                 CAST(coalesce(sum(CASE WHEN event_type = 'purchase' THEN revenue END), 0) AS DOUBLE) AS revenue \
                 FROM processed.events WHERE protocol <> 'file' AND date = DATE '{today}'"
            )
        ),
        rows(
            &api,
            format!(
                "SELECT CAST(received_at AS VARCHAR) AS received_at, event_type, coalesce(product_id, '') AS product_id, \
                 CAST(revenue AS DOUBLE) AS revenue, source, protocol, device_type FROM processed.events \
                 WHERE {recent} ORDER BY received_at DESC, event_ts DESC LIMIT 15"
            )
        ),
        // the truth, when the shop's backend sends its orders (/api/orders)
        rows(
            &api,
            format!(
                "SELECT count(*) AS orders, CAST(coalesce(sum(total), 0) AS DOUBLE) AS revenue \
                 FROM processed.orders WHERE date = DATE '{today}' AND status <> 'cancelled'"
            )
        ),
    );
    let fail = |e: PageError| *e.0;
    let (per_sec, active, today_rows, newest, backend) = (
        per_sec.map_err(fail)?,
        active.map_err(fail)?,
        today_rows.map_err(fail)?,
        newest.map_err(fail)?,
        backend.map_err(fail)?,
    );
    let start = now.timestamp() - 59;
    let mut series = vec![0u64; 60];
    for r in &per_sec {
        let i = num(r, "s") as i64 - start;
        if (0..60).contains(&i) {
            series[i as usize] = num(r, "n") as u64;
        }
    }
    let empty = Row::new();
    let t = today_rows.first().unwrap_or(&empty);
    let b = backend.first().unwrap_or(&empty);
    Ok(axum::Json(serde_json::json!({
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "events_per_second": series,
        "events_last_minute": series.iter().sum::<u64>(),
        "active_sessions": active.first().map_or(0.0, |r| num(r, "n")) as u64,
        "events_today": num(t, "events") as u64,
        "orders_today": num(t, "orders") as u64,
        "revenue_today": num(t, "revenue"),
        "backend_orders_today": num(b, "orders") as u64,
        "backend_revenue_today": num(b, "revenue"),
        "newest": newest,
    }))
    .into_response())
}

async fn live(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Viewer)?;
    let body = format!(
        r#"<div class="tiles">{}{}{}{}{}{}</div>
<p class="muted">Orders and revenue today: purchases the browsers reported, and orders the shop's backend recorded through <code>/api/orders</code> (the truth; the difference is tracking loss).</p>
<figure class="chart"><figcaption>Events per second, last minute</figcaption><svg id="eps" viewBox="0 0 720 160" role="img" aria-label="events per second"></svg></figure>
<h2>Newest events</h2><div id="newest">{}</div>
<p class="muted" id="updated">Updating every 3 seconds.</p>
<script>
(function(){{
const fmt=n=>Number(n).toLocaleString(undefined,{{maximumFractionDigits:2}});
const esc=s=>String(s).replace(/[&<>"']/g,c=>({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}})[c]);
function set(k,v){{const t=document.querySelector('[data-kpi="'+k+'"] .v');if(t)t.textContent=v;}}
async function tick(){{
 try{{
  const r=await fetch('/api/live',{{credentials:'same-origin'}});
  if(r.status===401){{location.href='/login';return;}}
  const d=await r.json();
  set('Events, last minute',fmt(d.events_last_minute));set('Active sessions (30 min)',fmt(d.active_sessions));
  set('Orders today',fmt(d.orders_today));set('Revenue today',fmt(d.revenue_today));
  set('Orders today (backend)',fmt(d.backend_orders_today));set('Revenue today (backend)',fmt(d.backend_revenue_today));
  const m=Math.max(1,...d.events_per_second),w=720/60;let s='';
  d.events_per_second.forEach((v,i)=>{{const h=140*v/m;s+='<rect class="bar" x="'+(i*w+1)+'" y="'+(150-h)+'" width="'+(w-2)+'" height="'+h+'"><title>'+v+' events</title></rect>';}});
  document.getElementById('eps').innerHTML=s+'<text class="axis" x="4" y="12">'+m+'/s</text>';
  let t='<div class="tablewrap"><table id="live-events"><thead><tr><th>received</th><th>event</th><th>product</th><th class="n">revenue</th><th>source</th><th>device</th></tr></thead><tbody>';
  for(const e of d.newest)t+='<tr><td>'+esc(e.received_at)+'</td><td>'+esc(e.event_type)+'</td><td>'+esc(e.product_id)+'</td><td class="n">'+(e.revenue==null?'':fmt(e.revenue))+'</td><td>'+esc(e.source)+'</td><td>'+esc(e.device_type||'')+'</td></tr>';
  document.getElementById('newest').innerHTML=t+'</tbody></table></div>';
  document.getElementById('updated').textContent='Updated '+new Date().toLocaleTimeString()+'; every 3 seconds.';
 }}catch(e){{document.getElementById('updated').textContent='Not updated: '+e;}}
}}
tick();setInterval(tick,3000);
}})();
</script>"#,
        stat("Events, last minute", "…"),
        stat("Active sessions (30 min)", "…"),
        stat("Orders today", "…"),
        stat("Revenue today", "…"),
        stat("Orders today (backend)", "…"),
        stat("Revenue today (backend)", "…"),
        table(
            "live-events",
            &[
                "received", "event", "product", "#revenue", "source", "device"
            ],
            &[]
        ),
    );
    Ok(html(page("Live", "/live", &who, None, &body)))
}

async fn pipeline(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Viewer)?;
    let store = api.store.clone();
    let hist = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let runs = store.runs(20).map_err(|e| e.to_string())?;
        let latest = match runs.first() {
            Some(r) => store.run(&r.run_id).map_err(|e| e.to_string())?,
            None => None,
        };
        let alerts = store.open_alerts("").map_err(|e| e.to_string())?;
        Ok((runs, latest, alerts))
    })
    .await
    .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
    .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e))?;
    let (runs, latest, alerts) = hist;
    let checks = rows(
        &api,
        "SELECT run_id, table_name, check_name, check_kind, severity, status, failing, message FROM ops.quality \
         WHERE run_id = (SELECT run_id FROM ops.quality ORDER BY checked_at DESC LIMIT 1) AND status IN ('fail', 'error') ORDER BY severity, table_name, check_name"
            .into(),
    )
    .await?;
    let mut body = String::new();
    if who.role >= Role::Admin {
        body += r#"<p><button type="button" id="runnow">Run the pipeline now</button> <span id="runstatus" class="muted" role="status"></span></p>
<script>
document.getElementById('runnow').addEventListener('click',async()=>{
 const me=await (await fetch('/api/me',{credentials:'same-origin'})).json();
 const r=await fetch('/api/pipeline/run',{method:'POST',credentials:'same-origin',headers:{'X-CSRF-Token':me.csrf_token||''}});
 const d=await r.json();
 document.getElementById('runstatus').textContent=r.ok?'Started; reload this page to follow it.':d.error;
});
</script>"#;
    }
    let secs = |s: Option<f64>| s.map_or(String::new(), |s| format!("{s:.1}s"));
    let rdata: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                r.trigger.clone(),
                r.status.clone(),
                r.started_at.clone(),
                secs(r.seconds),
                r.dates
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .count()
                    .to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    body += "<h2>Runs</h2>";
    body += &table(
        "runs",
        &[
            "run", "trigger", "status", "started", "#time", "#dates", "error",
        ],
        &rdata,
    );
    if let Some((run, steps)) = latest {
        let bars: Vec<(String, f64, String)> = steps
            .iter()
            .map(|s| {
                (
                    format!("{} ({})", s.name, s.status),
                    s.seconds.unwrap_or(0.0),
                    format!(
                        "{} · {} rows out",
                        secs(s.seconds),
                        fmt_count(s.rows_out as f64)
                    ),
                )
            })
            .collect();
        body += &charts::hbars(&format!("Step timings of {}", run.run_id), &bars);
    }
    let cdata: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                text(c, "table_name"),
                text(c, "check_name"),
                text(c, "check_kind"),
                text(c, "severity"),
                text(c, "status"),
                fmt_count(num(c, "failing")),
                text(c, "message"),
            ]
        })
        .collect();
    body += "<h2>Failed checks of the latest run</h2>";
    body += &table(
        "checks",
        &[
            "table", "check", "kind", "severity", "status", "#failing", "message",
        ],
        &cdata,
    );
    let adata: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                a.severity.clone(),
                a.kind.clone(),
                a.key.clone(),
                a.raised_at.clone(),
                a.repeats.to_string(),
                a.message.clone(),
            ]
        })
        .collect();
    body += "<h2>Open alerts</h2>";
    body += &table(
        "alerts",
        &[
            "severity",
            "kind",
            "condition",
            "raised",
            "#repeats",
            "message",
        ],
        &adata,
    );
    Ok(html(page(
        "Pipeline & quality",
        "/pipeline",
        &who,
        None,
        &body,
    )))
}

async fn sql_page(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Analyst)?;
    let mut browser = String::new();
    for t in shoplake_core::schema::TABLES {
        let _ = write!(
            browser,
            r#"<details><summary><code>{}</code></summary><p class="muted">{}</p><ul>"#,
            esc(&t.qualified()),
            esc(t.doc)
        );
        for c in t.columns {
            let _ = write!(
                browser,
                "<li><code>{}</code> {}: {}</li>",
                esc(c.name),
                c.ty.sql(),
                esc(c.doc)
            );
        }
        browser.push_str("</ul></details>");
    }
    let body = format!(
        r#"<form id="sqlform"><label for="sql">Read-only SQL over the lake (default schema <code>curated</code>)</label>
<textarea id="sql" name="sql" spellcheck="false">SELECT date, net_revenue, orders, conversion_rate FROM daily_kpis ORDER BY date DESC LIMIT 20</textarea>
<p><button type="submit" id="run">Run</button> <button type="button" id="csv">Download CSV</button> <button type="button" id="save">Save query</button>
<select id="saved" aria-label="Saved queries"><option value="">Saved queries…</option></select></p></form>
<p id="status" class="muted" role="status"></p><div id="result"></div>
<h2>Tables</h2>{browser}
<script>
(function(){{
let csrf=null;
async function token(){{if(!csrf){{const r=await fetch('/api/me',{{credentials:'same-origin'}});csrf=(await r.json()).csrf_token;}}return csrf;}}
const esc=s=>String(s==null?'':s).replace(/[&<>"']/g,c=>({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}})[c]);
async function run(format){{
 const sql=document.getElementById('sql').value;const st=document.getElementById('status');st.textContent='Running…';
 const r=await fetch('/api/sql'+(format?'?format='+format:''),{{method:'POST',credentials:'same-origin',headers:{{'Content-Type':'application/json','X-CSRF-Token':await token()}},body:JSON.stringify({{sql}})}});
 if(format==='csv'){{
  if(!r.ok){{st.textContent=(await r.json()).error;return;}}
  const b=await r.blob();const a=document.createElement('a');a.href=URL.createObjectURL(b);a.download='shoplake-query.csv';a.click();st.textContent='CSV downloaded.';return;
 }}
 const d=await r.json();
 if(!r.ok){{st.textContent=d.error;st.className='fail';document.getElementById('result').innerHTML='';return;}}
 st.className='muted';st.textContent=d.rows.length+' row(s) in '+d.elapsed_ms+' ms'+(d.truncated?' (cut at '+d.max_rows+')':'');
 let h='<div class="tablewrap"><table id="sql-result"><thead><tr>'+d.columns.map(c=>'<th>'+esc(c.name)+'</th>').join('')+'</tr></thead><tbody>';
 for(const row of d.rows)h+='<tr>'+d.columns.map(c=>'<td>'+esc(row[c.name])+'</td>').join('')+'</tr>';
 document.getElementById('result').innerHTML=h+'</tbody></table></div>';
}}
async function fill(){{
 const s=document.getElementById('saved');s.length=1;
 const r=await fetch('/api/queries',{{credentials:'same-origin'}});if(!r.ok)return;
 for(const q of (await r.json()).queries){{const o=document.createElement('option');o.value=q.sql;o.textContent=q.name;s.appendChild(o);}}
}}
document.getElementById('sqlform').addEventListener('submit',e=>{{e.preventDefault();run(null);}});
document.getElementById('csv').addEventListener('click',()=>run('csv'));
document.getElementById('save').addEventListener('click',async()=>{{
 const name=prompt('Name of the query');if(!name)return;
 const r=await fetch('/api/queries',{{method:'POST',credentials:'same-origin',headers:{{'Content-Type':'application/json','X-CSRF-Token':await token()}},body:JSON.stringify({{name,sql:document.getElementById('sql').value}})}});
 document.getElementById('status').textContent=r.ok?'Saved as '+name+'.':(await r.json()).error;fill();
}});
document.getElementById('saved').addEventListener('change',e=>{{if(e.target.value)document.getElementById('sql').value=e.target.value;}});
fill();
}})();
</script>"#
    );
    Ok(html(page("SQL", "/sql", &who, None, &body)))
}
