-- bin_sums (a template, filled in by load_sql where a SQL file uses it; docs/rollups.md#what-a-bin-holds): the mergeable sums of the 15-minute UTC bins of the relation `rows` (pieces of sample coverage [s_ms, e_ms) with util, held, and whole: a whole GPU's sample, not an allocation's part of one), each piece cut at every bin edge it crosses, grouped by `keys` (which name bin_ms, the bin's start), the keys first; slots: rows, keys
SELECT
    /*keys*/,
    count(*) FILTER (WHERE starts) AS samples,
    CAST(sum(ms) AS BIGINT) AS cov_ms,
    CAST(coalesce(sum(ms) FILTER (WHERE util IS NULL), 0) AS BIGINT) AS unknown_ms,
    sum(util * ms) AS busy_ms,
    CAST(coalesce(sum(ms) FILTER (WHERE held), 0) AS BIGINT) AS held_ms,
    sum(util * ms) FILTER (WHERE held) AS held_busy_ms,
    min(util) AS util_min,
    max(util) AS util_max,
    min(s_ms) FILTER (WHERE starts) AS first_ms,
    max(s_ms) FILTER (WHERE starts) AS last_ms,
    arg_max(e_ms, s_ms) FILTER (WHERE starts) AS last_e_ms
FROM (
    SELECT
        *,
        least(e_ms, bin_ms + 900000) - greatest(s_ms, bin_ms) AS ms,
        whole AND s_ms >= bin_ms AS starts
    FROM (
        -- the same bins as range(s_ms // 900000, (e_ms - 1) // 900000 + 1) alone (none for a
        -- piece of no length on an edge), but most pieces lie inside one bin, whose one-element
        -- list is several times cheaper to build than a range
        SELECT
            *,
            unnest(
                CASE
                    WHEN s_ms // 900000 = (e_ms - 1) // 900000 THEN [s_ms // 900000]
                    ELSE range(s_ms // 900000, (e_ms - 1) // 900000 + 1)
                END
            ) * 900000 AS bin_ms
        FROM /*rows*/
    ) AS cut
) AS parts
GROUP BY /*keys*/;
