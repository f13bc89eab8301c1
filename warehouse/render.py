"""Report rows (a list of dicts with the same keys) as a text table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any, Literal

Format = Literal["table", "csv", "json"]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _table(rows: Sequence[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_text(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def render(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> str:
    """``rows`` as ``table`` (aligned text), ``csv`` (header + rows, NULL = empty field, floats
    in full precision) or ``json`` (an array of objects, NULL = null)."""
    cols = list(columns if columns is not None else (rows[0].keys() if rows else []))
    if fmt == "json":
        return json.dumps([{c: r[c] for c in cols} for r in rows], indent=2, default=str) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        for r in rows:
            writer.writerow(["" if r[c] is None else r[c] for c in cols])
        return out.getvalue()
    if fmt == "table":
        if not rows:
            return "(no rows)\n"
        return _table(rows, cols)
    raise ValueError(f"unknown format {fmt!r}; expected table, csv or json")
