//! Curated models: SQL over the processed tables, written to `curated.*`.
//!
//! Day-grain models are rebuilt for the dates a run touched (one Replace
//! commit per model); customer-level models and daily KPIs (whose
//! `new_customers` depends on all history) are rebuilt whole.

use shoplake_core::schema::{self, Table};
use shoplake_lake::{Lake, WriteMode, dates_predicate};
use shoplake_query::QueryEngine;

use crate::error::Result;

/// `{{dates}}` is replaced by a `date IN (...)` predicate.
const ORDER_LINES: &str = "
SELECT
    t.transaction_id,
    t.order_id,
    COALESCE(t.order_id, t.customer_id || '|' || CAST(t.date AS VARCHAR)) AS basket_id,
    t.customer_id,
    t.product_id,
    p.name AS product_name,
    COALESCE(p.category, 'unknown') AS category,
    p.brand,
    p.price_band,
    t.quantity,
    t.price AS unit_price,
    t.total_amount AS line_total,
    CASE WHEN t.status = 'completed' THEN t.total_amount ELSE CAST(0 AS DECIMAL(18, 2)) END AS net_amount,
    t.status,
    t.status <> 'completed' AS is_returned,
    t.currency,
    t.date
FROM processed.transactions t
LEFT JOIN processed.products p ON p.product_id = t.product_id
WHERE t.{{dates}}";

const PRODUCT_PERFORMANCE: &str = "
WITH lines AS (
    -- one row per product and basket first: COUNT(DISTINCT) per group is slow
    SELECT date, product_id, basket_id,
        COUNT(*) AS order_lines,
        SUM(quantity) AS units,
        SUM(line_total) AS gross_revenue,
        SUM(net_amount) AS net_revenue,
        SUM(CASE WHEN is_returned THEN 1 ELSE 0 END) AS returned_lines,
        SUM(CASE WHEN is_returned THEN quantity ELSE 0 END) AS returned_units,
        SUM(CASE WHEN is_returned THEN line_total ELSE CAST(0 AS DECIMAL(18, 2)) END) AS refunded_amount
    FROM curated.order_lines WHERE {{dates}}
    GROUP BY date, product_id, basket_id
),
sales AS (
    SELECT date, product_id,
        COUNT(*) AS orders,
        SUM(order_lines) AS order_lines,
        SUM(units) AS units,
        SUM(gross_revenue) AS gross_revenue,
        SUM(net_revenue) AS net_revenue,
        SUM(returned_lines) AS returned_lines,
        SUM(returned_units) AS returned_units,
        SUM(refunded_amount) AS refunded_amount
    FROM lines
    GROUP BY date, product_id
),
views AS (
    SELECT date, product_id, views, carts
    FROM processed.product_activity WHERE {{dates}}
),
revs AS (
    SELECT date, product_id, COUNT(*) AS reviews, SUM(rating) AS rating_sum
    FROM processed.reviews WHERE {{dates}}
    GROUP BY date, product_id
),
keys AS (
    SELECT date, product_id FROM sales
    UNION SELECT date, product_id FROM views
    UNION SELECT date, product_id FROM revs
)
SELECT
    k.date,
    k.product_id,
    p.name AS product_name,
    COALESCE(p.category, 'unknown') AS category,
    p.brand,
    COALESCE(v.views, 0) AS views,
    COALESCE(v.carts, 0) AS carts,
    COALESCE(s.orders, 0) AS orders,
    COALESCE(s.order_lines, 0) AS order_lines,
    COALESCE(s.units, 0) AS units,
    COALESCE(s.gross_revenue, 0) AS gross_revenue,
    COALESCE(s.net_revenue, 0) AS net_revenue,
    COALESCE(s.returned_lines, 0) AS returned_lines,
    COALESCE(s.returned_units, 0) AS returned_units,
    COALESCE(s.refunded_amount, 0) AS refunded_amount,
    COALESCE(r.reviews, 0) AS reviews,
    COALESCE(r.rating_sum, 0) AS rating_sum
FROM keys k
LEFT JOIN sales s ON s.date = k.date AND s.product_id = k.product_id
LEFT JOIN views v ON v.date = k.date AND v.product_id = k.product_id
LEFT JOIN revs r ON r.date = k.date AND r.product_id = k.product_id
LEFT JOIN processed.products p ON p.product_id = k.product_id
ORDER BY k.date, k.product_id";

