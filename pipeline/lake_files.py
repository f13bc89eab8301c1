"""A load's rows written once, as the data files of its Delta table, and committed in one
transaction (docs/lake.md#backfill).

``StagedFiles`` takes the lake rows of a kind (the contract's columns and ``date``) chunk by
chunk, stamps them with the lake columns for the version the commit will have, and writes
them by partition as zstd Parquet under the load's staging folder, laid out as in the table
(``datacentre=<dc>/date=<day>/part-*.zstd.parquet``, the partition columns in the path, not in
the file, timestamps in microseconds, as ``deltalake`` writes them), on a background thread.
``commit_staged`` moves them into the table and commits their add actions, with the statistics
the readers use, in one Delta commit that also removes the rows of an earlier run of the same
load (``replace_load``), like ``pipeline.lake.commit``'s ``overwrite`` with ``_load = id``.
Until then nothing is visible: a failed load leaves only its staging folder.

When the table moved on before the commit (another writer took the version), the staged
files are landed by ``pipeline.lake.commit`` instead, which stamps them again.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from pipeline import lake as lakes

MAX_OPEN_FILES = 64
"""Partition files open at once; the least recently written is closed beyond (a later row of
its partition starts a new file)."""
STAT_CHARS = 32
"""Text statistics longer than this are cut (a minimum) or left out (a maximum)."""
DICTIONARY_SAMPLE = 1024
"""Rows of a file's first piece that decide whether a number column is dictionary-encoded."""
_QUEUE = 1
"""Chunks waiting for the writer thread (bounds memory)."""
_Pieces = list[tuple[tuple[str, ...], pa.Table]]
"""A chunk's rows by partition: the partition's values and its rows, as the files hold them."""


def file_schema(rows: pa.Schema, partition_by: list[str]) -> pa.Schema:
    """The schema of a data file: ``rows`` without the partition columns, with the lake
    columns, timestamps in microseconds (the Delta type)."""
    fields = []
    for f in rows:
        if f.name in partition_by:
            continue
        if pa.types.is_timestamp(f.type):
            f = f.with_type(pa.timestamp("us", tz=f.type.tz))
        fields.append(f)
    return pa.schema(fields + lakes.LAKE_FIELDS)


def _file_options(schema: pa.Schema, first: pa.Table | None = None) -> dict[str, Any]:
    """zstd; dictionaries for text, and for the other flat columns whose first rows (of
    ``first``) repeat a few values (for many distinct numbers they cost time and space)."""
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_list(f.type)]
    if first is not None:
        for f in schema:
            if f.name in text or pa.types.is_nested(f.type):
                continue
            head = first.column(f.name).slice(0, DICTIONARY_SAMPLE)
            if pc.count_distinct(head).as_py() * 16 <= len(head):
                text.append(f.name)
    return {"compression": "zstd", "use_dictionary": text}


def _folder(partition_by: list[str], values: tuple[str, ...]) -> str:
    return "/".join(
        f"{name}={urllib.parse.quote(value, safe='')}"
        for name, value in zip(partition_by, values, strict=True)
    )


def _stat(value: Any, exact_max: bool) -> Any:
    """A statistic as the Delta log holds it; None when it cannot be kept."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, str) and len(value) > STAT_CHARS:
        return None if exact_max else value[:STAT_CHARS]
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # not JSON
        return value + 0.0  # Parquet keeps a zero bound as -0.0
    return value


@dataclass
class _File:
    rel: str
    path: Path
    values: dict[str, str | None]
    writer: pq.ParquetWriter
    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)

    def add(self, part: pa.Table) -> None:
        self.writer.write_table(part)
        self.rows += part.num_rows
        for name, col in zip(part.column_names, part.columns, strict=True):
            self.nulls[name] = self.nulls.get(name, 0) + col.null_count

    def _bounds(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Each flat column's least and greatest value, from the statistics the Parquet
        writer kept (a column with values but none kept in some row group has none)."""
        lows: dict[str, Any] = {}
        highs: dict[str, Any] = {}
        meta = self.writer.writer.metadata
        flat = {f.name for f in self.writer.schema if not pa.types.is_nested(f.type)}
        for i in range(meta.num_columns):
            name = meta.schema.column(i).path
            if name not in flat:
                continue
            kept = [meta.row_group(g).column(i).statistics for g in range(meta.num_row_groups)]
            if not kept or any(s is None or not s.has_null_count for s in kept):
                continue
            kept = [s for s in kept if s.num_values]  # those with values (not null)
            if kept and all(s.has_min_max for s in kept):
                lows[name] = min(s.min for s in kept)
                highs[name] = max(s.max for s in kept)
        return lows, highs

    def action(self) -> AddAction:
        self.writer.close()
        low, high = self._bounds()
        lows = {n: _stat(v, False) for n, v in low.items()}
        highs = {n: _stat(v, True) for n, v in high.items()}
        stats = {
            "numRecords": self.rows,
            "minValues": {n: v for n, v in lows.items() if v is not None},
            "maxValues": {n: v for n, v in highs.items() if v is not None},
            "nullCount": self.nulls,
        }
        st = self.path.stat()
        return AddAction(
            self.rel,  # the log holds it quoted
            st.st_size,
            self.values,
            int(st.st_mtime * 1000),
            True,
            json.dumps(stats),
        )


