-- _gpu_extent_rest: the rows of gpu_extent_rest.sql, computed by DuckDB without comparing a struct per raw row: the end of the last sample's coverage is that of the row with the greatest instant (arg_max on s_ms alone), exact wherever that instant is held by one row whose coverage end is known (top2, the two greatest such instants, differ, or there is one); where it is held by copies, gpu_extent_rest_ties.sql takes the dedup winner among them; input: _raw_gpu_samples_rest_numbered (docs/rollups.md#building)
CREATE OR REPLACE TEMP TABLE _gpu_extent_rest AS
SELECT
    datacentre,
    cluster,
    gpu_uuid,
    min(s_ms) AS first_ms,
    max(s_ms) AS last_ms,
    arg_max(e_ms, s_ms) AS last_e_ms,
    max(s_ms, 2) FILTER (WHERE e_ms IS NOT NULL) AS top2
FROM (
    SELECT datacentre, cluster, gpu_uuid, s_ms, s_ms + CAST(round(interval_s * 1000) AS BIGINT) AS e_ms
    FROM (SELECT datacentre, cluster, gpu_uuid, interval_s, epoch_ms(ts) AS s_ms FROM _raw_gpu_samples_rest_numbered)
)
GROUP BY datacentre, cluster, gpu_uuid;
