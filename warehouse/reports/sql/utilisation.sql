-- utilisation report: one row per (period, datacentre[, cluster[, scope]]) with capacity / allocated / busy GPU-hours (docs/semantics.md); inputs: report_periods, occupancy_bins or occupancy_coverage, inventory_coverage, gpu_bins or gpu_sample_coverage, allocation_spans, allocation_hold_spans, cluster_sources, datacentres; params: $by ('datacentre'|'cluster'|'scope'|'region'|'ownership')
WITH
periods AS MATERIALIZED (SELECT * FROM report_periods),
-- occupancy per (period, scope): capacity, allocated and covered hours, from the 15-minute
-- occupancy bins (utilisation_occ_bins.sql) or, where a period bound is not on a bin edge, from
-- every snapshot clipped to the period (utilisation_occ_samples.sql); reports.py inserts one here
occ_p AS MATERIALIZED (
    /*occ_parts*/
),
-- inventory: per (period, node), gpu_count x validity overlap
inv_p AS MATERIALIZED (
    SELECT
        p.period,
        i.datacentre,
        i.cluster,
        i.node,
        sum(i.gpu_count * (least(i.e_ms, p.p1) - greatest(i.s_ms, p.p0))) / 3600000.0 AS cap_h,
        sum(least(i.e_ms, p.p1) - greatest(i.s_ms, p.p0)) / 3600000.0 AS cov_h
    FROM inventory_coverage AS i
    JOIN periods AS p ON i.s_ms < p.p1 AND i.e_ms > p.p0
    GROUP BY ALL
),
-- GPU samples per (period, GPU): covered, busy and busy-held hours, from the 15-minute bins
-- (utilisation_gpu_bins.sql) or, where a period bound is not on a bin edge, from every sample
-- clipped to the period (utilisation_gpu_samples.sql); reports.py inserts one of them here
smp_p AS MATERIALIZED (
    /*gpu_parts*/
),
alloc_p AS MATERIALIZED (
    SELECT
        p.period,
        a.datacentre,
        a.cluster,
        sum(a.gpu_count * (least(a.e_ms, p.p1) - greatest(a.s_ms, p.p0))) / 3600000.0 AS alloc_h
    FROM allocation_spans AS a
    JOIN periods AS p ON a.s_ms < p.p1 AND a.e_ms > p.p0
    GROUP BY ALL
),
-- each source's figures per (period, cluster) in long form, named by source (cluster_sources'
-- names): capacity, allocated, busy, busy-allocated and the coverage of its units
figures AS (
    SELECT
        period, datacentre, cluster, 'occupancy' AS source, sum(cap_h) AS cap_h,
        sum(alloc_h) AS alloc_h, CAST(NULL AS DOUBLE) AS busy_h,
        CAST(NULL AS DOUBLE) AS busy_alloc_h, sum(cov_h) AS cov_h
    FROM occ_p
    GROUP BY period, datacentre, cluster
    UNION ALL
    SELECT period, datacentre, cluster, 'inventory', sum(cap_h), NULL, NULL, NULL, sum(cov_h)
    FROM inv_p
    GROUP BY period, datacentre, cluster
    UNION ALL
    SELECT
        period, datacentre, cluster, 'gpu_samples', sum(cov_h), NULL, sum(busy_h),
        sum(busy_alloc_h), sum(cov_h)
    FROM smp_p
    GROUP BY period, datacentre, cluster
    UNION ALL
    SELECT period, datacentre, cluster, 'allocation', NULL, alloc_h, NULL, NULL, NULL
    FROM alloc_p
),
-- units whose no-telemetry share is averaged, per source: the scopes, nodes and GPUs seen in the
-- report window
units AS (
    SELECT datacentre, cluster, 'occupancy' AS source, count(*) AS n
    FROM (SELECT DISTINCT datacentre, cluster, scope FROM occ_p)
    GROUP BY datacentre, cluster
    UNION ALL
    SELECT datacentre, cluster, 'inventory', count(DISTINCT node) FROM inv_p
    GROUP BY datacentre, cluster
    UNION ALL
    SELECT datacentre, cluster, 'gpu_samples', count(DISTINCT gpu_uuid) FROM smp_p
    GROUP BY datacentre, cluster
),
clusters AS (
    SELECT DISTINCT datacentre, cluster FROM (
        SELECT datacentre, cluster FROM occ_p
        UNION ALL SELECT datacentre, cluster FROM inv_p
        UNION ALL SELECT datacentre, cluster FROM smp_p
        UNION ALL SELECT datacentre, cluster FROM alloc_p
    )
),
-- clusters whose occupancy names scopes: by=scope splits them into one row per scope
scoped AS (
    SELECT DISTINCT datacentre, cluster FROM occ_p WHERE scope IS NOT NULL
),
-- a cluster's figures are those of the sources cluster_sources chose for it: 0 where the chosen
-- source is silent in the period, NULL where it is none
cluster_rows AS MATERIALIZED (
    SELECT
        p.period,
        k.datacentre,
        k.cluster,
        CAST(NULL AS VARCHAR) AS scope,
        (p.p1 - p.p0) / 3600000.0 AS period_h,
        s.capacity_source,
        s.allocated_source,
        s.busy_source,
        CASE WHEN s.capacity_source <> 'none' THEN coalesce(c.cap_h, 0) END AS capacity,
        CASE WHEN s.allocated_source <> 'none' THEN coalesce(a.alloc_h, 0) END AS allocated,
        b.busy_h AS busy,
        CASE
            WHEN s.allocated_source = 'allocation' AND b.busy_h IS NOT NULL
                THEN coalesce(b.busy_alloc_h, 0)
        END AS busy_allocated,
        coalesce(c.cov_h, 0) AS unit_cov_h,
        coalesce(u.n, 1) AS n_units,
        s.capacity_note
    FROM periods AS p
    CROSS JOIN clusters AS k
    JOIN cluster_sources AS s USING (datacentre, cluster)
    LEFT JOIN figures AS c
        ON c.period = p.period AND c.datacentre = k.datacentre AND c.cluster = k.cluster
        AND c.source = s.capacity_source
    LEFT JOIN figures AS a
        ON a.period = p.period AND a.datacentre = k.datacentre AND a.cluster = k.cluster
        AND a.source = s.allocated_source
    LEFT JOIN figures AS b
        ON b.period = p.period AND b.datacentre = k.datacentre AND b.cluster = k.cluster
        AND b.source = s.busy_source
    LEFT JOIN units AS u
        ON u.datacentre = k.datacentre AND u.cluster = k.cluster AND u.source = s.capacity_source
),
-- one row per occupancy scope of a scoped cluster: only occupancy carries a scope, so capacity
-- and allocated come from it and busy is not split
scope_rows AS (
    SELECT
        p.period,
        u.datacentre,
        u.cluster,
        u.scope,
        (p.p1 - p.p0) / 3600000.0 AS period_h,
        'occupancy' AS capacity_source,
        'occupancy' AS allocated_source,
        'none' AS busy_source,
        coalesce(o.cap_h, 0) AS capacity,
        coalesce(o.alloc_h, 0) AS allocated,
        CAST(NULL AS DOUBLE) AS busy,
        CAST(NULL AS DOUBLE) AS busy_allocated,
        coalesce(o.cov_h, 0) AS unit_cov_h,
        1 AS n_units,
        s.capacity_note
    FROM periods AS p
    CROSS JOIN (
        SELECT DISTINCT datacentre, cluster, scope FROM occ_p SEMI JOIN scoped USING (datacentre, cluster)
    ) AS u
    LEFT JOIN occ_p AS o
        ON o.period = p.period AND o.datacentre = u.datacentre AND o.cluster = u.cluster
        AND o.scope IS NOT DISTINCT FROM u.scope
    LEFT JOIN cluster_sources AS s ON s.datacentre = u.datacentre AND s.cluster = u.cluster
),
-- by region / ownership: each cluster row with its data centre's group in the registry
-- (datacentres view), 'unregistered' where the registry does not list it
grouped_rows AS (
    SELECT
        c.*,
        CASE $by
            WHEN 'region' THEN coalesce(d.region, 'unregistered')
            WHEN 'ownership' THEN coalesce(d.ownership, 'unregistered')
            ELSE c.datacentre
        END AS grp
    FROM cluster_rows AS c
    LEFT JOIN datacentres AS d ON d.datacentre = c.datacentre
),
report AS (
    SELECT * FROM cluster_rows
    WHERE $by = 'cluster'
    UNION ALL
    SELECT * FROM cluster_rows ANTI JOIN scoped USING (datacentre, cluster)
    WHERE $by = 'scope'
    UNION ALL
    SELECT * FROM scope_rows
    WHERE $by = 'scope'
    UNION ALL
    -- by datacentre, region or ownership: the group in the datacentre column; for a
    -- region or ownership its data centres ('+'-joined) in the cluster column
    SELECT
        period,
        grp,
        CASE WHEN $by <> 'datacentre'
            THEN string_agg(DISTINCT datacentre, '+' ORDER BY datacentre) END,
        CAST(NULL AS VARCHAR),
        any_value(period_h),
        string_agg(DISTINCT capacity_source, '+' ORDER BY capacity_source),
        string_agg(DISTINCT allocated_source, '+' ORDER BY allocated_source),
        string_agg(DISTINCT busy_source, '+' ORDER BY busy_source),
        sum(capacity),
        sum(allocated),
        sum(busy),
        sum(busy_allocated),
        sum(unit_cov_h),
        sum(n_units),
        string_agg(DISTINCT capacity_note, ' | ' ORDER BY capacity_note)
    FROM grouped_rows
    WHERE $by IN ('datacentre', 'region', 'ownership')
    GROUP BY period, grp
)
SELECT
    period,
    datacentre,
    cluster,
    scope,
    capacity AS capacity_gpu_h,
    allocated AS allocated_gpu_h,
    busy AS busy_gpu_h,
    busy_allocated AS busy_allocated_gpu_h,
    capacity - allocated AS idle_capacity_gpu_h,
    allocated - busy_allocated AS idle_held_gpu_h,
    allocated / nullif(capacity, 0) AS allocation_rate,
    busy / nullif(capacity, 0) AS utilisation,
    busy_allocated / nullif(allocated, 0) AS efficiency,
    greatest(0.0, 1.0 - unit_cov_h / (n_units * period_h)) AS no_telemetry_share,
    'capacity=' || capacity_source || ';allocated=' || allocated_source || ';busy=' || busy_source
        AS sources,
    capacity_note
FROM report
ORDER BY period, datacentre, cluster, scope;
