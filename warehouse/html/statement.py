"""A tenant's monthly voucher statement (``warehouse.vouchers.statement.statement``) as one
self-contained HTML page: the month in figures, GPU-hours per claim (busy, held idle, without
telemetry), then per voucher its claims with the audit's findings and the allocations metered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from warehouse.html.audit import AUDIT_CSS
from warehouse.html.page import cell_text, page, row_cells, table_head
from warehouse.html.svg import stacked_bars

HOURS_COLOURS = {"busy": "#3b6ea8", "held, idle": "#e0b64a", "no telemetry": "#9aa5b1"}
STATEMENT_CSS = ".clean{color:#1b7a3a;font-weight:600} td.sub{padding-left:24px;color:#444}\n"
CLAIM_COLUMNS = (
    ("claim_id", "claim", "l"),
    ("datacentre", "datacentre", "l"),
    ("period_start", "period from", "t"),
    ("period_end", "to", "t"),
    ("claimed_gpu_hours", "claimed GPU-h", "f"),
    ("metered_gpu_h", "metered GPU-h", "f"),
    ("busy_gpu_h", "busy GPU-h", "f"),
    ("efficiency", "efficiency", "%"),
    ("subsidy_cny", "subsidy CNY", "cny"),
    ("cny_at_stake", "at stake CNY", "cny"),
)
ALLOCATION_COLUMNS = (
    ("allocation_id", "allocation", "l"),
    ("cluster", "cluster", "l"),
    ("gpu_count", "GPUs", "g"),
    ("start", "start (clipped)", "t"),
    ("end", "end (clipped)", "t"),
    ("metered_gpu_h", "metered GPU-h", "f"),
    ("busy_gpu_h", "busy GPU-h", "f"),
)


def _findings(claim: Mapping[str, Any]) -> str:
    if not claim["findings"]:
        return "<span class='clean'>clean</span>"
    return "<br>".join(
        f"<span class='sev-{escape(str(f['severity']))}'>{escape(str(f['finding']))}</span> "
        f"{cell_text(f['cny_at_stake'], 'cny')}"
        for f in claim["findings"]
    )


def _allocations(claim: Mapping[str, Any]) -> str:
    allocations = claim["allocations"]
    if not allocations:
        return "<p class='note sub'>No allocation metered for this claim.</p>"
    body = "".join(f"<tr>{row_cells(a, ALLOCATION_COLUMNS)}</tr>" for a in allocations)
    return (
        f"<details><summary>{len(allocations)} allocation(s) metered</summary>"
        f"<table>{table_head(ALLOCATION_COLUMNS)}<tbody>{body}</tbody></table></details>"
    )


def _voucher(voucher: Mapping[str, Any]) -> str:
    claims = voucher["claims"]
    head = (
        f"<h3>Voucher {escape(str(voucher['voucher_id']))} "
        f"({escape(str(voucher['programme_id']))})</h3>"
        f"<p class='meta'>Face value {cell_text(voucher['face_value_cny'], 'cny')}; claimed this "
        f"month {cell_text(voucher['subsidy_claimed_cny'], 'cny')}; to date "
        f"{cell_text(voucher['subsidy_to_date_cny'], 'cny')}; remaining "
        f"{cell_text(voucher['remaining_cny'], 'cny')}; valid "
        f"{cell_text(voucher['issued_at'], 't')} to "
        f"{cell_text(voucher['expires_at'], 't')}.</p>"
    )
    if not claims:
        return head + "<p>No claim this month.</p>"
    width = len(CLAIM_COLUMNS) + 1
    rows = "".join(
        f"<tr data-claim='{escape(str(c['claim_id']))}'>{row_cells(c, CLAIM_COLUMNS)}"
        f"<td class='l'>{_findings(c)}</td></tr>"
        f"<tr><td class='l sub' colspan='{width}'>{_allocations(c)}</td></tr>"
        for c in claims
    )
    audit_head = table_head(CLAIM_COLUMNS, "<th class='l'>audit</th>")
    return head + f"<table>{audit_head}<tbody>{rows}</tbody></table>"


def _hours_chart(claims: Sequence[Mapping[str, Any]]) -> str:
    names = [str(c["claim_id"]) for c in claims]
    busy = [float(c["busy_gpu_h"] or 0.0) for c in claims]
    covered = [float(c["covered_gpu_h"] or 0.0) for c in claims]
    metered = [float(c["metered_gpu_h"] or 0.0) for c in claims]
    series: dict[str, list[float | None]] = {
        "busy": list(busy),
        "held, idle": [max(0.0, cov - b) for cov, b in zip(covered, busy, strict=True)],
        "no telemetry": [max(0.0, m - cov) for m, cov in zip(metered, covered, strict=True)],
    }
    return (
        "<h2>GPU-hours per claim</h2><p class='note'>Metered GPU-hours of each claim's "
        "allocations, split into busy, held but idle, and without telemetry.</p><figure>"
        + stacked_bars(names, series, "GPU-hours per claim", "GPU-h", colours=HOURS_COLOURS)
        + "</figure>"
    )


def statement_html(st: Mapping[str, Any], generated_at: datetime | None = None) -> str:
    """The page for one ``statement()`` result (``tenant``, ``month``, ``tz``, ``vouchers``,
    ``totals``; ``lineage`` in the footer)."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    tenant, total = st["tenant"], st["totals"]
    claims = [c for v in st["vouchers"] for c in v["claims"]]
    title = f"Compute-voucher statement, {tenant['name'] or tenant['tenant_id']}, {st['month']}"
    kpis = "".join(
        f"<div class='kpi'><b>{value}</b>{escape(label)}</div>"
        for value, label in (
            (str(total["claims"]), "claims"),
            (str(total["claims_clean"]), "clean claims"),
            (cell_text(total["metered_gpu_h"], "f"), "metered GPU-h"),
            (cell_text(total["busy_gpu_h"], "f"), "busy GPU-h"),
            (cell_text(total["subsidy_cny"], "cny"), "subsidy claimed"),
            (cell_text(total["cny_at_stake"], "cny"), "at stake"),
        )
    )
    vouchers = "".join(_voucher(v) for v in st["vouchers"]) or "<p>No voucher this month.</p>"
    body = (
        f"<p class='meta'>Tenant {escape(str(tenant['tenant_id']))} "
        f"({escape(str(tenant['tenant_type']))}, {escape(str(tenant['region']))}); local month "
        f"in {escape(str(st['tz']))}; generated {escape(when)} by gpuledger. The figures are "
        "the monthly audit's.</p>"
        f"{kpis}{_hours_chart(claims) if claims else ''}"
        f"<h2>Vouchers and claims</h2>{vouchers}"
    )
    return page(title, body, st.get("lineage"), css=AUDIT_CSS + STATEMENT_CSS)
