"""The utilisation report as one self-contained HTML page (inline CSS and SVG, no network)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from warehouse.html.page import page
from warehouse.html.svg import heatmap, line_chart, stacked_bars
from warehouse.reports.render import Lineage

MAX_BAR_GROUPS = 8

TABLE_COLUMNS = (
    ("period", "period", "l"),
    ("group", "datacentre / cluster / scope", "l"),
    ("capacity_gpu_h", "capacity GPU-h", ""),
    ("allocated_gpu_h", "allocated GPU-h", ""),
    ("busy_gpu_h", "busy GPU-h", ""),
    ("idle_capacity_gpu_h", "idle capacity GPU-h", ""),
    ("allocation_rate", "allocation rate", "%"),
    ("utilisation", "utilisation", "%"),
    ("efficiency", "efficiency", "%"),
    ("no_telemetry_share", "no telemetry", "%"),
    ("sources", "sources", "l"),
)

Keyed = Mapping[tuple[str, str], dict[str, Any]]
"""Report rows by (group label, period)."""


def group_label(row: dict[str, Any]) -> str:
    """``datacentre / cluster / scope``; a region or ownership group of the registry by name."""
    group = row.get("region") or row.get("ownership")  # report utilisation --by region|ownership
    parts = [group] if group else [row.get("datacentre"), row.get("cluster"), row.get("scope")]
    return " / ".join(str(p) for p in parts if p not in (None, ""))


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "<td>—</td>"
    if kind == "%":
        return f"<td>{value:.1%}</td>"
    if isinstance(value, float):
        return f"<td>{value:,.1f}</td>"
    cls = ' class="l"' if kind == "l" else ""
    return f"<td{cls}>{escape(str(value))}</td>"


def _table(rows: Sequence[dict[str, Any]]) -> str:
    head = "".join(
        f'<th class="{k if k == "l" else ""}">{escape(t)}</th>' for _, t, k in TABLE_COLUMNS
    )
    body = []
    for r in rows:
        r = {**r, "group": group_label(r)}
        body.append("<tr>" + "".join(_cell(r.get(c), k) for c, _, k in TABLE_COLUMNS) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _sum(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def utilisation_html(
    rows: Sequence[dict[str, Any]],
    title: str = "GPU capacity, allocation and utilisation",
    generated_at: datetime | None = None,
    lineage: Lineage | None = None,
) -> str:
    """The page for ``warehouse.reports.utilisation.utilisation_report`` rows (any period /
    grouping);
    with ``lineage`` (``warehouse.reports.utilisation.lineage``), a footer names the lake versions
    read."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    periods = sorted({str(r["period"]) for r in rows})
    groups = sorted({group_label(r) for r in rows})
    if not rows:
        charts = '<p class="note">No rows: the lake has no records for this period.</p>'
    else:
        charts = _charts(rows, groups, periods)
    body = (
        f'<p class="meta">{len(rows)} rows, {len(periods)} periods, {len(groups)} groups; '
        f"generated {escape(when)} by gpuledger.</p>"
        f"{charts}<h2>Figures</h2>{_table(rows)}"
    )
    return page(title, body, None if lineage is None else lineage.to_json())


def _charts(rows: Sequence[dict[str, Any]], groups: list[str], periods: list[str]) -> str:
    """The heat map, the GPU-hour flow and the idle-capacity bars of (non-empty) ``rows``."""
    by_key = {(group_label(r), str(r["period"])): r for r in rows}
    has_util = any(r.get("utilisation") is not None for r in rows)
    metric = "utilisation" if has_util else "allocation_rate"
    heat = {k: r.get(metric) for k, r in by_key.items()}
    heat_note = (
        "Utilisation = busy GPU-hours / capacity GPU-hours."
        if has_util
        else "No GPU samples in these rows, so the map shows the allocation rate "
        "(allocated / capacity GPU-hours) instead of utilisation."
    )
    flow = _flow(by_key, groups, periods)
    idle = _idle(by_key, groups, periods)
    return (
        f"<h2>{'Utilisation' if has_util else 'Allocation rate'} by group and period</h2>"
        f'<p class="note">{escape(heat_note)} Grey: no capacity figure.</p>'
        f"<figure>{heatmap(groups, periods, heat, 'heatmap of ' + metric)}</figure>"
        "<h2>Capacity, allocated and busy GPU-hours</h2>"
        f"<figure>{line_chart(periods, flow, 'GPU-hours per period', 'GPU-h')}</figure>"
        "<h2>Idle capacity</h2>"
        '<p class="note">Capacity not allocated to any tenant (GPU-hours): what a '
        "data centre could still offer, for instance on the compute-voucher market.</p>"
        f"<figure>{stacked_bars(periods, idle, 'idle capacity per period', 'GPU-h')}</figure>"
    )


def _flow(by_key: Keyed, groups: list[str], periods: list[str]) -> dict[str, list[float | None]]:
    """Capacity, allocated and (where any) busy GPU-hours per period, summed over groups."""

    def per_period(col: str) -> list[float | None]:
        return [
            _sum([by_key[(g, p)].get(col) for g in groups if (g, p) in by_key]) for p in periods
        ]

    flow = {
        "capacity": per_period("capacity_gpu_h"),
        "allocated": per_period("allocated_gpu_h"),
        "busy": per_period("busy_gpu_h"),
    }
    if all(v is None for v in flow["busy"]):
        del flow["busy"]
    return flow


def _idle(by_key: Keyed, groups: list[str], periods: list[str]) -> dict[str, list[float | None]]:
    """Idle capacity per period of the ``MAX_BAR_GROUPS`` groups with the most, the rest
    summed as one ``<n> others`` series."""
    idle_total = {
        g: sum(
            (by_key[(g, p)].get("idle_capacity_gpu_h") or 0.0) for p in periods if (g, p) in by_key
        )
        for g in groups
    }
    top = sorted(groups, key=lambda g: -idle_total[g])[:MAX_BAR_GROUPS]
    idle: dict[str, list[float | None]] = {
        g: [(by_key.get((g, p)) or {}).get("idle_capacity_gpu_h") for p in periods] for g in top
    }
    rest = [g for g in groups if g not in top]
    if rest:
        idle[f"{len(rest)} others"] = [
            _sum([(by_key.get((g, p)) or {}).get("idle_capacity_gpu_h") for g in rest])
            for p in periods
        ]
    return idle
