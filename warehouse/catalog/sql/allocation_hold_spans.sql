-- allocation_hold_spans: one row per maximal interval [s_ms, e_ms) during which some allocation of (datacentre, cluster) holds the thing (via, ref); overlapping / touching holds are merged, so a lookup matches at most one row; inputs: allocation_holds
CREATE OR REPLACE VIEW allocation_hold_spans AS
WITH ordered AS (
    SELECT
        *,
        max(e_ms) OVER (
            PARTITION BY datacentre, cluster, via, ref ORDER BY s_ms, e_ms
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS reach
    FROM allocation_holds
),
islands AS (
    SELECT
        *,
        sum(CASE WHEN reach >= s_ms THEN 0 ELSE 1 END) OVER (
            PARTITION BY datacentre, cluster, via, ref ORDER BY s_ms, e_ms
            ROWS UNBOUNDED PRECEDING
        ) AS island
    FROM ordered
)
SELECT datacentre, cluster, via, ref, min(s_ms) AS s_ms, max(e_ms) AS e_ms
FROM islands
GROUP BY datacentre, cluster, via, ref, island;
