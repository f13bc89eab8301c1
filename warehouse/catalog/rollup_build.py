"""Build the rollups: 15-minute bins per GPU (and per occupancy scope, ``occupancy_rollup``)
for every closed lake partition.

``build_rollups(lake)`` finds the partitions (datacentre, UTC date before today) whose bins
are missing or stale (``warehouse.catalog.rollups`` says what fresh means), computes their bins
with the same view the reports read for unrolled partitions (``gpu_bins_live``), and commits
them in chunks: one commit to the bins table that replaces the chunk's partitions, then one
manifest commit naming it, with the fingerprints the bins were built from. A crash between
the two leaves the old manifest, which no longer matches the bins commit, so readers use raw
rows for those partitions until the next build. Re-running changes nothing when nothing
changed; late or corrected data re-rolls exactly the partitions it touched (and the day
before each, whose last sample's coverage the next day's first sample ends).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import lake as lakes
from warehouse.catalog import refresh_with_state
from warehouse.catalog import rollups as rv
from warehouse.catalog.gpu_days import commit_days
from warehouse.catalog.rollup_commit import bins_table, chunks, commit_table, manifest_rows
from warehouse.catalog.rollup_parts import closed_and_stale, lit, parts_values
from warehouse.catalog.sources import load_sql

log = logging.getLogger(__name__)


@dataclass
class RollupResult:
    partitions: int = 0
    """Partitions (re)built."""
    fresh: int = 0
    """Partitions whose rollup was already fresh."""
    open: int = 0
    """Partitions not rolled up because they are not closed yet (today's or later)."""
    raw_rows: int = 0
    bins: int = 0
    commits: int = 0
    seconds: float = 0.0
    days: int = 0
    """Day rows written (``warehouse.catalog.gpu_days``), with those of fresh partitions that
    had none."""
    occupancy_partitions: int = 0
    """Occupancy partitions (re)built (``warehouse.catalog.occupancy_rollup``)."""
    occupancy_rows: int = 0
    occupancy_bins: int = 0
    exact_reruns: int = 0
    """Chunks whose bins were computed again by ``gpu_bins_live``, ``gpu_bins_build`` not
    fitting them (``_chunk_bins``)."""

    def line(self) -> str:
        rate = self.raw_rows / self.seconds if self.seconds else 0.0
        return (
            f"rolled up {self.partitions:,} partition(s) ({self.raw_rows:,} raw rows -> "
            f"{self.bins:,} bins, {self.days:,} day rows, {rate:,.0f} rows/s, "
            f"{self.commits} commit(s), {self.exact_reruns} exact rerun(s)); "
            f"{self.fresh:,} already fresh, {self.open:,} still open; occupancy: "
            f"{self.occupancy_partitions:,} partition(s) ({self.occupancy_rows:,} raw rows -> "
            f"{self.occupancy_bins:,} bins)"
        )


def build_rollups(
    lake: Path,
    *,
    today: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
    memory_limit: str | None = None,
) -> RollupResult:
    """Bring the lake's GPU-sample rollup up to date (see the module docstring).
    ``memory_limit`` (``memory_limit_arg``, e.g. ``2GB``) caps DuckDB's memory for the build;
    above it the coverage window spills to disk (docs/rollups.md#building)."""
    started = time.monotonic()
    lake = Path(lake)
    today = today or dt.datetime.now(dt.UTC).date()
    con = duckdb.connect(":memory:")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = '{memory_limit_arg(memory_limit)}'")
    # the bins are sorted before they are written; nothing else needs the rows' order
    con.execute("SET preserve_insertion_order = false")
    try:
        versions, state = refresh_with_state(con, lake)
        _pin_spans(con)
        result = RollupResult(fresh=len(state.fresh))
        closed, todo = closed_and_stale(state.stats, state.fresh, today)
        result.open = len(state.stats) - len(closed)
        source_version = versions.get(rv.SAMPLES.table) or 0
        paths = rv.rollup_paths(lake)
        fast = _build_units(con) and _build_refs(con) if todo else False
        for chunk in chunks(todo, state.stats):
            bins, days, reran = _commit_chunk(con, state, chunk, paths, source_version, fast)
            result.exact_reruns += reran
            result.partitions += len(chunk)
            result.raw_rows += sum(state.stats[p].rows for p in chunk)
            result.bins += bins
            result.days += days
            result.commits += 3
            if progress is not None:
                progress(
                    f"rollup: {result.partitions:,}/{len(todo):,} partitions, "
                    f"{result.raw_rows:,} raw rows"
                )
        _add_days(con, state, closed, paths[rv.BINS], paths[rv.DAYS], source_version, result)
        _build_occupancy(con, state, lake, today, versions, result)
    finally:
        con.close()
    result.seconds = time.monotonic() - started
    log.info("%s", result.line())
    return result


MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def memory_limit_arg(text: str) -> str:
    """``text`` if it is a DuckDB memory size (a number and a unit: ``500MB``, ``2GiB``)."""
    if not MEMORY_LIMIT.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a memory size such as 500MB or 2GB")
    return text.strip()


def _build_occupancy(
    con: duckdb.DuckDBPyConnection,
    state: rv.RollupState,
    lake: Path,
    today: dt.date,
    versions: dict[str, int | None],
    result: RollupResult,
) -> None:
    from warehouse.catalog.occupancy_rollup import OCCUPANCY, build_occupancy

    if state.occupancy is None:
        return
    source = versions.get(OCCUPANCY.table) or 0
    n, rows, bins, commits = build_occupancy(con, state.occupancy, lake, today, source)
    result.occupancy_partitions, result.occupancy_rows, result.occupancy_bins = n, rows, bins
    result.commits += commits


def _add_days(
    con: duckdb.DuckDBPyConnection,
    state: rv.RollupState,
    closed: list[rv.Part],
    bins_path: Path,
    path: Path,
    source_version: int,
    result: RollupResult,
) -> None:
    """Day rows for the fresh closed partitions that have no valid ones (bins built before
    the days existed, or a crash between the two commits), summed from their stored bins."""
    missing = sorted(
        (p for p in closed if p in state.fresh and p not in state.days),
        key=lambda p: (p[0] or "", p[1]),
    )
    bins = lakes.open_table(bins_path) if missing else None
    for at in range(0, len(missing), 64):
        chunk = missing[at : at + 64]
        keep = {p: state.fresh[p] for p in chunk}
        con.execute(rv.stored_view("_days_from_stored", bins, keep))
        versions = ", ".join(f"({lit(dc)}, DATE {lit(d)}, {int(v)})" for (dc, d), v in keep.items())
        source = (
            "SELECT b.*, v.version AS bins_version FROM _days_from_stored AS b JOIN "
            f"(VALUES {versions}) AS v(dc, d, version) "
            "ON b.datacentre IS NOT DISTINCT FROM v.dc AND b.date = v.d"
        )
        result.days += commit_days(con, path, chunk, source, source_version)
        result.commits += 1


def _pin_spans(con: duckdb.DuckDBPyConnection) -> None:
    """Every chunk's bins need the allocation spans and holds, which need the horizon of every
    cluster (from ``gpu_extent``): compute them once, as temp tables behind the views of the
    same names."""
    for name in ("cluster_horizon", "allocation_spans", "allocation_hold_spans"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _built_{name} AS SELECT * FROM {name}")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _built_{name}")


def _build_units(con: duckdb.DuckDBPyConnection) -> bool:
    """``_build_units``: every GPU of the lake (``gpu_extent``: each one the coverage window
    can see, stored or raw) with the hashes ``gpu_bins_build.sql`` computes for it and its
    cluster; whether no two GPUs and no two clusters share one."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _build_units AS SELECT hash(datacentre, cluster, "
        "gpu_uuid) AS h, hash(datacentre, cluster) AS dcc, datacentre, cluster, gpu_uuid "
        "FROM gpu_extent"
    )
    row = con.execute(
        "SELECT count(*) = count(DISTINCT h) AND count(DISTINCT (datacentre, cluster)) = "
        "count(DISTINCT dcc) FROM _build_units"
    ).fetchone()
    return bool(row and row[0])


def _build_refs(con: duckdb.DuckDBPyConnection) -> bool:
    """``_build_refs`` (``gpu_bins_build_refs.sql``); whether its numbers fit the packed
    column ``gpu_bins_build.sql`` carries through the window (fewer than 2^31)."""
    con.execute(load_sql("gpu_bins_build_refs"))
    row = con.execute("SELECT count(*) < 2147483648 FROM _build_refs").fetchone()
    return bool(row and row[0])


def _chunk_bins(
    con: duckdb.DuckDBPyConnection, state: rv.RollupState, chunk: list[rv.Part], fast: bool
) -> tuple[pa.Table, int]:
    """The chunk's bins, and 1 when they were computed twice. ``fast`` (``_build_units``
    found every hash apart): first by ``gpu_bins_build.sql``, kept only when each partition's
    whole-GPU rows count as many samples as it has raw rows, i.e. no copy was dropped, so no
    GPU had two rows at one instant; otherwise by ``gpu_bins_live``, the reports' own view
    (docs/rollups.md#building)."""
    rv.open_views(con, state, set(chunk), numbered=True)
    if fast:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW _build_open AS SELECT u.h, o.date FROM _build_units "
            f"AS u JOIN (VALUES {parts_values(chunk)}) AS o(dc, date) "
            "ON u.datacentre IS NOT DISTINCT FROM o.dc"
        )
        con.execute(load_sql("gpu_bins_build"))
        rows = bins_table(con, "gpu_bins_build", "gpu_uuid")
        counted = _samples_per_part(rows)
        if all(counted.get(p, 0) == state.stats[p].rows for p in chunk):
            return rows, 0
    return bins_table(con, "gpu_bins_live", "gpu_uuid"), int(fast)


