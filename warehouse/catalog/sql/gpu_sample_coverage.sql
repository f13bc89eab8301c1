-- gpu_sample_coverage: one row per GPU sample key (datacentre, cluster, gpu_uuid, ts) covering [s_ms, e_ms) = [ts, ts + min(interval_s, next ts of the same GPU - ts)) in epoch ms (docs/semantics.md#coverage); inputs: raw_gpu_samples
-- Dedup and coverage in one sort: ordered by (ts, _version, _file, _row), the last copy of each ts is the
-- one the gpu_samples view keeps (greatest file, then row) and its lead() is the next ts.
CREATE OR REPLACE VIEW gpu_sample_coverage AS
SELECT
    datacentre,
    cluster,
    node,
    gpu_uuid,
    s_ms,
    s_ms + least(iv_ms, coalesce(next_ms - s_ms, iv_ms)) AS e_ms,
    util,
    pod,
    job_id,
    source
FROM (
    SELECT
        datacentre, cluster, node, gpu_uuid, util, pod, job_id, source, s_ms,
        CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms,
        lead(s_ms) OVER (PARTITION BY datacentre, cluster, gpu_uuid ORDER BY s_ms, _version, _file, _row)
            AS next_ms
    FROM (SELECT *, epoch_ms(ts) AS s_ms FROM raw_gpu_samples)
)
WHERE next_ms IS DISTINCT FROM s_ms;
