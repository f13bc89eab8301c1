-- rollup_holds: for each lake partition (datacentre, date) in _rollup_candidates, a fingerprint of what its bins take from allocations: the hold spans and the allocation spans of that data centre clipped to [d0_ms, d1_ms) (the UTC day, or up to the end of its samples' coverage when that is later); a rollup stays fresh only while this fingerprint is the one it was built with; inputs: _rollup_candidates, allocation_hold_spans, allocation_spans
WITH holds AS (
    SELECT
        p.datacentre,
        p.date,
        coalesce(string_agg(
            CAST(to_json(struct_pack(
                c := h.cluster, v := h.via, r := h.ref,
                s := greatest(h.s_ms, p.d0_ms), e := least(h.e_ms, p.d1_ms)
            )) AS VARCHAR),
            ','
            ORDER BY h.cluster, h.via, h.ref, h.s_ms
        ), '') AS h
    FROM _rollup_candidates AS p
    LEFT JOIN allocation_hold_spans AS h
        ON h.datacentre = p.datacentre AND h.s_ms < p.d1_ms AND h.e_ms > p.d0_ms
    GROUP BY p.datacentre, p.date
),
spans AS (
    SELECT
        p.datacentre,
        p.date,
        coalesce(string_agg(
            CAST(to_json(struct_pack(
                c := a.cluster, a := a.allocation_id, g := a.gpu_uuids, j := a.job_id,
                s := greatest(a.s_ms, p.d0_ms), e := least(a.e_ms, p.d1_ms)
            )) AS VARCHAR),
            ','
            ORDER BY a.cluster, a.allocation_id
        ), '') AS a
    FROM _rollup_candidates AS p
    LEFT JOIN allocation_spans AS a
        ON a.datacentre = p.datacentre AND a.s_ms < p.d1_ms AND a.e_ms > p.d0_ms
    GROUP BY p.datacentre, p.date
)
SELECT datacentre, date, md5(h || '|' || a) AS holds_fp
FROM holds
JOIN spans USING (datacentre, date);
