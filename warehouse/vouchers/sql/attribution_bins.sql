-- attribution_bins: covered and busy GPU-hours per claim summed from its claimed allocations' 15-minute bins (gpu_bins rows with an allocation_id: already clipped to the allocation span) inside the claim period; exact when every claim period bound is on a bin edge, which attribution.py checks; inputs: claim_allocations, claims, gpu_bins
SELECT
    ca.claim_id,
    sum(b.cov_ms) / 3600000.0 AS covered_gpu_h,
    coalesce(sum(b.busy_ms) / 3600000.0, 0) AS busy_gpu_h
FROM claim_allocations AS ca
JOIN claims AS c ON c.claim_id = ca.claim_id
-- the allocation rows alone, as a filter of their own: pushed into the bins scan it skips
-- the unallocated rows' other columns (a quarter of the time over a 10,000-GPU month)
JOIN (SELECT * FROM gpu_bins WHERE allocation_id IS NOT NULL) AS b
    ON b.allocation_id = ca.allocation_id AND b.datacentre = ca.datacentre
    AND b.cluster = ca.cluster
    AND b.bin_ms >= epoch_ms(c.period_start) AND b.bin_ms < epoch_ms(c.period_end)
GROUP BY ca.claim_id
