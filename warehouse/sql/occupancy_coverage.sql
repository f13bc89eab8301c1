-- occupancy_coverage: one row per deduplicated occupancy snapshot, covering [s_ms, e_ms) = [ts, ts + min(interval_s, next ts of the same scope - ts)) in epoch ms (DESIGN §4); inputs: occupancy
CREATE OR REPLACE VIEW occupancy_coverage AS
SELECT
    datacentre,
    cluster,
    scope,
    s_ms,
    s_ms + least(iv_ms, coalesce(lead(s_ms) OVER w - s_ms, iv_ms)) AS e_ms,
    gpus_total,
    gpus_allocated,
    gpus_down,
    source
FROM (
    SELECT *, epoch_ms(ts) AS s_ms, CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms
    FROM occupancy
)
WINDOW w AS (PARTITION BY datacentre, cluster, scope ORDER BY s_ms);
