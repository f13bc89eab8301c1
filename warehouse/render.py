"""Report rows (a list of dicts with the same keys) as a text table, CSV or JSON, and the
lineage every report names: the lake table versions it read (``Lineage``)."""

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


def json_default(value: Any) -> Any:
    """JSON for what ``json`` cannot write: instants and dates as ISO-8601, decimals as numbers,
    durations in seconds, bytes as hex, anything else as its text."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
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
        return inert(json.dumps(value, default=json_default, ensure_ascii=False))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value if isinstance(value, int | float | Decimal) else inert(str(value))


def _table(rows: Sequence[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_text(r[c]) for c in columns] for r in rows]
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
    """``rows`` as ``table`` (aligned text), ``csv`` (header + rows, NULL = empty field, floats
    in full precision) or ``json`` (an array of objects, NULL = null); instants as ISO-8601.

    With ``lineage``: CSV starts with a ``# lake versions: ...`` comment line, the table ends
    with a ``lake versions: ...`` line, and every JSON object gets ``lake_versions`` (the
    ``--as-of`` value that reproduces the rows) and, when the lineage names it, ``engine``."""
    cols = list(columns if columns is not None else (rows[0].keys() if rows else []))
    if fmt == "json":
        extra: dict[str, Any] = {} if lineage is None else {"lake_versions": lineage.as_of}
        if lineage is not None and lineage.engine is not None:
            extra["engine"] = lineage.engine.to_json()
        objects = [{**{c: r[c] for c in cols}, **extra} for r in rows]
        return json.dumps(objects, indent=2, default=json_default) + "\n"
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
