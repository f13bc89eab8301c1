-- statement_allocation_bins: covered and busy GPU-hours per (claim, allocation) from the allocation's 15-minute bins inside the claim period, the sums attribution_bins.sql adds up per claim; inputs: claim_allocations, claims, gpu_bins, mine (the statement's claim ids)
SELECT
    ca.claim_id,
    ca.allocation_id,
    sum(b.cov_ms) / 3600000.0 AS covered_gpu_h,
    coalesce(sum(b.busy_ms) / 3600000.0, 0) AS busy_gpu_h
FROM claim_allocations AS ca
JOIN mine ON mine.claim_id = ca.claim_id
JOIN claims AS c ON c.claim_id = ca.claim_id
JOIN gpu_bins AS b
    ON b.allocation_id = ca.allocation_id AND b.datacentre = ca.datacentre
    AND b.cluster = ca.cluster
    AND b.bin_ms >= epoch_ms(c.period_start) AND b.bin_ms < epoch_ms(c.period_end)
GROUP BY ca.claim_id, ca.allocation_id