const PRODUCT_PAIRS: &str = "
WITH b AS (SELECT DISTINCT date, basket_id, product_id FROM curated.order_lines WHERE {{dates}})
SELECT x.date, x.product_id AS product_a, y.product_id AS product_b, COUNT(*) AS baskets
FROM b x JOIN b y ON x.date = y.date AND x.basket_id = y.basket_id AND x.product_id < y.product_id
GROUP BY x.date, x.product_id, y.product_id
ORDER BY x.date, product_a, product_b";

const FUNNEL_DAILY: &str = "
SELECT date, device_type, traffic_source,
    COUNT(*) AS sessions,
    SUM(CASE WHEN funnel_stage >= 1 THEN 1 ELSE 0 END) AS page_view_sessions,
    SUM(CASE WHEN funnel_stage >= 2 THEN 1 ELSE 0 END) AS product_view_sessions,
    SUM(CASE WHEN funnel_stage >= 3 THEN 1 ELSE 0 END) AS cart_sessions,
    SUM(CASE WHEN funnel_stage >= 4 THEN 1 ELSE 0 END) AS checkout_sessions,
    SUM(CASE WHEN funnel_stage >= 5 THEN 1 ELSE 0 END) AS purchase_sessions
FROM processed.sessions WHERE {{dates}}
GROUP BY date, device_type, traffic_source
ORDER BY date, device_type, traffic_source";

const SESSIONS_DAILY: &str = "
SELECT date, device_type, traffic_source, traffic_medium, campaign,
    COUNT(*) AS sessions,
    SUM(CASE WHEN is_bounce THEN 1 ELSE 0 END) AS bounces,
    SUM(CASE WHEN converted THEN 1 ELSE 0 END) AS converted_sessions,
    SUM(page_views) AS page_views,
    SUM(events) AS events,
    SUM(duration_s) AS duration_s,
    SUM(CASE WHEN user_id IS NOT NULL THEN 1 ELSE 0 END) AS identified_sessions
FROM processed.sessions WHERE {{dates}}
GROUP BY date, device_type, traffic_source, traffic_medium, campaign
ORDER BY date, device_type, traffic_source, traffic_medium, campaign";

