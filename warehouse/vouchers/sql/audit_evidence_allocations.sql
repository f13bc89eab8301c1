-- audit evidence, claimed allocations: one row per (claim, allocation) of the claims named in $ids, the allocation span clipped to the claim period (epoch ms and UTC instants) and its metered GPU-hours; inputs: claim_allocations; params: $ids (claim ids)
SELECT
    claim_id,
    allocation_id,
    datacentre,
    cluster,
    job_id,
    gpu_uuids,
    gpu_count,
    s_ms,
    e_ms,
    make_timestamptz(s_ms * 1000) AS span_start,
    make_timestamptz(e_ms * 1000) AS span_end,
    gpu_h AS metered_gpu_h
FROM claim_allocations
WHERE list_contains($ids, claim_id)
ORDER BY claim_id, allocation_id, s_ms
