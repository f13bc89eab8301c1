-- ops_fleet_window_rows (a template, filled in by load_sql where a SQL file uses it): the fleet rows of the window [$w0_ms, $w1_ms) (datacentre, cluster, scope, capacity, allocated, busy, busy_allocated; scope as in ops_fleet_now: the occupancy scope where occupancy gives both capacity and allocated, else '' for the whole cluster) in GPU-seconds, as ops_fleet_rows.sql makes them (0 where a chosen source is silent in the window): occupancy coverage (coverage.sql) read only from $lo_ms on (the filter reaches the Parquet scan), inventory and allocation spans, each clipped to the window, and the GPU-sample figures `samples` (datacentre, cluster, cov_s, busy, busy_allocated); inputs: raw_occupancy, inventory_coverage, allocation_spans, cluster_sources; params: $w0_ms, $w1_ms, $lo_ms; slots: samples
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
occ_s AS (
    SELECT datacentre, cluster, coalesce(scope, '') AS scope,
        sum(gpus_total * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS capacity,
        sum(gpus_allocated * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS allocated
    FROM occ_cov
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
smp_s AS (
    SELECT datacentre, cluster, cov_s, busy, busy_allocated FROM /*samples*/
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
    SELECT datacentre, cluster, 'gpu_samples', cov_s, NULL FROM smp_s
    UNION ALL
    SELECT datacentre, cluster, 'allocation', NULL,
        sum(gpu_count * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0
    FROM allocation_spans
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY datacentre, cluster
)
/*ops_fleet_rows
    scopes: occ_s
    figures: figures
    silent: 0
    busy: smp_s
*/;
