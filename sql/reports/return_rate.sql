-- name: return_rate
-- title: Return rates
-- description: Share of order lines returned or refunded, per category (all) and per product (the worst, with at least `min_lines` lines), with refunded amounts and ratings.
-- params: from, to, limit=20, min_lines=10
WITH p AS (
    SELECT
        product_id,
        MAX(product_name) AS product_name,
        MAX(category) AS category,
        SUM(order_lines) AS lines,
        SUM(returned_lines) AS returned_lines,
        SUM(units) AS units,
        SUM(returned_units) AS returned_units,
        SUM(refunded_amount) AS refunded_amount,
        SUM(reviews) AS reviews,
        SUM(rating_sum) AS rating_sum
    FROM curated.product_performance
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
    GROUP BY product_id
),
c AS (
    SELECT
        'category' AS level,
        category AS key,
        category AS name,
        category,
        SUM(lines) AS lines,
        SUM(returned_lines) AS returned_lines,
        ROUND(SUM(returned_lines) * 100.0 / NULLIF(SUM(lines), 0), 2) AS return_pct,
        SUM(returned_units) AS returned_units,
        SUM(refunded_amount) AS refunded_amount,
        ROUND(SUM(rating_sum) * 1.0 / NULLIF(SUM(reviews), 0), 2) AS avg_rating
    FROM p
    WHERE lines > 0
    GROUP BY category
),
w AS (
    SELECT
        'product' AS level,
        product_id AS key,
        product_name AS name,
        category,
        lines,
        returned_lines,
        ROUND(returned_lines * 100.0 / NULLIF(lines, 0), 2) AS return_pct,
        returned_units,
        refunded_amount,
        ROUND(rating_sum * 1.0 / NULLIF(reviews, 0), 2) AS avg_rating
    FROM p
    WHERE lines >= {{min_lines}}
    ORDER BY return_pct DESC, lines DESC, product_id
    LIMIT {{limit}}
)
SELECT * FROM (SELECT * FROM c UNION ALL SELECT * FROM w)
ORDER BY level, return_pct DESC, lines DESC, key
