-- allocation_spans: one row per started allocation (its latest event), held over [s_ms, e_ms) = [start, end, or the cluster's horizon while running), never past now(); inputs: allocations_current, cluster_horizon
CREATE OR REPLACE VIEW allocation_spans AS
SELECT *
FROM (
    SELECT
        a.datacentre,
        a.cluster,
        a.allocation_id,
        a.tenant_id,
        a.job_id,
        a.gpu_count,
        a.gpu_uuids,
        a.state,
        a."end" IS NULL AS running,
        epoch_ms(a."start") AS s_ms,
        least(coalesce(epoch_ms(a."end"), h.horizon_ms), epoch_ms(now())) AS e_ms
    FROM allocations_current AS a
    LEFT JOIN cluster_horizon AS h USING (datacentre, cluster)
    WHERE a."start" IS NOT NULL
)
WHERE e_ms > s_ms;