/// RFM scores are quintiles of each customer's position among all customers
/// (worst first). Tied customers share the middle of their tie's positions,
/// so a large tie (e.g. every one-order customer) gets one fair score:
/// score = 1 + ⌊5 × ((rank − 1) + (ties − 1) / 2) / n⌋.
const CUSTOMERS: &str = "
WITH b AS (
    SELECT customer_id, basket_id,
        MIN(date) AS first_date,
        MAX(date) AS last_date,
        COUNT(*) AS order_lines,
        SUM(quantity) AS units,
        SUM(line_total) AS gross_revenue,
        SUM(CASE WHEN is_returned THEN line_total ELSE CAST(0 AS DECIMAL(18, 2)) END) AS refunded_revenue,
        SUM(CASE WHEN is_returned THEN 1 ELSE 0 END) AS returned_lines
    FROM curated.order_lines
    GROUP BY customer_id, basket_id
),
o AS (
    SELECT customer_id,
        MIN(first_date) AS first_purchase_date,
        MAX(last_date) AS last_purchase_date,
        COUNT(*) AS orders,
        SUM(order_lines) AS order_lines,
        SUM(units) AS units,
        SUM(gross_revenue) AS gross_revenue,
        SUM(refunded_revenue) AS refunded_revenue,
        SUM(returned_lines) AS returned_lines
    FROM b
    GROUP BY customer_id
),
asof AS (SELECT MAX(date) AS d FROM curated.order_lines),
r AS (
    SELECT customer_id, COUNT(*) AS reviews, AVG(CAST(rating AS DOUBLE)) AS avg_rating
    FROM processed.reviews GROUP BY customer_id
),
base AS (
    SELECT o.*,
        o.gross_revenue - o.refunded_revenue AS lifetime_value,
        CAST(o.gross_revenue / o.orders AS DECIMAL(18, 2)) AS avg_order_value,
        CAST(o.returned_lines AS DOUBLE) / o.order_lines AS return_rate,
        CAST(asof.d AS INT) - CAST(o.last_purchase_date AS INT) AS recency_days,
        CAST(asof.d AS INT) - CAST(o.first_purchase_date AS INT) AS tenure_days,
        asof.d AS as_of_date
    FROM o CROSS JOIN asof
),
scored AS (
    SELECT base.*,
        CAST(1 + FLOOR(5.0 * ((RANK() OVER (ORDER BY recency_days DESC) - 1)
            + (COUNT(*) OVER (PARTITION BY recency_days) - 1) / 2.0) / COUNT(*) OVER ()) AS INT) AS r_score,
        CAST(1 + FLOOR(5.0 * ((RANK() OVER (ORDER BY orders ASC) - 1)
            + (COUNT(*) OVER (PARTITION BY orders) - 1) / 2.0) / COUNT(*) OVER ()) AS INT) AS f_score,
        CAST(1 + FLOOR(5.0 * ((RANK() OVER (ORDER BY lifetime_value ASC) - 1)
            + (COUNT(*) OVER (PARTITION BY lifetime_value) - 1) / 2.0) / COUNT(*) OVER ()) AS INT) AS m_score
    FROM base
)
SELECT
    s.customer_id, s.first_purchase_date, s.last_purchase_date, s.orders, s.order_lines, s.units,
    s.gross_revenue, s.refunded_revenue, s.lifetime_value, s.avg_order_value, s.return_rate,
    s.recency_days, s.tenure_days, s.r_score, s.f_score, s.m_score,
    CASE
        WHEN s.r_score >= 4 AND s.f_score >= 4 AND s.m_score >= 4 THEN 'champions'
        WHEN s.r_score <= 1 AND s.f_score >= 4 AND s.m_score >= 4 THEN 'cant_lose'
        WHEN s.r_score >= 3 AND s.f_score >= 4 THEN 'loyal'
        WHEN s.r_score <= 2 AND s.f_score >= 3 THEN 'at_risk'
        WHEN s.r_score >= 4 AND s.f_score >= 2 THEN 'potential_loyalists'
        WHEN s.r_score >= 4 THEN 'new'
        WHEN s.r_score = 3 AND s.f_score >= 2 THEN 'need_attention'
        WHEN s.r_score = 3 THEN 'promising'
        WHEN s.r_score = 2 THEN 'hibernating'
        ELSE 'lost'
    END AS rfm_segment,
    COALESCE(r.reviews, 0) AS reviews,
    r.avg_rating,
    s.as_of_date
FROM scored s LEFT JOIN r ON r.customer_id = s.customer_id
ORDER BY s.customer_id";

const DAILY_KPIS: &str = "
WITH b AS (
    SELECT date, basket_id, customer_id,
        SUM(line_total) AS gross_revenue,
        SUM(CASE WHEN is_returned THEN line_total ELSE CAST(0 AS DECIMAL(18, 2)) END) AS refunded_revenue,
        COUNT(*) AS order_lines,
        SUM(quantity) AS units,
        SUM(CASE WHEN is_returned THEN 1 ELSE 0 END) AS returned_lines
    FROM curated.order_lines GROUP BY date, basket_id, customer_id
),
c AS (SELECT date, COUNT(*) AS customers FROM (SELECT DISTINCT date, customer_id FROM b) GROUP BY date),
s AS (
    SELECT b.date,
        SUM(gross_revenue) AS gross_revenue,
        SUM(refunded_revenue) AS refunded_revenue,
        COUNT(*) AS orders,
        SUM(order_lines) AS order_lines,
        SUM(units) AS units,
        MAX(c.customers) AS customers,
        SUM(returned_lines) AS returned_lines
    FROM b JOIN c ON c.date = b.date
    GROUP BY b.date
),
n AS (SELECT first_purchase_date AS date, COUNT(*) AS new_customers FROM curated.customers GROUP BY first_purchase_date),
x AS (
    SELECT date,
        COUNT(*) AS sessions,
        SUM(CASE WHEN converted THEN 1 ELSE 0 END) AS converted_sessions,
        SUM(CASE WHEN is_bounce THEN 1 ELSE 0 END) AS bounces,
        AVG(CAST(duration_s AS DOUBLE)) AS avg_session_seconds,
        SUM(page_views) AS page_views,
        SUM(product_views) AS product_views,
        SUM(add_to_carts) AS add_to_carts,
        SUM(checkouts) AS checkouts,
        SUM(purchases) AS purchase_events
    FROM processed.sessions GROUP BY date
),
d AS (SELECT date FROM s UNION SELECT date FROM x)
SELECT
    d.date,
    COALESCE(s.gross_revenue, 0) AS gross_revenue,
    COALESCE(s.refunded_revenue, 0) AS refunded_revenue,
    COALESCE(s.gross_revenue, 0) - COALESCE(s.refunded_revenue, 0) AS net_revenue,
    COALESCE(s.orders, 0) AS orders,
    COALESCE(s.order_lines, 0) AS order_lines,
    COALESCE(s.units, 0) AS units,
    CAST(COALESCE(s.gross_revenue / NULLIF(s.orders, 0), 0) AS DECIMAL(18, 2)) AS aov,
    COALESCE(s.customers, 0) AS customers,
    COALESCE(n.new_customers, 0) AS new_customers,
    COALESCE(s.returned_lines, 0) AS returned_lines,
    COALESCE(CAST(s.returned_lines AS DOUBLE) / NULLIF(s.order_lines, 0), 0) AS return_rate,
    COALESCE(x.sessions, 0) AS sessions,
    COALESCE(x.converted_sessions, 0) AS converted_sessions,
    COALESCE(CAST(x.converted_sessions AS DOUBLE) / NULLIF(x.sessions, 0), 0) AS conversion_rate,
    COALESCE(CAST(x.bounces AS DOUBLE) / NULLIF(x.sessions, 0), 0) AS bounce_rate,
    COALESCE(x.avg_session_seconds, 0) AS avg_session_seconds,
    COALESCE(x.page_views, 0) AS page_views,
    COALESCE(x.product_views, 0) AS product_views,
    COALESCE(x.add_to_carts, 0) AS add_to_carts,
    COALESCE(x.checkouts, 0) AS checkouts,
    COALESCE(x.purchase_events, 0) AS purchase_events
