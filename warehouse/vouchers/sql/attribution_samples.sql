-- attribution_samples: covered and busy GPU-hours per claim from every GPU sample under its claimed allocations (claim_sample_pieces.sql: by GPU uuid when the allocation lists its GPUs, else by job id / pod name), each sample's coverage clipped to the claimed allocation span (the raw path: exact for any claim period); inputs: claim_allocations, gpu_sample_coverage
WITH
pieces AS (
    /*claim_sample_pieces
        allocations: claim_allocations
    */
)
SELECT
    claim_id,
    sum((hi - lo) / 3600000.0) AS covered_gpu_h,
    coalesce(sum(util * ((hi - lo) / 3600000.0)), 0) AS busy_gpu_h
FROM pieces
GROUP BY claim_id
