"""A tenant's monthly compute-voucher statement: what was metered, used and claimed per voucher
and claim, and what the audit found.

``statement(con, tenant=..., month=..., tz=...)`` runs the monthly audit
(``warehouse.vouchers.audit.audit``, which attributes every claim with
``warehouse.vouchers.attribution``) on
``con`` and reads the tenant's part of what it left there: the ``claim_attribution`` rows of
the tenant's claims of the local month (the audit's figures, to the last digit), the
``claim_allocations`` rows under them (each allocation clipped to the claim period as the
attribution clips it), and the audit's findings on those claims. Per allocation it adds the
telemetry-covered and busy GPU-hours (``sql/statement_allocation_*.sql``, the per-claim sums
of ``sql/attribution_*.sql`` split by allocation, from the same source: 15-minute bins when
every claim period falls on a bin edge, else samples). Times are ISO-8601 in ``tz``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from pipeline.defaults import DEFAULT_TZ
from pipeline.errors import TerminalError
from warehouse.catalog import load_sql
from warehouse.catalog.rollups import GRAIN_MS
from warehouse.reports.utilisation import single_threaded
from warehouse.vouchers.attribution import attribution_rows
from warehouse.vouchers.audit import Thresholds, audit

CLAIM_FIGURES = (
    "claimed_gpu_hours",
    "metered_gpu_h",
    "covered_gpu_h",
    "busy_gpu_h",
    "telemetry_share",
    "efficiency",
    "unit_price_cny",
    "invoice_cny",
    "subsidy_cny",
    "subsidy_per_metered_gpu_h",
    "subsidy_per_busy_gpu_h",
    "coverage",
)
"""The ``claim_attribution`` figures a statement copies for each claim, unchanged."""
TOTALS = (
    "claimed_gpu_hours",
    "metered_gpu_h",
    "covered_gpu_h",
    "busy_gpu_h",
    "invoice_cny",
    "subsidy_cny",
    "cny_at_stake",
)
"""The per-claim figures a statement adds up per voucher and in all."""


class UnknownTenant(TerminalError, ValueError):
    """No tenant of that id in the lake's snapshot; names the known ones."""

    def __init__(self, tenant: str, known: list[str]) -> None:
        self.tenant = tenant
        self.known = known
        listed = ", ".join(known) if known else "none (import tenants with gpuledger vouchers)"
        super().__init__(f"unknown tenant {tenant!r}; known tenants: {listed}")


