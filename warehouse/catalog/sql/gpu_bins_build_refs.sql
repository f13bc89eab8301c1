-- gpu_bins_build_refs: _build_refs, each name that gpu_bins_build can match a GPU sample's job_id or pod to (the ref of a job or pod hold; the job_id and the allocation_id of an allocation that lists no GPUs) per cluster of _build_units (dcc), numbered (id), so that the builder's samples carry numbers through the coverage window instead of the strings: two numbers are equal exactly when cluster and name are (docs/rollups.md#building); inputs: _build_units, allocation_hold_spans, allocation_spans
CREATE OR REPLACE TEMP TABLE _build_refs AS
WITH clusters AS (
    SELECT DISTINCT dcc, datacentre, cluster FROM _build_units
),
allocs AS (
    SELECT k.dcc, a.job_id, a.allocation_id
    FROM allocation_spans AS a
    JOIN clusters AS k ON a.datacentre = k.datacentre AND a.cluster = k.cluster
    WHERE a.gpu_uuids IS NULL
)
SELECT dcc, name, row_number() OVER (ORDER BY dcc, name) AS id
FROM (
    SELECT k.dcc, g.ref AS name
    FROM allocation_hold_spans AS g
    JOIN clusters AS k ON g.datacentre = k.datacentre AND g.cluster = k.cluster
    WHERE g.via IN ('job', 'pod')
    UNION
    SELECT dcc, job_id FROM allocs
    UNION
    SELECT dcc, allocation_id FROM allocs
)
WHERE name IS NOT NULL;
