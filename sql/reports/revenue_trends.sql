-- name: revenue_trends
-- title: Revenue trends
-- description: Net revenue, orders and AOV per day, week (from Monday) or month, with the change from the previous period; `days` shows how many days of data a period holds (the first and last may be partial).
-- params: from, to, grain=week
WITH p AS (
    SELECT
        CAST(date_trunc('{{grain}}', CAST(date AS TIMESTAMP)) AS DATE) AS period_start,
        COUNT(*) AS days,
        SUM(net_revenue) AS net_revenue,
        SUM(gross_revenue) AS gross_revenue,
        SUM(orders) AS orders
    FROM curated.daily_kpis
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
    GROUP BY 1
)
SELECT
    period_start,
    days,
    net_revenue,
    gross_revenue,
    orders,
    CAST(gross_revenue / NULLIF(orders, 0) AS DECIMAL(18, 2)) AS aov,
    LAG(net_revenue) OVER (ORDER BY period_start) AS prev_net_revenue,
    ROUND((CAST(net_revenue AS DOUBLE) / NULLIF(CAST(LAG(net_revenue) OVER (ORDER BY period_start) AS DOUBLE), 0) - 1) * 100, 2) AS change_pct
FROM p
ORDER BY period_start
