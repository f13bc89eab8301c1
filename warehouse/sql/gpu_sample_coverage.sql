-- gpu_sample_coverage: one row per deduplicated GPU sample, covering [s_ms, e_ms) = [ts, ts + min(interval_s, next ts of the same GPU - ts)) in epoch ms (DESIGN §4); inputs: gpu_samples
CREATE OR REPLACE VIEW gpu_sample_coverage AS
SELECT
    datacentre,
    cluster,
    node,
    gpu_uuid,
    s_ms,
    s_ms + least(iv_ms, coalesce(lead(s_ms) OVER w - s_ms, iv_ms)) AS e_ms,
    util,
    pod,
    job_id,
    source
FROM (
    SELECT
        datacentre, cluster, node, gpu_uuid, util, pod, job_id, source,
        epoch_ms(ts) AS s_ms,
        CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms
    FROM gpu_samples
)
WINDOW w AS (PARTITION BY datacentre, cluster, gpu_uuid ORDER BY s_ms);
