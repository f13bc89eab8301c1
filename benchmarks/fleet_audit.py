"""The monthly audit of the synthetic fleet of ``fleet.py``: its voucher records, and the
check that the audit's attribution agrees with the utilisation report.

Each tenant ``t-j`` (the tenant of every cluster's ``j``-th allocation) holds one voucher of
one programme and claims, at each data centre, the whole audit month (a local month of
Asia/Shanghai, whose bounds are on 15-minute UTC edges, so the attribution reads the
allocations' rollup bins). Tenant ``t-1`` claims 30% more GPU-hours than it held, so the
audit has an ``over_claim`` finding to report. Per data centre the claims' metered GPU-hours
equal the report's allocated GPU-hours; the attribution from the rollup bins equals the one
from every sample clipped (the raw path) figure for figure.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

H = 3_600_000.0
PROGRAMME = "FLEET-2025"
TENANTS = ("t-0", "t-1", "t-2")


def relative(x: float, y: float) -> float:
    """The relative difference of two figures (0 when both are 0)."""
    return abs(x - y) / max(abs(x), abs(y), 1e-300)


def audit_month(start: datetime, days: float) -> str:
    """The local month of the fleet's last sample: the month a run mostly covers."""
    return (start + timedelta(days=days) - timedelta(milliseconds=1)).strftime("%Y-%m")


def _bounds(month: str, tz: str) -> tuple[datetime, datetime]:
    y, m = map(int, month.split("-"))
    lo = datetime(y, m, 1, tzinfo=ZoneInfo(tz))
    return lo, datetime(y + m // 12, m % 12 + 1, 1, tzinfo=ZoneInfo(tz))


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def voucher_files(work: Path, allocs: list[dict], month: str, tz: str) -> list[str]:
    """Write the programme, tenants, vouchers and claims as CSV under ``work``; return the
    ``gpuledger vouchers import`` options naming them."""
    lo, hi = _bounds(month, tz)
    p0, p1 = int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)
    iso = "%Y-%m-%dT%H:%M:%S%z"
    programmes = [
        {
            "programme_id": PROGRAMME,
            "issuer": "Benchmark",
            "region": "Shanghai",
            "budget_cny": 1e12,
            "max_coverage": 0.8,
            "valid_from": f"{lo.year}-01-01T00:00:00+08:00",
            "valid_to": f"{lo.year + 1}-01-01T00:00:00+08:00",
            "eligible_tenant_types": "sme;research",
            "eligible_datacentres": "",
            "price_cap_cny_per_gpu_hour": 20,
        }
    ]
    tenants = [
        {"tenant_id": t, "name": t, "tenant_type": "sme", "region": "Shanghai"} for t in TENANTS
    ]
    vouchers = [
        {
            "voucher_id": f"v-{t}",
            "programme_id": PROGRAMME,
            "tenant_id": t,
            "face_value_cny": 1e10,
            "issued_at": programmes[0]["valid_from"],
            "expires_at": programmes[0]["valid_to"],
        }
        for t in TENANTS
    ]
    claims = []
    for t in TENANTS:
        for dc in sorted({a["datacentre"] for a in allocs}):
            held = sum(
                a["gpu_count"] * max(0, min(a["end"], p1) - max(a["start"], p0)) / H
                for a in allocs
                if a["tenant_id"] == t and a["datacentre"] == dc
            )
            hours = round(held * (1.3 if t == "t-1" else 1.0), 3)
            claims.append(
                {
                    "claim_id": f"c-{t}-{dc}",
                    "voucher_id": f"v-{t}",
                    "tenant_id": t,
                    "datacentre": dc,
                    "period_start": lo.strftime(iso),
                    "period_end": hi.strftime(iso),
                    "allocation_ids": "",
                    "claimed_gpu_hours": hours,
                    "unit_price_cny": 10,
                    "invoice_cny": round(hours * 10, 2),
                    "subsidy_cny": round(hours * 5, 2),
                    "submitted_at": (hi + timedelta(days=5)).strftime(iso),
                }
            )
    names: dict[str, list[dict[str, Any]]] = {
        "programmes": programmes,
        "tenants": tenants,
        "vouchers": vouchers,
        "claims": claims,
    }
    out: list[str] = []
    for name, rows in names.items():
        out += [f"--{name}", str(_write(work / f"{name}.csv", rows))]
    return out


def attribution(lake: Path, month: str, tz: str, source: str) -> list[dict[str, Any]]:
    """The month's ``claim_attribution`` rows from the allocations' bins or from every sample."""
    from warehouse.catalog import connect
    from warehouse.vouchers.attribution import attribute, attribution_rows

    con = connect(lake, ":memory:", rollups=source == "bins")
    attribute(con, tz, source=source)
    return [
        {
            k: r[k]
            for k in ("claim_id", "datacentre", "metered_gpu_h", "covered_gpu_h", "busy_gpu_h")
        }
        for r in attribution_rows(con, month)
    ]


def against_report(rows: list[dict], report: dict, month: str) -> dict[str, dict]:
    """Per data centre, the claims' metered GPU-hours and the report's allocated GPU-hours
    (both gpu_count x held hours clipped to the month). Busy GPU-hours are not compared: the
    report counts a sample's whole coverage when the sample starts inside an allocation, the
    attribution clips it to the allocation's span (docs/audit.md#attribution)."""
    out: dict[str, dict] = {}
    for dc in sorted({r["datacentre"] for r in rows}):
        theirs = [v for (p, d, _), v in report.items() if p == month and d == dc]
        out[dc] = {
            "claims": sum(r["metered_gpu_h"] for r in rows if r["datacentre"] == dc),
            "report": sum(v["allocated_gpu_h"] for v in theirs),
        }
    return out


def worst_of(pairs: dict[str, dict]) -> tuple[float, str]:
    """The worst relative difference of the pairs, and which pair it is."""
    worst, where = 0.0, ""
    for key, v in pairs.items():
        x, y = v["claims"], v["report"]
        rel = relative(x, y)
        if rel >= worst:
            worst, where = rel, f"{key}: {x!r} vs {y!r}"
    return worst, where


def same_rows(a: list[dict], b: list[dict]) -> float:
    """The worst relative difference between two attributions of the same claims."""
    if [r["claim_id"] for r in a] != [r["claim_id"] for r in b]:
        raise SystemExit("attributions name different claims")
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        for f in ("metered_gpu_h", "covered_gpu_h", "busy_gpu_h"):
            worst = max(worst, relative(x[f], y[f]))
    return worst
