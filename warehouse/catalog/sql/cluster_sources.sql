-- cluster_sources: one row per (datacentre, cluster) in the lake, which record kinds it has, the source each report figure comes from (docs/semantics.md#sources-and-precedence) and capacity_note, set when the cluster's capacity sources disagree on its GPUs now; inputs: raw_occupancy, raw_inventory, gpu_extent, raw_allocations
CREATE OR REPLACE VIEW cluster_sources AS
WITH present AS (
    SELECT DISTINCT datacentre, cluster, 'occupancy' AS kind FROM raw_occupancy
    UNION ALL
    SELECT DISTINCT datacentre, cluster, 'inventory' FROM raw_inventory
    UNION ALL
    SELECT DISTINCT datacentre, cluster, 'gpu_samples' FROM gpu_extent
    UNION ALL
    SELECT DISTINCT datacentre, cluster, 'allocation' FROM raw_allocations
),
flags AS (
    SELECT
        datacentre,
        cluster,
        bool_or(kind = 'occupancy') AS has_occupancy,
        bool_or(kind = 'inventory') AS has_inventory,
        bool_or(kind = 'gpu_samples') AS has_gpu_samples,
        bool_or(kind = 'allocation') AS has_allocations
    FROM present
    GROUP BY datacentre, cluster
),
chosen AS (
    SELECT
        *,
        CASE
            WHEN has_occupancy THEN 'occupancy'
            WHEN has_inventory THEN 'inventory'
            WHEN has_gpu_samples THEN 'gpu_samples'
            ELSE 'none'
        END AS capacity_source,
        CASE
            WHEN has_allocations THEN 'allocation'
            WHEN has_occupancy THEN 'occupancy'
            ELSE 'none'
        END AS allocated_source,
        CASE WHEN has_gpu_samples THEN 'gpu_samples' ELSE 'none' END AS busy_source
    FROM flags
),
-- GPUs each capacity source states now: occupancy, the newest snapshot of the whole cluster
-- (else the sum of its scopes' newest); each inventory source, the sum of its newest statement
-- per node (0 once that statement's valid_to has passed). Newest = the dedup winner
-- (greatest valid_from / ts, then _version, _file, _row), as inventory_coverage keeps it.
occ_scope AS (
    SELECT datacentre, cluster, scope, arg_max(gpus_total, (ts, _version, _file, _row)) AS gpus
    FROM raw_occupancy
    GROUP BY datacentre, cluster, scope
),
inv_node AS (
    SELECT
        datacentre,
        cluster,
        source,
        node,
        arg_max(
            CASE WHEN valid_to IS NULL OR valid_to > now() THEN gpu_count ELSE 0 END,
            (valid_from, _version, _file, _row)
        ) AS gpus,
        max((valid_from, _version, _file, _row)) AS newest
    FROM raw_inventory
    GROUP BY datacentre, cluster, source, node
),
-- the source of each node's record that the report reads (the newest over all sources)
inv_kept AS (
    SELECT datacentre, cluster, node, arg_max(source, newest) AS source
    FROM inv_node
    GROUP BY datacentre, cluster, node
),
stated AS (
    SELECT
        datacentre,
        cluster,
        'occupancy' AS kind,
        'occupancy' AS name,
        coalesce(max(CASE WHEN scope IS NULL THEN gpus END), sum(gpus)) AS gpus,
        true AS used
    FROM occ_scope
    GROUP BY datacentre, cluster
    UNION ALL
    SELECT
        n.datacentre,
        n.cluster,
        'inventory' AS kind,
        'inventory ' || n.source AS name,
        sum(n.gpus) AS gpus,
        bool_or(k.node IS NOT NULL) AS used
    FROM inv_node AS n
    LEFT JOIN inv_kept AS k
        ON k.datacentre = n.datacentre AND k.cluster = n.cluster AND k.node = n.node
        AND k.source = n.source
    GROUP BY n.datacentre, n.cluster, n.source
),
notes AS (
    SELECT
        t.datacentre,
        t.cluster,
        'capacity sources of ' || t.cluster || ' disagree: '
            || string_agg(DISTINCT t.label, '; ' ORDER BY t.label)
            AS capacity_note
    FROM (
        SELECT
            s.datacentre,
            s.cluster,
            s.name || ' ' || CAST(CAST(round(s.gpus) AS BIGINT) AS VARCHAR) || ' GPUs'
                || CASE
                    WHEN s.used AND s.kind = c.capacity_source THEN ' (used)'
                    ELSE ''
                END AS label,
            CAST(round(s.gpus) AS BIGINT) AS gpus
        FROM stated AS s
        JOIN chosen AS c USING (datacentre, cluster)
    ) AS t
    GROUP BY t.datacentre, t.cluster
    HAVING count(DISTINCT t.gpus) > 1
)
SELECT c.*, n.capacity_note
FROM chosen AS c
LEFT JOIN notes AS n USING (datacentre, cluster);
