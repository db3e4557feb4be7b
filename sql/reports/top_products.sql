-- name: top_products
-- title: Top-selling products
-- description: Products ranked by net revenue (after returns), with their rank in their category, views, add-to-cart rate, return rate and rating.
-- params: from, to, limit=20
WITH p AS (
    SELECT
        product_id,
        MAX(product_name) AS product_name,
        MAX(category) AS category,
        MAX(brand) AS brand,
        SUM(units) AS units,
        SUM(orders) AS orders,
        SUM(gross_revenue) AS gross_revenue,
        SUM(net_revenue) AS net_revenue,
        SUM(views) AS views,
        SUM(carts) AS carts,
        SUM(order_lines) AS order_lines,
        SUM(returned_lines) AS returned_lines,
        SUM(reviews) AS reviews,
        SUM(rating_sum) AS rating_sum
    FROM curated.product_performance
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
    GROUP BY product_id
)
SELECT
    product_id,
    product_name,
    category,
    brand,
    RANK() OVER (PARTITION BY category ORDER BY net_revenue DESC) AS rank_in_category,
    units,
    orders,
    net_revenue,
    gross_revenue,
    views,
    carts,
    ROUND(carts * 100.0 / NULLIF(views, 0), 2) AS view_to_cart_pct,
    ROUND(returned_lines * 100.0 / NULLIF(order_lines, 0), 2) AS return_pct,
    ROUND(rating_sum * 1.0 / NULLIF(reviews, 0), 2) AS avg_rating
FROM p
WHERE order_lines > 0
ORDER BY net_revenue DESC, product_id
LIMIT {{limit}}
