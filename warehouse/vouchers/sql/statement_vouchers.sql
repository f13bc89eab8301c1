-- statement_vouchers: one row per voucher on a tenant's statement for one local month (the tenant's vouchers valid in the month, and every voucher its claims of the month name), with the subsidy claimed on it in the month and up to the month's end (claims by local month of period_start); inputs: vouchers, claim_attribution; params: $tenant, $month, $tz
WITH
named AS (
    SELECT DISTINCT voucher_id FROM claim_attribution WHERE tenant_id = $tenant AND month = $month
),
held AS (
    SELECT voucher_id
    FROM vouchers
    WHERE tenant_id = $tenant
        AND strftime(timezone($tz, issued_at), '%Y-%m') <= $month
        AND strftime(timezone($tz, expires_at), '%Y-%m') >= $month
),
spent AS (
    SELECT
        voucher_id,
        sum(subsidy_cny) FILTER (WHERE month = $month AND tenant_id = $tenant) AS month_cny,
        sum(subsidy_cny) FILTER (WHERE month <= $month) AS to_date_cny
    FROM claim_attribution
    GROUP BY voucher_id
)
SELECT
    v.voucher_id,
    v.programme_id,
    v.tenant_id,
    v.face_value_cny,
    v.issued_at,
    v.expires_at,
    coalesce(s.month_cny, 0) AS subsidy_claimed_cny,
    coalesce(s.to_date_cny, 0) AS subsidy_to_date_cny
FROM vouchers AS v
LEFT JOIN spent AS s USING (voucher_id)
WHERE v.voucher_id IN (SELECT voucher_id FROM named UNION SELECT voucher_id FROM held)
ORDER BY v.voucher_id;
