-- ops_fleet_window: one row per (datacentre, cluster, scope) with capacity / allocated / busy GPU-seconds in the window [$w0_ms, $w1_ms) (rows as ops_fleet_window_rows.sql makes them), the GPU samples' coverage (docs/semantics.md#coverage: coverage.sql, the catalogue views' rule) clipped to the window; occupancy and samples are read only from $lo_ms on (the filter reaches the Parquet scan; $lo_ms = $w0_ms minus the longest sampling interval expected); the raw path, exact for any window (ops_fleet_window_bins.sql reads the rollup bins instead where it can); inputs: raw_gpu_samples and those of ops_fleet_window_rows.sql; params: $w0_ms, $w1_ms, $lo_ms
WITH
smp_cov AS (
    /*coverage
        rows: raw_gpu_samples
            WHERE ts >= make_timestamptz($lo_ms * 1000) AND ts < make_timestamptz($w1_ms * 1000)
        keys: datacentre, cluster, gpu_uuid
        values: util
        unit: datacentre, cluster, gpu_uuid
    */
),
smp AS (
    SELECT datacentre, cluster,
        sum(least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms)) / 1000.0 AS cov_s,
        sum(util * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS busy,
        CAST(NULL AS DOUBLE) AS busy_allocated
    FROM smp_cov
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
fleet AS (
    /*ops_fleet_window_rows
        samples: smp
    */
)
SELECT datacentre, cluster, scope, capacity AS capacity_s, allocated AS allocated_s, busy AS busy_s
FROM fleet
ORDER BY datacentre, cluster, scope;
