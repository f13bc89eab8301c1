-- ops_loads: one row per record kind with the rows landed, rows rejected and the newest write (epoch ms) in the lake's load log (a load's `rejected` repeats on each of its file rows: counted once per load); inputs: _loads
SELECT kind, sum(landed) AS landed, sum(rejected) AS rejected, max(last_ms) AS last_write_ms
FROM (
    SELECT load_id, kind, sum("rows") AS landed, max(rejected) AS rejected,
        max(epoch_ms(written_at)) AS last_ms
    FROM _loads
    GROUP BY load_id, kind
)
GROUP BY kind
ORDER BY kind;
