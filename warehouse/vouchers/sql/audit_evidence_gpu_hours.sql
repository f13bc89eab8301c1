-- audit evidence, GPU samples per GPU-hour: one row per (claim, allocation, GPU, UTC hour) of the claims named in $ids: the samples under the claimed allocation (claim_sample_pieces.sql: by GPU uuid when it lists its GPUs, else by job id / pod), each sample's coverage clipped to the claimed span and split at hour edges; covered, busy and util-unknown GPU-hours; inputs: claim_allocations, gpu_sample_coverage; params: $ids (claim ids)
WITH
ca AS (
    SELECT * FROM claim_allocations WHERE list_contains($ids, claim_id)
),
matched AS (
    /*claim_sample_pieces
        allocations: ca
    */
),
pieces AS (
    SELECT *, unnest(range(lo // 3600000, (hi - 1) // 3600000 + 1)) AS hour
    FROM matched
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
