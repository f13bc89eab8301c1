-- gpu_bins: the 15-minute GPU-sample bins of the whole lake: stored rollup rows for the partitions whose rollup is fresh (built from exactly the raw rows and allocation holds the lake has now), live rows computed from raw samples for every other partition; the same columns as gpu_bins_live; inputs: gpu_bins_fresh, gpu_bins_live
CREATE OR REPLACE VIEW gpu_bins AS
SELECT * FROM gpu_bins_fresh
UNION ALL
SELECT * FROM gpu_bins_live;
