-- attribution: one row per claim (current version) with its programme, voucher and tenant, metered GPU-hours (allocations), telemetry-covered and busy GPU-hours (GPU samples under those allocations, clipped to allocation and claim period) and the local month of period_start; inputs: claims, vouchers, programmes, tenants, claim_allocations, gpu_bins or gpu_sample_coverage; params: $tz
CREATE OR REPLACE TEMP TABLE claim_attribution AS
WITH
-- GPU samples under each claimed allocation, clipped to the allocation span and the claim
-- period: covered and busy GPU-hours per claim, from the allocations' 15-minute bins
-- (attribution_bins.sql) or, where a claim period bound is not on a bin edge, from every
-- sample (attribution_samples.sql); attribution.py inserts one of them here
smp AS (
    /*claim_samples*/
),
alloc AS (
    SELECT
        claim_id,
        sum(gpu_h) AS metered_gpu_h,
        list(DISTINCT allocation_id ORDER BY allocation_id) AS attributed_allocation_ids
    FROM claim_allocations
    GROUP BY claim_id
)
SELECT
    c.*,
    strftime(timezone($tz, c.period_start), '%Y-%m') AS month,
    v.programme_id,
    v.face_value_cny,
    v.issued_at,
    v.expires_at,
    p.max_coverage,
    p.valid_from,
    p.valid_to,
    p.eligible_tenant_types,
    p.eligible_datacentres,
    p.price_cap_cny_per_gpu_hour,
    t.tenant_type,
    t.region AS tenant_region,
    coalesce(a.metered_gpu_h, 0) AS metered_gpu_h,
    coalesce(s.covered_gpu_h, 0) AS covered_gpu_h,
    coalesce(s.busy_gpu_h, 0) AS busy_gpu_h,
    coalesce(a.attributed_allocation_ids, []) AS attributed_allocation_ids,
    c.subsidy_cny / nullif(a.metered_gpu_h, 0) AS subsidy_per_metered_gpu_h,
    c.subsidy_cny / nullif(s.busy_gpu_h, 0) AS subsidy_per_busy_gpu_h,
    c.subsidy_cny / nullif(c.invoice_cny, 0) AS coverage,
    coalesce(s.covered_gpu_h, 0) / nullif(a.metered_gpu_h, 0) AS telemetry_share,
    s.busy_gpu_h / nullif(s.covered_gpu_h, 0) AS efficiency
FROM claims AS c
JOIN vouchers AS v USING (voucher_id)
JOIN programmes AS p ON p.programme_id = v.programme_id
JOIN tenants AS t ON t.tenant_id = c.tenant_id
LEFT JOIN alloc AS a ON a.claim_id = c.claim_id
LEFT JOIN smp AS s ON s.claim_id = c.claim_id;
