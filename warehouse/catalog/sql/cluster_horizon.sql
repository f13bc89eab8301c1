-- cluster_horizon: one row per (datacentre, cluster), horizon_ms = the newest instant it has evidence for (end of the newest snapshot's / sample's coverage, newest allocation event, start or end), never after now(); running allocations are counted up to it; inputs: raw_occupancy, gpu_extent, raw_allocations
CREATE OR REPLACE VIEW cluster_horizon AS
WITH last_record AS (
    -- the newest record of each scope / GPU covers [ts, ts + interval_s): nothing follows it.
    -- Among copies at that instant the view's dedup winner (greatest _version, then _file, _row) decides.
    SELECT
        datacentre,
        cluster,
        arg_max(epoch_ms(ts) + CAST(round(interval_s * 1000) AS BIGINT), (ts, _version, _file, _row)) AS t
    FROM raw_occupancy
    GROUP BY datacentre, cluster, scope
    UNION ALL
    SELECT datacentre, cluster, last_e_ms FROM gpu_extent
    UNION ALL
    SELECT
        datacentre,
        cluster,
        greatest(max(epoch_ms(event_ts)), max(epoch_ms("start")), max(epoch_ms("end")))
    FROM raw_allocations
    GROUP BY datacentre, cluster
)
SELECT datacentre, cluster, least(max(t), epoch_ms(now())) AS horizon_ms
FROM last_record
GROUP BY datacentre, cluster;
