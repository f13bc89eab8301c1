-- gpu_extent_rest: one row per GPU (datacentre, cluster, gpu_uuid) of the raw rows not rolled up, with its first and last sample instant (epoch ms) and the end of its last sample's coverage (ts + interval: nothing follows it; among copies at that instant the dedup winner, greatest _version, then _file, _row, decides); the definition both engines register (the DuckDB catalogue computes the same rows by gpu_extent_rest_top2.sql); input: raw_gpu_samples_rest
CREATE OR REPLACE VIEW gpu_extent_rest AS
SELECT
    datacentre,
    cluster,
    gpu_uuid,
    min(s_ms) AS first_ms,
    max(s_ms) AS last_ms,
    arg_max(s_ms + CAST(round(interval_s * 1000) AS BIGINT), (s_ms, _version, _file, _row))
        AS last_e_ms
FROM (SELECT *, epoch_ms(ts) AS s_ms FROM raw_gpu_samples_rest)
GROUP BY datacentre, cluster, gpu_uuid;
