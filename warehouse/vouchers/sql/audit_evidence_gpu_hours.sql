-- audit evidence, GPU samples per GPU-hour: one row per (claim, allocation, GPU, UTC hour) of the claims named in $ids: the samples under the claimed allocation (by GPU uuid when it lists its GPUs, else by job id / pod), each sample's coverage clipped to the claimed span and split at hour edges; covered, busy and util-unknown GPU-hours; inputs: claim_allocations, gpu_sample_coverage; params: $ids (claim ids)
WITH
ca AS (
    SELECT * FROM claim_allocations WHERE list_contains($ids, claim_id)
),
held AS (
    SELECT claim_id, allocation_id, datacentre, cluster, unnest(gpu_uuids) AS ref, s_ms, e_ms
    FROM ca
    WHERE gpu_uuids IS NOT NULL
),
by_gpu AS (
    SELECT
        h.claim_id, h.allocation_id, h.datacentre, h.cluster, s.gpu_uuid, s.util,
        greatest(s.s_ms, h.s_ms) AS lo, least(s.e_ms, h.e_ms) AS hi
    FROM held AS h
    JOIN gpu_sample_coverage AS s
        ON s.datacentre = h.datacentre AND s.cluster = h.cluster AND s.gpu_uuid = h.ref
        AND s.s_ms < h.e_ms AND s.e_ms > h.s_ms
),
by_job AS (
    SELECT
        ca.claim_id, ca.allocation_id, ca.datacentre, ca.cluster, s.gpu_uuid, s.util,
        greatest(s.s_ms, ca.s_ms) AS lo, least(s.e_ms, ca.e_ms) AS hi
    FROM ca
    JOIN gpu_sample_coverage AS s
        ON s.datacentre = ca.datacentre AND s.cluster = ca.cluster
        AND s.s_ms < ca.e_ms AND s.e_ms > ca.s_ms
        AND (s.job_id = ca.job_id OR s.pod = ca.allocation_id OR s.pod = ca.job_id)
    WHERE ca.gpu_uuids IS NULL
),
pieces AS (
    SELECT *, unnest(range(lo // 3600000, (hi - 1) // 3600000 + 1)) AS hour
    FROM (SELECT * FROM by_gpu UNION ALL SELECT * FROM by_job)
),
clipped AS (
    SELECT
        *,
        least(hi, (hour + 1) * 3600000) - greatest(lo, hour * 3600000) AS ms
    FROM pieces
)
SELECT
    claim_id,
    allocation_id,
    datacentre,
    cluster,
    gpu_uuid,
    make_timestamptz(hour * 3600000 * 1000) AS hour_start,
    count(*) AS samples,
    sum(ms) / 3600000.0 AS covered_gpu_h,
    coalesce(sum(util * ms) / 3600000.0, 0) AS busy_gpu_h,
    coalesce(sum(ms) FILTER (WHERE util IS NULL), 0) / 3600000.0 AS unknown_gpu_h
FROM clipped
GROUP BY claim_id, allocation_id, datacentre, cluster, gpu_uuid, hour
ORDER BY claim_id, allocation_id, gpu_uuid, hour
