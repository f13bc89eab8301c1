-- effectiveness claims: one row per claim of programme $p with its tenant, region, subsidy, metered GPU-hours, local month and the days from period end to submission; inputs: claim_attribution; params: $p
SELECT
    claim_id,
    tenant_id,
    tenant_region,
    datacentre,
    month,
    subsidy_cny,
    metered_gpu_h,
    (epoch_ms(submitted_at) - epoch_ms(period_end)) / 86400000.0 AS delay_days
FROM claim_attribution
WHERE programme_id = $p
ORDER BY claim_id;
