-- gpu_bins_live: GPU-sample coverage of the lake partitions not served by a fresh rollup, cut into 15-minute UTC bins: one row per (datacentre, date, cluster, gpu_uuid, bin_ms) holding only mergeable sums (covered ms, busy ms = util x covered ms, ms held by an allocation, ms with util unknown, counts, min/max, the first / last sample starting in the bin); date is the UTC date of the samples (their lake partition), bin_ms may lie in the next day for a sample that covers midnight; the rollup builder writes exactly these rows; inputs: gpu_sample_coverage_open, allocation_hold_spans
-- held = an allocation of the same cluster holds the GPU, its job or its pod at the sample's start
-- (hold spans are disjoint per key: one match at most), as the utilisation report counts it.
CREATE OR REPLACE VIEW gpu_bins_live AS
WITH smp AS (
    SELECT
        c.datacentre,
        CAST(epoch_ms(c.s_ms) AS DATE) AS date,
        c.cluster,
        c.gpu_uuid,
        c.s_ms,
        c.e_ms,
        c.util,
        g.ref IS NOT NULL OR j.ref IS NOT NULL OR d.ref IS NOT NULL AS held
    FROM gpu_sample_coverage_open AS c
    LEFT JOIN allocation_hold_spans AS g
        ON g.via = 'gpu' AND g.datacentre = c.datacentre AND g.cluster = c.cluster
        AND g.ref = c.gpu_uuid AND c.s_ms >= g.s_ms AND c.s_ms < g.e_ms
    LEFT JOIN allocation_hold_spans AS j
        ON j.via = 'job' AND j.datacentre = c.datacentre AND j.cluster = c.cluster
        AND j.ref = c.job_id AND c.s_ms >= j.s_ms AND c.s_ms < j.e_ms
    LEFT JOIN allocation_hold_spans AS d
        ON d.via = 'pod' AND d.datacentre = c.datacentre AND d.cluster = c.cluster
        AND d.ref = c.pod AND c.s_ms >= d.s_ms AND c.s_ms < d.e_ms
),
cut AS (
    SELECT *, unnest(range(s_ms // 900000, (e_ms - 1) // 900000 + 1)) * 900000 AS bin_ms
    FROM smp
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
    gpu_uuid,
    bin_ms,
    count(*) FILTER (WHERE starts) AS samples,
    sum(ms) AS cov_ms,
    coalesce(sum(ms) FILTER (WHERE util IS NULL), 0) AS unknown_ms,
    sum(util * ms) AS busy_ms,
    coalesce(sum(ms) FILTER (WHERE held), 0) AS held_ms,
    sum(util * ms) FILTER (WHERE held) AS held_busy_ms,
    min(util) AS util_min,
    max(util) AS util_max,
    min(s_ms) FILTER (WHERE starts) AS first_ms,
    max(s_ms) FILTER (WHERE starts) AS last_ms,
    arg_max(e_ms, s_ms) FILTER (WHERE starts) AS last_e_ms
FROM parts
GROUP BY datacentre, date, cluster, gpu_uuid, bin_ms;
