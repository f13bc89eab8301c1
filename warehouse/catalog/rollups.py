"""The views that serve GPU-sample figures from rollups where they are fresh, raw rows elsewhere.

A rollup (``warehouse.catalog.rollup_build`` builds it) is a Delta table of 15-minute UTC bins per
GPU
(``gpu_bins_live.sql`` defines a row) and a manifest with one row per lake partition
(datacentre, UTC date) it covers. A partition's bins are *fresh*, and read instead of its raw
rows, only while everything they were computed from is unchanged:

- the partition's raw rows and those of the next day (whose first sample ends the coverage of
  the day's last one): compared by a fingerprint of the snapshot's add actions (row count and
  the ``_version`` range of the partition, which a compaction keeps and every write changes);
- the allocation holds of its data centre clipped to that day (``rollup_holds.sql``), which
  decide the held share of each sample;
- the bins rows themselves: the manifest names the bins commit, and only rows stamped with it
  are read.

Any other partition (today's, late or corrected data, changed allocations, a crash between
the bins commit and its manifest) is computed live from raw rows by the same SQL the builder
runs, so the two paths agree by construction. ``gpu_extent`` (first / last sample per GPU)
is taken from the stored bins or raw rows the same way, and feeds the horizon, the data span
and the cluster sources without a scan of every raw row.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from pipeline import lake as lakes
from pipeline.records import KINDS, Kind
from pipeline.sqltext import ident
from warehouse.catalog.rollup_parts import (
    OccupancyState,
    Part,
    PartStats,
    built_from_files,
    day_ms,
    next_day,
    partition_stats,
    parts_values,
    with_next_days,
)
from warehouse.catalog.rollup_parts import lit as _lit

GRAIN_MS = 900_000
"""Bin width: 15 minutes, so every period boundary of a time zone whose offset is a multiple
of 15 minutes (all in use today, Australia/Adelaide's +9:30 and Asia/Kathmandu's +5:45
included) falls on a bin edge."""

BINS = "rollup_gpu_bins"
PARTS = "rollup_gpu_bins_parts"
OCC_BINS = "rollup_occupancy_bins"
OCC_PARTS = "rollup_occupancy_bins_parts"
DAYS = "rollup_gpu_days"
"""Snapshot names (what reports list in their lineage) of the bins tables, their manifests and
the whole days of the GPU bins (``warehouse.catalog.gpu_days``)."""

SAMPLES: Kind = KINDS["gpu_sample"]


def rollup_paths(lake: Path) -> dict[str, Path]:
    names = (BINS, PARTS, OCC_BINS, OCC_PARTS, DAYS)
    assert len(names) == len(lakes.ROLLUP_TABLES)
    return {n: lake / lakes.ROLLUP_DIR / t for n, t in zip(names, lakes.ROLLUP_TABLES, strict=True)}


@dataclass
class RollupState:
    """What the views of one connection decided: raw partition stats, the manifest rows whose
    raw inputs are unchanged (``unchanged``) and those also with unchanged holds (``fresh``)."""

    stats: dict[Part, PartStats]
    manifest: dict[Part, tuple[str, str, int, int]]
    """(files_fp, holds_fp, bins version, reach_ms) of the newest manifest row per partition."""
    unchanged: dict[Part, int] = field(default_factory=dict)
    fresh: dict[Part, int] = field(default_factory=dict)
    days: dict[Part, int] = field(default_factory=dict)
    """The unchanged partitions whose day rows are valid (``warehouse.catalog.gpu_days``)."""
    occupancy: OccupancyState | None = None
    """The occupancy rollup's partitions (``warehouse.catalog.occupancy_rollup``)."""


def typed_raw(files: Sequence[str], stats: Mapping[Part, PartStats], kind: Kind = SAMPLES) -> str:
    from warehouse.catalog.sources import files_source, select_typed

    part_of = {f: dc for (dc, _), s in stats.items() for f in s.files}
    source = files_source([(f, {"datacentre": part_of[f]}) for f in sorted(files)], ["datacentre"])
    return select_typed(kind.duckdb_columns(), source, True)


