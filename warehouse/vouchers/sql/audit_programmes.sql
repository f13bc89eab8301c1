-- audit programme summary: one row per programme with a claim in local month $m or a voucher issued in it: vouchers issued and redeemed, subsidy paid, metered and busy GPU-hours, subsidy per busy GPU-hour; inputs: programmes, vouchers, claim_attribution; params: $m (YYYY-MM), $p (programme id or NULL), $tz
WITH
month_claims AS (
    SELECT * FROM claim_attribution WHERE month = $m
),
issued AS (
    SELECT programme_id, count(*) AS vouchers_issued
    FROM vouchers
    WHERE strftime(timezone($tz, issued_at), '%Y-%m') = $m
    GROUP BY programme_id
),
claimed AS (
    SELECT
        programme_id,
        count(*) AS claims,
        count(DISTINCT voucher_id) AS vouchers_redeemed,
        sum(subsidy_cny) AS subsidy_paid_cny,
        sum(invoice_cny) AS invoiced_cny,
        sum(claimed_gpu_hours) AS claimed_gpu_h,
        sum(metered_gpu_h) AS metered_gpu_h,
        sum(busy_gpu_h) AS busy_gpu_h
    FROM month_claims
    GROUP BY programme_id
)
SELECT
    p.programme_id,
    p.issuer,
    p.region,
    coalesce(i.vouchers_issued, 0) AS vouchers_issued,
    coalesce(c.vouchers_redeemed, 0) AS vouchers_redeemed,
    coalesce(c.claims, 0) AS claims,
    round(coalesce(c.subsidy_paid_cny, 0), 2) AS subsidy_paid_cny,
    round(coalesce(c.invoiced_cny, 0), 2) AS invoiced_cny,
    coalesce(c.claimed_gpu_h, 0) AS claimed_gpu_h,
    coalesce(c.metered_gpu_h, 0) AS metered_gpu_h,
    coalesce(c.busy_gpu_h, 0) AS busy_gpu_h,
    c.subsidy_paid_cny / nullif(c.busy_gpu_h, 0) AS subsidy_per_busy_gpu_h
FROM programmes AS p
LEFT JOIN issued AS i USING (programme_id)
LEFT JOIN claimed AS c USING (programme_id)
WHERE (i.programme_id IS NOT NULL OR c.programme_id IS NOT NULL)
    AND ($p IS NULL OR p.programme_id = $p)
ORDER BY p.programme_id;
