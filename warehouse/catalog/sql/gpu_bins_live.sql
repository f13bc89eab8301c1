-- gpu_bins_live: GPU-sample coverage of the lake partitions not served by a fresh rollup, cut into 15-minute UTC bins, holding only mergeable sums (covered ms, busy ms = util x covered ms, ms held by an allocation, ms with util unknown, counts, min/max, the first / last sample starting in the bin). Rows with allocation_id NULL: one per (datacentre, date, cluster, gpu_uuid, bin_ms), the whole GPU. Rows with an allocation_id: the part of that GPU's samples inside the allocation's span, for attribution (the allocation's GPUs by uuid, else its job / pod), split at its boundaries. date is the UTC date of the samples (their lake partition), bin_ms may lie in the next day for a sample that covers midnight; the rollup builder writes exactly these rows; inputs: gpu_sample_coverage_open, allocation_hold_spans, allocation_spans
-- held = an allocation of the same cluster holds the GPU, its job or its pod at the sample's start
-- (hold spans are disjoint per key: one match at most), as the utilisation report counts it.
CREATE OR REPLACE VIEW gpu_bins_live AS
WITH cov AS (
    SELECT *, CAST(epoch_ms(s_ms) AS DATE) AS date FROM gpu_sample_coverage_open
),
smp AS (
    SELECT
        c.datacentre,
        c.date,
        c.cluster,
        c.gpu_uuid,
        CAST(NULL AS VARCHAR) AS allocation_id,
        c.s_ms,
        c.e_ms,
        c.util,
        g.ref IS NOT NULL OR j.ref IS NOT NULL OR d.ref IS NOT NULL AS held
    FROM cov AS c
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
-- the held GPUs of allocations that list them; the others are matched by job / pod
alloc_gpus AS (
    SELECT datacentre, cluster, allocation_id, unnest(gpu_uuids) AS ref, s_ms, e_ms
    FROM allocation_spans
    WHERE gpu_uuids IS NOT NULL
),
in_alloc AS (
    SELECT
        c.datacentre, c.date, c.cluster, c.gpu_uuid, a.allocation_id,
        greatest(c.s_ms, a.s_ms) AS s_ms, least(c.e_ms, a.e_ms) AS e_ms, c.util
    FROM cov AS c
    JOIN alloc_gpus AS a
        ON a.datacentre = c.datacentre AND a.cluster = c.cluster AND a.ref = c.gpu_uuid
        AND c.s_ms < a.e_ms AND c.e_ms > a.s_ms
    UNION ALL
    SELECT
        c.datacentre, c.date, c.cluster, c.gpu_uuid, a.allocation_id,
        greatest(c.s_ms, a.s_ms), least(c.e_ms, a.e_ms), c.util
    FROM cov AS c
    JOIN allocation_spans AS a
        ON a.datacentre = c.datacentre AND a.cluster = c.cluster
        AND c.s_ms < a.e_ms AND c.e_ms > a.s_ms
        AND (c.job_id = a.job_id OR c.pod = a.allocation_id OR c.pod = a.job_id)
    WHERE a.gpu_uuids IS NULL
),
pieces AS (
    SELECT *, true AS whole FROM smp
    UNION ALL BY NAME
    SELECT *, false AS whole, false AS held FROM in_alloc
)
/*bin_sums
    rows: pieces
    keys: datacentre, date, cluster, gpu_uuid, allocation_id, bin_ms
*/;
