"""Contract records of one kind from a file: JSON lines, CSV or Parquet
(docs/semantics.md#record-kinds, docs/audit.md#voucher-records).

- ``.jsonl`` / ``.json``: one JSON object per line; blank lines are ignored.
- ``.csv``: a header row naming contract fields; values typed from the contract (never
  inferred); an empty cell is NULL; lists are ``;``-separated.
- ``.parquet``: columns named as the contract fields; a timezone-aware timestamp column is
  read as epoch ms.

Timestamps are ISO-8601 with an offset or integer epoch ms; a timestamp without an offset is
refused. Every row goes through ``pipeline.records.coerce``. A file with any bad row is refused
whole: ``collect()`` raises ``InputFileError`` listing the bad rows as ``<file>:<n>: <reason>``
(the first ``MAX_PROBLEMS``, then how many more) and yields nothing, so nothing is half
published. ``<n>`` is the physical line for JSON lines, the line for CSV (the header is line 1)
and the 1-based row number for Parquet.

Memory stays bounded whatever the file size: every reader streams (Parquet a batch of
``PARQUET_BATCH_ROWS`` rows at a time). A file of at most ``buffer_records`` rows is read once
and its records held until the whole file has passed; a longer one is read twice, a first pass
that only validates and a second that yields (``collect_tables`` reads a long Parquet file
once: its checked batches are spooled to a temporary Arrow file, read back once it passed).
``single_pass=True`` yields while validating and raises ``InputFileError`` at the end instead:
only for a sink that commits nothing before its ``flush`` (``pipeline.backfill.LakeSink`` under
``collectors.run.run_collector``, which does not flush when the collector raises), never for
one that publishes as it goes (``KafkaSink``).
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.ipc as ipc

from collectors.base import Emitted
from pipeline.bounds import window_bounds
from pipeline.errors import TerminalError
from pipeline.readers import READERS, Numbered, parquet_batches
from pipeline.records import Kind, Record, RecordError, coerce

_T = TypeVar("_T")


def _one(_item: object) -> int:
    return 1


MAX_PROBLEMS = 1000
"""Bad rows listed by name in ``InputFileError``; the rest are counted."""
BUFFER_RECORDS = 10_000
"""A file with at most this many records is read once (its records held until it passed)."""
PARQUET_TABLE_ROWS = 131_072
"""Rows per batch on the column-wise path (``collect_tables``)."""
SPOOL_QUEUE = 4
"""Checked tables waiting for the spool's writer thread (bounds memory)."""


class InputFileError(TerminalError, ValueError):
    """A records file was refused whole; ``problems`` holds one ``<file>:<n>: <reason>`` each
    (at most ``MAX_PROBLEMS``), ``more`` how many further problems were not listed."""

    def __init__(self, path: Path, problems: list[str], more: int = 0) -> None:
        self.path = path
        self.problems = problems
        self.more = more
        super().__init__(
            f"{path}: refused whole, {len(problems) + more} problem(s), nothing imported:\n"
            + "\n".join(problems)
            + (f"\n... and {more} more" if more else "")
        )


class _Problems:
    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.listed: list[str] = []
        self.more = 0

    def add(self, text: str) -> None:
        if len(self.listed) < self.limit:
            self.listed.append(text)
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.listed)

    def error(self, first: str | None = None) -> InputFileError:
        return InputFileError(self.path, ([first] if first else []) + self.listed, self.more)


