-- name: order_reconciliation
-- title: Orders vs browser purchases
-- description: Backend orders (the orders API, processed.orders) matched with the browser's purchase events by order id: orders the browser never reported (ad blockers, closed tabs), browser purchases with no order, and revenue mismatches. The summary rows give each outcome's share of the orders: `not_tracked` is the tracking loss.
-- params: from, to, limit=100
WITH o AS (
    SELECT order_id, customer_id, status, total, subtotal - discount AS net, date
    FROM processed.orders
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
),
b AS (
    SELECT order_id, MIN(date) AS date, COUNT(*) AS events, MAX(revenue) AS revenue
    FROM processed.events
    WHERE event_type = 'purchase' AND order_id IS NOT NULL
      AND date BETWEEN DATE '{{from}}' - INTERVAL '1' DAY AND DATE '{{to}}' + INTERVAL '1' DAY
    GROUP BY order_id
),
j AS (
    SELECT
        COALESCE(o.order_id, b.order_id) AS order_id,
        o.customer_id,
        o.status,
        COALESCE(o.date, b.date) AS date,
        o.total AS order_total,
        b.revenue AS browser_revenue,
        CASE
            WHEN b.order_id IS NULL THEN 'not_tracked'
            WHEN o.order_id IS NULL THEN 'no_order'
            WHEN b.revenue IS NULL
              OR ABS(b.revenue - o.total) <= 0.01
              OR ABS(b.revenue - o.net) <= 0.01 THEN 'matched'
            ELSE 'revenue_mismatch'
        END AS outcome
    FROM o FULL OUTER JOIN b ON o.order_id = b.order_id
    -- a browser purchase near the range's edges counts only if its order is in range
    WHERE o.order_id IS NOT NULL OR b.date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
),
s AS (
    SELECT
        'summary' AS level,
        outcome,
        CAST(NULL AS VARCHAR) AS order_id,
        CAST(NULL AS VARCHAR) AS customer_id,
        CAST(NULL AS VARCHAR) AS status,
        CAST(NULL AS DATE) AS date,
        COUNT(*) AS orders,
        SUM(order_total) AS order_total,
        SUM(browser_revenue) AS browser_revenue,
        ROUND(COUNT(*) * 100.0 / NULLIF((SELECT COUNT(*) FROM o), 0), 2) AS pct_of_orders
    FROM j
    GROUP BY outcome
),
d AS (
    SELECT
        'order' AS level,
        outcome,
        order_id,
        customer_id,
        status,
        date,
        1 AS orders,
        order_total,
        browser_revenue,
        CAST(NULL AS DOUBLE) AS pct_of_orders
    FROM j
    WHERE outcome <> 'matched'
    ORDER BY date DESC, order_id
    LIMIT {{limit}}
)
SELECT * FROM (SELECT * FROM s UNION ALL SELECT * FROM d)
ORDER BY level DESC, outcome, date DESC, order_id
