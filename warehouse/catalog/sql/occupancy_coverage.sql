-- occupancy_coverage: one row per occupancy key (datacentre, cluster, scope, ts) covering [s_ms, e_ms) = [ts, ts + min(interval_s, next ts of the same scope - ts)) in epoch ms (docs/semantics.md#coverage); inputs: raw_occupancy
-- The rule, dedup included, is coverage.sql's.
CREATE OR REPLACE VIEW occupancy_coverage AS
/*coverage
    rows: raw_occupancy
    keys: datacentre, cluster, scope
    values: gpus_total, gpus_allocated, gpus_down, source
    unit: datacentre, cluster, scope
*/;
