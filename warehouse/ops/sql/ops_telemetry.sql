-- ops_telemetry: one row per (datacentre, cluster, kind) with the newest record instant (epoch ms) of each telemetry kind at or before $now_ms; inputs: raw_gpu_samples, raw_occupancy, raw_allocations; params: $now_ms
SELECT datacentre, cluster, kind, max(t_ms) AS newest_ms
FROM (
    SELECT datacentre, cluster, 'gpu_sample' AS kind, epoch_ms(ts) AS t_ms FROM raw_gpu_samples
    UNION ALL
    SELECT datacentre, cluster, 'occupancy', epoch_ms(ts) FROM raw_occupancy
    UNION ALL
    SELECT datacentre, cluster, 'allocation', epoch_ms(event_ts) FROM raw_allocations
)
WHERE t_ms <= $now_ms
GROUP BY ALL
ORDER BY datacentre, cluster, kind;
