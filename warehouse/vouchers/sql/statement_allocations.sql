-- statement_allocations: one row per (claim, allocation) of one tenant's claims of one local month, as the attribution clipped it (start/end in epoch ms, metered GPU-hours), with the telemetry-covered and busy GPU-hours under it; inputs: claim_allocations, claim_attribution, and statement_allocation_bins.sql or statement_allocation_samples.sql (statement.py inserts one); params: $tenant, $month
WITH
mine AS (
    SELECT claim_id FROM claim_attribution WHERE tenant_id = $tenant AND month = $month
),
smp AS (
    /*allocation_samples*/
)
SELECT
    ca.claim_id,
    ca.allocation_id,
    ca.cluster,
    ca.job_id,
    ca.gpu_count,
    ca.gpu_uuids,
    ca.s_ms,
    ca.e_ms,
    ca.gpu_h AS metered_gpu_h,
    coalesce(s.covered_gpu_h, 0) AS covered_gpu_h,
    coalesce(s.busy_gpu_h, 0) AS busy_gpu_h
FROM claim_allocations AS ca
JOIN mine USING (claim_id)
LEFT JOIN smp AS s ON s.claim_id = ca.claim_id AND s.allocation_id = ca.allocation_id
ORDER BY ca.claim_id, ca.s_ms, ca.allocation_id;
