-- coverage (a template, filled in by load_sql where a SQL file uses it; docs/semantics.md#coverage): one row per record key of the relation `rows` (with ts, interval_s, _version, _file, _row) with its `keys` (the key less ts), s_ms, e_ms and `values`, covering [s_ms, e_ms) = [ts, ts + min(interval_s, next ts of the same `unit` - ts)) in epoch ms; slots: rows, keys, values, unit
-- Dedup and coverage in one sort: ordered by (ts, _version, _file, _row), the last copy of each ts
-- is the one the deduplicated view keeps (greatest file, then row) and its lead() is the next ts.
SELECT
    /*keys*/,
    s_ms,
    s_ms + least(iv_ms, coalesce(next_ms - s_ms, iv_ms)) AS e_ms,
    /*values*/
FROM (
    SELECT
        /*keys*/, /*values*/, s_ms,
        CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms,
        lead(s_ms) OVER (PARTITION BY /*unit*/ ORDER BY s_ms, _version, _file, _row)
            AS next_ms
    FROM (SELECT *, epoch_ms(ts) AS s_ms FROM /*rows*/)
)
WHERE next_ms IS DISTINCT FROM s_ms;