class RecordsFileCollector:
    """``collect()`` yields every record of ``path`` as ``kind``, or raises ``InputFileError``
    (before yielding anything, unless ``single_pass``; see the module docstring)."""

    def __init__(
        self,
        kind: Kind,
        path: Path,
        *,
        single_pass: bool = False,
        buffer_records: int = BUFFER_RECORDS,
        max_problems: int = MAX_PROBLEMS,
    ) -> None:
        self.kind = kind
        self.path = Path(path)
        self.single_pass = single_pass
        self.buffer_records = buffer_records
        self.max_problems = max(1, max_problems)

    def collect(self) -> Iterable[Emitted]:
        reader = READERS.get(self.path.suffix.lower())
        if reader is None:
            raise InputFileError(
                self.path,
                [f"{self.path}: unsupported file type; use {', '.join(sorted(READERS))}"],
            )
        k = self.kind
        for record in self._refusable(lambda found: self._records(reader, found), _one):
            yield k, record

    def _refusable(
        self,
        read: Callable[[_Problems], Iterator[_T]],
        size: Callable[[_T], int],
        spool: Callable[[], _Spool] | None = None,
    ) -> Iterator[_T]:
        """What ``read`` yields, under the whole-file rule: nothing before the file passed
        (held when it has at most ``buffer_records`` rows, else spooled by ``spool`` when
        given, else read again), unless ``single_pass``; ``InputFileError`` with every
        problem otherwise."""
        problems = _Problems(self.path, self.max_problems)
        if self.single_pass:
            yield from read(problems)
            if problems:
                raise problems.error()
            return
        before = _stamp(self.path)
        held: list[_T] | None = []
        spooled: _Spool | None = None
        rows = 0
        try:
            for item in read(problems):  # first pass: validate everything
                rows += size(item)
                if spooled is not None:
                    spooled.add(item)
                elif held is not None:
                    held.append(item)
                    if rows > self.buffer_records:  # too many to hold: spool, or read again
                        if spool is not None:
                            spooled = spool()
                            for early in held:
                                spooled.add(early)
                        held = None
            if problems:
                raise problems.error()
            if spooled is not None:
                yield from spooled.replay()
                return
        finally:
            if spooled is not None:
                spooled.close()
        if held is not None:
            yield from held
            return
        changed = f"{self.path}: changed while being read"
        if _stamp(self.path) != before:
            raise InputFileError(self.path, [f"{changed}; nothing imported"])
        again = _Problems(self.path, self.max_problems)
        yield from read(again)  # second pass: the same, now yielded
        if again:
            raise again.error(f"{changed}; records before the first problem were emitted")

    def _records(
        self, reader: Callable[[Kind, Path], Numbered], problems: _Problems
    ) -> Iterator[Record]:
        """Every row coerced; each bad one noted in ``problems``. Yields records only while
        no problem was seen, and reads on to the end either way."""
        k, path = self.kind, self.path
        window = window_bounds()  # the clock read once a pass; the window only moves forward
        try:
            for n, raw in reader(k, path):
                try:
                    if isinstance(raw, RecordError):
                        raise raw
                    record = coerce(k, raw, window)
                except RecordError as exc:
                    problems.add(
                        f"{path}:{n}: {exc.reason}" if n is not None else f"{path}: {exc.reason}"
                    )
                    continue
                if not problems:
                    yield record
        except UnicodeDecodeError as exc:
            problems.add(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")

    # -- Parquet: whole Arrow batches, validated column-wise -------------------------------
    def collect_tables(self) -> Iterator[tuple[Kind, pa.Table]] | None:
        """``collect()`` for a Parquet file as validated Arrow tables (the contract's schema,
        in row order), with the same refusal rules and problems; None for other formats.
        Each batch is checked column-wise (``pipeline.columnar.validate_arrays``): only rows
        those checks cannot vouch for become records and go through ``coerce``."""
        if self.path.suffix.lower() != ".parquet":
            return None
        return self._tables()

    def _tables(self) -> Iterator[tuple[Kind, pa.Table]]:
        k = self.kind
        read = functools.partial(_parquet_tables, k, self.path)
        spool = functools.partial(_Spool, k.arrow_schema())
        for table in self._refusable(read, lambda t: t.num_rows, spool):
            yield k, table


class _Spool:
    """Checked tables written to a temporary Arrow IPC file (LZ4) by a background thread, and
    read back in order, a batch at a time (no memory map: RSS stays bounded)."""

    def __init__(self, schema: pa.Schema) -> None:
        self._dir = tempfile.mkdtemp(prefix="gpuledger-spool-")
        self._path = os.path.join(self._dir, "checked.arrow")
        self._schema = schema
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=SPOOL_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="records-spool", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        options = ipc.IpcWriteOptions(compression="lz4")
        try:
            with (
                pa.OSFile(self._path, "wb") as sink,
                ipc.new_stream(sink, self._schema, options=options) as writer,
            ):
                while (table := self._queue.get()) is not None:
                    writer.write_table(table)
        except BaseException as exc:  # reported by ``replay``
            self._error = exc
            while self._queue.get() is not None:  # let ``add`` and ``_finish`` go on
                pass

    def add(self, table: pa.Table) -> None:
        self._queue.put(table)

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def replay(self) -> Iterator[pa.Table]:
        self._finish()
        if self._error is not None:
            raise self._error
        with pa.OSFile(self._path, "rb") as source, ipc.open_stream(source) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch], self._schema)

    def close(self) -> None:
        self._finish()
        shutil.rmtree(self._dir, ignore_errors=True)


def _parquet_tables(k: Kind, path: Path, problems: _Problems) -> Iterator[pa.Table]:
    """The validated rows of each batch of ``path``; every bad row noted in ``problems``, and
    nothing yielded once there is one (the file is read to its end either way)."""
    from pipeline.columnar import validate_arrays

    window = window_bounds()
    n = 0
    for batch in parquet_batches(k, path, PARQUET_TABLE_ROWS):
        if isinstance(batch, RecordError):
            problems.add(f"{path}: {batch.reason}")
            continue
        arrays, rows_in_batch = batch

        def raws_of(rows: list[int], cols: dict[str, pa.Array] = arrays) -> list[Any]:
            """Those rows as ``_parquet`` reads them (the per-record path's input)."""
            if not cols:
                return [{} for _ in rows]
            return [dict(r) for r in pa.table(cols).take(rows).to_pylist()]

        checked = validate_arrays(k, arrays, rows_in_batch, raws_of, window)
        if checked is None:  # a column the contract does not read as is: row by row
            from pipeline.validate import validate_batch

            good, bad = validate_batch(k, raws_of(list(range(rows_in_batch))), window)
            table = pa.Table.from_pylist(good, schema=k.arrow_schema())
            rejects = bad
        else:
            table, rejects = checked
        for r in rejects:
            problems.add(f"{path}:{n + r.index + 1}: {r.error.reason}")
        n += rows_in_batch
        if not problems:
            yield table


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino
