-- ops_fleet_rows (a template, filled in by load_sql where a SQL file uses it): the fleet's rows (datacentre, cluster, scope, capacity, allocated, busy, busy_allocated): a cluster is split by occupancy scope (`scopes`: datacentre, cluster, scope, capacity, allocated) only when occupancy gives both its capacity and its allocated; any other cluster is one row, scope '', with the figures of the sources cluster_sources chose for it, picked from `figures` (datacentre, cluster, source, capacity, allocated: long form, one row per source that has a figure), `silent` where the chosen source has none (NULL where the source is none), and `busy` (datacentre, cluster, busy, busy_allocated: busy_allocated kept only where allocated comes from allocations); inputs: cluster_sources; slots: scopes, figures, silent, busy
SELECT
    o.datacentre, o.cluster, o.scope, o.capacity, o.allocated,
    CAST(NULL AS DOUBLE) AS busy, CAST(NULL AS DOUBLE) AS busy_allocated
FROM /*scopes*/ AS o
JOIN cluster_sources AS s USING (datacentre, cluster)
WHERE s.capacity_source = 'occupancy' AND s.allocated_source = 'occupancy'
UNION ALL
SELECT
    s.datacentre,
    s.cluster,
    '' AS scope,
    CASE WHEN s.capacity_source <> 'none' THEN coalesce(c.capacity, /*silent*/) END,
    CASE WHEN s.allocated_source <> 'none' THEN coalesce(a.allocated, /*silent*/) END,
    m.busy,
    CASE WHEN s.allocated_source = 'allocation' THEN m.busy_allocated END
FROM cluster_sources AS s
LEFT JOIN /*figures*/ AS c
    ON c.datacentre = s.datacentre AND c.cluster = s.cluster AND c.source = s.capacity_source
LEFT JOIN /*figures*/ AS a
    ON a.datacentre = s.datacentre AND a.cluster = s.cluster AND a.source = s.allocated_source
LEFT JOIN /*busy*/ AS m ON m.datacentre = s.datacentre AND m.cluster = s.cluster
WHERE NOT (s.capacity_source = 'occupancy' AND s.allocated_source = 'occupancy');
