-- utilisation_gpu_samples: the utilisation report's per-(period, GPU) sample figures from every sample's coverage clipped to the period (the raw path: exact for any period bound); held = an allocation of the same cluster holds the GPU, its job or its pod at the sample instant (hold spans are disjoint per key: one match at most); inputs: periods (the report's CTE), gpu_sample_coverage, allocation_hold_spans
WITH
smp_clip AS (
    SELECT
        p.period,
        s.datacentre,
        s.cluster,
        s.gpu_uuid,
        s.util,
        s.s_ms,
        s.job_id,
        s.pod,
        (least(s.e_ms, p.p1) - greatest(s.s_ms, p.p0)) / 3600000.0 AS h
    FROM gpu_sample_coverage AS s
    JOIN periods AS p ON s.s_ms < p.p1 AND s.e_ms > p.p0
),
smp_held AS (
    SELECT
        c.*,
        g.ref IS NOT NULL OR j.ref IS NOT NULL OR d.ref IS NOT NULL AS held
    FROM smp_clip AS c
    LEFT JOIN allocation_hold_spans AS g
        ON g.via = 'gpu' AND g.datacentre = c.datacentre AND g.cluster = c.cluster
        AND g.ref = c.gpu_uuid AND c.s_ms >= g.s_ms AND c.s_ms < g.e_ms
    LEFT JOIN allocation_hold_spans AS j
        ON j.via = 'job' AND j.datacentre = c.datacentre AND j.cluster = c.cluster
        AND j.ref = c.job_id AND c.s_ms >= j.s_ms AND c.s_ms < j.e_ms
    LEFT JOIN allocation_hold_spans AS d
        ON d.via = 'pod' AND d.datacentre = c.datacentre AND d.cluster = c.cluster
        AND d.ref = c.pod AND c.s_ms >= d.s_ms AND c.s_ms < d.e_ms
)
SELECT
    period,
    datacentre,
    cluster,
    gpu_uuid,
    sum(h) AS cov_h,
    sum(util * h) AS busy_h,
    sum(util * h) FILTER (WHERE held) AS busy_alloc_h
FROM smp_held
GROUP BY ALL
