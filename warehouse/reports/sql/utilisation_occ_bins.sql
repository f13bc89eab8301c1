-- utilisation_occ_bins: the utilisation report's per-(period, scope) occupancy figures summed from the 15-minute occupancy bins (rollups where fresh, raw rows elsewhere); exact when every period bound is on a bin edge, which reports.py checks; inputs: periods (the report's CTE), occupancy_bins
SELECT
    p.period,
    b.datacentre,
    b.cluster,
    b.scope,
    sum(b.total_ms) / 3600000.0 AS cap_h,
    sum(b.allocated_ms) / 3600000.0 AS alloc_h,
    sum(b.cov_ms) / 3600000.0 AS cov_h
FROM occupancy_bins AS b
JOIN periods AS p ON b.bin_ms >= p.p0 AND b.bin_ms < p.p1
GROUP BY ALL
