-- ops_fleet_window_bins: ops_fleet_window's rows and figures, its GPU-sample coverage (docs/rollups.md#where-they-are-used) cut at the window's whole 15-minute bins [$b0_ms, $b1_ms): inside them the stored bins of fresh partitions (gpu_bins_fresh, whole GPUs) and the raw samples of every other partition, read only from $m0_ms to $m1_ms (fleet.py: from the first to the end of the last partition not served by bins, and one longest sampling interval on for the coverage of its last samples), clipped to the bins; in the partial bins at the edges, [$w0_ms, $b0_ms) and [$b1_ms, $w1_ms), the raw samples near them (from $lo_ms to $e1_ms and from $e2_ms on: one longest sampling interval before each edge, in one scan where the two overlap, so never more rows than the raw path reads) clipped to the edges; each filter reaches its Parquet scan; inputs: raw_gpu_samples, gpu_bins_fresh, ops_gpu_partitions (fleet.py) and those of ops_fleet_window_rows.sql; params: $w0_ms, $w1_ms, $lo_ms, $b0_ms, $b1_ms, $e1_ms, $e2_ms, $m0_ms, $m1_ms
WITH
-- the samples near the edges (fleet.py: one scan to $w1_ms where the two spans overlap, else
-- one to $b0_ms and one from $b1_ms minus the longest interval; an OR would not prune)
edge_a AS (
    /*coverage
        rows: raw_gpu_samples
            WHERE ts >= make_timestamptz($lo_ms * 1000) AND ts < make_timestamptz($e1_ms * 1000)
        keys: datacentre, cluster, gpu_uuid
        values: util
        unit: datacentre, cluster, gpu_uuid
    */
),
edge_b AS (
    /*coverage
        rows: raw_gpu_samples
            WHERE ts >= make_timestamptz($e2_ms * 1000) AND ts < make_timestamptz($w1_ms * 1000)
        keys: datacentre, cluster, gpu_uuid
        values: util
        unit: datacentre, cluster, gpu_uuid
    */
),
mid_cov AS (
    /*coverage
        rows: raw_gpu_samples
            WHERE ts >= make_timestamptz($m0_ms * 1000) AND ts < make_timestamptz($m1_ms * 1000)
        keys: datacentre, cluster, gpu_uuid
        values: util
        unit: datacentre, cluster, gpu_uuid
    */
),
fresh AS (
    SELECT datacentre, date FROM ops_gpu_partitions WHERE fresh
),
-- covered ms and util of each sample's piece in the edges, and in the bins for partitions
-- without fresh bins (the samples of fresh partitions read there only end others' coverage)
pieces AS (
    SELECT datacentre, cluster, util,
        greatest(least(e_ms, $b0_ms) - greatest(s_ms, $w0_ms), 0)
            + greatest(least(e_ms, $w1_ms) - greatest(s_ms, $b1_ms), 0) AS ms
    FROM (SELECT * FROM edge_a UNION ALL SELECT * FROM edge_b)
    WHERE (s_ms < $b0_ms AND e_ms > $w0_ms) OR (s_ms < $w1_ms AND e_ms > $b1_ms)
    UNION ALL
    SELECT c.datacentre, c.cluster, c.util,
        least(c.e_ms, $b1_ms) - greatest(c.s_ms, $b0_ms)
    FROM mid_cov AS c
    ANTI JOIN fresh AS f
        ON c.datacentre IS NOT DISTINCT FROM f.datacentre
        AND CAST(epoch_ms(c.s_ms) AS DATE) = f.date
    WHERE c.s_ms < $b1_ms AND c.e_ms > $b0_ms
),
-- busy ms NULL where no util is known, in a piece as in a bin: summed, NULL only if all are
smp AS (
    SELECT datacentre, cluster,
        sum(ms) / 1000.0 AS cov_s,
        sum(busy_ms) / 1000.0 AS busy,
        CAST(NULL AS DOUBLE) AS busy_allocated
    FROM (
        SELECT datacentre, cluster, ms, util * ms AS busy_ms FROM pieces
        UNION ALL
        SELECT datacentre, cluster, cov_ms, busy_ms
        FROM gpu_bins_fresh
        WHERE allocation_id IS NULL AND bin_ms >= $b0_ms AND bin_ms < $b1_ms
    )
    GROUP BY ALL
),
fleet AS (
    /*ops_fleet_window_rows
        samples: smp
    */
)
SELECT datacentre, cluster, scope, capacity AS capacity_s, allocated AS allocated_s, busy AS busy_s
FROM fleet
ORDER BY datacentre, cluster, scope;
