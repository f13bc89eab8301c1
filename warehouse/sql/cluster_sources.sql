-- cluster_sources: one row per (datacentre, cluster) in the lake, which record kinds it has and the source each report figure comes from (DESIGN §4 precedence); inputs: raw_occupancy, raw_inventory, gpu_extent, raw_allocations
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
)
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
FROM flags;
