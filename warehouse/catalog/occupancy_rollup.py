"""The occupancy rollup: 15-minute bins per cluster scope, read where fresh, raw rows elsewhere.

The sibling of the GPU-sample rollup (``warehouse.catalog.rollups``; docs/rollups.md): a Delta
table of bins (``occupancy_bins_live.sql`` defines a row) and a manifest with one row per lake
partition (datacentre, UTC date) of the occupancy table. A partition's stored bins are read
only while its raw rows and those of the next day (whose first snapshot ends the coverage of the
day's last one) are what they were built from (``rollups.files_fp``) and only rows of the bins
commit the manifest names. Every other partition is computed live by the same SQL the builder
runs. Occupancy does not depend on allocations, so there is no holds fingerprint.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
from deltalake import DeltaTable

import warehouse.catalog.rollups as rv
from pipeline import lake as lakes
from pipeline.records import KINDS, Kind
from warehouse.catalog.rollup_commit import chunks, commit_bins, manifest_rows
from warehouse.catalog.rollup_parts import OccupancyState, closed_and_stale, with_next_days

OCCUPANCY: Kind = KINDS["occupancy"]

OCC_BIN_COLUMNS: dict[str, str] = {
    "datacentre": "VARCHAR",
    "date": "DATE",
    "cluster": "VARCHAR",
    "scope": "VARCHAR",
    "bin_ms": "BIGINT",
    "snapshots": "BIGINT",
    "cov_ms": "BIGINT",
    "total_ms": "DOUBLE",
    "allocated_ms": "DOUBLE",
    "down_ms": "DOUBLE",
    "first_ms": "BIGINT",
    "last_ms": "BIGINT",
    "last_e_ms": "BIGINT",
}
"""The columns of an occupancy bins row (``occupancy_bins_live.sql``), in order."""


def occupancy_views(
    con: duckdb.DuckDBPyConnection,
    occupancy: DeltaTable | None,
    bins: DeltaTable | None,
    parts: DeltaTable | None,
    enabled: bool,
) -> OccupancyState:
    """``occupancy_bins_fresh``, the live views of every other partition and
    ``occupancy_bins`` (the union); ``enabled=False``: every partition live."""
    from warehouse.catalog.sources import load_sql

    stats = rv.partition_stats(occupancy)
    manifest = rv.read_manifest(con, parts) if enabled else {}
    state = OccupancyState(dict(stats), manifest)
    state.fresh = rv.built_from_files(manifest, stats)
    con.execute(rv.stored_view("occupancy_bins_fresh", bins, state.fresh, OCC_BIN_COLUMNS))
    open_views(con, state.stats, set(state.stats) - set(state.fresh))
    con.execute(load_sql("occupancy_bins"))
    return state


def open_views(
    con: duckdb.DuckDBPyConnection,
    stats: dict[rv.Part, rv.PartStats],
    open_parts: set[rv.Part],
) -> None:
    """``raw_occupancy_open`` (rows of ``open_parts`` and of their next days),
    ``occupancy_coverage_open`` (coverage of ``open_parts``' snapshots) and
    ``occupancy_bins_live``."""
    from warehouse.catalog.sources import load_sql

    needed = with_next_days(open_parts)
    files = [f for p in needed if p in stats for f in stats[p].files]
    raw = rv.typed_raw(files, stats, OCCUPANCY)
    con.execute(f"CREATE OR REPLACE VIEW raw_occupancy_open AS {raw}")
    con.execute(rv.open_coverage("occupancy_coverage", "raw_occupancy", open_parts))
    con.execute(load_sql("occupancy_bins_live"))


def build_occupancy(
    con: duckdb.DuckDBPyConnection,
    state: OccupancyState,
    lake: Path,
    today: dt.date,
    source_version: int,
) -> tuple[int, int, int, int]:
    """Commit the bins of every closed occupancy partition that is not fresh, in chunks (one
    bins commit replacing the chunk's partitions, then its manifest). Returns (partitions
    rebuilt, raw rows read, bins written, commits)."""
    todo = closed_and_stale(state.stats, state.fresh, today)[1]
    paths = rv.rollup_paths(lake)
    done = rows_read = written = commits = 0
    for chunk in chunks(todo, state.stats):
        open_views(con, state.stats, set(chunk))
        bins = paths[rv.OCC_BINS]
        rows, version = commit_bins(
            con, "occupancy_bins_live", "scope", bins, chunk, source_version
        )
        reach = {p: rv.day_ms(p[1])[1] for p in chunk}
        holds = {p: "" for p in chunk}
        manifest = manifest_rows(state.stats, chunk, rows, reach, holds, version, source_version)
        lakes.commit(paths[rv.OCC_PARTS], manifest, load_id="rollup", partition_by=None)
        done += len(chunk)
        rows_read += sum(state.stats[p].rows for p in chunk)
        written += int(rows.num_rows)
        commits += 2
    return done, rows_read, written, commits