class _Writer:
    """The files of a ``StagedFiles``, written on its thread."""

    def __init__(self, owner: StagedFiles) -> None:
        self.staging, self.schema = owner.staging, owner.schema
        self.partition_by, self.version, self.load_id = (
            owner.partition_by,
            owner.version,
            owner.load_id,
        )
        self.open: dict[tuple[str, ...], _File] = {}
        self.done: list[_File] = []
        self.error: BaseException | None = None

    def run(self, todo: queue.Queue[_Pieces | None]) -> None:
        try:
            while (pieces := todo.get()) is not None:
                for values, part in pieces:
                    self.file(values, part).add(part)
        except BaseException as exc:  # raised by ``write`` or ``close``
            self.error = exc
            while todo.get() is not None:
                pass

    def pieces(self, rows: pa.Table) -> _Pieces:
        """``rows`` by partition, stamped as the files hold them: each partition's rows in
        their order (a chunk of one partition as it is)."""
        n = rows.num_rows
        if n == 0:
            return []
        keys = [pc.dictionary_encode(rows.column(c)).combine_chunks() for c in self.partition_by]
        sizes = [len(key.dictionary) for key in keys]
        code = np.zeros(n, dtype=np.int64)
        for key, size in zip(keys, sizes, strict=True):
            code = code * size + key.indices.to_numpy(zero_copy_only=False)
        if math.prod(sizes) <= 1 << 20:
            present = np.flatnonzero(np.bincount(code, minlength=1))
        else:
            present = np.unique(code)
        data = rows.drop_columns(self.partition_by)
        out: _Pieces = []
        for c in present.tolist():
            part = data if len(present) == 1 else data.filter(pa.array(code == c))
            values = []
            for key, size in zip(keys[::-1], sizes[::-1], strict=True):  # the digits of c
                c, at = divmod(c, size)
                values.append(str(key.dictionary[at]))
            part = lakes.stamp(part, self.version, self.load_id).cast(self.schema)
            out.append((tuple(values[::-1]), part))
        return out

    def file(self, values: tuple[str, ...], first: pa.Table) -> _File:
        """The open file of partition ``values`` (a new one set up for rows like ``first``)."""
        f = self.open.pop(values, None)
        if f is None:
            if len(self.open) >= MAX_OPEN_FILES:  # the least recently written
                oldest = self.open.pop(next(iter(self.open)))
                oldest.writer.close()
                self.done.append(oldest)
            rel = f"{_folder(self.partition_by, values)}/part-{uuid.uuid4()}.zstd.parquet"
            path = self.staging / rel  # the folder as the table has it (quoted values)
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = pq.ParquetWriter(path, self.schema, **_file_options(self.schema, first))
            f = _File(rel, path, dict(zip(self.partition_by, values, strict=True)), writer)
        self.open[values] = f  # last written at the end: the order of recent use
        return f


class StagedFiles:
    """One kind's rows of a load, written by partition under ``staging`` (see the module)."""

    def __init__(
        self,
        table: Path,
        staging: Path,
        rows: pa.Schema,
        *,
        load_id: str,
        partition_by: list[str] = lakes.PARTITION_BY,
    ) -> None:
        self.table, self.staging, self.rows_schema = Path(table), Path(staging), rows
        self.load_id, self.partition_by = load_id, list(partition_by)
        self.schema = file_schema(rows, self.partition_by)
        dt = lakes.open_table(self.table)
        self.version = 1 if dt is None else dt.version() + 1
        """The version the commit is planned at (a new table is created at 0)."""
        self._writer = _Writer(self)
        self._queue: queue.Queue[_Pieces | None] = queue.Queue(maxsize=_QUEUE)
        self._thread = threading.Thread(
            target=self._writer.run, args=(self._queue,), name="lake-files", daemon=True
        )
        self._thread.start()
        self._files: list[_File] | None = None
        weakref.finalize(self, self._queue.put, None)  # a load that never closes: stop

    def write(self, rows: pa.Table) -> None:
        """Queue ``rows`` (``rows_schema``) for writing, split by partition here (the writer
        thread only writes); a writer's error is raised here."""
        if self._writer.error is not None:
            raise self._writer.error
        self._queue.put(self._writer.pieces(rows))

    def close(self) -> list[_File]:
        """Every file written, closed; a writer's error is raised here."""
        if self._files is None:
            self._queue.put(None)
            self._thread.join()
            if self._writer.error is not None:
                raise self._writer.error
            self._files = self._writer.done + list(self._writer.open.values())
            for f in self._files:
                f.writer.close()
        return self._files

    def rows(self) -> Iterator[pa.Table]:
        """The staged rows again, as ``rows_schema`` (for ``pipeline.lake.commit``)."""
        for f in self.close():
            for batch in pq.ParquetFile(f.path, pre_buffer=False).iter_batches(batch_size=65_536):
                t = pa.Table.from_batches([batch]).drop_columns([lakes.VERSION_COL, lakes.LOAD_COL])
                for name, value in f.values.items():
                    t = t.append_column(name, pa.array([value] * t.num_rows, pa.string()))
                yield t.select(self.rows_schema.names).cast(self.rows_schema)

    @property
    def rows_written(self) -> int:
        return sum(f.rows for f in self.close())


