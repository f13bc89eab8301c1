-- ops_loads: one row per record kind: rows landed, rows rejected and the newest write (epoch ms), from the last commit of every load; inputs: _loads
SELECT kind, sum("rows") AS landed, sum(rejected) AS rejected, max(last_ms) AS last_write_ms
FROM (
    SELECT kind, "rows", rejected, epoch_ms(written_at) AS last_ms
    FROM _loads
    WHERE kind IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY table_name, load_id ORDER BY version DESC) = 1
)
GROUP BY kind
ORDER BY kind;
