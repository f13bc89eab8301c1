-- inventory_coverage: one row per deduplicated inventory record, valid over [s_ms, e_ms) = [valid_from, min(valid_to or now(), next valid_from of the same node)) in epoch ms; inputs: inventory
CREATE OR REPLACE VIEW inventory_coverage AS
SELECT *
FROM (
    SELECT
        datacentre,
        cluster,
        node,
        s_ms,
        least(
            coalesce(epoch_ms(valid_to), epoch_ms(now())),
            coalesce(lead(s_ms) OVER w, epoch_ms(now())),
            epoch_ms(now())
        ) AS e_ms,
        gpu_model,
        gpu_count,
        source
    FROM (SELECT *, epoch_ms(valid_from) AS s_ms FROM inventory)
    WINDOW w AS (PARTITION BY datacentre, cluster, node ORDER BY s_ms)
)
WHERE e_ms > s_ms;
