-- name: product_affinity
-- title: Product affinity (frequently bought together)
-- description: Pairs of products in the same basket, with support (share of all baskets), confidence (share of baskets with A that also hold B, and the reverse) and lift (how much more often than chance); pairs seen in at least `min_baskets` baskets.
-- params: from, to, limit=20, min_baskets=5
WITH pairs AS (
    SELECT product_a, product_b, SUM(baskets) AS together
    FROM curated.product_pairs
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
    GROUP BY product_a, product_b
),
prod AS (
    SELECT product_id, MAX(product_name) AS product_name, SUM(orders) AS baskets
    FROM curated.product_performance
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
    GROUP BY product_id
),
total AS (
    SELECT SUM(orders) AS n
    FROM curated.daily_kpis
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
)
SELECT
    pairs.product_a,
    a.product_name AS name_a,
    pairs.product_b,
    b.product_name AS name_b,
    pairs.together AS baskets_together,
    ROUND(pairs.together * 1.0 / total.n, 6) AS support,
    ROUND(pairs.together * 1.0 / a.baskets, 4) AS confidence_a_to_b,
    ROUND(pairs.together * 1.0 / b.baskets, 4) AS confidence_b_to_a,
    ROUND(pairs.together * CAST(total.n AS DOUBLE) / (CAST(a.baskets AS DOUBLE) * CAST(b.baskets AS DOUBLE)), 3) AS lift
FROM pairs
JOIN prod a ON a.product_id = pairs.product_a
JOIN prod b ON b.product_id = pairs.product_b
CROSS JOIN total
WHERE pairs.together >= {{min_baskets}}
ORDER BY lift DESC, baskets_together DESC, pairs.product_a, pairs.product_b
LIMIT {{limit}}
