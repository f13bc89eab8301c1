"""The file formats records and entities are read from: JSON lines, CSV and Parquet.

``READERS`` maps a file suffix to a reader ``(kind, path) -> Numbered``: each yields, per row,
its number (the physical line for JSON lines, the line for CSV with the header as line 1, the
1-based row for Parquet; None for the whole file) and the raw mapping, or a ``RecordError``
saying why the row could not be read. Readers stream: Parquet a batch of
``PARQUET_BATCH_ROWS`` rows at a time. Values are typed from the contract, never inferred (an
empty CSV cell is NULL, lists are ``;``-separated); coercion and validation are the caller's
(``collectors.records_file`` for records, ``pipeline.entity_import`` for entities).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.records import Field, FieldType, Kind, RecordError

Numbered = Iterator[tuple[int | None, Mapping[str, Any] | RecordError]]
"""(line or row number, None for the whole file; the raw mapping or why it could not be read)."""

PARQUET_BATCH_ROWS = 16_384


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


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def parquet_batches(
    k: Kind, path: Path, batch_rows: int
) -> Iterator[tuple[dict[str, pa.Array], int] | RecordError]:
    """The contract's columns of each batch of ``path`` (by name; aware timestamps as epoch
    ms where exact) and its row count; a ``RecordError`` for an unreadable file (then
    nothing more), for unknown columns (the known ones still follow) and for a corrupt part
    further on (then nothing more)."""
    try:
        text = [f.name for f in pq.read_schema(path) if _is_text(f.type)]
        # text read as dictionaries: a repeated name is decoded once (readers decode them);
        # no pre-buffering: it reads the column chunks of every row group ahead, so the
        # memory of a streamed read grows to the file's size
        pf = pq.ParquetFile(path, read_dictionary=text, pre_buffer=False)
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
        batches = pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)
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
    for batch in parquet_batches(k, path, PARQUET_BATCH_ROWS):
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
