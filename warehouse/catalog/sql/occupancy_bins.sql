-- occupancy_bins: the 15-minute occupancy bins of the whole lake: stored rollup rows for the partitions whose occupancy rollup is fresh (built from exactly the raw rows the lake has now), live rows computed from raw snapshots for every other partition; the same columns as occupancy_bins_live; inputs: occupancy_bins_fresh, occupancy_bins_live
CREATE OR REPLACE VIEW occupancy_bins AS
SELECT * FROM occupancy_bins_fresh
UNION ALL
SELECT * FROM occupancy_bins_live;
