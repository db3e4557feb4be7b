-- name: customer_ltv
-- title: Customer lifetime value by acquisition cohort
-- description: Customers grouped by the month of their first purchase (within the range): how many, their average and median lifetime value (net of returns), orders and repeat rate.
-- params: from, to
SELECT
    to_char(first_purchase_date, '%Y-%m') AS cohort,
    COUNT(*) AS customers,
    SUM(lifetime_value) AS total_ltv,
    CAST(AVG(lifetime_value) AS DECIMAL(18, 2)) AS avg_ltv,
    CAST(MEDIAN(lifetime_value) AS DECIMAL(18, 2)) AS median_ltv,
    ROUND(AVG(CAST(orders AS DOUBLE)), 2) AS avg_orders,
    ROUND(SUM(CASE WHEN orders >= 2 THEN 1 ELSE 0 END) * 100.0 / COUNT(*), 2) AS repeat_pct
FROM curated.customers
WHERE first_purchase_date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
GROUP BY to_char(first_purchase_date, '%Y-%m')
ORDER BY cohort
