-- ops_fleet_now: one row per (datacentre, cluster, scope) with capacity / allocated / busy GPUs at the instant $now_ms, from the newest record of each unit made in ($now_ms - $horizon_ms, $now_ms] (scope '' = whole cluster; rows as ops_fleet_rows.sql makes them: NULL where a chosen source is silent); inputs: raw_occupancy, raw_gpu_samples (read only in that span: the filter reaches the Parquet scan), inventory, allocations_current, allocation_hold_spans, cluster_sources; params: $now_ms, $horizon_ms
WITH
occ AS (
    SELECT datacentre, cluster, coalesce(scope, '') AS scope,
        arg_max(gpus_total, (ts, _version, _file, _row)) AS capacity,
        arg_max(gpus_allocated, (ts, _version, _file, _row)) AS allocated
    FROM raw_occupancy
    WHERE ts > make_timestamptz(($now_ms - $horizon_ms) * 1000)
        AND ts <= make_timestamptz($now_ms * 1000)
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
    SELECT datacentre, cluster, gpu_uuid,
        arg_max(util, (ts, _version, _file, _row)) AS util,
        arg_max(job_id, (ts, _version, _file, _row)) AS job_id,
        arg_max(pod, (ts, _version, _file, _row)) AS pod
    FROM raw_gpu_samples
    WHERE ts > make_timestamptz(($now_ms - $horizon_ms) * 1000)
        AND ts <= make_timestamptz($now_ms * 1000)
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
        coalesce(sum(util) FILTER (WHERE held), 0) AS busy_allocated
    FROM smp_held
    GROUP BY ALL
),
alc AS (
    SELECT datacentre, cluster, sum(gpu_count) AS allocated
    FROM allocations_current
    WHERE epoch_ms("start") <= $now_ms AND ("end" IS NULL OR epoch_ms("end") > $now_ms)
    GROUP BY ALL
),
-- each source's GPUs now per cluster in long form, named by source (cluster_sources' names):
-- allocation records say 0 when none runs now; a silent source has no figure
figures AS (
    SELECT datacentre, cluster, 'occupancy' AS source, sum(capacity) AS capacity,
        sum(allocated) AS allocated
    FROM occ
    GROUP BY datacentre, cluster
    UNION ALL
    SELECT datacentre, cluster, 'inventory', total, NULL FROM inv
    UNION ALL
    SELECT datacentre, cluster, 'gpu_samples', gpus, NULL FROM smp_c
    UNION ALL
    SELECT datacentre, cluster, 'allocation', NULL, coalesce(a.allocated, 0)
    FROM (SELECT DISTINCT datacentre, cluster FROM allocations_current) AS k
    LEFT JOIN alc AS a USING (datacentre, cluster)
),
fleet AS (
    /*ops_fleet_rows
        scopes: occ
        figures: figures
        silent: NULL
        busy: smp_c
    */
)
SELECT datacentre, cluster, scope, capacity, allocated, busy, busy_allocated
FROM fleet
ORDER BY datacentre, cluster, scope;
