"""The lake: one Delta Lake table per record kind and per voucher entity (``deltalake``).

Layout (docs/lake.md)::

    <lake>/<table>/_delta_log/...                         the table's commits
    <lake>/<table>/datacentre=<dc>/date=<YYYY-MM-DD>/part-*.zstd.parquet

Partition values are encoded by Delta and stored in the commit log, so any name round-trips;
readers take them from the snapshot's add actions (``active_files``), never from folder names.

Every row carries two lake columns besides the contract's:

- ``_version``: the table version of the commit that wrote it (stamped before the commit,
  which is made with no retries, so the stamp is exact; see ``commit``). Duplicate keys are
  won by the greatest ``_version``: commit order, whoever wrote.
- ``_load``: the load id of the write (stream batch or backfill load), so a backfill can
  replace its own rows in one commit (``replace_load``).

Exactly-once from Kafka: a commit carries one Delta app transaction per Kafka partition it
consumed (``app_id`` -> last offset). ``commit`` refuses a write whose first offset is not past
the stored one (a zombie's, or one that would move the watermark backwards) with ``Fenced``.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from pipeline.errors import TransientError

log = logging.getLogger(__name__)

VERSION_COL = "_version"
LOAD_COL = "_load"
DATE_COL = "date"
PARTITION_BY = ["datacentre", DATE_COL]
ROLLUP_DIR = "_rollup"
ROLLUP_TABLES = (
    "gpu_bins",
    "gpu_bins_parts",
    "occupancy_bins",
    "occupancy_bins_parts",
    "gpu_days",
)
"""The rollup tables under ``<lake>/_rollup`` (built by ``warehouse.catalog.rollup_build``)."""
LAKE_FIELDS = [
    pa.field(VERSION_COL, pa.int64(), nullable=False),
    pa.field(LOAD_COL, pa.string(), nullable=False),
]
TABLE_CONFIG: dict[str, str | None] = {
    # time travel (``--as-of``) needs the log: keep it for ten years
    "delta.logRetentionDuration": "interval 3650 days",
    # files a compaction removed stay readable by old versions for a year and a bit
    "delta.deletedFileRetentionDuration": "interval 400 days",
}
ROW_GROUP_ROWS = 131_072
WRITER = WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)
COMMIT_ATTEMPTS = 50


class Fenced(TransientError):
    """The table already holds offsets at or past this write's first offset (a raced commit:
    another worker owns the partition now and lands these records itself)."""

    def __init__(self, app_id: str, stored: int, first: int) -> None:
        super().__init__(f"{app_id}: table holds offset {stored}, write starts at {first}")
        self.app_id = app_id
        self.stored = stored
        self.first = first


@dataclass(frozen=True)
class Offsets:
    """The Kafka offsets one commit consumed from one partition (inclusive)."""

    app_id: str
    first: int
    last: int


AsOf = int | datetime | Mapping[str, int] | None
"""A snapshot of the lake: latest (None), an instant, or a version per table (one int: every
table at that version)."""


def version_for(as_of: AsOf, table: str) -> int | datetime | None:
    """What to load ``table`` at for ``as_of`` (None = latest)."""
    if isinstance(as_of, Mapping):
        return as_of.get(table)
    return as_of


def parse_as_of(text: str) -> AsOf:
    """``--as-of``: ``table=version[,table=version...]`` (as reports print it) or an ISO-8601
    instant with an offset."""
    text = text.strip()
    if "=" in text:
        out: dict[str, int] = {}
        for part in text.split(","):
            name, _, version = part.partition("=")
            if not version.strip().isdigit():
                raise ValueError(f"--as-of {text!r}: {part!r} is not table=version")
            out[name.strip()] = int(version)
        return out
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--as-of {text!r} is neither table=version[,...] nor an ISO-8601 instant"
        ) from None
    if instant.tzinfo is None:
        raise ValueError(f"--as-of {text!r} needs a UTC offset, e.g. 2020-06-01T00:00:00+08:00")
    return instant


def format_as_of(versions: Mapping[str, int | None]) -> str:
    """The ``--as-of`` value that reproduces a read of these table versions."""
    return ",".join(f"{t}={v}" for t, v in sorted(versions.items()) if v is not None)


def app_id(group: str, topic: str, partition: int) -> str:
    return f"{group}:{topic}:{partition}"


def table_path(lake: Path, table: str) -> Path:
    return Path(lake) / table


def ensure_table(path: Path, schema: pa.Schema, partition_by: list[str] | None) -> None:
    """Create the Delta table at ``path`` if there is none (safe to race: ``mode=ignore``)."""
    if DeltaTable.is_deltatable(str(path)):
        return
    path.mkdir(parents=True, exist_ok=True)
    DeltaTable.create(
        str(path), schema, mode="ignore", partition_by=partition_by, configuration=TABLE_CONFIG
    )


def open_table(path: Path, as_of: int | datetime | None = None) -> DeltaTable | None:
    """The table at its latest version (or ``as_of`` a version or instant); None if it does
    not exist (at that point)."""
    try:
        dt = DeltaTable(str(path))
    except TableNotFoundError:
        return None
    if as_of is None:
        return dt
    try:
        dt.load_as_version(as_of)
    except Exception as exc:
        if isinstance(as_of, datetime):  # the table was created after that instant
            return None
        raise ValueError(f"{path.name} has no version {as_of} ({exc})") from None
    return dt


def stamp(data: pa.Table, version: int, load_id: str) -> pa.Table:
    """``data`` with the lake columns set (replacing any there)."""
    for name in (VERSION_COL, LOAD_COL):
        if name in data.column_names:
            data = data.drop_columns([name])
    n = data.num_rows
    data = data.append_column(LAKE_FIELDS[0], pa.array(np.full(n, version, dtype=np.int64)))
    return data.append_column(LAKE_FIELDS[1], repeated_text(load_id, n))


def repeated_text(text: str, n: int) -> pa.Array:
    """A string array of ``n`` times ``text``, built from its buffers."""
    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
    if offsets[-1] < 2**31:
        offsets = offsets.astype(np.int32)
        return pa.Array.from_buffers(
            pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)]
        )
    return pa.array([text] * n, pa.string())


def _replace_predicate(load_id: str) -> str:
    return f"{LOAD_COL} = '" + load_id.replace("'", "''") + "'"


class RowSource(Protocol):
    """Rows to commit, read in chunks (``pipeline.lake_files.StagedFiles``)."""

    rows_schema: pa.Schema

    def rows(self) -> Iterator[pa.Table]: ...


def _columns(data: pa.Table | Path | RowSource) -> pa.Schema:
    if isinstance(data, pa.Table):
        return data.schema
    return pq.read_schema(data) if isinstance(data, Path) else data.rows_schema


def _stamped(data: pa.Table | Path | RowSource, version: int, load_id: str) -> Any:
    if isinstance(data, pa.Table):
        return stamp(data, version, load_id)
    if isinstance(data, Path):
        tables: Iterable[pa.Table] = (
            pa.Table.from_batches([raw])
            for raw in pq.ParquetFile(data, pre_buffer=False).iter_batches(batch_size=65_536)
        )
    else:
        tables = data.rows()
    schema = pa.schema(list(_columns(data)) + LAKE_FIELDS)
    batches = (b for t in tables for b in stamp(t, version, load_id).to_batches())
    return pa.RecordBatchReader.from_batches(schema, batches)


def _check_fences(dt: DeltaTable, offsets: list[Offsets]) -> None:
    """Raise ``Fenced`` when the table already holds an offset at or past one write's first."""
    for o in offsets:
        stored = dt.transaction_version(o.app_id)
        if stored is not None and stored >= o.first:
            raise Fenced(o.app_id, stored, o.first)


