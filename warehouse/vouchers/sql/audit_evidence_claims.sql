-- audit evidence, claims: one row per claim named in $ids (the audit month's claims and every claim a finding cites) with its record and its attributed figures; inputs: claim_attribution; params: $ids (claim ids)
SELECT
    claim_id,
    month,
    voucher_id,
    programme_id,
    tenant_id,
    datacentre,
    period_start,
    period_end,
    allocation_ids,
    claimed_gpu_hours,
    unit_price_cny,
    invoice_cny,
    subsidy_cny,
    submitted_at,
    attributed_allocation_ids,
    metered_gpu_h,
    covered_gpu_h,
    busy_gpu_h,
    telemetry_share,
    efficiency,
    coverage
FROM claim_attribution
WHERE list_contains($ids, claim_id)
ORDER BY claim_id
