"""The audit as text: ``format_audit(report, fmt)`` gives exactly what ``gpuledger audit
--format json|csv|table`` prints, so a signed audit pack (``warehouse.vouchers.pack``) holds and
re-derives the same bytes; ``open_snapshot`` opens the connection the command reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from pipeline.lake import AsOf
from warehouse.reports.render import Engine, Lineage, render, tidy
from warehouse.vouchers.audit import FINDING_KEYS

SUMMARY_COLUMNS = (
    "programme_id",
    "vouchers_issued",
    "vouchers_redeemed",
    "claims",
    "claims_clean",
    "subsidy_paid_cny",
    "metered_gpu_h",
    "busy_gpu_h",
    "subsidy_per_busy_gpu_h",
    "cny_at_stake",
    "findings",
)


def open_snapshot(lake: Path, as_of: AsOf = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB warehouse over ``lake`` at ``as_of`` with the session time zone UTC
    (instants in the evidence JSON are rendered in it), as ``audit`` reads it."""
    from warehouse.catalog import connect

    con = connect(lake, ":memory:", as_of=as_of)
    con.execute("SET TimeZone = 'UTC'")
    return con


def report_lineage(report: dict[str, Any]) -> Lineage | None:
    """The ``Lineage`` of a report dict (its ``lineage`` key), or None."""
    found = report.get("lineage")
    engine = report.get("engine")
    return None if found is None else Lineage(found["tables"], engine and Engine(**engine))


def findings_text(findings: dict[str, Any]) -> str:
    return " ".join(f"{k}:{v['count']}/{v['cny_at_stake']:.2f}" for k, v in findings.items())


def format_audit(report: dict[str, Any], fmt: str) -> str:
    """The audit as ``json`` (the whole report, ``lineage`` included), ``csv`` (a ``# lake
    versions`` comment line, then one row per finding, then one CLEAN row per clean claim;
    evidence as JSON) or ``table`` (programme summary, then findings, then the lake versions)."""
    read = report_lineage(report)
    if fmt == "json":
        return json.dumps(tidy(report), indent=2, default=str, ensure_ascii=False) + "\n"
    rows = [{**f, "evidence": json.dumps(f["evidence"], default=str)} for f in report["findings"]]
    clean = [
        {k: None for k in FINDING_KEYS} | {"finding": "CLEAN", "claim_id": c, "cny_at_stake": 0.0}
        for c in report["clean"]
    ]
    if fmt == "csv":
        return render(rows + clean, "csv", FINDING_KEYS, lineage=read)
    summary = [{**p, "findings": findings_text(p["findings"])} for p in report["programmes"]]
    cols = [c for c in FINDING_KEYS if c != "evidence"]
    return (
        f"audit {report['month']} ({report['tz']})\n\n"
        + render(summary, "table", SUMMARY_COLUMNS)
        + f"\n{len(report['findings'])} finding(s), worst first; "
        + f"{len(report['clean'])} clean claim(s)\n"
        + render(rows, "table", cols)
        + ("" if read is None else "\n" + read.footer())
    )


RESTATEMENT_COLUMNS = (
    "change",
    "finding",
    "claim_id",
    "programme_id",
    "figure",
    "before",
    "after",
    "delta",
    "late_records",
)


def late_text(records: list[dict[str, Any]]) -> str:
    """Late records as ``table:_load@_version(rows)``, ``;``-separated."""
    return ";".join(f"{r['table']}:{r['_load']}@{r['_version']}({r['rows']})" for r in records)


def restatement_rows(restatement: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    found = restatement["findings"]
    for change in ("new", "vanished", "changed"):
        for f in found[change]:
            before = f["before"]["cny_at_stake"] if change == "changed" else None
            after = f["after"]["cny_at_stake"] if change == "changed" else None
            if change == "new":
                after = f["cny_at_stake"]
            if change == "vanished":
                before = f["cny_at_stake"]
            rows.append(
                {
                    "change": f"finding_{change}",
                    "finding": f["finding"],
                    "claim_id": f["claim_id"],
                    "programme_id": f["programme_id"],
                    "figure": "cny_at_stake",
                    "before": before,
                    "after": after,
                    "delta": round((after or 0.0) - (before or 0.0), 2),
                    "late_records": late_text(f["late_records"]),
                }
            )
    for kind, items in (("claim", restatement["claims"]), ("programme", restatement["programmes"])):
        for item in items:
            for figure, value in item.items():
                if not isinstance(value, dict):
                    continue
                rows.append(
                    {
                        "change": kind,
                        "finding": None,
                        "claim_id": item.get("claim_id"),
                        "programme_id": item["programme_id"],
                        "figure": figure,
                        **{k: value[k] for k in ("before", "after", "delta")},
                        "late_records": late_text(item.get("late_records", [])),
                    }
                )
    return rows


def format_restatement(restatement: dict[str, Any], fmt: str) -> str:
    """A restatement (``warehouse.vouchers.restate.restate``) as ``json`` (all of it), ``csv``
    (one row per changed finding and per changed figure of a claim or programme, with the late
    records behind it; a first ``# lake versions`` line) or ``table`` (the same rows)."""
    if fmt == "json":
        return json.dumps(restatement, indent=2, default=str, ensure_ascii=False) + "\n"
    read = report_lineage(restatement)
    rows = restatement_rows(restatement)
    if fmt == "csv":
        return render(rows, "csv", RESTATEMENT_COLUMNS, lineage=read)
    since = restatement["since"]
    found = restatement["findings"]
    head = (
        f"restatement of audit {restatement['month']} ({restatement['tz']}) "
        f"since {since['source']} ({since['as_of']})\n"
        f"{len(found['new'])} new, {len(found['vanished'])} vanished, "
        f"{len(found['changed'])} changed finding(s); {len(restatement['claims'])} claim(s) "
        "restated\n\n"
    )
    if not rows:
        head += "no restatement: the month is as it was\n"
    body = render(rows, "table", RESTATEMENT_COLUMNS) if rows else ""
    return head + body + ("" if read is None else "\n" + read.footer())
