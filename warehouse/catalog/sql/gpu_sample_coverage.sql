-- gpu_sample_coverage: one row per GPU sample key (datacentre, cluster, gpu_uuid, ts) covering [s_ms, e_ms) = [ts, ts + min(interval_s, next ts of the same GPU - ts)) in epoch ms (docs/semantics.md#coverage); inputs: raw_gpu_samples
-- The rule, dedup included, is coverage.sql's.
CREATE OR REPLACE VIEW gpu_sample_coverage AS
/*coverage
    rows: raw_gpu_samples
    keys: datacentre, cluster, node, gpu_uuid
    values: util, pod, job_id, source
    unit: datacentre, cluster, gpu_uuid
*/;
