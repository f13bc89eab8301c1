"""Contract records of one kind from a file: JSON lines, CSV or Parquet (DESIGN §3, §5).

- ``.jsonl`` / ``.json``: one JSON object per line; blank lines are ignored.
- ``.csv``: a header row naming contract fields; values typed from the contract (never
  inferred); an empty cell is NULL; lists are ``;``-separated.
- ``.parquet``: columns named as the contract fields.

Timestamps are ISO-8601 with an offset or integer epoch ms; a timestamp without an offset is
refused. Every row goes through ``pipeline.records.coerce``. A file with any bad row is refused
whole: ``collect()`` raises ``InputFileError`` listing every bad row as ``<file>:<n>: <reason>``
and yields nothing, so nothing is half published. ``<n>`` is the physical line for JSON lines,
the line for CSV (the header is line 1) and the 1-based row number for Parquet.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from collectors.base import Emitted
from pipeline.records import Field, FieldType, Kind, Record, RecordError, coerce

Numbered = Iterator[tuple[int | None, Mapping[str, Any] | RecordError]]
"""(line or row number, None for the whole file; the raw mapping or why it could not be read)."""


class InputFileError(ValueError):
    """A records file was refused whole; ``problems`` holds one ``<file>:<n>: <reason>`` each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(
            f"{path}: refused whole, {len(problems)} problem(s), nothing imported:\n"
            + "\n".join(problems)
        )


class RecordsFileCollector:
    """``collect()`` yields every record of ``path`` as ``kind``, or raises ``InputFileError``."""

    def __init__(self, kind: Kind, path: Path) -> None:
        self.kind = kind
        self.path = Path(path)

    def collect(self) -> Iterable[Emitted]:
        reader = READERS.get(self.path.suffix.lower())
        if reader is None:
            raise InputFileError(
                self.path,
                [f"{self.path}: unsupported file type; use {', '.join(sorted(READERS))}"],
            )
        records: list[Record] = []
        problems: list[str] = []
        try:
            for n, raw in reader(self.kind, self.path):
                where = f"{self.path}:{n}" if n is not None else str(self.path)
                try:
                    if isinstance(raw, RecordError):
                        raise raw
                    records.append(coerce(self.kind, raw))
                except RecordError as exc:
                    problems.append(f"{where}: {exc.reason}")
        except UnicodeDecodeError as exc:
            problems.append(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        if problems:
            raise InputFileError(self.path, problems)
        for record in records:
            yield self.kind, record


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


def _parquet(k: Kind, path: Path) -> Numbered:
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a broken or foreign file
        yield None, RecordError(f"not a readable Parquet file: {exc}", "bad_file")
        return
    unknown = [c for c in table.column_names if c not in k.names]
    if unknown:
        yield None, RecordError(f"unknown column(s) for {k.name}: {', '.join(unknown)}")
        table = table.drop_columns(unknown)
    yield from enumerate(table.to_pylist(), start=1)


READERS: dict[str, Callable[[Kind, Path], Numbered]] = {
    ".jsonl": _json_lines,
    ".json": _json_lines,
    ".csv": _csv,
    ".parquet": _parquet,
}