def _load_files(dt: DeltaTable, load_id: str) -> list[dict[str, Any]]:
    """The add actions (flattened) of ``dt`` whose file may hold rows of ``load_id``."""
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    out = []
    for a in actions:
        lo, hi = a.get("min._load"), a.get("max._load")
        if lo is not None and hi is not None and not (lo <= load_id <= hi[:STAT_CHARS] + "\uffff"):
            continue
        out.append(a)
    return out


def _survivors(dt: DeltaTable, staged: StagedFiles, a: dict[str, Any]) -> pa.Table | None:
    """The rows of the data file of add action ``a`` that are not of the load: None when it
    holds none of the load's rows (the file stays)."""
    root = Path(urllib.parse.unquote(dt.table_uri.removeprefix("file://")))
    path = root / urllib.parse.unquote(a["path"])
    loads = pq.read_table(path, columns=[lakes.LOAD_COL]).column(0)
    mine = pc.equal(loads, staged.load_id)
    if not pc.any(mine).as_py():
        return None
    if pc.all(mine).as_py():
        return pa.table({})
    table = pq.read_table(path)
    return table.filter(pc.invert(mine))


def _kept(staged: StagedFiles, a: dict[str, Any], rest: pa.Table) -> _File:
    """A new file, in the partition of add action ``a``, of the rows ``rest`` it keeps."""
    values = {c.removeprefix("partition."): v for c, v in a.items() if c.startswith("partition.")}
    folder = os.path.dirname(urllib.parse.unquote(a["path"]))
    rel = f"{folder}/part-{uuid.uuid4()}.zstd.parquet"
    path = staged.staging / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    options = _file_options(rest.schema, rest)
    f = _File(rel, path, values, pq.ParquetWriter(path, rest.schema, **options))
    f.add(rest)
    return f


def _replacing(dt: DeltaTable, staged: StagedFiles) -> tuple[list[RemoveAction], list[_File]]:
    """Remove actions for every file of ``dt`` with rows of the load, and the files that keep
    the other rows of those that hold some (as ``overwrite`` with ``_load = id`` does)."""
    removes: list[RemoveAction] = []
    kept: list[_File] = []
    now = int(time.time() * 1000)
    for a in _load_files(dt, staged.load_id):
        if not (a.get("min._load") == a.get("max._load") == staged.load_id):
            rest = _survivors(dt, staged, a)
            if rest is None:
                continue
            if rest.num_rows:
                kept.append(_kept(staged, a, rest))
        path = urllib.parse.unquote(a["path"])  # quoted again in the log, as the add was
        removes.append(RemoveAction(path, True, now, a.get("size_bytes"), None))
    return removes, kept


def commit_staged(
    staged: StagedFiles, *, metadata: Mapping[str, Any], replace_load: bool
) -> int | None:
    """Move the staged files into the table and commit them (see the module); the version,
    or None when the table is no longer at the planned version (nothing was committed and
    the files are still staged: land them with ``pipeline.lake.commit``)."""
    files = staged.close()
    schema = pa.schema(list(staged.rows_schema) + lakes.LAKE_FIELDS)
    lakes.ensure_table(staged.table, schema, staged.partition_by)
    dt = DeltaTable(str(staged.table))
    if dt.version() + 1 != staged.version:
        return None
    removes, kept = _replacing(dt, staged) if replace_load else ([], [])
    adds = [f.action() for f in files + kept]
    meta = {k: str(v) for k, v in metadata.items()}
    meta["gpuledger.load_id"] = staged.load_id
    meta["operationMetrics"] = {  # type: ignore[assignment]
        "num_added_files": len(adds),
        "num_removed_files": len(removes),
        "num_added_rows": sum(f.rows for f in files + kept),
    }
    moved = []
    for f in files + kept:
        target = staged.table / f.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f.path, target)
        moved.append((f, target))
    props = CommitProperties(custom_metadata=meta, max_commit_retries=0)
    try:
        dt.create_write_transaction(
            [*adds, *removes], "append", schema, staged.partition_by, commit_properties=props
        )
    except CommitFailedError:
        for f, target in moved:  # back to staging: not part of the table
            os.replace(target, f.path)
        return None
    return staged.version
