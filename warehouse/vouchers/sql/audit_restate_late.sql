-- audit restatement, late records: per claim named in $claims, the rows that arrived after the compared snapshot (_version above that table's version) and fall under it: GPU samples on its claimed allocations' GPUs (or job / pod) inside the claimed spans, allocation records of its tenant at its data centre overlapping its period, and new versions of the claim, its voucher, programme and tenant; grouped by (table, _load, _version); inputs: claims, vouchers, claim_allocations, raw_gpu_samples, raw_allocations, restate_raw_<voucher table>; params: $claims, $v_gpu_samples, $v_allocations, $v_claims, $v_vouchers, $v_programmes, $v_tenants
WITH
target AS (
    SELECT claim_id, voucher_id, tenant_id, datacentre, period_start, period_end
    FROM claims
    WHERE list_contains(CAST($claims AS VARCHAR[]), claim_id)
),
spans AS (
    SELECT * FROM claim_allocations WHERE list_contains(CAST($claims AS VARCHAR[]), claim_id)
),
late_samples AS (
    SELECT
        ca.claim_id, 'gpu_samples' AS table_name, r._load, r._version, r.ts AS t
    FROM (SELECT * FROM raw_gpu_samples WHERE _version > $v_gpu_samples) AS r
    JOIN spans AS ca
        ON r.datacentre = ca.datacentre AND r.cluster = ca.cluster
        AND epoch_ms(r.ts) < ca.e_ms
        AND epoch_ms(r.ts) + CAST(round(r.interval_s * 1000) AS BIGINT) > ca.s_ms
        AND (
            list_contains(ca.gpu_uuids, r.gpu_uuid)
            OR (ca.gpu_uuids IS NULL
                AND (r.job_id = ca.job_id OR r.pod = ca.allocation_id OR r.pod = ca.job_id))
        )
),
late_allocations AS (
    SELECT t.claim_id, 'allocations', r._load, r._version, r.event_ts
    FROM (SELECT * FROM raw_allocations WHERE _version > $v_allocations) AS r
    JOIN target AS t
        ON r.datacentre = t.datacentre AND r.tenant_id = t.tenant_id
        AND (r."start" IS NULL OR r."start" < t.period_end)
        AND (r."end" IS NULL OR r."end" > t.period_start)
),
late_claims AS (
    SELECT t.claim_id, 'claims', r._load, r._version, CAST(NULL AS TIMESTAMPTZ)
    FROM target AS t
    JOIN restate_raw_claims AS r ON r.claim_id = t.claim_id AND r._version > $v_claims
),
late_vouchers AS (
    SELECT t.claim_id, 'vouchers', r._load, r._version, CAST(NULL AS TIMESTAMPTZ)
    FROM target AS t
    JOIN restate_raw_vouchers AS r ON r.voucher_id = t.voucher_id AND r._version > $v_vouchers
),
late_programmes AS (
    SELECT t.claim_id, 'programmes', r._load, r._version, CAST(NULL AS TIMESTAMPTZ)
    FROM target AS t
    JOIN vouchers AS v ON v.voucher_id = t.voucher_id
    JOIN restate_raw_programmes AS r
        ON r.programme_id = v.programme_id AND r._version > $v_programmes
),
late_tenants AS (
    SELECT t.claim_id, 'tenants', r._load, r._version, CAST(NULL AS TIMESTAMPTZ)
    FROM target AS t
    JOIN restate_raw_tenants AS r ON r.tenant_id = t.tenant_id AND r._version > $v_tenants
)
SELECT
    claim_id,
    table_name AS "table",
    _load,
    _version,
    count(*) AS "rows",
    min(t) AS first_ts,
    max(t) AS last_ts
FROM (
    SELECT * FROM late_samples
    UNION ALL SELECT * FROM late_allocations
    UNION ALL SELECT * FROM late_claims
    UNION ALL SELECT * FROM late_vouchers
    UNION ALL SELECT * FROM late_programmes
    UNION ALL SELECT * FROM late_tenants
)
GROUP BY claim_id, table_name, _load, _version
ORDER BY claim_id, table_name, _version, _load
