-- name: traffic_sources
-- title: Traffic sources
-- description: Sessions by traffic source and medium, with bounce rate, conversion rate and share of sessions.
-- params: from, to
SELECT
    traffic_source,
    traffic_medium,
    SUM(sessions) AS sessions,
    ROUND(SUM(sessions) * 100.0 / SUM(SUM(sessions)) OVER (), 2) AS share_pct,
    ROUND(SUM(bounces) * 100.0 / NULLIF(SUM(sessions), 0), 2) AS bounce_pct,
    SUM(converted_sessions) AS converted_sessions,
    ROUND(SUM(converted_sessions) * 100.0 / NULLIF(SUM(sessions), 0), 2) AS conversion_pct,
    ROUND(SUM(duration_s) * 1.0 / NULLIF(SUM(sessions), 0), 1) AS avg_session_seconds
FROM curated.sessions_daily
WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}'
GROUP BY traffic_source, traffic_medium
ORDER BY sessions DESC, traffic_source, traffic_medium
