-- _loads: one row per load commit (table version) of every lake table, from the Delta history; inputs: _commits
CREATE OR REPLACE VIEW _loads AS
SELECT
    json_extract_string(info, '$."gpuledger.load_id"') AS load_id,
    json_extract_string(info, '$."gpuledger.origin"') AS origin,
    json_extract_string(info, '$."gpuledger.kind"') AS kind,
    table_name,
    version,
    CAST(json_extract_string(info, '$."gpuledger.rows"') AS BIGINT) AS "rows",
    CAST(json_extract_string(info, '$."gpuledger.rejected"') AS BIGINT) AS rejected,
    commit_ts AS written_at,
    CAST(json_extract_string(info, '$."gpuledger.offsets"') AS JSON) AS offsets,
    operation
FROM _commits
WHERE json_exists(info, '$."gpuledger.load_id"');
