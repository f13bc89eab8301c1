-- ops_fleet_now: one row per (datacentre, cluster, scope) with capacity / allocated / busy GPUs at the instant $now_ms, from the newest record of each unit made in ($now_ms - $horizon_ms, $now_ms] (scope '' = whole cluster); inputs: occupancy_coverage, inventory, gpu_sample_coverage, allocations_current, allocation_hold_spans, cluster_sources; params: $now_ms, $horizon_ms
WITH
occ AS (
    SELECT datacentre, cluster, coalesce(scope, '') AS scope,
        arg_max(gpus_total, s_ms) AS total, arg_max(gpus_allocated, s_ms) AS allocated
    FROM occupancy_coverage
    WHERE s_ms <= $now_ms AND s_ms > $now_ms - $horizon_ms
    GROUP BY ALL
),
inv AS (
    SELECT datacentre, cluster, sum(gpu_count) AS total
    FROM (
        SELECT datacentre, cluster, node, arg_max(gpu_count, valid_from) AS gpu_count,
            arg_max(valid_to, valid_from) AS valid_to
        FROM inventory
        WHERE epoch_ms(valid_from) <= $now_ms
        GROUP BY ALL
    )
    WHERE valid_to IS NULL OR epoch_ms(valid_to) > $now_ms
    GROUP BY ALL
),
-- newest sample of each GPU, and whether an allocation holds the GPU, its job or pod now
smp AS (
    SELECT datacentre, cluster, gpu_uuid, arg_max(util, s_ms) AS util,
        arg_max(job_id, s_ms) AS job_id, arg_max(pod, s_ms) AS pod
    FROM gpu_sample_coverage
    WHERE s_ms <= $now_ms AND s_ms > $now_ms - $horizon_ms
    GROUP BY ALL
),
smp_held AS (
    SELECT s.*, EXISTS (
        SELECT 1 FROM allocation_hold_spans AS h
        WHERE h.datacentre = s.datacentre AND h.cluster = s.cluster
            AND h.s_ms <= $now_ms AND h.e_ms > $now_ms
            AND ((h.via = 'gpu' AND h.ref = s.gpu_uuid) OR (h.via = 'job' AND h.ref = s.job_id)
                OR (h.via = 'pod' AND h.ref = s.pod))
    ) AS held
    FROM smp AS s
),
smp_c AS (
    SELECT datacentre, cluster, count(*) AS gpus, sum(util) AS busy,
        coalesce(sum(util) FILTER (WHERE held), 0) AS busy_held
    FROM smp_held
    GROUP BY ALL
),
alc AS (
    SELECT datacentre, cluster, sum(gpu_count) AS allocated
    FROM allocations_current
    WHERE epoch_ms("start") <= $now_ms AND ("end" IS NULL OR epoch_ms("end") > $now_ms)
    GROUP BY ALL
),
-- a cluster is split by scope only when occupancy gives both its capacity and allocated
by_scope AS (
    SELECT o.datacentre, o.cluster, o.scope, o.total AS capacity, o.allocated,
        CAST(NULL AS DOUBLE) AS busy, CAST(NULL AS DOUBLE) AS busy_allocated
    FROM occ AS o
    JOIN cluster_sources AS s USING (datacentre, cluster)
    WHERE s.capacity_source = 'occupancy' AND s.allocated_source = 'occupancy'
),
whole AS (
    SELECT
        s.datacentre,
        s.cluster,
        '' AS scope,
        CASE s.capacity_source
            WHEN 'occupancy' THEN (SELECT sum(total) FROM occ AS o
                WHERE o.datacentre = s.datacentre AND o.cluster = s.cluster)
            WHEN 'inventory' THEN i.total
            WHEN 'gpu_samples' THEN c.gpus
        END AS capacity,
        CASE s.allocated_source
            WHEN 'allocation' THEN coalesce(a.allocated, 0)
            WHEN 'occupancy' THEN (SELECT sum(allocated) FROM occ AS o
                WHERE o.datacentre = s.datacentre AND o.cluster = s.cluster)
        END AS allocated,
        c.busy,
        CASE WHEN s.allocated_source = 'allocation' THEN c.busy_held END AS busy_allocated
    FROM cluster_sources AS s
    LEFT JOIN inv AS i USING (datacentre, cluster)
    LEFT JOIN smp_c AS c USING (datacentre, cluster)
    LEFT JOIN alc AS a USING (datacentre, cluster)
    WHERE NOT (s.capacity_source = 'occupancy' AND s.allocated_source = 'occupancy')
)
SELECT datacentre, cluster, scope, capacity, allocated, busy, busy_allocated
FROM (SELECT * FROM by_scope UNION ALL SELECT * FROM whole)
ORDER BY datacentre, cluster, scope;