def _numbered_raw(
    files: Sequence[str], stats: Mapping[Part, PartStats], until: Mapping[str, int] | None = None
) -> str:
    """The builder's reading of ``files``: the rows ``typed_raw`` gives, except that ``_file``
    is the file's position in the sorted list of paths: the same order as the path (all the
    dedup of ``coverage.sql`` and ``gpu_extent.sql`` takes from it), an integer, much cheaper
    to sort on. Partition values (``datacentre``) come from the log, by that position. With
    ``until``, only the rows of those files with ts before that instant (epoch ms), a bound
    the Parquet reader also applies to the files' ts statistics (``_numbered_read``)."""
    from warehouse.catalog.sources import select_typed

    columns = SAMPLES.duckdb_columns()
    if not files:
        return select_typed(columns, None, True)
    part_of = {f: dc for (dc, _), s in stats.items() for f in s.files}
    ordered = sorted(files)
    groups: dict[int | None, list[int]] = {}
    for at, f in enumerate(ordered):
        groups.setdefault((until or {}).get(f), []).append(at)
    reads = [
        _numbered_read(ordered, part_of, at, bound)
        for bound, at in sorted(groups.items(), key=lambda g: g[1][0])
    ]
    cols = [f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in columns]
    cols += ["_version", "_load", "_file", "_row"]
    return f"SELECT {', '.join(cols)} FROM ({' UNION ALL BY NAME '.join(reads)})"


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _numbered_read(
    ordered: Sequence[str], part_of: Mapping[str, str | None], at: Sequence[int], bound: int | None
) -> str:
    """The rows of the files at positions ``at`` of ``ordered``, numbered by that position;
    with ``bound``, those whose ts is before it (epoch ms): compared once as a timestamp,
    which the reader pushes into the scan (row groups skipped by their ts statistics), a
    millisecond later than the bound so that it keeps every row the exact test keeps."""
    index = "CAST(file_index AS BIGINT) + 1"
    paths = ", ".join(_lit(ordered[i]) for i in at)
    numbers = ", ".join(str(i) for i in at)
    dcs = ", ".join(_lit(part_of[ordered[i]]) for i in at)
    where = ""
    if bound is not None:
        after = (EPOCH + dt.timedelta(milliseconds=int(bound) + 1)).isoformat()
        where = f" WHERE ts < TIMESTAMPTZ {_lit(after)} AND epoch_ms(ts) < {int(bound)}"
    return (
        f"SELECT *, [{numbers}][{index}] AS _file, [{dcs}][{index}] AS datacentre, "
        f"file_row_number AS _row FROM read_parquet([{paths}], file_row_number = true, "
        f"hive_partitioning = false){where}"
    )


def _next_day_until(stats: Mapping[Part, PartStats], open_parts: set[Part]) -> dict[str, int]:
    """For the files of the days after ``open_parts`` that are not open themselves: the instant
    before which their rows can end the coverage of an open sample. An open sample starts before
    its day ends and covers at most its interval, so only a next-day sample before midnight +
    that interval can end it (coverage.sql); the copies of a sample share its ts, so the dedup of
    the rows kept is unchanged. The interval is bounded by the open partitions' file statistics
    (rounded up, plus a second). Empty (read them whole) when a bound is unknown."""
    after = {(dc, next_day(d)) for dc, d in open_parts} - open_parts
    after &= set(stats)
    known = [stats[p] for p in open_parts if p in stats]
    if not after or not all(s.iv_known and s.iv_max is not None for s in known):
        return {}
    bound = math.ceil(max((s.iv_max or 0.0 for s in known), default=0.0) * 1000) + 1000
    return {f: day_ms(p[1])[0] + bound for p in after for f in stats[p].files}


BIN_COLUMNS: dict[str, str] = {
    "datacentre": "VARCHAR",
    "date": "DATE",
    "cluster": "VARCHAR",
    "gpu_uuid": "VARCHAR",
    "allocation_id": "VARCHAR",
    "bin_ms": "BIGINT",
    "samples": "BIGINT",
    "cov_ms": "BIGINT",
    "unknown_ms": "BIGINT",
    "busy_ms": "DOUBLE",
    "held_ms": "BIGINT",
    "held_busy_ms": "DOUBLE",
    "util_min": "DOUBLE",
    "util_max": "DOUBLE",
    "first_ms": "BIGINT",
    "last_ms": "BIGINT",
    "last_e_ms": "BIGINT",
}
"""The columns of a bins row (``gpu_bins_live.sql``), in order, with their DuckDB types."""


def stored_files(
    table: DeltaTable | None, keep: Mapping[Part, int]
) -> list[tuple[str, dict[str, str | None]]]:
    """The active files of a rollup table's partitions in ``keep``, with their partition
    values, sorted by path."""
    if table is None or not keep:
        return []
    return sorted(
        (p, v) for p, v in lakes.active_files(table) if (v.get("datacentre"), v["date"]) in keep
    )


def stored_view(
    name: str,
    table: DeltaTable | None,
    keep: Mapping[Part, int],
    columns: Mapping[str, str] = BIN_COLUMNS,
    stamp: str = "_version",
) -> str:
    """``name``: the stored rows (``columns``) of a rollup table's partitions in ``keep``, those
    whose ``stamp`` is the partition's commit there (``files_view``)."""
    return files_view(name, stored_files(table, keep), keep, columns, stamp)


