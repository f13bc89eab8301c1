-- claim_sample_pieces (a template, filled in by load_sql where a SQL file uses it): one row per GPU sample under a claimed allocation of the relation `allocations` (rows of claim_allocations): by GPU uuid when the allocation lists its GPUs, else by job id / pod name (the allocation id or job id); [lo, hi) is the sample's coverage clipped to the claimed span, in epoch ms; inputs: gpu_sample_coverage; slots: allocations
SELECT
    h.claim_id, h.allocation_id, h.datacentre, h.cluster, s.gpu_uuid, s.util,
    greatest(s.s_ms, h.s_ms) AS lo, least(s.e_ms, h.e_ms) AS hi
FROM (
    SELECT claim_id, allocation_id, datacentre, cluster, unnest(gpu_uuids) AS ref, s_ms, e_ms
    FROM /*allocations*/
    WHERE gpu_uuids IS NOT NULL
) AS h
JOIN gpu_sample_coverage AS s
    ON s.datacentre = h.datacentre AND s.cluster = h.cluster AND s.gpu_uuid = h.ref
    AND s.s_ms < h.e_ms AND s.e_ms > h.s_ms
UNION ALL
SELECT
    ca.claim_id, ca.allocation_id, ca.datacentre, ca.cluster, s.gpu_uuid, s.util,
    greatest(s.s_ms, ca.s_ms) AS lo, least(s.e_ms, ca.e_ms) AS hi
FROM /*allocations*/ AS ca
JOIN gpu_sample_coverage AS s
    ON s.datacentre = ca.datacentre AND s.cluster = ca.cluster
    AND s.s_ms < ca.e_ms AND s.e_ms > ca.s_ms
    AND (s.job_id = ca.job_id OR s.pod = ca.allocation_id OR s.pod = ca.job_id)
WHERE ca.gpu_uuids IS NULL;
