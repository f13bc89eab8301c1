-- utilisation_gpu_bins: the utilisation report's per-(period, GPU) sample figures summed from the rollup of whole GPUs (rollups where fresh, raw rows elsewhere): the day row of a UTC day wholly inside a period (partitions with valid day rows, has_days; docs/rollups.md#days), the 15-minute bins of every other day; exact when every period bound is on a bin edge, which reports.py checks; inputs: periods (the report's CTE), gpu_bins_report (or the report's narrowed view of it), gpu_days_report
SELECT
    p.period,
    b.datacentre,
    b.cluster,
    b.gpu_uuid,
    sum(b.cov_ms) / 3600000.0 AS cov_h,
    sum(b.busy_ms) / 3600000.0 AS busy_h,
    sum(b.held_busy_ms) / 3600000.0 AS busy_alloc_h
FROM (
    SELECT
        datacentre, cluster, gpu_uuid, bin_ms AS t_ms, false AS whole_day, has_days, cov_ms,
        busy_ms, held_busy_ms
    FROM gpu_bins_report
    WHERE allocation_id IS NULL
    UNION ALL
    SELECT
        datacentre, cluster, gpu_uuid, day_ms, true, true, cov_ms, busy_ms, held_busy_ms
    FROM gpu_days_report
) AS b
JOIN periods AS p ON b.t_ms >= p.p0 AND b.t_ms < p.p1
WHERE CASE
    WHEN b.whole_day THEN b.t_ms + 86400000 <= p.p1
    WHEN b.has_days
        THEN NOT (
            b.t_ms // 86400000 * 86400000 >= p.p0
            AND b.t_ms // 86400000 * 86400000 + 86400000 <= p.p1
        )
    ELSE true
END
GROUP BY ALL
