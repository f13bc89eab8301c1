"""``gpuledger statement``: a tenant's monthly compute-voucher statement
(``warehouse.vouchers.statement``); this module parses the arguments and formats the output only.

``gpuledger/cli.py`` wires it in with ``add_commands(sub)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.defaults import DEFAULT_TZ

__all__ = ["add_commands", "format_statement", "statement_lineage"]

VOUCHER_COLUMNS = (
    "voucher_id",
    "programme_id",
    "face_value_cny",
    "claims",
    "subsidy_claimed_cny",
    "subsidy_to_date_cny",
    "remaining_cny",
    "cny_at_stake",
)
CLAIM_COLUMNS = (
    "claim_id",
    "voucher_id",
    "datacentre",
    "period_start",
    "period_end",
    "claimed_gpu_hours",
    "metered_gpu_h",
    "busy_gpu_h",
    "efficiency",
    "subsidy_cny",
    "cny_at_stake",
    "findings",
)
ALLOCATION_COLUMNS = (
    "claim_id",
    "allocation_id",
    "cluster",
    "gpu_count",
    "start",
    "end",
    "metered_gpu_h",
    "busy_gpu_h",
)
TOTAL_COLUMNS = (
    "claims",
    "claims_clean",
    "claimed_gpu_hours",
    "metered_gpu_h",
    "busy_gpu_h",
    "subsidy_cny",
    "cny_at_stake",
    "findings",
)
CSV_HEAD = (
    "tenant_id",
    "month",
    "claim_id",
    "voucher_id",
    "programme_id",
    "datacentre",
    "period_start",
    "period_end",
    "submitted_at",
)
CSV_TAIL = ("status", "findings", "cny_at_stake", "allocations")
"""``--format csv``: one row per claim, ``CSV_HEAD``, the claim figures the statement copies
(``warehouse.vouchers.statement.CLAIM_FIGURES``), ``CSV_TAIL``; ``findings`` and ``allocations``
as JSON lists."""


def statement_lineage(st: dict[str, Any]) -> Any:
    """The ``warehouse.reports.render.Lineage`` of a statement (its ``lineage`` key)."""
    from warehouse.reports.render import Lineage

    return Lineage(st["lineage"]["tables"])


def _findings_text(claim: dict[str, Any]) -> str:
    found = claim["findings"]
    return " ".join(f"{f['finding']}:{f['cny_at_stake']:.2f}" for f in found) or "clean"


def _claims(st: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for v in st["vouchers"] for c in v["claims"]]


def format_statement(st: dict[str, Any], fmt: str) -> str:
    """The statement as ``json`` (all of it, floats without noise), ``csv`` (a ``# lake
    versions`` comment line, then the CSV columns, one row per claim) or ``table`` (vouchers,
    claims, the allocations metered, the totals, the lake versions)."""
    from warehouse.reports.render import render, to_json
    from warehouse.vouchers.statement import CLAIM_FIGURES

    read = statement_lineage(st)
    if fmt == "json":
        return to_json(st)
    tenant = st["tenant"]
    claims = _claims(st)
    if fmt == "csv":
        rows = [{**c, "tenant_id": tenant["tenant_id"], "month": st["month"]} for c in claims]
        return render(rows, "csv", [*CSV_HEAD, *CLAIM_FIGURES, *CSV_TAIL], lineage=read)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; expected table, csv, json or html")
    vouchers = [
        {**v, **{k: v["totals"][k] for k in ("claims", "cny_at_stake")}} for v in st["vouchers"]
    ]
    shown = [{**c, "findings": _findings_text(c)} for c in claims]
    allocations = [{**a, "claim_id": c["claim_id"]} for c in claims for a in c["allocations"]]
    total = st["totals"]
    summary = " ".join(
        f"{k}:{v['count']}/{v['cny_at_stake']:.2f}" for k, v in total["findings"].items()
    )
    return (
        f"statement {tenant['tenant_id']} ({tenant['name']}, {tenant['tenant_type']}, "
        f"{tenant['region']}) {st['month']} ({st['tz']})\n\n"
        + f"vouchers\n{render(vouchers, 'table', VOUCHER_COLUMNS)}\n"
        + f"claims\n{render(shown, 'table', CLAIM_COLUMNS)}\n"
        + f"allocations metered\n{render(allocations, 'table', ALLOCATION_COLUMNS)}\n"
        + f"totals\n{render([{**total, 'findings': summary or 'clean'}], 'table', TOTAL_COLUMNS)}"
        + read.footer()
    )


def cmd_statement(a: argparse.Namespace) -> int:
    from gpuledger.lake_args import open_engine
    from warehouse.vouchers.audit import load_thresholds
    from warehouse.vouchers.statement import UnknownTenant, statement

    con, _ = open_engine(a.lake, a.as_of)
    try:
        st = statement(
            con, tenant=a.tenant, month=a.month, tz=a.tz, thresholds=load_thresholds(a.thresholds)
        )
    except UnknownTenant as exc:
        print(f"gpuledger statement: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    if a.format == "html":
        from gpuledger.ops_cli import write_page
        from warehouse.html import statement_html

        write_page(statement_html(st), a.output)
        return 0
    text = format_statement(st, a.format)
    if a.output is not None:
        a.output.write_text(text, encoding="utf-8")
        print(f"wrote {a.output}", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``statement`` to the top-level sub-parsers."""
    from gpuledger.lake_args import DEFAULT_LAKE, add_as_of

    p = sub.add_parser(
        "statement",
        help="a tenant's monthly voucher statement: metered, busy, claimed, the audit's findings",
        description="Per voucher and claim of the tenant in the local month: the allocations "
        "metered (clipped to the claim period), GPU-hours metered and busy, the subsidy "
        "claimed and what the audit found; the same figures as gpuledger audit.",
    )
    p.add_argument("--lake", type=Path, default=DEFAULT_LAKE)
    p.add_argument("--tenant", required=True, metavar="ID", help="tenant id")
    p.add_argument("--month", required=True, metavar="YYYY-MM", help="local month of the claims")
    p.add_argument("--tz", default=DEFAULT_TZ, help=f"data-centre time zone (default {DEFAULT_TZ})")
    p.add_argument("--format", choices=["table", "csv", "json", "html"], default="table")
    p.add_argument(
        "--output", type=Path, metavar="FILE", help="write the statement here (default stdout)"
    )
    p.add_argument(
        "--thresholds", type=Path, help="audit thresholds TOML (default: the packaged one)"
    )
    add_as_of(p)
    p.set_defaults(func=cmd_statement)
