-- utilisation_gpu_bins: the utilisation report's per-(period, GPU) sample figures summed from the 15-minute bins of whole GPUs (rollups where fresh, raw rows elsewhere); exact when every period bound is on a bin edge, which reports.py checks; inputs: periods (the report's CTE), gpu_bins
SELECT
    p.period,
    b.datacentre,
    b.cluster,
    b.gpu_uuid,
    sum(b.cov_ms) / 3600000.0 AS cov_h,
    sum(b.busy_ms) / 3600000.0 AS busy_h,
    sum(b.held_busy_ms) / 3600000.0 AS busy_alloc_h
FROM gpu_bins AS b
JOIN periods AS p ON b.bin_ms >= p.p0 AND b.bin_ms < p.p1
WHERE b.allocation_id IS NULL
GROUP BY ALL
