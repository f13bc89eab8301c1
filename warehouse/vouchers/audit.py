"""The monthly compute-voucher audit (docs/audit.md): nine findings and a programme summary.

``audit(con, month=..., tz=...)`` attributes every claim (``warehouse.vouchers.attribution``),
evaluates
``vouchers/sql/audit_findings.sql`` over all claims (double claims and voucher overspending need the
claims of other months too) and keeps the claims whose ``month`` (local month of
``period_start``) is the audit month. Every claim of the month appears once per finding it has,
or in ``clean``. Money at stake (CNY, rounded to the fen) per finding:

- ``OVER_CLAIM``: claimed > metered x (1 + tolerance); subsidy x (claimed - metered) / claimed.
- ``NO_TELEMETRY``: metered > 0 and sample coverage / metered < min share; subsidy x (1 - share).
- ``IDLE_SUBSIDISED``: telemetry present and busy / covered < threshold; subsidy x (1 - eff).
- ``COVERAGE_EXCEEDED``: subsidy > max_coverage x invoice; the excess.
- ``DOUBLE_CLAIM``: allocation GPU-hours also in an earlier-submitted claim (any voucher or
  programme); subsidy x doubled GPU-hours / metered.
- ``VOUCHER_OVERSPENT``: cumulative subsidy on the voucher (by submission) above face value;
  the part of this claim's subsidy beyond it.
- ``OUT_OF_VALIDITY``: claim period outside voucher and programme validity; subsidy x share of
  the period outside.
- ``INELIGIBLE``: tenant type or data centre not eligible; the whole subsidy.
- ``PRICE_ANOMALY``: unit price above min(price cap, factor x the data centre's median claim
  price); subsidy x (price - limit) / price.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb

from pipeline.defaults import DEFAULT_TZ
from warehouse.catalog import load_sql
from warehouse.reports.utilisation import check_tz, lineage, single_threaded
from warehouse.vouchers.attribution import attribute

FINDINGS = (
    "OVER_CLAIM",
    "NO_TELEMETRY",
    "IDLE_SUBSIDISED",
    "COVERAGE_EXCEEDED",
    "DOUBLE_CLAIM",
    "VOUCHER_OVERSPENT",
    "OUT_OF_VALIDITY",
    "INELIGIBLE",
    "PRICE_ANOMALY",
)
SEVERITIES = ("high", "medium", "low")
DEFAULT_THRESHOLDS = Path(str(files("gpuledger") / "deploy" / "audit" / "thresholds.toml"))
FINDING_KEYS = (
    "finding",
    "severity",
    "claim_id",
    "voucher_id",
    "programme_id",
    "tenant_id",
    "datacentre",
    "cny_at_stake",
    "evidence",
)


def _default_severity() -> dict[str, str]:
    high = {"OVER_CLAIM", "DOUBLE_CLAIM", "VOUCHER_OVERSPENT", "INELIGIBLE"}
    return {
        f: "high" if f in high else "low" if f == "IDLE_SUBSIDISED" else "medium" for f in FINDINGS
    }


@dataclass(frozen=True)
class Thresholds:
    over_claim_tolerance: float = 0.02
    min_telemetry_share: float = 0.5
    idle_efficiency_threshold: float = 0.10
    price_anomaly_factor: float = 2.0
    severity: dict[str, str] = field(default_factory=_default_severity)


def load_thresholds(path: Path | None = None) -> Thresholds:
    """Thresholds from a TOML file (default ``deploy/audit/thresholds.toml``); keys not in the
    file keep the defaults; an unknown key or finding, or a bad severity, is an error."""
    path = DEFAULT_THRESHOLDS if path is None else Path(path)
    return parse_thresholds(path.read_bytes(), str(path))


def parse_thresholds(text: bytes, where: str = "thresholds") -> Thresholds:
    """Thresholds from the bytes of a thresholds TOML file (``where`` names it in errors)."""
    data = tomllib.loads(text.decode("utf-8"))
    severity = _default_severity()
    for finding, level in data.pop("severity", {}).items():
        if finding not in FINDINGS or level not in SEVERITIES:
            raise ValueError(f"{where}: bad severity entry {finding} = {level!r}")
        severity[finding] = level
    known = {"over_claim_tolerance", "min_telemetry_share", "idle_efficiency_threshold"}
    known.add("price_anomaly_factor")
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    values = {k: float(v) for k, v in data.items()}
    if any(v < 0 for v in values.values()):
        raise ValueError(f"{where}: thresholds must not be negative")
    return Thresholds(severity=severity, **values)


def _check_month(month: str, tz: str) -> None:
    check_tz(tz)
    parts = month.split("-")
    if len(parts) != 2 or len(parts[0]) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"month must be YYYY-MM, not {month!r}")
    if not 1 <= int(parts[1]) <= 12:
        raise ValueError(f"month must be YYYY-MM, not {month!r}")


def findings(con: duckdb.DuckDBPyConnection, thresholds: Thresholds) -> list[dict[str, Any]]:
    """Every finding over every attributed claim (``attribute`` must have run on ``con``)."""
    params = {
        "over_tol": thresholds.over_claim_tolerance,
        "min_tel": thresholds.min_telemetry_share,
        "idle_eff": thresholds.idle_efficiency_threshold,
        "price_factor": thresholds.price_anomaly_factor,
    }
    cursor = con.execute(load_sql("audit_findings"), params)
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        r = dict(zip(names, row, strict=True))
        r["severity"] = thresholds.severity[r["finding"]]
        r["evidence"] = json.loads(r["evidence"])
        r["evidence"]["claim_ids"] = [r["claim_id"]] + r["evidence"].get("other_claim_ids", [])
        out.append(r)
    return out


def audit(
    con: duckdb.DuckDBPyConnection,
    *,
    month: str,
    programme: str | None = None,
    tz: str = DEFAULT_TZ,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """The audit of one local month: ``{"month", "tz", "programmes", "findings", "clean",
    "lineage"}``.

    ``findings`` are worst first (severity, CNY at stake, claim id) with ``FINDING_KEYS``;
    ``clean`` lists the month's claim ids with no finding; ``programmes`` has one summary per
    programme that had a claim or issued a voucher in the month; ``lineage`` names the lake
    table versions read (``warehouse.reports.render.Lineage.to_json``: ``tables``, ``as_of``,
    ``engine``).
    """
    _check_month(month, tz)
    thresholds = thresholds or load_thresholds()
    with single_threaded(con):  # reproducible to the last digit (``--as-of``)
        return _audit(con, month, programme, tz, thresholds)


def _audit(
    con: duckdb.DuckDBPyConnection,
    month: str,
    programme: str | None,
    tz: str,
    thresholds: Thresholds,
) -> dict[str, Any]:
    attribute(con, tz)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    found = [
        f
        for f in findings(con, thresholds)
        if f["month"] == month and (programme is None or f["programme_id"] == programme)
    ]
    found.sort(key=lambda f: (rank[f["severity"]], -f["cny_at_stake"], f["claim_id"], f["finding"]))
    claims = con.execute(
        "SELECT claim_id FROM claim_attribution WHERE month = $m "
        "AND ($p IS NULL OR programme_id = $p) ORDER BY claim_id",
        {"m": month, "p": programme},
    ).fetchall()
    flagged = {f["claim_id"] for f in found}
    return {
        "month": month,
        "tz": tz,
        "programmes": programme_summaries(con, month, programme, tz, found),
        "findings": [{k: f[k] for k in FINDING_KEYS} for f in found],
        "clean": [c for (c,) in claims if c not in flagged],
        "lineage": lineage(con).to_json(),
    }


def programme_summaries(
    con: duckdb.DuckDBPyConnection,
    month: str,
    programme: str | None,
    tz: str,
    found: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    cursor = con.execute(load_sql("audit_programmes"), {"m": month, "p": programme, "tz": tz})
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        mine = [f for f in found if f["programme_id"] == row["programme_id"]]
        by_type: dict[str, dict[str, Any]] = {}
        for f in mine:
            entry = by_type.setdefault(f["finding"], {"count": 0, "cny_at_stake": 0.0})
            entry["count"] += 1
            entry["cny_at_stake"] = round(entry["cny_at_stake"] + f["cny_at_stake"], 2)
        row["findings"] = dict(sorted(by_type.items()))
        row["cny_at_stake"] = round(sum(f["cny_at_stake"] for f in mine), 2)
        row["claims_clean"] = row["claims"] - len({f["claim_id"] for f in mine})
    return rows
