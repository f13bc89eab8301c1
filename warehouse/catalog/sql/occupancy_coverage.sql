-- occupancy_coverage: one row per occupancy key (datacentre, cluster, scope, ts) covering [s_ms, e_ms) = [ts, ts + min(interval_s, next ts of the same scope - ts)) in epoch ms (docs/semantics.md#coverage); inputs: raw_occupancy
-- Dedup and coverage in one sort: ordered by (ts, _version, _file, _row), the last copy of each ts is the
-- one the occupancy view keeps (greatest file, then row) and its lead() is the next ts.
CREATE OR REPLACE VIEW occupancy_coverage AS
SELECT
    datacentre,
    cluster,
    scope,
    s_ms,
    s_ms + least(iv_ms, coalesce(next_ms - s_ms, iv_ms)) AS e_ms,
    gpus_total,
    gpus_allocated,
    gpus_down,
    source
FROM (
    SELECT
        datacentre, cluster, scope, gpus_total, gpus_allocated, gpus_down, source, s_ms,
        CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms,
        lead(s_ms) OVER (PARTITION BY datacentre, cluster, scope ORDER BY s_ms, _version, _file, _row)
            AS next_ms
    FROM (SELECT *, epoch_ms(ts) AS s_ms FROM raw_occupancy)
)
WHERE next_ms IS DISTINCT FROM s_ms;
