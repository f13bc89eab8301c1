-- rollup_holds: for each lake partition (datacentre, date) in _rollup_candidates, a fingerprint of the allocation hold spans of that data centre clipped to the UTC day [d0_ms, d1_ms): the held flags of the partition's samples depend on nothing else; a rollup stays fresh only while this fingerprint is the one it was built with; inputs: _rollup_candidates, allocation_hold_spans
SELECT
    p.datacentre,
    p.date,
    md5(coalesce(string_agg(
        CAST(to_json(struct_pack(
            c := h.cluster, v := h.via, r := h.ref,
            s := greatest(h.s_ms, p.d0_ms), e := least(h.e_ms, p.d1_ms)
        )) AS VARCHAR),
        ','
        ORDER BY h.cluster, h.via, h.ref, h.s_ms
    ), '')) AS holds_fp
FROM _rollup_candidates AS p
LEFT JOIN allocation_hold_spans AS h
    ON h.datacentre = p.datacentre AND h.s_ms < p.d1_ms AND h.e_ms > p.d0_ms
GROUP BY p.datacentre, p.date;
