-- statement_allocation_samples: covered and busy GPU-hours per (claim, allocation) from every GPU sample under the allocation (claim_sample_pieces.sql: by GPU uuid when it lists its GPUs, else by job id / pod name), clipped to the claimed span, the sums attribution_samples.sql adds up per claim; inputs: claim_allocations, gpu_sample_coverage, mine (the statement's claim ids)
WITH
ca AS (
    SELECT claim_allocations.* FROM claim_allocations JOIN mine USING (claim_id)
),
pieces AS (
    /*claim_sample_pieces
        allocations: ca
    */
)
SELECT
    claim_id,
    allocation_id,
    sum((hi - lo) / 3600000.0) AS covered_gpu_h,
    coalesce(sum(util * ((hi - lo) / 3600000.0)), 0) AS busy_gpu_h
FROM pieces
GROUP BY claim_id, allocation_id
