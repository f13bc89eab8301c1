-- ops_fleet_window: one row per (datacentre, cluster, scope) -- scope as in ops_fleet_now: the occupancy scope where occupancy gives both capacity and allocated, else '' for the whole cluster -- with capacity / allocated / busy GPU-seconds in the window [$w0_ms, $w1_ms), coverage (docs/semantics.md#coverage: coverage.sql, the catalogue views' rule) clipped to it, sources by precedence (rows as ops_fleet_rows.sql makes them: 0 where a chosen source is silent in the window); occupancy and samples are read only from $lo_ms on (the filter reaches the Parquet scan; $lo_ms = $w0_ms minus the longest sampling interval expected); inputs: raw_occupancy, raw_gpu_samples, inventory_coverage, allocation_spans, cluster_sources; params: $w0_ms, $w1_ms, $lo_ms
WITH
occ_cov AS (
    /*coverage
        rows: raw_occupancy
            WHERE ts >= make_timestamptz($lo_ms * 1000) AND ts < make_timestamptz($w1_ms * 1000)
        keys: datacentre, cluster, scope
        values: gpus_total, gpus_allocated
        unit: datacentre, cluster, scope
    */
),
smp_cov AS (
    /*coverage
        rows: raw_gpu_samples
            WHERE ts >= make_timestamptz($lo_ms * 1000) AND ts < make_timestamptz($w1_ms * 1000)
        keys: datacentre, cluster, gpu_uuid
        values: util
        unit: datacentre, cluster, gpu_uuid
    */
),
occ_s AS (
    SELECT datacentre, cluster, coalesce(scope, '') AS scope,
        sum(gpus_total * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS capacity,
        sum(gpus_allocated * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS allocated
    FROM occ_cov
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
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
-- each source's GPU-seconds per cluster in long form, named by source (cluster_sources' names)
figures AS (
    SELECT datacentre, cluster, 'occupancy' AS source, sum(capacity) AS capacity,
        sum(allocated) AS allocated
    FROM occ_s
    GROUP BY datacentre, cluster
    UNION ALL
    SELECT datacentre, cluster, 'inventory',
        sum(gpu_count * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0, NULL
    FROM inventory_coverage
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY datacentre, cluster
    UNION ALL
    SELECT datacentre, cluster, 'gpu_samples', cov_s, NULL FROM smp
    UNION ALL
    SELECT datacentre, cluster, 'allocation', NULL,
        sum(gpu_count * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0
    FROM allocation_spans
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY datacentre, cluster
),
fleet AS (
    /*ops_fleet_rows
        scopes: occ_s
        figures: figures
        silent: 0
        busy: smp
    */
)
SELECT datacentre, cluster, scope, capacity AS capacity_s, allocated AS allocated_s, busy AS busy_s
FROM fleet
ORDER BY datacentre, cluster, scope;
