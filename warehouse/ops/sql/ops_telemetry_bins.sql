-- ops_telemetry_bins: ops_telemetry's rows (the newest record instant, epoch ms, per datacentre, cluster and kind at or before $now_ms), the GPU samples' newest instant from the stored bins of fresh partitions (gpu_bins_fresh: the last sample starting in each bin) for the bins before $c_ms (the start of the bin holding $now_ms), and from raw samples in that bin and, before it, for the partitions not served by bins (read only from $m0_ms, the first of them: fleet.py); each filter reaches its Parquet scan; inputs: gpu_bins_fresh, raw_gpu_samples, raw_occupancy, raw_allocations, ops_gpu_partitions (fleet.py); params: $now_ms, $c_ms, $m0_ms
WITH
fresh AS (
    SELECT datacentre, date FROM ops_gpu_partitions WHERE fresh
)
SELECT datacentre, cluster, kind, max(t_ms) AS newest_ms
FROM (
    SELECT datacentre, cluster, 'gpu_sample' AS kind, last_ms AS t_ms
    FROM gpu_bins_fresh
    WHERE allocation_id IS NULL AND bin_ms < $c_ms
    UNION ALL
    SELECT datacentre, cluster, 'gpu_sample', epoch_ms(ts)
    FROM raw_gpu_samples
    WHERE ts >= make_timestamptz($c_ms * 1000) AND ts <= make_timestamptz($now_ms * 1000)
    UNION ALL
    SELECT r.datacentre, r.cluster, 'gpu_sample', epoch_ms(r.ts)
    FROM raw_gpu_samples AS r
    ANTI JOIN fresh AS f
        ON r.datacentre IS NOT DISTINCT FROM f.datacentre
        AND CAST(epoch_ms(epoch_ms(r.ts)) AS DATE) = f.date
    WHERE r.ts >= make_timestamptz($m0_ms * 1000) AND r.ts < make_timestamptz($c_ms * 1000)
    UNION ALL
    SELECT datacentre, cluster, 'occupancy', epoch_ms(ts) FROM raw_occupancy
    UNION ALL
    SELECT datacentre, cluster, 'allocation', epoch_ms(event_ts) FROM raw_allocations
)
WHERE t_ms <= $now_ms
GROUP BY ALL
ORDER BY datacentre, cluster, kind;
