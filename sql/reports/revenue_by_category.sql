-- name: revenue_by_category
-- title: Revenue by category
-- description: Gross and net revenue, units, orders and share of net revenue per category.
-- params: from, to
SELECT
    category,
    SUM(net_revenue) AS net_revenue,
    SUM(gross_revenue) AS gross_revenue,
    SUM(refunded_amount) AS refunded_amount,
    SUM(units) AS units,
    SUM(orders) AS orders,
    COUNT(DISTINCT product_id) AS products_sold,
    ROUND(CAST(SUM(net_revenue) AS DOUBLE) * 100 / SUM(CAST(SUM(net_revenue) AS DOUBLE)) OVER (), 2) AS share_pct
FROM curated.product_performance
WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}' AND order_lines > 0
GROUP BY category
ORDER BY net_revenue DESC, category