def tenants(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every tenant of the snapshot (``tenant_id``, ``name``, ``tenant_type``, ``region``)."""
    cursor = con.execute(
        "SELECT tenant_id, name, tenant_type, region FROM tenants ORDER BY tenant_id"
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _iso(ms: int | None, tz: ZoneInfo) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz).isoformat()


def _local(value: datetime | None, tz: ZoneInfo) -> str | None:
    return None if value is None else value.astimezone(tz).isoformat()


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _allocation_source(con: duckdb.DuckDBPyConnection) -> str:
    """``bins`` or ``samples``: the source ``attribute`` read covered and busy GPU-hours from
    (bins only when every claim period starts and ends on a bin edge)."""
    row = con.execute(
        "SELECT coalesce(bool_and(epoch_ms(period_start) % $g = 0 "
        "AND epoch_ms(period_end) % $g = 0), true) FROM claims",
        {"g": GRAIN_MS},
    ).fetchone()
    return "bins" if row is not None and row[0] else "samples"


def _allocations(
    con: duckdb.DuckDBPyConnection, tenant: str, month: str, tz: ZoneInfo
) -> dict[str, list[dict[str, Any]]]:
    """The statement's allocations by claim id (needs ``claim_allocations`` on ``con``)."""
    part = load_sql(f"statement_allocation_{_allocation_source(con)}").strip().removesuffix(";")
    sql = load_sql("statement_allocations").replace("/*allocation_samples*/", part, 1)
    by_claim: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(con.execute(sql, {"tenant": tenant, "month": month})):
        uuids = row["gpu_uuids"]
        by_claim.setdefault(row["claim_id"], []).append(
            {
                **{k: row[k] for k in ("allocation_id", "cluster", "job_id", "gpu_count")},
                "gpu_uuids": None if uuids is None else list(uuids),
                "start": _iso(row["s_ms"], tz),
                "end": _iso(row["e_ms"], tz),
                **{k: row[k] for k in ("metered_gpu_h", "covered_gpu_h", "busy_gpu_h")},
            }
        )
    return by_claim


def _claim(
    row: dict[str, Any],
    found: list[dict[str, Any]],
    allocations: list[dict[str, Any]],
    tz: ZoneInfo,
) -> dict[str, Any]:
    findings = [
        {"finding": f["finding"], "severity": f["severity"], "cny_at_stake": f["cny_at_stake"]}
        for f in found
    ]
    return {
        "claim_id": row["claim_id"],
        "voucher_id": row["voucher_id"],
        "programme_id": row["programme_id"],
        "datacentre": row["datacentre"],
        "period_start": _local(row["period_start"], tz),
        "period_end": _local(row["period_end"], tz),
        "submitted_at": _local(row["submitted_at"], tz),
        "allocation_ids": row["allocation_ids"],
        **{k: row[k] for k in CLAIM_FIGURES},
        "status": "findings" if findings else "clean",
        "findings": findings,
        "cny_at_stake": round(sum(f["cny_at_stake"] for f in findings), 2),
        "allocations": allocations,
    }


def totals(claims: list[dict[str, Any]]) -> dict[str, Any]:
    """Claims, clean claims, the ``TOTALS`` figures summed (CNY to the fen) and the findings by
    type (count, CNY at stake) over ``claims``."""
    out: dict[str, Any] = {
        "claims": len(claims),
        "claims_clean": sum(c["status"] == "clean" for c in claims),
    }
    for key in TOTALS:
        total = sum(c[key] or 0.0 for c in claims)
        out[key] = round(total, 2) if key.endswith("_cny") or key == "cny_at_stake" else total
    by_type: dict[str, dict[str, Any]] = {}
    for c in claims:
        for f in c["findings"]:
            entry = by_type.setdefault(f["finding"], {"count": 0, "cny_at_stake": 0.0})
            entry["count"] += 1
            entry["cny_at_stake"] = round(entry["cny_at_stake"] + f["cny_at_stake"], 2)
    out["findings"] = dict(sorted(by_type.items()))
    return out


def _vouchers(
    con: duckdb.DuckDBPyConnection,
    tenant: str,
    month: str,
    tz: ZoneInfo,
    claims: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    params = {"tenant": tenant, "month": month, "tz": tz.key}
    out = []
    for v in _rows(con.execute(load_sql("statement_vouchers"), params)):
        mine = [c for c in claims if c["voucher_id"] == v["voucher_id"]]
        face = v["face_value_cny"]
        out.append(
            {
                **v,
                "issued_at": _local(v["issued_at"], tz),
                "expires_at": _local(v["expires_at"], tz),
                "remaining_cny": None
                if face is None
                else round(face - v["subsidy_to_date_cny"], 2),
                "totals": totals(mine),
                "claims": mine,
            }
        )
    return out


def statement(
    con: duckdb.DuckDBPyConnection,
    *,
    tenant: str,
    month: str,
    tz: str = DEFAULT_TZ,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """The statement of ``tenant`` for local ``month``: ``{"tenant", "month", "tz",
    "vouchers", "totals", "lineage"}``.

    ``vouchers``: the tenant's vouchers valid in the month and any voucher its claims of the
    month name, each with its face value, the subsidy claimed on it in the month and to the
    month's end, what remains, its ``totals`` and its ``claims``; a claim carries the
    attribution's figures (``CLAIM_FIGURES``), ``status`` (``clean`` or ``findings``), the
    audit's ``findings`` on it (type, severity, CNY at stake) and its ``allocations`` (id,
    cluster, job, GPUs, start / end clipped to the claim period, metered, covered and busy
    GPU-hours). ``lineage``: the lake versions read, as the audit names them. Raises
    ``UnknownTenant`` for a tenant the snapshot does not have."""
    known = tenants(con)
    found_tenant = next((t for t in known if t["tenant_id"] == tenant), None)
    if found_tenant is None:
        raise UnknownTenant(tenant, [t["tenant_id"] for t in known])
    report = audit(con, month=month, tz=tz, thresholds=thresholds)
    zone = ZoneInfo(tz)
    with single_threaded(con):  # reproducible to the last digit, as the audit is
        allocations = _allocations(con, tenant, month, zone)
        claims = [
            _claim(
                row,
                [f for f in report["findings"] if f["claim_id"] == row["claim_id"]],
                allocations.get(row["claim_id"], []),
                zone,
            )
            for row in attribution_rows(con, month)
            if row["tenant_id"] == tenant
        ]
        vouchers = _vouchers(con, tenant, month, zone, claims)
    return {
        "tenant": found_tenant,
        "month": report["month"],
        "tz": tz,
        "vouchers": vouchers,
        "totals": totals(claims),
        "lineage": report["lineage"],
    }