def files_view(
    name: str,
    files: Sequence[tuple[str, Mapping[str, str | None]]],
    keep: Mapping[Part, int],
    columns: Mapping[str, str] = BIN_COLUMNS,
    stamp: str = "_version",
) -> str:
    """``name``: the rows (``columns``) of ``files`` (path, partition values) whose ``stamp``
    is their partition's commit in ``keep``. Partition values and the commit come from the log,
    looked up by each row's file position (``file_index``): no path string per row to join
    on."""
    if not files:
        return f"CREATE OR REPLACE VIEW {name} AS {empty_bins(columns)}"
    paths = ", ".join(_lit(p) for p, _ in files)
    by_file = {
        "datacentre": ", ".join(_lit(v.get("datacentre")) for _, v in files),
        "date": ", ".join(_lit(v["date"]) for _, v in files),
    }
    commits = ", ".join(str(int(keep[(v.get("datacentre"), str(v["date"]))])) for _, v in files)
    cols = ", ".join(
        f"CAST([{by_file[c]}][_f] AS {t}) AS {c}" if c in by_file else f"CAST({c} AS {t}) AS {c}"
        for c, t in columns.items()
    )
    return (
        f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM (SELECT *, "
        f"CAST(file_index AS BIGINT) + 1 AS _f FROM read_parquet([{paths}], "
        f"hive_partitioning = false)) WHERE {stamp} = [{commits}][_f]"
    )


def read_manifest(
    con: duckdb.DuckDBPyConnection, parts: DeltaTable | None
) -> dict[Part, tuple[str, str, int, int]]:
    """The newest manifest row of every partition: (files_fp, holds_fp, bins version, reach)."""
    from warehouse.catalog.sources import files_source

    if parts is None:
        return {}
    source = files_source(sorted(lakes.active_files(parts)), [])
    if source is None:
        return {}
    rows = con.execute(
        "SELECT datacentre, date, files_fp, holds_fp, version, reach_ms "
        f"FROM {source} AS r QUALIFY row_number() OVER (PARTITION BY datacentre, date "
        "ORDER BY _version DESC, filename DESC, file_row_number DESC) = 1"
    ).fetchall()
    return {(dc, str(d)): (str(f), str(h), int(v), int(r)) for dc, d, f, h, v, r in rows}


def extent_views(
    con: duckdb.DuckDBPyConnection,
    samples: DeltaTable | None,
    bins: DeltaTable | None,
    parts: DeltaTable | None,
    enabled: bool,
) -> RollupState:
    """Before the catalogue's SQL views: ``gpu_bins_stored`` (bins of partitions whose raw
    inputs are unchanged) and ``raw_gpu_samples_rest`` (raw rows of all other partitions;
    ``_raw_gpu_samples_rest_numbered`` the same rows in the numbered reading of
    ``_numbered_raw``, which ``extent_table`` scans: its dedup needs only the files' order)."""
    stats = partition_stats(samples)
    manifest = read_manifest(con, parts) if enabled else {}
    state = RollupState(dict(stats), manifest)
    state.unchanged = built_from_files(manifest, stats)
    con.execute(stored_view("gpu_bins_stored", bins, state.unchanged))
    con.execute(f"CREATE OR REPLACE VIEW raw_gpu_samples_rest AS {rest_raw(state)}")
    con.execute(f"CREATE OR REPLACE VIEW _raw_gpu_samples_rest_numbered AS {rest_raw(state, True)}")
    return state


def extent_table(con: duckdb.DuckDBPyConnection) -> None:
    """``gpu_extent`` (after ``gpu_extent_stored`` and ``raw_gpu_samples_rest``): one row per
    GPU, read by the horizon, the data span, the cluster sources and the holds (several times
    per report): computed once per snapshot into a table of the catalogue's database (pinned to
    the snapshot like its views, so a warehouse file opened on its own still answers them),
    from the stored rows and one scan of the raw rows not rolled up (in the numbered reading,
    ``_raw_gpu_samples_rest_numbered``) by ``gpu_extent_rest_top2.sql``, the rows of
    ``gpu_extent_rest.sql`` without a struct compared per raw row; a second scan, of the GPUs
    whose last instant is held by copies only (``gpu_extent_rest_ties.sql``), only when there
    are any. ``gpu_extent_rest`` itself is registered too, the definition Spark reads."""
    from warehouse.catalog.sources import load_sql

    con.execute(load_sql("gpu_extent_rest"))
    con.execute(load_sql("gpu_extent_rest_top2"))
    tied = "SELECT count(*) FROM _gpu_extent_rest WHERE len(top2) = 2 AND top2[1] = top2[2]"
    if _one(con, tied):
        con.execute(load_sql("gpu_extent_rest_ties"))
    view = load_sql("gpu_extent")
    assert view.count("CREATE OR REPLACE VIEW gpu_extent AS") == 1
    assert view.count("FROM gpu_extent_rest\n") == 1
    view = view.replace("FROM gpu_extent_rest\n", "FROM _gpu_extent_rest\n")
    con.execute(view.replace("VIEW gpu_extent AS", "TABLE _gpu_extent AS"))
    con.execute("DROP TABLE _gpu_extent_rest")
    con.execute("CREATE OR REPLACE VIEW gpu_extent AS SELECT * FROM _gpu_extent")


def _one(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def rest_raw(state: RollupState, numbered: bool = False) -> str:
    """The SELECT behind ``raw_gpu_samples_rest``: the raw rows of every partition whose raw
    inputs changed; ``numbered``: the builder's reading (``_numbered_raw``)."""
    rest = [f for p, s in state.stats.items() if p not in state.unchanged for f in s.files]
    return _numbered_raw(rest, state.stats) if numbered else typed_raw(rest, state.stats)


def empty_bins(columns: Mapping[str, str] = BIN_COLUMNS) -> str:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())
    return f"SELECT {cols} WHERE false"


def holds_fps(con: duckdb.DuckDBPyConnection, reach: Mapping[Part, int]) -> dict[Part, str]:
    """``rollup_holds.sql`` for the partitions of ``reach`` (the end of their samples'
    coverage; needs ``allocation_hold_spans`` and ``allocation_spans``)."""
    from warehouse.catalog.sources import load_sql

    if not reach:
        return {}
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _rollup_candidates AS SELECT * FROM "
        f"(VALUES {parts_values(reach, reach)}) AS p(datacentre, date, d0_ms, d1_ms)"
    )
    rows = con.execute(load_sql("rollup_holds")).fetchall()
    return {(dc, str(d)): str(h) for dc, d, h in rows}


