"""Voucher, audit and scenario commands: they parse arguments and format output, nothing more.

``gpuledger/cli.py`` wires them in with ``add_commands(sub)`` (``vouchers import``, ``audit``,
``scenario``) and ``add_effectiveness_report(report_sub)`` (``report effectiveness``); it also
uses ``add_as_of`` for the other commands that read a lake snapshot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuledger.lake_args import DEFAULT_LAKE, add_as_of, add_engine, open_engine
from pipeline.defaults import DEFAULT_TZ

if TYPE_CHECKING:
    from warehouse.reports.render import Lineage

__all__ = ["add_as_of", "add_commands", "add_effectiveness_report", "format_audit", "open_engine"]


def cmd_vouchers_import(a: argparse.Namespace) -> int:
    from pipeline.entity_import import VoucherImportError, import_files

    files = {
        name: paths
        for name, paths in (
            ("programme", a.programmes),
            ("tenant", a.tenants),
            ("voucher", a.vouchers),
            ("claim", a.claims),
        )
        if paths
    }
    if not files:
        print(
            "nothing to import: give --programmes, --tenants, --vouchers or --claims",
            file=sys.stderr,
        )
        return 2
    try:
        result = import_files(a.lake, files)
    except VoucherImportError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for name in files:
        print(f"{name}: {result.written[name]} new or changed, {result.unchanged[name]} unchanged")
    written = sum(result.written.values())
    print(
        f"import {result.import_id}: {written} record version(s) written"
        if written
        else "nothing changed"
    )
    return 0


def format_audit(report: dict[str, Any], fmt: str) -> str:
    """``warehouse.vouchers.audit_format.format_audit`` (imported when used: the CLI starts
    fast)."""
    from warehouse.vouchers.audit_format import format_audit as fmt_audit

    return fmt_audit(report, fmt)


def _lineage(report: dict[str, Any]) -> Lineage | None:
    from warehouse.vouchers.audit_format import report_lineage

    return report_lineage(report)


def cmd_audit(a: argparse.Namespace) -> int:
    from warehouse.reports.render import name_engine
    from warehouse.vouchers.audit import audit, load_thresholds

    if a.month is None:
        print("audit: --month YYYY-MM is required (or: audit verify DIR)", file=sys.stderr)
        return 2
    if a.sign or a.register:
        from gpuledger.audit_pack_cli import cmd_sign

        return cmd_sign(a)
    if a.since is not None or a.since_version is not None:
        from gpuledger.audit_pack_cli import cmd_since

        return cmd_since(a)

    con, engine = open_engine(a.lake, a.as_of, a.engine)
    try:
        report = audit(
            con,
            month=a.month,
            programme=a.programme,
            tz=a.tz,
            thresholds=load_thresholds(a.thresholds),
        )
    finally:
        con.close()
    name_engine(report, engine)
    if a.format == "html":
        from gpuledger.ops_cli import write_page
        from warehouse.html import audit_html

        write_page(audit_html(report), a.output)
        return 0
    sys.stdout.write(format_audit(report, a.format))
    return 0


def cmd_scenario(a: argparse.Namespace) -> int:
    from warehouse.vouchers.scenario.build import build_scenario
    from warehouse.vouchers.scenario.model import ScenarioSpec
    from warehouse.vouchers.scenario.write import write_scenario

    spec = ScenarioSpec(
        start=a.start,
        months=a.months,
        programme_month=a.programme_month,
        nodes_per_dc=a.nodes,
        sample_interval_s=a.interval,
        seed=a.seed,
        anomalies=a.anomalies,
    )
    scenario = build_scenario(spec)
    result = write_scenario(scenario, a.out)
    claims = scenario.entities["claim"]
    print(
        f"scenario seed {spec.seed}: {len(scenario.allocations)} allocations, "
        f"{len(scenario.entities['voucher'])} vouchers, {len(claims)} claims, "
        f"{len(scenario.ground_truth)} planted finding(s)"
    )
    print(f"lake {a.out / 'lake'}; vouchers import {result.import_id}")
    print(f"ground truth {a.out / 'ground_truth.json'}")
    return 0


def cmd_report_effectiveness(a: argparse.Namespace) -> int:
    from warehouse.reports.render import name_engine, render, tidy
    from warehouse.vouchers.effectiveness import effectiveness

    con, engine = open_engine(a.lake, a.as_of, a.engine)
    try:
        report = effectiveness(con, a.programme, months=a.months, tz=a.tz)
    finally:
        con.close()
    name_engine(report, engine)
    read = _lineage(report)
    if a.format == "json":
        print(json.dumps(tidy(report), indent=2, default=str, ensure_ascii=False))
        return 0
    if a.format == "csv":
        sys.stdout.write(render(report[a.table], "csv", lineage=read))
        return 0
    cols = ["period", "phase", "datacentre", "capacity_gpu_h", "allocated_gpu_h", "busy_gpu_h"]
    cols += ["allocation_rate", "utilisation"]
    print(
        f"programme {report['programme_id']} from {report['start']} "
        f"at {', '.join(report['datacentres'])}\n"
    )
    sys.stdout.write(render(report["monthly"], "table", cols) + "\n")
    sys.stdout.write(render(report["phases"], "table") + "\n")
    reach = ["capacity_gpu_h", "utilisation", "subsidised_gpu_h", "subsidised_share"]
    for by in ("region", "ownership"):
        print(f"subsidised GPU-hours and capacity by {by}, every data centre of the lake:")
        sys.stdout.write(render(report[f"by_{by}"], "table", ["period", by, *reach]) + "\n")
    share = report["subsidised_share"]
    print(
        f"subsidised share of capacity after the start: {'' if share is None else f'{share:.1%}'}"
    )
    for by in ("tenant", "region"):
        c = report["concentration"][by]
        print(f"subsidy by {by}: n={c['n']} top-10 share={c['top10_share']} gini={c['gini']}")
    print(f"median days from period end to claim: {report['median_claim_delay_days']}")
    if read is not None:
        sys.stdout.write(read.footer())
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``vouchers import``, ``audit`` and ``scenario`` to the top-level sub-parsers."""
    p = sub.add_parser("vouchers", help="compute-voucher records (docs/audit.md#voucher-records)")
    vsub = p.add_subparsers(dest="vouchers", required=True, metavar="ACTION")
    v = vsub.add_parser(
        "import",
        help="import programme / tenant / voucher / claim files (CSV, Parquet, JSON lines)",
        description="Strict import: any bad row refuses the whole import with file:line; "
        "re-importing changes nothing; corrections become new versions kept in history.",
    )
    v.add_argument("--lake", type=Path, default=DEFAULT_LAKE)
    for name in ("programmes", "tenants", "vouchers", "claims"):
        v.add_argument(f"--{name}", type=Path, action="append", metavar="FILE", default=[])
    v.set_defaults(func=cmd_vouchers_import)

    p = sub.add_parser(
        "audit",
        help="monthly compute-voucher audit: findings per claim; signed packs and restatements",
    )
    p.add_argument("--lake", type=Path, default=DEFAULT_LAKE)
    p.add_argument("--month", metavar="YYYY-MM", help="local month of the claims (required)")
    p.add_argument("--programme", metavar="ID", help="one programme (default: all)")
    p.add_argument("--tz", default=DEFAULT_TZ, help="data-centre time zone")
    p.add_argument("--format", choices=["table", "csv", "json", "html"], default="table")
    p.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="with --format html: write the page here (default stdout)",
    )
    p.add_argument(
        "--thresholds", type=Path, help="thresholds TOML (default: the packaged thresholds.toml)"
    )
    add_as_of(p)
    add_engine(p)
    from gpuledger.audit_pack_cli import add_pack_options, add_verify

    add_pack_options(p)
    add_verify(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("scenario", help="generate a synthetic voucher landscape over a lake")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for lake/, vouchers/, ground_truth.json"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--anomalies", action="store_true", help="plant one claim of every finding type")
    p.add_argument("--start", default="2026-03", metavar="YYYY-MM", help="first month")
    p.add_argument("--months", type=int, default=4)
    p.add_argument(
        "--programme-month", type=int, default=2, help="month index the programmes start"
    )
    p.add_argument("--nodes", type=int, default=2, help="8-GPU nodes per data centre")
    p.add_argument("--interval", type=int, default=900, help="GPU sample interval in seconds")
    p.set_defaults(func=cmd_scenario)


def add_effectiveness_report(report_sub: argparse._SubParsersAction) -> None:
    """Add ``effectiveness`` under the ``report`` command's sub-parsers."""
    r = report_sub.add_parser(
        "effectiveness",
        help="did a voucher programme raise utilisation, and who got the money",
    )
    r.add_argument("--lake", type=Path, default=DEFAULT_LAKE)
    r.add_argument("--programme", required=True, metavar="ID")
    r.add_argument("--months", type=int, default=3, help="months before and after the start")
    r.add_argument("--tz", default=DEFAULT_TZ)
    r.add_argument("--format", choices=["table", "csv", "json"], default="table")
    r.add_argument(
        "--table",
        choices=["monthly", "by_region", "by_ownership"],
        default="monthly",
        help="with --format csv: the programme's data centres per month (default), or "
        "capacity and subsidised GPU-hours per month and region / ownership",
    )
    add_as_of(r)
    add_engine(r)
    r.set_defaults(func=cmd_report_effectiveness)
