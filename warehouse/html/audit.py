"""The monthly voucher audit (``warehouse.vouchers.audit.audit``) as one self-contained HTML page:
money at stake per finding type, subsidy flows per programme, the findings worst first with
their evidence, and the programme summaries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from warehouse.html.page import cell_text, page, row_cells, table_head
from warehouse.html.svg import stacked_bars

SEVERITY_ORDER = ("high", "medium", "low")
SEVERITY_COLOURS = {"high": "#c8553d", "medium": "#e08a2c", "low": "#9aa5b1"}
FLOW_COLOURS = {"subsidy without finding": "#3b6ea8", "subsidy at stake": "#c8553d"}
AUDIT_CSS = """
.sev-high{color:#b00020;font-weight:600} .sev-medium{color:#b36b00} .sev-low{color:#555}
details{font-size:12px} pre{white-space:pre-wrap;margin:4px 0}
.kpi{display:inline-block;margin:0 28px 8px 0} .kpi b{display:block;font-size:20px}
"""
PROGRAMME_COLUMNS = (
    ("programme_id", "programme", "l"),
    ("issuer", "issuer", "l"),
    ("region", "region", "l"),
    ("vouchers_issued", "vouchers issued", "n"),
    ("vouchers_redeemed", "redeemed", "n"),
    ("claims", "claims", "n"),
    ("claims_clean", "clean", "n"),
    ("subsidy_paid_cny", "subsidy paid CNY", "cny"),
    ("cny_at_stake", "at stake CNY", "cny"),
    ("metered_gpu_h", "metered GPU-h", "f"),
    ("busy_gpu_h", "busy GPU-h", "f"),
    ("subsidy_per_busy_gpu_h", "CNY per busy GPU-h", "f"),
)


def _cny_by_finding(
    found: list[Mapping[str, Any]],
) -> tuple[list[str], dict[str, list[float | None]]]:
    types = sorted({f["finding"] for f in found})
    series: dict[str, list[float | None]] = {}
    for sev in SEVERITY_ORDER:
        vals: list[float | None] = [
            sum(f["cny_at_stake"] for f in found if f["finding"] == t and f["severity"] == sev)
            for t in types
        ]
        if any(vals):
            series[sev] = vals
    return types, series


def _flows(programmes: list[Mapping[str, Any]]) -> tuple[list[str], dict[str, list[float | None]]]:
    names = [str(p["programme_id"]) for p in programmes]
    paid = [float(p.get("subsidy_paid_cny") or 0.0) for p in programmes]
    stake = [
        min(float(p.get("cny_at_stake") or 0.0), x) for p, x in zip(programmes, paid, strict=True)
    ]
    series: dict[str, list[float | None]] = {
        "subsidy without finding": [x - s for x, s in zip(paid, stake, strict=True)],
        "subsidy at stake": list(stake),
    }
    return names, series


def _findings_table(found: list[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th class='l'>severity</th><th class='l'>finding</th><th class='l'>claim</th>"
        "<th class='l'>voucher</th><th class='l'>programme</th><th class='l'>tenant</th>"
        "<th class='l'>datacentre</th><th>at stake CNY</th><th class='l'>evidence</th></tr>"
    )
    rows = []
    for f in found:
        sev = escape(str(f["severity"]))
        evidence = escape(json.dumps(f.get("evidence"), indent=1, sort_keys=True, default=str))
        cells = "".join(
            f"<td class='l'>{escape(str(f.get(k) or ''))}</td>"
            for k in (
                "finding",
                "claim_id",
                "voucher_id",
                "programme_id",
                "tenant_id",
                "datacentre",
            )
        )
        rows.append(
            f"<tr><td class='l sev-{sev}'>{sev}</td>{cells}"
            f"<td>{cell_text(f['cny_at_stake'], 'cny')}</td>"
            f"<td class='l'><details><summary>show</summary><pre>{evidence}</pre></details></td>"
            "</tr>"
        )
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _programme_table(programmes: list[Mapping[str, Any]]) -> str:
    body = "".join(f"<tr>{row_cells(p, PROGRAMME_COLUMNS)}</tr>" for p in programmes)
    return f"<table>{table_head(PROGRAMME_COLUMNS)}<tbody>{body}</tbody></table>"


def _restatement_section(restatement: Mapping[str, Any] | None) -> str:
    """The changes since a signed pack or snapshot (``warehouse.vouchers.restate.restate``) and
    the late records behind each; empty without a restatement."""
    if not restatement:
        return ""
    from warehouse.vouchers.audit_format import RESTATEMENT_COLUMNS, restatement_rows

    since = restatement["since"]
    found = restatement["findings"]
    note = (
        f"<p class='note'>Compared with {escape(str(since['source']))} "
        f"(lake versions <code>{escape(str(since['as_of']))}</code>): "
        f"{len(found['new'])} new, {len(found['vanished'])} vanished and "
        f"{len(found['changed'])} changed finding(s), {len(restatement['claims'])} claim(s) "
        "restated.</p>"
    )
    rows = restatement_rows(dict(restatement))
    if not rows:
        return f"<h2 id='restatement'>Restatement</h2>{note}<p>No change.</p>"
    head = "".join(f"<th class='l'>{escape(c)}</th>" for c in RESTATEMENT_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='l'>{'—' if r[c] is None else escape(str(r[c]))}</td>"
            for c in RESTATEMENT_COLUMNS
        )
        + "</tr>"
        for r in rows
    )
    return (
        f"<h2 id='restatement'>Restatement</h2>{note}"
        f"<table class='restatement'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def audit_html(
    report: Mapping[str, Any],
    generated_at: datetime | None = None,
    restatement: Mapping[str, Any] | None = None,
) -> str:
    """The page for one ``audit()`` result (``month``, ``tz``, ``programmes``, ``findings``,
    ``clean``; and ``lineage``, shown in the footer, when present); with ``restatement``, a
    section of what changed since a signed pack (``warehouse.vouchers.restate``)."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    found = list(report["findings"])
    programmes = list(report["programmes"])
    title = f"Compute-voucher audit, {report['month']}"
    at_stake = sum(float(f["cny_at_stake"]) for f in found)
    paid = sum(float(p.get("subsidy_paid_cny") or 0) for p in programmes)
    kpis = (
        f"<div class='kpi'><b>{len(found)}</b>findings</div>"
        f"<div class='kpi'><b>{len(report['clean'])}</b>clean claims</div>"
        f"<div class='kpi'><b>¥{paid:,.2f}</b>subsidy paid</div>"
        f"<div class='kpi'><b>¥{at_stake:,.2f}</b>at stake</div>"
    )
    charts = ""
    if found:
        types, series = _cny_by_finding(found)
        charts += (
            "<h2>Money at stake by finding</h2><figure>"
            + stacked_bars(
                types, series, "CNY at stake per finding type", "CNY", colours=SEVERITY_COLOURS
            )
            + "</figure>"
        )
    if programmes:
        names, flows = _flows(programmes)
        charts += (
            "<h2>Subsidy flows per programme</h2>"
            "<p class='note'>Subsidy paid on this month's claims, split into the part that a "
            "finding puts at stake and the rest.</p><figure>"
            + stacked_bars(names, flows, "subsidy per programme", "CNY", colours=FLOW_COLOURS)
            + "</figure>"
        )
    body = (
        f"<p class='meta'>Local month in {escape(str(report['tz']))}; generated {escape(when)} "
        "by gpuledger.</p>"
        f"{kpis}{charts}"
        f"<h2>Findings, worst first</h2>{_findings_table(found) if found else '<p>None.</p>'}"
        f"<h2>Programmes</h2>{_programme_table(programmes)}"
        f"{_restatement_section(restatement)}"
    )
    return page(title, body, report.get("lineage"), css=AUDIT_CSS)
