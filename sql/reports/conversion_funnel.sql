-- name: conversion_funnel
-- title: Conversion funnel
-- description: Sessions reaching each step (page view → product view → add to cart → checkout → purchase), conversion from the previous step and from the start, overall and per device.
-- params: from, to
WITH d AS (
    SELECT
        device_type,
        SUM(page_view_sessions) AS s1,
        SUM(product_view_sessions) AS s2,
        SUM(cart_sessions) AS s3,
        SUM(checkout_sessions) AS s4,
        SUM(purchase_sessions) AS s5
    FROM curated.funnel_daily
    WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
    GROUP BY device_type
),
f AS (
    SELECT 'all' AS device_type,
        COALESCE(SUM(s1), 0) AS s1, COALESCE(SUM(s2), 0) AS s2, COALESCE(SUM(s3), 0) AS s3,
        COALESCE(SUM(s4), 0) AS s4, COALESCE(SUM(s5), 0) AS s5
    FROM d
    UNION ALL
    SELECT device_type, s1, s2, s3, s4, s5 FROM d
),
steps AS (
    SELECT device_type, 1 AS step_no, 'page_view' AS step, s1 AS sessions FROM f
    UNION ALL SELECT device_type, 2, 'product_view', s2 FROM f
    UNION ALL SELECT device_type, 3, 'add_to_cart', s3 FROM f
    UNION ALL SELECT device_type, 4, 'checkout', s4 FROM f
    UNION ALL SELECT device_type, 5, 'purchase', s5 FROM f
),
w AS (
    SELECT
        device_type,
        step_no,
        step,
        sessions,
        LAG(sessions) OVER (PARTITION BY device_type ORDER BY step_no) AS prev,
        FIRST_VALUE(sessions) OVER (PARTITION BY device_type ORDER BY step_no) AS first
    FROM steps
)
SELECT
    device_type,
    step_no,
    step,
    sessions,
    ROUND(sessions * 100.0 / NULLIF(COALESCE(prev, sessions), 0), 2) AS pct_of_previous,
    ROUND(sessions * 100.0 / NULLIF(first, 0), 2) AS pct_of_start,
    COALESCE(prev, sessions) - sessions AS drop_off
FROM w
ORDER BY CASE WHEN device_type = 'all' THEN 0 ELSE 1 END, device_type, step_no
