-- gpu_days_build: the rollup's whole-UTC-day rows of whole GPUs, summed from its 15-minute bins (docs/rollups.md#days): one row per (datacentre, date, cluster, gpu_uuid, day_ms), day_ms the UTC day of the bins (a partition's bins may reach into the next day: a sample that covers midnight), only mergeable sums and the first / last sample starting in the day; bins_version is the bins commit they were summed from, which readers check; the builder writes exactly these rows; inputs: _day_bins (bins rows of some partitions with their bins_version)
SELECT
    datacentre,
    CAST(date AS VARCHAR) AS date,
    cluster,
    gpu_uuid,
    bin_ms // 86400000 * 86400000 AS day_ms,
    CAST(sum(samples) AS BIGINT) AS samples,
    CAST(sum(cov_ms) AS BIGINT) AS cov_ms,
    CAST(sum(unknown_ms) AS BIGINT) AS unknown_ms,
    sum(busy_ms) AS busy_ms,
    CAST(sum(held_ms) AS BIGINT) AS held_ms,
    sum(held_busy_ms) AS held_busy_ms,
    min(util_min) AS util_min,
    max(util_max) AS util_max,
    min(first_ms) AS first_ms,
    max(last_ms) AS last_ms,
    arg_max(last_e_ms, last_ms) AS last_e_ms,
    CAST(bins_version AS BIGINT) AS bins_version
FROM _day_bins
WHERE allocation_id IS NULL
GROUP BY datacentre, date, cluster, gpu_uuid, bin_ms // 86400000 * 86400000, bins_version
ORDER BY datacentre, date, cluster, gpu_uuid, day_ms;