FROM d
LEFT JOIN s ON s.date = d.date
LEFT JOIN n ON n.date = d.date
LEFT JOIN x ON x.date = d.date
ORDER BY d.date";

/// A curated model: its table and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The table it writes.
    pub table: &'static Table,
    /// Its SQL (`{{dates}}` for day-grain models).
    pub sql: &'static str,
    /// Rebuilt for the touched dates (true) or whole (false).
    pub by_date: bool,
}

const fn model(table: &'static Table, sql: &'static str, by_date: bool) -> Model {
    Model {
        table,
        sql,
        by_date,
    }
}

/// Every curated model, in stages: a stage reads only what earlier stages
/// and the processed tables hold, so its models can be built concurrently.
pub const STAGES: &[&[Model]] = &[
    &[
        model(&schema::ORDER_LINES, ORDER_LINES, true),
        model(&schema::FUNNEL_DAILY, FUNNEL_DAILY, true),
        model(&schema::SESSIONS_DAILY, SESSIONS_DAILY, true),
    ],
    &[
        model(&schema::PRODUCT_PERFORMANCE, PRODUCT_PERFORMANCE, true),
        model(&schema::PRODUCT_PAIRS, PRODUCT_PAIRS, true),
        model(&schema::CUSTOMERS, CUSTOMERS, false),
    ],
    &[model(&schema::DAILY_KPIS, DAILY_KPIS, false)],
];

/// Rebuilds one model; returns the rows written.
pub async fn build(
    lake: &Lake,
    engine: &QueryEngine,
    model: &Model,
    dates: &[i32],
    threads: usize,
) -> Result<u64> {
    let t0 = std::time::Instant::now();
    let stats = if model.by_date {
        if dates.is_empty() {
            return Ok(0);
        }
        let pred = dates_predicate(dates);
        let batches = engine
            .run_internal(&model.sql.replace("{{dates}}", &pred))
            .await?;
        tracing::debug!(
            model = model.table.name,
            ms = t0.elapsed().as_millis() as u64,
            "model computed"
        );
        if model.table.partition == Some("date") {
            lake.replace_dates(model.table, dates, batches, None, threads)
                .await?
        } else {
            lake.write(model.table, batches, WriteMode::Replace(pred))
                .await?
        }
    } else {
        let batches = engine.run_internal(model.sql).await?;
        tracing::debug!(
            model = model.table.name,
            ms = t0.elapsed().as_millis() as u64,
            "model computed"
        );
        lake.write(model.table, batches, WriteMode::Overwrite)
            .await?
    };
    Ok(stats.rows)
}