def _samples_per_part(rows: pa.Table) -> dict[rv.Part, int]:
    whole = rows.filter(pc.is_null(rows["allocation_id"])).group_by(["datacentre", "date"])
    sums = whole.aggregate([("samples", "sum")])
    return {
        (dc, d): int(n)
        for dc, d, n in zip(
            sums["datacentre"].to_pylist(),
            sums["date"].to_pylist(),
            sums["samples_sum"].to_pylist(),
            strict=True,
        )
        if n
    }


def _commit_chunk(
    con: duckdb.DuckDBPyConnection,
    state: rv.RollupState,
    chunk: list[rv.Part],
    paths: dict[str, Path],
    source_version: int,
    fast: bool,
) -> tuple[int, int, int]:
    """Compute the chunk's bins, commit them (replacing its partitions), their day rows, then
    the manifest naming the bins commit; returns the number of bins, of day rows and of exact
    reruns (``_chunk_bins``)."""
    rows, reran = _chunk_bins(con, state, chunk, fast)
    version = commit_table(paths[rv.BINS], rows, chunk, source_version)
    con.register("_chunk_bins", rows)
    source = f"SELECT *, CAST({int(version)} AS BIGINT) AS bins_version FROM _chunk_bins"
    days = commit_days(con, paths[rv.DAYS], chunk, source, source_version)
    reach = _reach(con, rows, chunk)
    holds = rv.holds_fps(con, reach)
    manifest = manifest_rows(state.stats, chunk, rows, reach, holds, version, source_version)
    lakes.commit(paths[rv.PARTS], manifest, load_id="rollup", partition_by=None)
    con.unregister("_chunk_bins")
    return int(rows.num_rows), days, reran


def _reach(
    con: duckdb.DuckDBPyConnection, rows: pa.Table, chunk: list[rv.Part]
) -> dict[rv.Part, int]:
    """The end of each partition's sample coverage: its day's end, or its last sample's
    when later."""
    reach = {p: rv.day_ms(p[1])[1] for p in chunk}
    con.register("_built", rows)
    for dc, d, e in con.execute(
        "SELECT datacentre, date, max(last_e_ms) FROM _built "
        "WHERE last_e_ms IS NOT NULL GROUP BY ALL"
    ).fetchall():
        reach[(dc, d)] = max(reach[(dc, d)], int(e))
    return reach
