-- allocation_holds: one row per (allocation span, thing it holds): via 'gpu' (a GPU uuid), 'job' (its job_id), 'pod' (a pod named like its allocation_id or job_id); inputs: allocation_spans
CREATE OR REPLACE VIEW allocation_holds AS
SELECT datacentre, cluster, 'gpu' AS via, ref, s_ms, e_ms, allocation_id
FROM (SELECT *, unnest(gpu_uuids) AS ref FROM allocation_spans WHERE gpu_uuids IS NOT NULL)
UNION ALL
SELECT datacentre, cluster, 'job', job_id, s_ms, e_ms, allocation_id
FROM allocation_spans WHERE job_id IS NOT NULL
UNION ALL
SELECT datacentre, cluster, 'pod', allocation_id, s_ms, e_ms, allocation_id
FROM allocation_spans
UNION ALL
SELECT datacentre, cluster, 'pod', job_id, s_ms, e_ms, allocation_id
FROM allocation_spans WHERE job_id IS NOT NULL AND job_id <> allocation_id;
