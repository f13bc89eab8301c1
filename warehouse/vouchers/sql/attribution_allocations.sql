-- attribution_allocations: one row per (claim, allocation) — the claimant tenant's allocation spans at the claim's data centre, clipped to the claim period [period_start, period_end), only the listed ones when allocation_ids is given; inputs: claims, allocation_spans
CREATE OR REPLACE TEMP TABLE claim_allocations AS
SELECT
    c.claim_id,
    a.allocation_id,
    a.datacentre,
    a.cluster,
    a.job_id,
    a.gpu_uuids,
    a.gpu_count,
    greatest(a.s_ms, c.ps) AS s_ms,
    least(a.e_ms, c.pe) AS e_ms,
    a.gpu_count * (least(a.e_ms, c.pe) - greatest(a.s_ms, c.ps)) / 3600000.0 AS gpu_h
FROM (
    SELECT *, epoch_ms(period_start) AS ps, epoch_ms(period_end) AS pe FROM claims
) AS c
JOIN allocation_spans AS a
    ON a.datacentre = c.datacentre
    AND a.tenant_id = c.tenant_id
    AND a.s_ms < c.pe
    AND a.e_ms > c.ps
WHERE coalesce(len(c.allocation_ids), 0) = 0 OR list_contains(c.allocation_ids, a.allocation_id);