def open_views(
    con: duckdb.DuckDBPyConnection,
    state: RollupState,
    open_parts: set[Part],
    numbered: bool = False,
) -> None:
    """``raw_gpu_samples_open`` (rows of ``open_parts`` and of their next days; ``numbered``:
    the builder's reading, ``_numbered_raw``, of the next days only the rows that can end the
    coverage of an open sample, ``_next_day_until``),
    ``gpu_sample_coverage_open`` (coverage of ``open_parts``' samples) and ``gpu_bins_live``."""
    from warehouse.catalog.sources import load_sql

    stats = state.stats
    needed = with_next_days(open_parts)
    files = [f for p in needed if p in stats for f in stats[p].files]
    if numbered:
        raw = _numbered_raw(files, stats, _next_day_until(stats, open_parts))
    else:
        raw = typed_raw(files, stats)
    con.execute(f"CREATE OR REPLACE VIEW raw_gpu_samples_open AS {raw}")
    con.execute(open_coverage("gpu_sample_coverage", "raw_gpu_samples", open_parts))
    con.execute(load_sql("gpu_bins_live"))


def open_coverage(view: str, raw: str, open_parts: set[Part]) -> str:
    """``<view>_open``: the coverage view ``<view>.sql`` over ``<raw>_open`` instead of
    ``<raw>``, only the rows that start in ``open_parts``."""
    from warehouse.catalog.sources import load_sql

    body = load_sql(view).split(f"CREATE OR REPLACE VIEW {view} AS")
    assert len(body) == 2 and body[1].count(f"FROM {raw})") == 1
    select = body[1].replace(f"FROM {raw})", f"FROM {raw}_open)").rstrip().removesuffix(";")
    keep = (
        f"SEMI JOIN (VALUES {parts_values(open_parts)}) AS o(o_dc, o_date) "
        "ON c.datacentre IS NOT DISTINCT FROM o.o_dc AND CAST(epoch_ms(c.s_ms) AS DATE) = o.o_date"
        if open_parts
        else "WHERE false"
    )
    return f"CREATE OR REPLACE VIEW {view}_open AS SELECT c.* FROM ({select}) AS c {keep}"


def bins_views(con: duckdb.DuckDBPyConnection, state: RollupState, bins: DeltaTable | None) -> None:
    """After the catalogue's SQL views: decide which unchanged partitions also have unchanged
    holds (``state.fresh``), then ``gpu_bins_fresh``, the live views and ``gpu_bins``."""
    from warehouse.catalog.sources import load_sql

    now = holds_fps(con, {p: state.manifest[p][3] for p in state.unchanged})
    state.fresh = {p: v for p, v in state.unchanged.items() if now.get(p) == state.manifest[p][1]}
    con.execute(stored_view("gpu_bins_fresh", bins, state.fresh))
    open_views(con, state, set(state.stats) - set(state.fresh))
    con.execute(load_sql("gpu_bins"))
