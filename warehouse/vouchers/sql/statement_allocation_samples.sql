-- statement_allocation_samples: covered and busy GPU-hours per (claim, allocation) from every GPU sample under the allocation (by GPU uuid when it lists its GPUs, else by job id / pod name), clipped to the claimed span, the sums attribution_samples.sql adds up per claim; inputs: claim_allocations, gpu_sample_coverage, mine (the statement's claim ids)
WITH
ca AS (
    SELECT claim_allocations.* FROM claim_allocations JOIN mine USING (claim_id)
),
held AS (
    SELECT claim_id, allocation_id, datacentre, cluster, unnest(gpu_uuids) AS ref, s_ms, e_ms
    FROM ca
    WHERE gpu_uuids IS NOT NULL
),
by_gpu AS (
    SELECT
        h.claim_id,
        h.allocation_id,
        (least(s.e_ms, h.e_ms) - greatest(s.s_ms, h.s_ms)) / 3600000.0 AS cov_h,
        s.util
    FROM held AS h
    JOIN gpu_sample_coverage AS s
        ON s.datacentre = h.datacentre AND s.cluster = h.cluster AND s.gpu_uuid = h.ref
        AND s.s_ms < h.e_ms AND s.e_ms > h.s_ms
),
by_job AS (
    SELECT
        ca.claim_id,
        ca.allocation_id,
        (least(s.e_ms, ca.e_ms) - greatest(s.s_ms, ca.s_ms)) / 3600000.0 AS cov_h,
        s.util
    FROM ca
    JOIN gpu_sample_coverage AS s
        ON s.datacentre = ca.datacentre AND s.cluster = ca.cluster
        AND s.s_ms < ca.e_ms AND s.e_ms > ca.s_ms
        AND (s.job_id = ca.job_id OR s.pod = ca.allocation_id OR s.pod = ca.job_id)
    WHERE ca.gpu_uuids IS NULL
)
SELECT
    claim_id,
    allocation_id,
    sum(cov_h) AS covered_gpu_h,
    coalesce(sum(util * cov_h), 0) AS busy_gpu_h
FROM (SELECT * FROM by_gpu UNION ALL SELECT * FROM by_job)
GROUP BY claim_id, allocation_id
