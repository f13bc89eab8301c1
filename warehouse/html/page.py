"""What every page shares: the style sheet, the chart check script, the page frame (head,
title, lineage footer) and the text of a table cell by column kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from warehouse.reports.render import ColumnKind, readable

CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:32px}
.meta{color:#666;font-size:13px} .note{color:#555;font-size:13px;max-width:780px}
figure{margin:8px 0 0 0;overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin-top:8px}
th,td{padding:3px 8px;border-bottom:1px solid #e5e5e5;text-align:right;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0} td.l,th.l{text-align:left}
footer.lineage{color:#555;font-size:12px;margin-top:32px;padding-top:8px}
footer.lineage{border-top:1px solid #e5e5e5} footer.lineage code{overflow-wrap:anywhere}
"""

# Marks each chart that the browser really laid out with visible marks (used by the tests,
# harmless for readers): data-drawn="yes" on the <svg>, and the count on <body>.
CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var drawn = 0;
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    var box = svg.getBBox();
    var marks = svg.querySelectorAll('rect.cell, rect.bar, polyline.series, circle').length;
    var ok = box.width > 0 && box.height > 0 && marks > 0;
    svg.setAttribute('data-drawn', ok ? 'yes' : 'no');
    svg.setAttribute('data-marks', String(marks));
    if (ok) { drawn += 1; }
  });
  document.body.setAttribute('data-charts-drawn', String(drawn));
});
"""

Columns = Sequence[tuple[str, str, str]]
"""A table's columns: (row key, heading, kind); kinds as ``cell_text`` takes them."""

# cell kinds that are the table format's numbers (warehouse.reports.render.readable)
_READABLE: dict[str, ColumnKind] = {"cny": "cny", "f": "gpu_h", "%": "rate"}


def lineage_footer(lineage: Mapping[str, Any] | None) -> str:
    """The page footer naming the lake table versions read and the ``--as-of`` value that
    reproduces the page (``Lineage.to_json`` form); empty without lineage."""
    if not lineage:
        return ""
    tables = lineage.get("tables") or {}
    read = ", ".join(f"{t} v{v}" for t, v in sorted(tables.items()))
    as_of = escape(str(lineage.get("as_of", "")))
    engine = f" by {escape(str(lineage['engine']))}" if lineage.get("engine") else ""
    return (
        f'<footer class="lineage" data-as-of="{as_of}">Lake versions read{engine}: '
        f"{escape(read or 'none')}. Reproduce with <code>--as-of {as_of}</code>.</footer>"
    )


def page(title: str, body: str, lineage: Mapping[str, Any] | None, css: str = "") -> str:
    """A whole self-contained page: ``title`` as its title and heading, then ``body``, the
    lineage footer and the chart check script; ``css`` follows the shared style sheet."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}{css}</style></head>"
        f"<body><h1>{escape(title)}</h1>"
        f"{body}"
        f"{lineage_footer(lineage)}"
        f"<script>{CHECK_SCRIPT}</script></body></html>\n"
    )


def cell_text(value: Any, kind: str) -> str:
    """A value as a cell shows it: ``—`` for none; ``cny`` money (``¥1,234.50``), ``f``
    GPU-hours and other figures (``1,234.5``), ``%`` a share of 1 (``73.4%``), as the table
    format writes them; ``g`` a short number (``8``), ``t`` an ISO-8601 instant to the minute;
    anything else as text, escaped."""
    if value is None:
        return "—"
    if kind in _READABLE:
        text = readable(float(value), _READABLE[kind])
        return f"¥{text}" if kind == "cny" else text
    if kind == "g":
        return f"{float(value):g}"
    if kind == "t":  # ISO-8601 in the page's time zone, named in the heading
        return escape(str(value)[:16].replace("T", " "))
    return escape(str(value))


def _align(kind: str) -> str:
    return "l" if kind in ("l", "t") else ""


def row_cells(row: Mapping[str, Any], columns: Columns) -> str:
    """The ``<td>`` cells of one row: text left-aligned, numbers right-aligned."""
    return "".join(
        f"<td class='{_align(k)}'>{cell_text(row.get(c), k)}</td>" for c, _, k in columns
    )


def table_head(columns: Columns, extra: str = "") -> str:
    """The ``<thead>`` of ``columns``, then ``extra`` (more ``<th>``) in the same row."""
    cells = "".join(f"<th class='{_align(k)}'>{escape(t)}</th>" for _, t, k in columns)
    return f"<thead><tr>{cells}{extra}</tr></thead>"
