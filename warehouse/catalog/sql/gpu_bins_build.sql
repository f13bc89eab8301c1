-- gpu_bins_build: the rows of gpu_bins_live for the builder's open partitions, computed with each GPU as one 64-bit hash h of (datacentre, cluster, gpu_uuid) and each cluster as dcc, hash of (datacentre, cluster), instead of their strings through the coverage window, the joins and the grouping (the strings are joined back per bin), and the window ordered by ts alone; equal to gpu_bins_live only when every GPU and every cluster has its own hash and no GPU has two rows at one instant, which the builder checks (docs/rollups.md#building); inputs: raw_gpu_samples_open, _build_units, _build_refs, _build_open, allocation_hold_spans, allocation_spans
-- Holds and allocations are matched to the GPUs and clusters of _build_units by their strings
-- first, exactly as gpu_bins_live matches them to samples (plain =: a NULL never matches). A
-- sample's job_id and pod become the numbers _build_refs gives their cluster's names (NULL
-- where no hold or allocation names them), so two are equal exactly when cluster and name are.
CREATE OR REPLACE VIEW gpu_bins_build AS
WITH clusters AS (
    SELECT DISTINCT dcc, datacentre, cluster FROM _build_units
),
ref_holds AS (
    SELECT k.dcc, g.via, g.ref, g.s_ms, g.e_ms
    FROM allocation_hold_spans AS g
    JOIN clusters AS k ON g.datacentre = k.datacentre AND g.cluster = k.cluster
    WHERE g.via IN ('job', 'pod')
),
alloc_refs AS (
    SELECT k.dcc, a.allocation_id, a.job_id, a.s_ms, a.e_ms
    FROM allocation_spans AS a
    JOIN clusters AS k ON a.datacentre = k.datacentre AND a.cluster = k.cluster
    WHERE a.gpu_uuids IS NULL
),
raw AS (
    SELECT
        hash(r.datacentre, r.cluster, r.gpu_uuid) AS h,
        r.dcc,
        epoch_ms(r.ts) AS s_ms,
        CAST(round(r.interval_s * 1000) AS BIGINT) AS iv_ms,
        r.util,
        -- both numbers in one column through the window (0 for none; the builder checks that
        -- _build_refs has fewer than 2^31, so that the sum fits a BIGINT)
        coalesce(j.id, 0) * 4294967296 + coalesce(p.id, 0) AS refs
    FROM (SELECT *, hash(datacentre, cluster) AS dcc FROM raw_gpu_samples_open) AS r
    LEFT JOIN _build_refs AS j ON j.dcc = r.dcc AND j.name = r.job_id
    LEFT JOIN _build_refs AS p ON p.dcc = r.dcc AND p.name = r.pod
),
cov AS (
    SELECT
        c.h, c.dcc, c.s_ms, s_ms + least(iv_ms, coalesce(next_ms - s_ms, iv_ms)) AS e_ms,
        c.util, nullif(c.refs // 4294967296, 0) AS job_ref,
        nullif(c.refs % 4294967296, 0) AS pod_ref, c.date
    FROM (
        SELECT *, CAST(epoch_ms(s_ms) AS DATE) AS date
        FROM (SELECT *, lead(s_ms) OVER (PARTITION BY h ORDER BY s_ms) AS next_ms FROM raw)
        WHERE next_ms IS DISTINCT FROM s_ms
    ) AS c
    SEMI JOIN _build_open AS o ON c.h = o.h AND c.date = o.date
),
gpu_holds AS (
    SELECT u.h, g.s_ms, g.e_ms
    FROM allocation_hold_spans AS g
    JOIN _build_units AS u
        ON g.via = 'gpu' AND g.datacentre = u.datacentre AND g.cluster = u.cluster
        AND g.ref = u.gpu_uuid
),
held_refs AS (
    SELECT g.via, r.id, g.s_ms, g.e_ms
    FROM ref_holds AS g
    JOIN _build_refs AS r ON r.dcc = g.dcc AND r.name = g.ref
),
smp AS (
    SELECT
        c.h,
        c.date,
        CAST(NULL AS VARCHAR) AS allocation_id,
        c.s_ms,
        c.e_ms,
        c.util,
        g.h IS NOT NULL OR j.id IS NOT NULL OR d.id IS NOT NULL AS held
    FROM cov AS c
    LEFT JOIN gpu_holds AS g ON g.h = c.h AND c.s_ms >= g.s_ms AND c.s_ms < g.e_ms
    LEFT JOIN held_refs AS j
        ON j.via = 'job' AND j.id = c.job_ref AND c.s_ms >= j.s_ms AND c.s_ms < j.e_ms
    LEFT JOIN held_refs AS d
        ON d.via = 'pod' AND d.id = c.pod_ref AND c.s_ms >= d.s_ms AND c.s_ms < d.e_ms
),
alloc_gpus AS (
    SELECT u.h, a.allocation_id, a.s_ms, a.e_ms
    FROM (
        SELECT datacentre, cluster, allocation_id, unnest(gpu_uuids) AS ref, s_ms, e_ms
        FROM allocation_spans
        WHERE gpu_uuids IS NOT NULL
    ) AS a
    JOIN _build_units AS u
        ON a.datacentre = u.datacentre AND a.cluster = u.cluster AND a.ref = u.gpu_uuid
),
alloc_ref_ids AS (
    SELECT a.dcc, a.allocation_id, j.id AS job_ref, i.id AS alloc_ref, a.s_ms, a.e_ms
    FROM alloc_refs AS a
    LEFT JOIN _build_refs AS j ON j.dcc = a.dcc AND j.name = a.job_id
    LEFT JOIN _build_refs AS i ON i.dcc = a.dcc AND i.name = a.allocation_id
),
in_alloc AS (
    SELECT
        c.h, c.date, a.allocation_id,
        greatest(c.s_ms, a.s_ms) AS s_ms, least(c.e_ms, a.e_ms) AS e_ms, c.util
    FROM cov AS c
    JOIN alloc_gpus AS a ON a.h = c.h AND c.s_ms < a.e_ms AND c.e_ms > a.s_ms
    UNION ALL
    SELECT
        c.h, c.date, a.allocation_id,
        greatest(c.s_ms, a.s_ms), least(c.e_ms, a.e_ms), c.util
    FROM cov AS c
    JOIN alloc_ref_ids AS a
        ON a.dcc = c.dcc AND c.s_ms < a.e_ms AND c.e_ms > a.s_ms
        AND (c.job_ref = a.job_ref OR c.pod_ref = a.alloc_ref OR c.pod_ref = a.job_ref)
),
pieces AS (
    SELECT *, true AS whole FROM smp
    UNION ALL BY NAME
    SELECT *, false AS whole, false AS held FROM in_alloc
),
binned AS (
    /*bin_sums
        rows: pieces
        keys: h, date, allocation_id, bin_ms
    */
)
SELECT
    u.datacentre,
    b.date,
    u.cluster,
    u.gpu_uuid,
    b.allocation_id,
    b.bin_ms,
    b.samples,
    b.cov_ms,
    b.unknown_ms,
    b.busy_ms,
    b.held_ms,
    b.held_busy_ms,
    b.util_min,
    b.util_max,
    b.first_ms,
    b.last_ms,
    b.last_e_ms
FROM binned AS b
JOIN _build_units AS u ON u.h = b.h;
