-- ops_fleet_window: one row per (datacentre, cluster, scope) -- scope as in ops_fleet_now: the occupancy scope where occupancy gives both capacity and allocated, else '' for the whole cluster -- with capacity / allocated / busy GPU-seconds in the window [$w0_ms, $w1_ms), coverage (docs/semantics.md#coverage) (dedup: last copy of a ts; [ts, ts + min(interval, next ts - ts))) clipped to it, sources by precedence; occupancy and samples are read only from $lo_ms on (the filter reaches the Parquet scan; $lo_ms = $w0_ms minus the longest sampling interval expected); inputs: raw_occupancy, raw_gpu_samples, inventory_coverage, allocation_spans, cluster_sources; params: $w0_ms, $w1_ms, $lo_ms
WITH
occ_raw AS (
    SELECT datacentre, cluster, scope, gpus_total, gpus_allocated, s_ms,
        CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms,
        lead(s_ms) OVER (PARTITION BY datacentre, cluster, scope ORDER BY s_ms, _version, _file, _row)
            AS next_ms
    FROM (
        SELECT *, epoch_ms(ts) AS s_ms FROM raw_occupancy
        WHERE ts >= make_timestamptz($lo_ms * 1000) AND ts < make_timestamptz($w1_ms * 1000)
    )
),
occ_cov AS (
    SELECT *, s_ms + least(iv_ms, coalesce(next_ms - s_ms, iv_ms)) AS e_ms
    FROM occ_raw
    WHERE next_ms IS DISTINCT FROM s_ms
),
occ_s AS (
    SELECT datacentre, cluster, coalesce(scope, '') AS scope,
        sum(gpus_total * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS cap_s,
        sum(gpus_allocated * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS alloc_s
    FROM occ_cov
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
occ AS (
    SELECT datacentre, cluster, sum(cap_s) AS cap_s, sum(alloc_s) AS alloc_s
    FROM occ_s
    GROUP BY ALL
),
inv AS (
    SELECT datacentre, cluster,
        sum(gpu_count * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS cap_s
    FROM inventory_coverage
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
smp_raw AS (
    SELECT datacentre, cluster, gpu_uuid, util, s_ms,
        CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms,
        lead(s_ms) OVER (PARTITION BY datacentre, cluster, gpu_uuid ORDER BY s_ms, _version, _file, _row)
            AS next_ms
    FROM (
        SELECT *, epoch_ms(ts) AS s_ms FROM raw_gpu_samples
        WHERE ts >= make_timestamptz($lo_ms * 1000) AND ts < make_timestamptz($w1_ms * 1000)
    )
),
smp_cov AS (
    SELECT *, s_ms + least(iv_ms, coalesce(next_ms - s_ms, iv_ms)) AS e_ms
    FROM smp_raw
    WHERE next_ms IS DISTINCT FROM s_ms
),
smp AS (
    SELECT datacentre, cluster,
        sum(least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms)) / 1000.0 AS cov_s,
        sum(util * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS busy_s
    FROM smp_cov
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
alc AS (
    SELECT datacentre, cluster,
        sum(gpu_count * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS alloc_s
    FROM allocation_spans
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
-- a cluster is split by scope only when occupancy gives both its capacity and allocated
by_scope AS (
    SELECT o.datacentre, o.cluster, o.scope, o.cap_s AS capacity_s, o.alloc_s AS allocated_s,
        CAST(NULL AS DOUBLE) AS busy_s
    FROM occ_s AS o
    JOIN cluster_sources AS s USING (datacentre, cluster)
    WHERE s.capacity_source = 'occupancy' AND s.allocated_source = 'occupancy'
),
whole AS (
    SELECT
        s.datacentre,
        s.cluster,
        '' AS scope,
        CASE s.capacity_source
            WHEN 'occupancy' THEN coalesce(o.cap_s, 0)
            WHEN 'inventory' THEN coalesce(i.cap_s, 0)
            WHEN 'gpu_samples' THEN coalesce(m.cov_s, 0)
        END AS capacity_s,
        CASE s.allocated_source
            WHEN 'allocation' THEN coalesce(a.alloc_s, 0)
            WHEN 'occupancy' THEN coalesce(o.alloc_s, 0)
        END AS allocated_s,
        m.busy_s
    FROM cluster_sources AS s
    LEFT JOIN occ AS o USING (datacentre, cluster)
    LEFT JOIN inv AS i USING (datacentre, cluster)
    LEFT JOIN smp AS m USING (datacentre, cluster)
    LEFT JOIN alc AS a USING (datacentre, cluster)
    WHERE NOT (s.capacity_source = 'occupancy' AND s.allocated_source = 'occupancy')
)
SELECT datacentre, cluster, scope, capacity_s, allocated_s, busy_s
FROM (SELECT * FROM by_scope UNION ALL SELECT * FROM whole)
ORDER BY datacentre, cluster, scope;
