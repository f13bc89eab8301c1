"""Inline SVG charts drawn in Python: no JavaScript library, no CDN, nothing fetched at view time.

Each function returns one ``<svg>`` element as text; every value shown is escaped. Charts carry
``class="chart"`` and ``data-chart="<kind>"`` so a browser test can find and measure them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#3b6ea8", "#e08a2c", "#4e9a58", "#c8553d", "#7d5ba6", "#8c6d46", "#d36ba6", "#6b7b8c")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def nice_max(v: float) -> float:
    """The smallest 1/2/2.5/5 x 10^k at or above ``v`` (an axis top)."""
    if v <= 0 or not math.isfinite(v):
        return 1.0
    k = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * k >= v:
            return m * k
    return 10 * k


def heat_colour(x: float) -> str:
    """0 -> pale yellow, 1 -> dark blue (perceptually ordered, readable text on both ends)."""
    x = min(1.0, max(0.0, x))
    stops = ((255, 247, 188), (127, 205, 187), (44, 127, 184), (37, 52, 148))
    pos = x * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    f = pos - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(stops[i], stops[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    rows: Sequence[str],
    cols: Sequence[str],
    values: dict[tuple[str, str], float | None],
    title: str,
    cell: int = 22,
) -> str:
    """Rows x columns of shares (0-1); a missing or NULL value is a grey cell "no data"."""
    left = 8 + 7 * max((len(r) for r in rows), default=4)
    top = 30 + 6 * max((len(c) for c in cols), default=4)
    w = left + cell * len(cols) + 90
    h = max(top + cell * len(rows), top + 112) + 10  # room for the colour legend
    out = [
        f'<svg class="chart" data-chart="heatmap" role="img" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" {FONT}><title>{escape(title)}</title>'
    ]
    for j, c in enumerate(cols):
        x = left + j * cell + cell / 2
        out.append(
            f'<text x="{x:.1f}" y="{top - 6}" transform="rotate(-60 {x:.1f} {top - 6})">'
            f"{escape(c)}</text>"
        )
    for i, r in enumerate(rows):
        y = top + i * cell
        out.append(
            f'<text x="{left - 6}" y="{y + cell * 0.68:.1f}" text-anchor="end">{escape(r)}</text>'
        )
        for j, c in enumerate(cols):
            v = values.get((r, c))
            x = left + j * cell
            fill = "#d9d9d9" if v is None else heat_colour(v)
            label = "no data" if v is None else f"{v:.1%}"
            out.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                f'fill="{fill}"><title>{escape(r)} {escape(c)}: {label}</title></rect>'
            )
    lx = left + cell * len(cols) + 16
    for k in range(11):
        y = top + (10 - k) * 8
        out.append(f'<rect x="{lx}" y="{y}" width="14" height="8" fill="{heat_colour(k / 10)}"/>')
    out.append(f'<text x="{lx + 18}" y="{top + 8}">100%</text>')
    out.append(f'<text x="{lx + 18}" y="{top + 88}">0%</text>')
    out.append(f'<rect x="{lx}" y="{top + 100}" width="14" height="8" fill="#d9d9d9"/>')
    out.append(f'<text x="{lx + 18}" y="{top + 108}">no data</text>')
    out.append("</svg>")
    return "".join(out)


def _label_layout(xlabels: Sequence[str], pw: int) -> tuple[int, bool]:
    """(every how many x labels to print, rotated?): up to 16 categories are all labelled,
    rotated when they do not fit side by side; longer axes (dates) print every n-th."""
    n = len(xlabels)
    longest = max((len(x) for x in xlabels), default=1)
    fits = max(1, pw // (6 * longest + 14))  # labels that fit side by side
    if n <= fits:
        return 1, False
    if n <= 16:
        return 1, True
    return math.ceil(n / fits), False


def _bottom(xlabels: Sequence[str], pw: int) -> int:
    """Room under the plot for the x labels."""
    if _label_layout(xlabels, pw)[1]:
        return 24 + int(3.2 * max(len(x) for x in xlabels))
    return 30


def _axes(
    left: int, top: int, pw: int, ph: int, ymax: float, xlabels: Sequence[str], unit: str
) -> list[str]:
    out = []
    for k in range(5):
        v = ymax * k / 4
        y = top + ph - ph * k / 4
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    out.append(f'<text x="{left}" y="{top - 8}">{escape(unit)}</text>')
    n = len(xlabels)
    step, rotate = _label_layout(xlabels, pw)
    for i in range(0, n, step):
        x = left + (i + 0.5) * pw / n
        label = escape(xlabels[i])
        y = top + ph + 14
        if rotate:
            out.append(
                f'<text x="{x:.1f}" y="{y}" text-anchor="end" '
                f'transform="rotate(-30 {x:.1f} {y})">{label}</text>'
            )
        else:
            out.append(f'<text x="{x:.1f}" y="{y}" text-anchor="middle">{label}</text>')
    out.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#888"/>'
    )
    return out


def _colour(name: str, i: int, colours: Mapping[str, str] | None) -> str:
    return (colours or {}).get(name) or PALETTE[i % len(PALETTE)]


def _legend(
    names: Sequence[str], x: int, y: int, colours: Mapping[str, str] | None = None
) -> list[str]:
    out = []
    for i, name in enumerate(names):
        yy = y + i * 16
        out.append(
            f'<rect x="{x}" y="{yy}" width="12" height="12" fill="{_colour(name, i, colours)}"/>'
            f'<text x="{x + 16}" y="{yy + 10}">{escape(name)}</text>'
        )
    return out


PLOT_LEFT, PLOT_TOP, PLOT_RIGHT = 60, 24, 170
"""The margins of the line and bar charts' plot area: axis labels left, title top, legend
right."""


def _xy_chart(
    kind: str,
    xlabels: Sequence[str],
    title: str,
    unit: str,
    ymax: float,
    width: int,
    height: int,
) -> tuple[list[str], int, int]:
    """The opening ``<svg>`` and the axes of a chart over ``xlabels`` up to ``ymax``, and its
    plot area's width and height; the chart grows by the room its x labels need beyond 30."""
    pw = width - PLOT_LEFT - PLOT_RIGHT
    height += _bottom(xlabels, pw) - 30
    ph = height - PLOT_TOP - _bottom(xlabels, pw)
    out = [
        f'<svg class="chart" data-chart="{kind}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}><title>{escape(title)}</title>'
    ]
    out += _axes(PLOT_LEFT, PLOT_TOP, pw, ph, ymax, xlabels, unit)
    return out, pw, ph


