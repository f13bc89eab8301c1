"""Report rows (a list of dicts with the same keys) as a text table, CSV or JSON, and the
lineage every report names: the lake table versions it read (``Lineage``).

Numbers are written two ways:

- **Machine outputs (CSV, JSON)** keep the figure, minus the binary noise of the floating-point
  sums it came from (``24000.0``, not ``23999.999999999076``): every float is rounded to
  ``SIGNIFICANT_DIGITS`` (12) significant digits after the exact computation and written as
  the shortest text that reads back as that float (``tidy``). That moves a figure by at most
  5e-12 of itself, far inside the 1e-9 within which the DuckDB and Spark engines and the
  rollup and raw paths agree (``docs/rollups.md``, ``docs/spark.md``), and it is a function of
  the value: equal figures still print equal. Numbers stay numbers; NaN and infinities are
  left as they are.
- **Tables (``table``) are for reading**, by column name (``column_kind``): rates and shares
  (``allocation_rate``, ``utilisation``, ``efficiency``, ``no_telemetry_share``, ``coverage``,
  ...) as percentages with one decimal (``73.4%``), GPU-hours (``*_gpu_h``, ``*_gpu_hours``)
  with one decimal and thousands separators (``12,345.6``), money (a column named with
  ``cny``, ``subsidy``, ``invoice`` or ``price``: CNY, also CNY per GPU-hour) with two decimals
  and separators, other floats with 6 significant digits.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from pipeline.lake import format_as_of

Format = Literal["table", "csv", "json"]
ENGINE = "duckdb"


@dataclass(frozen=True)
class Engine:
    """The SQL engine a report ran on."""

    name: str
    version: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}

    def label(self) -> str:
        return f"{self.name} {self.version}"


def duckdb_engine() -> Engine:
    import duckdb

    return Engine(ENGINE, duckdb.__version__)


@dataclass(frozen=True)
class Lineage:
    """The lake table versions a report read (``tables``: the ``_snapshot`` view of its
    connection, None where the table had no commit).

    ``versions`` names every table, one with no commit as version 0: the empty table Delta
    creates before the first write, which reads the same as no table. So ``as_of``, the
    ``--as-of`` value that reads the same snapshot again, pins every table (data landed later
    in a table that did not exist yet does not leak into the reproduction), and a reproduction
    prints the same versions.
    """

    tables: Mapping[str, int | None]
    engine: Engine | None = None
    """The engine the report ran on: named in JSON next to the versions; in CSV and table
    outputs only when it is not DuckDB (their DuckDB form predates the engine choice)."""

    @property
    def versions(self) -> dict[str, int]:
        return {t: 0 if v is None else int(v) for t, v in sorted(self.tables.items())}

    @property
    def as_of(self) -> str:
        return format_as_of(self.versions)

    def to_json(self) -> dict[str, Any]:
        """``{"tables": {table: version}, "as_of": ..., "engine": "duckdb"}`` (the engine's
        name)."""
        name = ENGINE if self.engine is None else self.engine.name
        return {"tables": self.versions, "as_of": self.as_of, "engine": name}

    def note(self) -> str:
        return f"lake versions: {self.as_of}; reproduce with --as-of {self.as_of}"

    def _engine_note(self) -> str:
        if self.engine is None or self.engine.name == ENGINE:
            return ""
        return f"; engine: {self.engine.label()}"

    def csv_comment(self) -> str:
        """The first line of CSV outputs."""
        return f"# {self.note()}{self._engine_note()}\n"

    def footer(self) -> str:
        """The last line of table outputs."""
        return f"lake versions: {self.as_of}{self._engine_note()}\n"


def name_engine(report: dict[str, Any], engine: Engine) -> dict[str, Any]:
    """``report`` (a dict with ``lineage``, as the audit and the effectiveness report return
    it) naming the engine it ran on: ``lineage.engine`` its name, ``engine`` next to
    ``lineage`` (``{"name": ..., "version": ...}``)."""
    if report.get("lineage") is not None:
        report["lineage"] = {**report["lineage"], "engine": engine.name}
    report["engine"] = engine.to_json()
    return report


SIGNIFICANT_DIGITS = 12
"""Significant digits of every float in CSV and JSON outputs (module docstring)."""


def tidy(value: Any) -> Any:
    """``value`` with every float (also inside lists, tuples and dicts) rounded to
    ``SIGNIFICANT_DIGITS`` significant digits; anything else as it is."""
    if isinstance(value, float):
        if value == 0.0 or not math.isfinite(value):
            return value
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, dict):
        return {k: tidy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tidy(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = 2) -> str:
    """``value`` as JSON text (``tidy`` floats, ``json_default`` for the rest, UTF-8 text as
    it is), ending with a newline."""
    return json.dumps(tidy(value), indent=indent, default=json_default, ensure_ascii=False) + "\n"


def json_default(value: Any) -> Any:
    """JSON for what ``json`` cannot write: instants and dates as ISO-8601, decimals as numbers
    (``tidy``), durations in seconds, bytes as hex, anything else as its text."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return tidy(float(value))
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