def _write(
    dt: DeltaTable,
    rows: Any,
    predicate: str | None,
    partition_by: list[str] | None,
    props: CommitProperties,
) -> None:
    """One write of ``rows`` to ``dt``: an append, or with ``predicate`` an overwrite of the rows
    it matches (in the same commit)."""
    if predicate is not None:
        write_deltalake(
            dt,
            rows,
            mode="overwrite",
            predicate=predicate,
            partition_by=partition_by,
            writer_properties=WRITER,
            commit_properties=props,
        )
    else:
        write_deltalake(
            dt,
            rows,
            mode="append",
            partition_by=partition_by,
            writer_properties=WRITER,
            commit_properties=props,
        )


def commit(
    path: Path,
    data: pa.Table | Path | RowSource,
    *,
    load_id: str,
    partition_by: list[str] | None = PARTITION_BY,
    offsets: Iterable[Offsets] = (),
    metadata: Mapping[str, Any] | None = None,
    replace_load: bool = False,
    replace_where: str | None = None,
) -> int:
    """Write ``data`` (contract columns, plus ``date`` when partitioned; a table, or a Parquet
    file or a ``RowSource`` streamed in bounded memory) as one commit; return its version.

    The version is stamped into ``_version`` before writing and the commit is made with no
    retries: when another writer took that version first, the stamp is redone and the write
    tried again, after re-checking the fences. ``offsets`` become the commit's app
    transactions; ``Fenced`` is raised (nothing written) when one is not past the table's.
    ``replace_load`` removes the rows of earlier writes with the same ``load_id`` in the same
    commit; ``replace_where`` (a Delta predicate the rows all satisfy, e.g. over partition
    columns) removes every earlier row it matches instead. A commit with no rows still records
    its offsets and metadata.
    """
    offsets = list(offsets)
    schema = pa.schema(list(_columns(data)) + LAKE_FIELDS)
    ensure_table(path, schema, partition_by)
    props_meta = {k: str(v) for k, v in (metadata or {}).items()}
    props_meta["gpuledger.load_id"] = load_id
    predicate = (
        replace_where or _replace_predicate(load_id)
        if replace_load or replace_where is not None
        else None
    )
    delay = 0.02
    for _ in range(COMMIT_ATTEMPTS):
        dt = DeltaTable(str(path))
        _check_fences(dt, offsets)
        version = dt.version() + 1
        props = CommitProperties(
            custom_metadata=props_meta,
            max_commit_retries=0,
            app_transactions=[Transaction(o.app_id, o.last) for o in offsets],
        )
        try:
            rows = _stamped(data, version, load_id)
            _write(dt, rows, predicate, partition_by, props)
        except CommitFailedError as exc:  # another writer took ``version``; stamp again
            log.debug("commit at version %d lost (%s); retrying", version, exc)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        return version
    raise RuntimeError(f"{path}: no commit after {COMMIT_ATTEMPTS} attempts (busy writers)")


def active_files(dt: DeltaTable) -> list[tuple[str, dict[str, str | None]]]:
    """(absolute path, partition values) of every file in the snapshot, from its log."""
    root = urllib.parse.unquote(dt.table_uri.removeprefix("file://")).rstrip("/")
    actions = pa.table(dt.get_add_actions(flatten=True))
    parts = [c for c in actions.column_names if c.startswith("partition.")]
    out = []
    for row in actions.select(["path", *parts]).to_pylist():
        rel = urllib.parse.unquote(row["path"])
        values = {c.removeprefix("partition."): row[c] for c in parts}
        out.append((rel if rel.startswith("/") else f"{root}/{rel}", values))
    return out
