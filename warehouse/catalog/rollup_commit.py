"""What both rollup builders (GPU samples, ``rollup_build``; occupancy, ``occupancy_rollup``)
commit: chunks of partitions, the bins of a chunk replacing its partitions, and the manifest
rows naming that commit with the fingerprints the bins were built from (docs/rollups.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

import warehouse.catalog.rollups as rv
from pipeline import lake as lakes
from warehouse.catalog.rollup_parts import files_fp

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
    rows = bins_table(con, view, unit)
    return rows, commit_table(path, rows, chunk, source_version)


def bins_table(con: duckdb.DuckDBPyConnection, view: str, unit: str) -> pa.Table:
    """The rows of the live bins ``view`` sorted by partition, cluster, ``unit`` and bin."""
    rows = con.execute(
        f"SELECT * EXCLUDE (date), CAST(date AS VARCHAR) AS date FROM {view} "
        f"ORDER BY datacentre, date, cluster, {unit}, bin_ms"
    ).arrow()
    if isinstance(rows, pa.RecordBatchReader):
        rows = rows.read_all()
    return rows


def commit_table(path: Path, rows: pa.Table, chunk: list[rv.Part], source_version: int) -> int:
    """Commit a chunk's bins ``rows`` to the bins table at ``path``, replacing the chunk's
    partitions; the commit version."""
    return lakes.commit(
        path,
        as_stored(path, rows),
        load_id="rollup",
        replace_where=predicate(chunk),
        metadata={"gpuledger.rollup_source_version": source_version},
    )


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
            "files_fp": [files_fp(stats, p) for p in chunk],
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
