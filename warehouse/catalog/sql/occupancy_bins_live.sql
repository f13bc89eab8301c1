-- occupancy_bins_live: occupancy coverage of the lake partitions not served by a fresh occupancy rollup, cut into 15-minute UTC bins per (datacentre, date, cluster, scope), holding only mergeable sums: covered ms, Σ gpus_total x covered ms, Σ gpus_allocated x covered ms, Σ gpus_down x covered ms (NULL when no snapshot of the bin states it), snapshots starting in the bin, the first / last snapshot starting in the bin and where the last one's coverage ends. date is the UTC date of the snapshots (their lake partition); bin_ms may lie in the next day for a snapshot that covers midnight. The rollup builder writes exactly these rows; inputs: occupancy_coverage_open
CREATE OR REPLACE VIEW occupancy_bins_live AS
WITH cov AS (
    SELECT *, CAST(epoch_ms(s_ms) AS DATE) AS date FROM occupancy_coverage_open
),
cut AS (
    SELECT *, unnest(range(s_ms // 900000, (e_ms - 1) // 900000 + 1)) * 900000 AS bin_ms
    FROM cov
),
parts AS (
    SELECT
        *,
        least(e_ms, bin_ms + 900000) - greatest(s_ms, bin_ms) AS ms,
        s_ms >= bin_ms AS starts
    FROM cut
)
SELECT
    datacentre,
    date,
    cluster,
    scope,
    bin_ms,
    count(*) FILTER (WHERE starts) AS snapshots,
    CAST(sum(ms) AS BIGINT) AS cov_ms,
    sum(gpus_total * ms) AS total_ms,
    sum(gpus_allocated * ms) AS allocated_ms,
    sum(gpus_down * ms) AS down_ms,
    min(s_ms) FILTER (WHERE starts) AS first_ms,
    max(s_ms) FILTER (WHERE starts) AS last_ms,
    arg_max(e_ms, s_ms) FILTER (WHERE starts) AS last_e_ms
FROM parts
GROUP BY datacentre, date, cluster, scope, bin_ms;
