"""Contract records of one kind from a file: JSON lines, CSV or Parquet (DESIGN §3, §5).

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
that only validates and a second that yields. ``single_pass=True`` yields while validating and
raises ``InputFileError`` at the end instead: only for a sink that commits nothing before its
``flush`` (``pipeline.backfill.LakeSink`` under ``collectors.run.run_collector``, which does not
flush when the collector raises), never for one that publishes as it goes (``KafkaSink``).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collectors.base import Emitted
from pipeline.bounds import window_bounds
from pipeline.errors import TerminalError
from pipeline.records import Field, FieldType, Kind, Record, RecordError, coerce

_T = TypeVar("_T")


def _one(_item: object) -> int:
    return 1


Numbered = Iterator[tuple[int | None, Mapping[str, Any] | RecordError]]
"""(line or row number, None for the whole file; the raw mapping or why it could not be read)."""

MAX_PROBLEMS = 1000
"""Bad rows listed by name in ``InputFileError``; the rest are counted."""
BUFFER_RECORDS = 10_000
"""A file with at most this many records is read once (its records held until it passed)."""
PARQUET_BATCH_ROWS = 16_384
PARQUET_TABLE_ROWS = 131_072
"""Rows per batch on the column-wise path (``collect_tables``)."""


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
        self, read: Callable[[_Problems], Iterator[_T]], size: Callable[[_T], int]
    ) -> Iterator[_T]:
        """What ``read`` yields, under the whole-file rule: nothing before the file passed
        (held when it has at most ``buffer_records`` rows, else read again), unless
        ``single_pass``; ``InputFileError`` with every problem otherwise."""
        problems = _Problems(self.path, self.max_problems)
        if self.single_pass:
            yield from read(problems)
            if problems:
                raise problems.error()
            return
        before = _stamp(self.path)
        held: list[_T] | None = []
        rows = 0
        for item in read(problems):  # first pass: validate everything
            rows += size(item)
            if held is not None:
                held.append(item)
                if rows > self.buffer_records:
                    held = None  # too many to hold: read the file again below
        if problems:
            raise problems.error()
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
        for table in self._refusable(read, lambda t: t.num_rows):
            yield k, table


def _parquet_tables(k: Kind, path: Path, problems: _Problems) -> Iterator[pa.Table]:
    """The validated rows of each batch of ``path``; every bad row noted in ``problems``, and
    nothing yielded once there is one (the file is read to its end either way)."""
    from pipeline.columnar import validate_arrays

    window = window_bounds()
    n = 0
    for batch in _parquet_batches(k, path, PARQUET_TABLE_ROWS):
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


def _json_lines(k: Kind, path: Path) -> Numbered:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, RecordError(f"not valid JSON: {exc.msg} (column {exc.colno})", "bad_json")
                continue
            if not isinstance(value, dict):
                yield n, RecordError(f"expected a JSON object, got {type(value).__name__}")
                continue
            yield n, value


def _csv(k: Kind, path: Path) -> Numbered:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in k.names]
        if unknown:
            yield 1, RecordError(f"unknown column(s) for {k.name}: {', '.join(unknown)}")
        fields = [(i, k.field(h)) for i, h in enumerate(header) if h in k.names]
        previous_end = rows.line_num
        for row in rows:
            n, previous_end = previous_end + 1, rows.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield n, RecordError(f"{len(row)} cells, the header has {len(header)}", "bad_row")
                continue
            try:
                cells = ((f, row[i].strip()) for i, f in fields)
                yield n, {f.name: _cell(f, text) for f, text in cells if text}
            except RecordError as exc:
                yield n, exc


def _cell(f: Field, text: str) -> Any:
    """One non-empty CSV cell typed from the contract (the contract decides, not the text)."""
    if f.type is FieldType.INT and text.lstrip("+-").isdigit():
        return int(text)
    if f.type is FieldType.INT or f.type is FieldType.FLOAT:
        try:
            return float(text)  # coerce refuses a non-integral value for an INT field
        except ValueError:
            raise RecordError(f"{f.name}: {text!r} is not a number", "bad_type") from None
    if f.type is FieldType.STRING_LIST:
        return [v.strip() for v in text.split(";") if v.strip()]
    return text  # STRING, and TIMESTAMP text that parse_ts reads (ISO-8601 or epoch ms)


_PER_MS = {"ms": 1, "us": 1_000, "ns": 1_000_000}


def _epoch_ms(column: pa.Array) -> pa.Array | None:
    """A timezone-aware timestamp column as int64 epoch ms, when that is exact (whole ms, no
    overflow); None otherwise (the values then go to ``coerce`` as datetimes, as before)."""
    t = column.type
    if not pa.types.is_timestamp(t) or t.tz is None:
        return None  # naive instants: coerce refuses each one ("no UTC offset")
    ticks = column.cast(pa.int64())
    try:
        if t.unit == "s":
            return pc.multiply_checked(ticks, 1000)
        per_ms = _PER_MS[t.unit]
        if per_ms == 1:
            return ticks
        ms = pc.divide(ticks, per_ms)  # truncates; only used when exact
        if pc.all(pc.equal(pc.multiply(ms, per_ms), ticks)).as_py() is False:
            return None
        return ms
    except pa.ArrowInvalid:  # overflow
        return None


def _parquet_batches(
    k: Kind, path: Path, batch_rows: int
) -> Iterator[tuple[dict[str, pa.Array], int] | RecordError]:
    """The contract's columns of each batch of ``path`` (by name; aware timestamps as epoch
    ms where exact) and its row count; a ``RecordError`` for an unreadable file (then
    nothing more), for unknown columns (the known ones still follow) and for a corrupt part
    further on (then nothing more)."""
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken or foreign file
        yield RecordError(f"not a readable Parquet file: {exc}", "bad_file")
        return
    with pf:
        names = pf.schema_arrow.names
        unknown = [c for c in names if c not in k.name_set]
        if unknown:
            yield RecordError(f"unknown column(s) for {k.name}: {', '.join(unknown)}")
        columns = [c for c in names if c in k.name_set]
        timestamps = {f.name for f in k.fields if f.type is FieldType.TIMESTAMP}
        batches = pf.iter_batches(batch_size=batch_rows, columns=columns)
        n = 0
        while True:
            try:
                batch = next(batches, None)
            except Exception as exc:  # a corrupt page or row group further on
                yield RecordError(f"not a readable Parquet file after row {n}: {exc}", "bad_file")
                return
            if batch is None:
                return
            arrays: dict[str, pa.Array] = {}
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                ms = _epoch_ms(column) if name in timestamps else None
                arrays[name] = column if ms is None else ms
            n += batch.num_rows
            yield arrays, batch.num_rows


def _parquet(k: Kind, path: Path) -> Numbered:
    n = 0
    for batch in _parquet_batches(k, path, PARQUET_BATCH_ROWS):
        if isinstance(batch, RecordError):
            yield None, batch
            continue
        arrays, count = batch
        values = [column.to_pylist() for column in arrays.values()]
        rows: Iterable[tuple[Any, ...]] = (
            zip(*values, strict=True) if values else itertools.repeat((), count)
        )
        names = list(arrays)
        for row in rows:
            n += 1
            yield n, dict(zip(names, row, strict=True))


READERS: dict[str, Callable[[Kind, Path], Numbered]] = {
    ".jsonl": _json_lines,
    ".json": _json_lines,
    ".csv": _csv,
    ".parquet": _parquet,
}
