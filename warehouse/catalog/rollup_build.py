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
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline import lake as lakes
from warehouse.catalog import refresh_with_state
from warehouse.catalog import rollups as rv

log = logging.getLogger(__name__)

CHUNK_ROWS = 8_000_000
"""Raw rows per chunk (with a next day's read whole): bounds the builder's memory."""

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("datacentre", pa.string()),
        pa.field("date", pa.string()),
        pa.field("files_fp", pa.string(), nullable=False),
        pa.field("holds_fp", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("reach_ms", pa.int64(), nullable=False),
        pa.field("source_version", pa.int64(), nullable=False),
        pa.field("raw_rows", pa.int64(), nullable=False),
        pa.field("bins", pa.int64(), nullable=False),
        pa.field("built_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)


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
    occupancy_partitions: int = 0
    """Occupancy partitions (re)built (``warehouse.catalog.occupancy_rollup``)."""
    occupancy_rows: int = 0
    occupancy_bins: int = 0

    def line(self) -> str:
        rate = self.raw_rows / self.seconds if self.seconds else 0.0
        return (
            f"rolled up {self.partitions:,} partition(s) ({self.raw_rows:,} raw rows -> "
            f"{self.bins:,} bins, {rate:,.0f} rows/s, {self.commits} commit(s)); "
            f"{self.fresh:,} already fresh, {self.open:,} still open; occupancy: "
            f"{self.occupancy_partitions:,} partition(s) ({self.occupancy_rows:,} raw rows -> "
            f"{self.occupancy_bins:,} bins)"
        )


def chunks(parts: Sequence[rv.Part], stats: dict[rv.Part, rv.PartStats]) -> Iterator[list[rv.Part]]:
    chunk: list[rv.Part] = []
    rows = 0
    for p in parts:
        # a next day is read whole only when the interval bound is unknown (rollups.open_views)
        n = stats[p].rows
        if not stats[p].iv_known:
            n += stats.get((p[0], rv.next_day(p[1])), rv.PartStats()).rows
        if chunk and (rows + n > CHUNK_ROWS or len(chunk) >= 256):
            yield chunk
            chunk, rows = [], 0
        chunk.append(p)
        rows += n
    if chunk:
        yield chunk


def predicate(parts: Sequence[rv.Part]) -> str:
    def lit(v: str) -> str:
        return "'" + v.replace("'", "''") + "'"

    terms = [
        ("datacentre IS NULL" if dc is None else f"datacentre = {lit(dc)}")
        + f" AND date = {lit(d)}"
        for dc, d in parts
    ]
    return " OR ".join(f"({t})" for t in terms)


def build_rollups(
    lake: Path,
    *,
    today: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
) -> RollupResult:
    """Bring the lake's GPU-sample rollup up to date (see the module docstring)."""
    started = time.monotonic()
    lake = Path(lake)
    today = today or dt.datetime.now(dt.UTC).date()
    con = duckdb.connect(":memory:")
    # the bins are sorted before they are written; nothing else needs the rows' order
    con.execute("SET preserve_insertion_order = false")
    try:
        versions, state = refresh_with_state(con, lake)
        _pin_spans(con, state)
        result = RollupResult(fresh=len(state.fresh))
        closed = [p for p in state.stats if p[1] < today.isoformat()]
        result.open = len(state.stats) - len(closed)
        todo = sorted((p for p in closed if p not in state.fresh), key=lambda p: (p[0] or "", p[1]))
        source_version = versions.get(rv.SAMPLES.table) or 0
        paths = rv.rollup_paths(lake)
        for chunk in chunks(todo, state.stats):
            bins = _commit_chunk(con, state, chunk, paths, source_version)
            result.partitions += len(chunk)
            result.raw_rows += sum(state.stats[p].rows for p in chunk)
            result.bins += bins
            result.commits += 2
            if progress is not None:
                progress(
                    f"rollup: {result.partitions:,}/{len(todo):,} partitions, "
                    f"{result.raw_rows:,} raw rows"
                )
        _build_occupancy(con, state, lake, today, versions, result)
    finally:
        con.close()
    result.seconds = time.monotonic() - started
    log.info("%s", result.line())
    return result


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


def _pin_spans(con: duckdb.DuckDBPyConnection, state: rv.RollupState) -> None:
    """Every chunk's bins need the allocation spans and holds, which need the horizon of every
    cluster (a scan of all raw rows not yet rolled up, read as the chunks read theirs): compute
    them once, as temp tables behind the views of the same names."""
    con.execute(f"CREATE OR REPLACE VIEW raw_gpu_samples_rest AS {rv.rest_raw(state, True)}")
    for name in ("cluster_horizon", "allocation_spans", "allocation_hold_spans"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _built_{name} AS SELECT * FROM {name}")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _built_{name}")


def _commit_chunk(
    con: duckdb.DuckDBPyConnection,
    state: rv.RollupState,
    chunk: list[rv.Part],
    paths: dict[str, Path],
    source_version: int,
) -> int:
    """Compute the chunk's bins, commit them (replacing its partitions), then the manifest
    naming that commit; returns the number of bins."""
    rv.open_views(con, state, set(chunk), numbered=True)
    rows, version = commit_bins(
        con, "gpu_bins_live", "gpu_uuid", paths[rv.BINS], chunk, source_version
    )
    reach = _reach(con, rows, chunk)
    holds = rv.holds_fps(con, reach)
    manifest = manifest_rows(state.stats, chunk, rows, reach, holds, version, source_version)
    lakes.commit(paths[rv.PARTS], manifest, load_id="rollup", partition_by=None)
    return int(rows.num_rows)


def commit_bins(
    con: duckdb.DuckDBPyConnection,
    view: str,
    unit: str,
    path: Path,
    chunk: list[rv.Part],
    source_version: int,
) -> tuple[pa.Table, int]:
    """The rows of the live bins ``view`` for the chunk (its open views set up), sorted by
    partition, cluster, ``unit`` and bin, committed to the bins table at ``path`` replacing
    the chunk's partitions; (rows, commit version)."""
    rows = con.execute(
        f"SELECT * EXCLUDE (date), CAST(date AS VARCHAR) AS date FROM {view} "
        f"ORDER BY datacentre, date, cluster, {unit}, bin_ms"
    ).arrow()
    if isinstance(rows, pa.RecordBatchReader):
        rows = rows.read_all()
    version = lakes.commit(
        path,
        as_stored(path, rows),
        load_id="rollup",
        replace_where=predicate(chunk),
        metadata={"gpuledger.rollup_source_version": source_version},
    )
    return rows, version


def as_stored(path: Path, rows: pa.Table) -> pa.Table:
    """``rows`` with the column types of the bins table at ``path`` where it exists: a table
    built before the sums were written as BIGINT keeps its DECIMAL(38, 0) columns (the values
    are the same integers)."""
    table = lakes.open_table(path)
    if table is None:
        return rows
    stored = pa.schema(table.schema())
    fields = [
        stored.field(n) if n in stored.names else rows.schema.field(n) for n in rows.column_names
    ]
    return rows.cast(pa.schema(fields))


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


def manifest_rows(
    stats: dict[rv.Part, rv.PartStats],
    chunk: list[rv.Part],
    rows: pa.Table,
    reach: dict[rv.Part, int],
    holds: dict[rv.Part, str],
    version: int,
    source_version: int,
) -> pa.Table:
    """The manifest rows of the chunk's partitions: the fingerprints the bins were built from
    and the bins commit that holds them."""
    per_part: dict[rv.Part, int] = {}
    for dc, d in zip(
        rows.column("datacentre").to_pylist(), rows.column("date").to_pylist(), strict=True
    ):
        per_part[(dc, d)] = per_part.get((dc, d), 0) + 1
    now = dt.datetime.now(dt.UTC)
    return pa.table(
        {
            "datacentre": [dc for dc, _ in chunk],
            "date": [d for _, d in chunk],
            "files_fp": [rv.files_fp(stats, p) for p in chunk],
            "holds_fp": [holds[p] for p in chunk],
            "reach_ms": [reach[p] for p in chunk],
            "version": [version] * len(chunk),
            "source_version": [source_version] * len(chunk),
            "raw_rows": [stats[p].rows for p in chunk],
            "bins": [per_part.get(p, 0) for p in chunk],
            "built_at": [now] * len(chunk),
        },
        schema=MANIFEST_SCHEMA,
    )
