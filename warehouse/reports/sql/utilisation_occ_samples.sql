-- utilisation_occ_samples: the utilisation report's per-(period, scope) occupancy figures from every snapshot's coverage clipped to the period (the raw path); inputs: periods (the report's CTE), occupancy_coverage
SELECT
    p.period,
    o.datacentre,
    o.cluster,
    o.scope,
    sum(o.gpus_total * (least(o.e_ms, p.p1) - greatest(o.s_ms, p.p0))) / 3600000.0 AS cap_h,
    sum(o.gpus_allocated * (least(o.e_ms, p.p1) - greatest(o.s_ms, p.p0))) / 3600000.0 AS alloc_h,
    sum(least(o.e_ms, p.p1) - greatest(o.s_ms, p.p0)) / 3600000.0 AS cov_h
FROM occupancy_coverage AS o
JOIN periods AS p ON o.s_ms < p.p1 AND o.e_ms > p.p0
GROUP BY ALL
