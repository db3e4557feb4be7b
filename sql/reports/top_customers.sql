-- name: top_customers
-- title: Most valuable customers
-- description: Customers ranked by lifetime value (net of returns), with orders, AOV, recency and RFM segment.
-- params: limit=20
SELECT
    customer_id,
    lifetime_value,
    orders,
    avg_order_value,
    first_purchase_date,
    last_purchase_date,
    recency_days,
    ROUND(return_rate * 100, 2) AS return_pct,
    rfm_segment
FROM curated.customers
ORDER BY lifetime_value DESC, customer_id
LIMIT {{limit}}
