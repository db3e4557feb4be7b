-- name: daily_kpis
-- title: Daily KPIs
-- description: Revenue, orders, average order value, customers, sessions and conversion, one row per day.
-- params: from, to
SELECT
    date,
    gross_revenue,
    net_revenue,
    orders,
    aov,
    customers,
    new_customers,
    sessions,
    converted_sessions,
    ROUND(conversion_rate * 100, 2) AS conversion_pct,
    ROUND(return_rate * 100, 2) AS return_pct
FROM curated.daily_kpis
WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
ORDER BY date
