-- ops_fleet_window: one row per (datacentre, cluster) with capacity / allocated / busy GPU-seconds in the window [$w0_ms, $w1_ms), coverage clipped to it, sources by DESIGN §4 precedence; inputs: occupancy_coverage, inventory_coverage, gpu_sample_coverage, allocation_spans, cluster_sources; params: $w0_ms, $w1_ms
WITH
occ AS (
    SELECT datacentre, cluster,
        sum(gpus_total * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS cap_s,
        sum(gpus_allocated * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS alloc_s
    FROM occupancy_coverage
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
inv AS (
    SELECT datacentre, cluster,
        sum(gpu_count * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS cap_s
    FROM inventory_coverage
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
smp AS (
    SELECT datacentre, cluster,
        sum(least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms)) / 1000.0 AS cov_s,
        sum(util * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS busy_s
    FROM gpu_sample_coverage
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
),
alc AS (
    SELECT datacentre, cluster,
        sum(gpu_count * (least(e_ms, $w1_ms) - greatest(s_ms, $w0_ms))) / 1000.0 AS alloc_s
    FROM allocation_spans
    WHERE s_ms < $w1_ms AND e_ms > $w0_ms
    GROUP BY ALL
)
SELECT
    s.datacentre,
    s.cluster,
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
ORDER BY datacentre, cluster;