ColumnKind = Literal["rate", "gpu_h", "cny", "number"]
RATE_NAMES = ("utilisation", "efficiency", "coverage")
RATE_SUFFIXES = ("_rate", "_share", "_utilisation", "_efficiency", "_coverage")
MONEY_WORDS = frozenset({"cny", "subsidy", "invoice", "price"})


def column_kind(name: str) -> ColumnKind:
    """How the ``table`` format shows a number in column ``name``: ``rate`` (a share of 1,
    shown as a percentage), ``gpu_h`` (GPU-hours), ``cny`` (money, also CNY per GPU-hour) or
    ``number``."""
    if name in RATE_NAMES or name.endswith(RATE_SUFFIXES):
        return "rate"
    if MONEY_WORDS.intersection(name.split("_")):
        return "cny"
    if name.endswith(("_gpu_h", "_gpu_hours")) and "_per_" not in name:
        return "gpu_h"
    return "number"


def readable(value: float | int | Decimal, kind: ColumnKind) -> str:
    """A number as the ``table`` format shows it in a column of ``kind`` (module docstring)."""
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if kind == "rate":
        return f"{number:.1%}"
    if kind == "gpu_h":
        return f"{number:,.1f}"
    if kind == "cny":
        return f"{number:,.2f}"
    if isinstance(value, int):
        return str(value)
    return f"{number:.6g}"


def _text(value: Any, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        kind = column_kind(column)
        if kind != "number" or isinstance(value, float):
            return readable(value, kind)
    if isinstance(value, str):  # a terminal table: shown as it is (CSV cells are made inert)
        return value
    return str(_cell(value))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a cell starting like this as a formula (OWASP CSV injection)."""


def inert(text: str) -> str:
    """``text`` made safe to open in a spreadsheet: a leading formula character is escaped
    with a single quote (the OWASP rule); numbers are never passed here, so they stay numbers."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _cell(value: Any) -> Any:
    """A CSV field: instants ISO-8601, lists and structs as JSON, text made inert, numbers as
    they are."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return inert(json.dumps(tidy(value), default=json_default, ensure_ascii=False))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, float):
        return tidy(value)
    return value if isinstance(value, int | Decimal) else inert(str(value))


def _table(rows: Sequence[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_text(r[c], c) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def render(
    rows: Sequence[dict[str, Any]],
    fmt: str,
    columns: Sequence[str] | None = None,
    lineage: Lineage | None = None,
) -> str:
    """``rows`` as ``table`` (aligned text, numbers for reading: ``column_kind``), ``csv``
    (header + rows, NULL = empty field, floats ``tidy``) or ``json`` (an array of objects, NULL
    = null, floats ``tidy``); instants as ISO-8601.

    With ``lineage``: CSV starts with a ``# lake versions: ...`` comment line, the table ends
    with a ``lake versions: ...`` line, and every JSON object gets ``lake_versions`` (the
    ``--as-of`` value that reproduces the rows) and, when the lineage names it, ``engine``."""
    cols = list(columns if columns is not None else (rows[0].keys() if rows else []))
    if fmt == "json":
        extra: dict[str, Any] = {} if lineage is None else {"lake_versions": lineage.as_of}
        if lineage is not None and lineage.engine is not None:
            extra["engine"] = lineage.engine.to_json()
        objects = [{**{c: r[c] for c in cols}, **extra} for r in rows]
        return json.dumps(tidy(objects), indent=2, default=json_default) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        if lineage is not None:
            out.write(lineage.csv_comment())
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        for r in rows:
            writer.writerow(["" if r[c] is None else _cell(r[c]) for c in cols])
        return out.getvalue()
    if fmt == "table":
        text = _table(rows, cols) if rows else "(no rows)\n"
        return text if lineage is None else text + lineage.footer()
    raise ValueError(f"unknown format {fmt!r}; expected table, csv or json")
