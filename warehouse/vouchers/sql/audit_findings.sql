-- audit findings: one row per (claim, finding type) over every claim in claim_attribution (docs/audit.md#findings, nine types), with CNY at stake and evidence as JSON text; inputs: claim_attribution, claim_allocations; params: $over_tol, $min_tel, $idle_eff, $price_factor
WITH
ca AS (SELECT * FROM claim_attribution),
over_claim AS (
    SELECT
        'OVER_CLAIM' AS finding, claim_id,
        subsidy_cny * (claimed_gpu_hours - metered_gpu_h) / claimed_gpu_hours AS cny,
        to_json(struct_pack(claimed_gpu_hours, metered_gpu_h, allocation_ids := attributed_allocation_ids)) AS evidence
    FROM ca
    WHERE claimed_gpu_hours > metered_gpu_h * (1 + $over_tol) + 1e-9
),
no_telemetry AS (
    SELECT
        'NO_TELEMETRY', claim_id,
        subsidy_cny * (1 - coalesce(telemetry_share, 0)),
        to_json(struct_pack(metered_gpu_h, covered_gpu_h, telemetry_share, allocation_ids := attributed_allocation_ids))
    FROM ca
    WHERE metered_gpu_h > 0 AND coalesce(telemetry_share, 0) < $min_tel
),
idle AS (
    SELECT
        'IDLE_SUBSIDISED', claim_id,
        subsidy_cny * (1 - efficiency),
        to_json(struct_pack(covered_gpu_h, busy_gpu_h, efficiency, allocation_ids := attributed_allocation_ids))
    FROM ca
    WHERE metered_gpu_h > 0 AND telemetry_share >= $min_tel AND efficiency < $idle_eff
),
coverage AS (
    SELECT
        'COVERAGE_EXCEEDED', claim_id,
        subsidy_cny - max_coverage * invoice_cny,
        to_json(struct_pack(subsidy_cny, invoice_cny, coverage, max_coverage, allocation_ids := attributed_allocation_ids))
    FROM ca
    WHERE round(subsidy_cny - max_coverage * invoice_cny, 2) > 0
),
-- the same allocation GPU-hours in two claims: the later submitted claim carries the finding
pairs AS (
    SELECT
        x.claim_id,
        y.claim_id AS other_claim_id,
        cy.voucher_id AS other_voucher_id,
        cy.programme_id AS other_programme_id,
        x.allocation_id,
        x.gpu_count * (least(x.e_ms, y.e_ms) - greatest(x.s_ms, y.s_ms)) / 3600000.0 AS h
    FROM claim_allocations AS x
    JOIN claim_allocations AS y
        ON y.datacentre = x.datacentre AND y.cluster = x.cluster
        AND y.allocation_id = x.allocation_id AND y.claim_id <> x.claim_id
        AND y.s_ms < x.e_ms AND x.s_ms < y.e_ms
    JOIN ca AS cx ON cx.claim_id = x.claim_id
    JOIN ca AS cy ON cy.claim_id = y.claim_id
    WHERE cy.submitted_at < cx.submitted_at
        OR (cy.submitted_at = cx.submitted_at AND cy.claim_id < cx.claim_id)
),
double_claim AS (
    SELECT
        'DOUBLE_CLAIM', p.claim_id,
        c.subsidy_cny * least(sum(p.h), c.metered_gpu_h) / c.metered_gpu_h,
        to_json(struct_pack(
            double_gpu_h := least(sum(p.h), c.metered_gpu_h),
            c.metered_gpu_h,
            other_claim_ids := list(DISTINCT p.other_claim_id ORDER BY p.other_claim_id),
            other_voucher_ids := list(DISTINCT p.other_voucher_id ORDER BY p.other_voucher_id),
            other_programme_ids := list(DISTINCT p.other_programme_id ORDER BY p.other_programme_id),
            allocation_ids := list(DISTINCT p.allocation_id ORDER BY p.allocation_id)
        ))
    FROM pairs AS p
    JOIN ca AS c USING (claim_id)
    GROUP BY p.claim_id, c.subsidy_cny, c.metered_gpu_h
),
cum AS (
    SELECT
        *,
        sum(subsidy_cny) OVER (
            PARTITION BY voucher_id ORDER BY submitted_at, claim_id ROWS UNBOUNDED PRECEDING
        ) AS cum_subsidy,
        coalesce(list(claim_id) OVER (
            PARTITION BY voucher_id ORDER BY submitted_at, claim_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ), []) AS earlier
    FROM ca
),
overspent AS (
    SELECT
        'VOUCHER_OVERSPENT', claim_id,
        least(subsidy_cny, cum_subsidy - face_value_cny),
        to_json(struct_pack(face_value_cny, cum_subsidy_cny := cum_subsidy, subsidy_cny,
            earlier_claim_ids := earlier, allocation_ids := attributed_allocation_ids))
    FROM cum
    WHERE round(cum_subsidy - face_value_cny, 2) > 0
),
validity AS (
    SELECT
        *,
        greatest(issued_at, valid_from) AS lo,
        least(expires_at, valid_to) AS hi,
        epoch_ms(period_end) - epoch_ms(period_start) AS len_ms
    FROM ca
),
out_of_validity AS (
    SELECT
        'OUT_OF_VALIDITY', claim_id,
        subsidy_cny * outside_ms / len_ms,
        to_json(struct_pack(period_start, period_end, valid_from := lo, valid_to := hi,
            outside_share := outside_ms / len_ms, allocation_ids := attributed_allocation_ids))
    FROM (
        SELECT
            *,
            len_ms - greatest(0, epoch_ms(least(period_end, hi)) - epoch_ms(greatest(period_start, lo)))
                AS outside_ms
        FROM validity
    )
    WHERE outside_ms > 0
),
ineligible AS (
    SELECT
        'INELIGIBLE', claim_id,
        subsidy_cny,
        to_json(struct_pack(tenant_type, eligible_tenant_types, datacentre, eligible_datacentres,
            allocation_ids := attributed_allocation_ids))
    FROM ca
    WHERE NOT list_contains(eligible_tenant_types, tenant_type)
        OR (coalesce(len(eligible_datacentres), 0) > 0
            AND NOT list_contains(eligible_datacentres, datacentre))
),
priced AS (
    SELECT
        *,
        median(unit_price_cny) OVER (PARTITION BY datacentre) AS market_median,
        least(
            coalesce(price_cap_cny_per_gpu_hour, 'infinity'::DOUBLE),
            $price_factor * median(unit_price_cny) OVER (PARTITION BY datacentre)
        ) AS price_limit
    FROM ca
),
price AS (
    SELECT
        'PRICE_ANOMALY', claim_id,
        subsidy_cny * (unit_price_cny - price_limit) / unit_price_cny,
        to_json(struct_pack(unit_price_cny, price_cap_cny_per_gpu_hour, market_median, price_limit,
            allocation_ids := attributed_allocation_ids))
    FROM priced
    WHERE round(unit_price_cny - price_limit, 2) > 0
),
found AS (
    SELECT * FROM over_claim
    UNION ALL SELECT * FROM no_telemetry
    UNION ALL SELECT * FROM idle
    UNION ALL SELECT * FROM coverage
    UNION ALL SELECT * FROM double_claim
    UNION ALL SELECT * FROM overspent
    UNION ALL SELECT * FROM out_of_validity
    UNION ALL SELECT * FROM ineligible
    UNION ALL SELECT * FROM price
)
SELECT
    f.finding,
    f.claim_id,
    c.voucher_id,
    c.programme_id,
    c.tenant_id,
    c.datacentre,
    c.month,
    round(f.cny, 2) AS cny_at_stake,
    CAST(f.evidence AS VARCHAR) AS evidence
FROM found AS f
JOIN ca AS c USING (claim_id)
ORDER BY f.claim_id, f.finding;
