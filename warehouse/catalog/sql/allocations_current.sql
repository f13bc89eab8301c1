-- allocations_current: one row per (datacentre, cluster, allocation_id), its latest event (greatest event_ts); inputs: allocations
CREATE OR REPLACE VIEW allocations_current AS
SELECT *
FROM allocations
QUALIFY row_number() OVER (PARTITION BY datacentre, cluster, allocation_id ORDER BY event_ts DESC) = 1;
