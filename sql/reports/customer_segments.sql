-- name: customer_segments
-- title: Customer segments (RFM)
-- description: Customers by RFM segment as of the newest transaction: count, share, revenue, and average recency, orders and lifetime value.
-- params:
SELECT
    rfm_segment AS segment,
    COUNT(*) AS customers,
    ROUND(COUNT(*) * 100.0 / SUM(COUNT(*)) OVER (), 2) AS share_pct,
    SUM(lifetime_value) AS revenue,
    ROUND(CAST(SUM(lifetime_value) AS DOUBLE) * 100 / SUM(CAST(SUM(lifetime_value) AS DOUBLE)) OVER (), 2) AS revenue_share_pct,
    ROUND(AVG(CAST(recency_days AS DOUBLE)), 1) AS avg_recency_days,
    ROUND(AVG(CAST(orders AS DOUBLE)), 2) AS avg_orders,
    CAST(AVG(lifetime_value) AS DECIMAL(18, 2)) AS avg_ltv
FROM curated.customers
GROUP BY rfm_segment
ORDER BY revenue DESC, segment
