"""Reading the replays' CSV tables: columns by header name, every bad value named ``file:line``.

The public traces are read from a path the user gives; a value that cannot be read stops the
replay with the file and line (a malformed trace is the wrong input, not a stream to
dead-letter). Records that read but break the contract (an end before its start, a negative
count) go on to validation and its dead letters, as every collector's do.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import TerminalError


class TraceRowError(TerminalError, ValueError):
    """A value of a trace file that cannot be read; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class Row:
    """One data row: its file, its line number (the header is line 1) and its cells by name."""

    path: Path
    line: int
    cells: dict[str, str]

    def text(self, column: str) -> str:
        return self.cells[column].strip()

    def number(self, column: str) -> float:
        """The cell as a finite float; raises ``TraceRowError`` naming the file and line."""
        raw = self.text(column)
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise self.error(f"{column} {raw!r} is not a number")
        return value

    def optional(self, column: str) -> float | None:
        """The cell as a float, or None when it is empty."""
        return None if self.text(column) == "" else self.number(column)

    def count(self, column: str) -> int:
        """The cell as a whole number (``8`` or ``8.0``)."""
        value = self.number(column)
        if value != int(value):
            raise self.error(f"{column} {self.text(column)!r} is not a whole number")
        return int(value)

    def error(self, reason: str) -> TraceRowError:
        return TraceRowError(f"{self.path}:{self.line}: {reason}")


def read_rows(path: Path, columns: Sequence[str]) -> Iterator[Row]:
    """The rows of the CSV file ``path``; header names are stripped of spaces (some traces
    write ``a, b``). Raises ``TraceRowError`` when a column is missing or a row is short."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise TraceRowError(f"{path}:1: missing column(s) {', '.join(missing)}")
        for line, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) < len(header):
                raise TraceRowError(
                    f"{path}:{line}: {len(cells)} fields, the header has {len(header)}"
                )
            yield Row(path, line, dict(zip(header, cells, strict=False)))
