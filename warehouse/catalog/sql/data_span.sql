-- data_span: one row, the first and last instant (TIMESTAMPTZ) of telemetry and allocation events in the lake (inventory validity only when there is nothing else), never after now(); the default report window; inputs: raw_occupancy, gpu_extent, raw_allocations, raw_inventory
CREATE OR REPLACE VIEW data_span AS
WITH seen AS (
    SELECT min(ts) AS lo, max(ts) AS hi FROM raw_occupancy
    UNION ALL
    SELECT make_timestamptz(min(first_ms) * 1000), make_timestamptz(max(last_ms) * 1000) FROM gpu_extent
    UNION ALL
    SELECT least(min(event_ts), min("start")), greatest(max(event_ts), max("start"), max("end"))
    FROM raw_allocations
),
inv AS (
    SELECT
        min(valid_from) AS lo,
        CASE WHEN bool_or(valid_to IS NULL) THEN now() ELSE max(valid_to) END AS hi
    FROM raw_inventory
),
span AS (
    SELECT
        coalesce((SELECT min(lo) FROM seen), (SELECT lo FROM inv)) AS lo,
        coalesce((SELECT max(hi) FROM seen), (SELECT hi FROM inv)) AS hi
)
SELECT lo, CASE WHEN hi > now() THEN now() ELSE hi END AS hi
FROM span;
