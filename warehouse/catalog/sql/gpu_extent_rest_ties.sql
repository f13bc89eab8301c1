-- the GPUs of _gpu_extent_rest whose last instant with a known coverage end is held by more than one raw row (copies): their end of coverage is the dedup winner's among those rows (greatest _version, then _file, _row), as gpu_extent_rest.sql defines it; input: _raw_gpu_samples_rest_numbered
UPDATE _gpu_extent_rest AS x
SET last_e_ms = w.last_e_ms
FROM (
    SELECT
        r.datacentre,
        r.cluster,
        r.gpu_uuid,
        arg_max(r.e_ms, (r.s_ms, r._version, r._file, r._row)) AS last_e_ms
    FROM (
        SELECT
            datacentre, cluster, gpu_uuid, _version, _file, _row, epoch_ms(ts) AS s_ms,
            epoch_ms(ts) + CAST(round(interval_s * 1000) AS BIGINT) AS e_ms
        FROM _raw_gpu_samples_rest_numbered
    ) AS r
    JOIN _gpu_extent_rest AS t
        ON r.datacentre IS NOT DISTINCT FROM t.datacentre
        AND r.cluster IS NOT DISTINCT FROM t.cluster
        AND r.gpu_uuid IS NOT DISTINCT FROM t.gpu_uuid
        AND r.s_ms = t.top2[1]
    WHERE len(t.top2) = 2 AND t.top2[1] = t.top2[2]
    GROUP BY r.datacentre, r.cluster, r.gpu_uuid
) AS w
WHERE x.datacentre IS NOT DISTINCT FROM w.datacentre
    AND x.cluster IS NOT DISTINCT FROM w.cluster
    AND x.gpu_uuid IS NOT DISTINCT FROM w.gpu_uuid;
