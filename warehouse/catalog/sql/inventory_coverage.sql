-- inventory_coverage: one row per inventory key (datacentre, cluster, node, valid_from), valid over [s_ms, e_ms) = [valid_from, min(valid_to, next valid_from of the same node, now())) in epoch ms; inputs: raw_inventory
-- Dedup in the same sort: ordered by (valid_from, _version, _file, _row), the last copy of each
-- valid_from is the one the inventory view keeps and its lead() is the node's next record.
CREATE OR REPLACE VIEW inventory_coverage AS
SELECT *
FROM (
    SELECT
        datacentre,
        cluster,
        node,
        s_ms,
        least(coalesce(to_ms, now_ms), coalesce(next_ms, now_ms), now_ms) AS e_ms,
        gpu_model,
        gpu_count,
        source
    FROM (
        SELECT
            datacentre, cluster, node, gpu_model, gpu_count, source, s_ms,
            epoch_ms(valid_to) AS to_ms,
            epoch_ms(now()) AS now_ms,
            lead(s_ms) OVER (PARTITION BY datacentre, cluster, node ORDER BY s_ms, _version, _file, _row)
                AS next_ms
        FROM (SELECT *, epoch_ms(valid_from) AS s_ms FROM raw_inventory)
    )
    WHERE next_ms IS DISTINCT FROM s_ms
)
WHERE e_ms > s_ms;
