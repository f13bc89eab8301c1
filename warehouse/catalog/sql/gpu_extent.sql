-- gpu_extent: one row per GPU (datacentre, cluster, gpu_uuid) with its first and last sample instant (epoch ms) and the end of its last sample's coverage (ts + interval: nothing follows it), from the stored rollup rows (day rows or bins) of unchanged partitions and the raw rows of the others; inputs: gpu_extent_stored, gpu_extent_rest
CREATE OR REPLACE VIEW gpu_extent AS
SELECT
    datacentre,
    cluster,
    gpu_uuid,
    min(first_ms) AS first_ms,
    max(last_ms) AS last_ms,
    arg_max(last_e_ms, last_ms) AS last_e_ms
FROM (
    SELECT datacentre, cluster, gpu_uuid, first_ms, last_ms, last_e_ms
    FROM gpu_extent_stored
    UNION ALL
    SELECT datacentre, cluster, gpu_uuid, first_ms, last_ms, last_e_ms
    FROM gpu_extent_rest
)
GROUP BY datacentre, cluster, gpu_uuid;