def line_chart(
    xlabels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    title: str,
    unit: str,
    width: int = 760,
    height: int = 260,
) -> str:
    """One polyline per series over the x labels; a None breaks the line."""
    vals = [v for s in series.values() for v in s if v is not None]
    ymax = nice_max(max(vals, default=0.0))
    out, pw, ph = _xy_chart("line", xlabels, title, unit, ymax, width, height)
    left, top, n = PLOT_LEFT, PLOT_TOP, max(len(xlabels), 1)
    for i, (name, vs) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for j, v in enumerate(vs):
            if v is None:
                runs.append([])
                continue
            x = left + (j + 0.5) * pw / n
            y = top + ph - ph * v / ymax
            runs[-1].append(f"{x:.1f},{y:.1f}")
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(name)} {escape(xlabels[j])}: {_fmt(v)} {escape(unit)}</title>"
                "</circle>"
            )
        for run in runs:
            if len(run) > 1:
                out.append(
                    f'<polyline class="series" points="{" ".join(run)}" fill="none" '
                    f'stroke="{colour}" stroke-width="2"/>'
                )
    out += _legend(list(series), left + pw + 14, top)
    out.append("</svg>")
    return "".join(out)


def stacked_bars(
    xlabels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    title: str,
    unit: str,
    width: int = 760,
    height: int = 260,
    colours: Mapping[str, str] | None = None,
) -> str:
    """One bar per x label, stacked by series (None and negatives count as 0)."""
    totals = [sum(max(0.0, s[j] or 0.0) for s in series.values()) for j in range(len(xlabels))]
    ymax = nice_max(max(totals, default=0.0))
    out, pw, ph = _xy_chart("bars", xlabels, title, unit, ymax, width, height)
    left, top, n = PLOT_LEFT, PLOT_TOP, max(len(xlabels), 1)
    bw = max(1.0, pw / n * 0.8)
    for j in range(len(xlabels)):
        base = 0.0
        x = left + (j + 0.1) * pw / n
        for i, (name, vs) in enumerate(series.items()):
            v = max(0.0, vs[j] or 0.0)
            if v <= 0:
                continue
            y = top + ph - ph * (base + v) / ymax
            hgt = ph * v / ymax
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{hgt:.1f}" '
                f'fill="{_colour(name, i, colours)}"><title>{escape(name)} '
                f"{escape(xlabels[j])}: {_fmt(v)} {escape(unit)}</title></rect>"
            )
            base += v
    out += _legend(list(series), left + pw + 14, top, colours)
    out.append("</svg>")
    return "".join(out)
