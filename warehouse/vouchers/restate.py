"""Restatements: an audit month as the lake holds it now against a signed pack (or an earlier
snapshot), with the late records behind every change (docs/audit-packs.md).

``state_from_pack(pack)`` reads what a pack froze (its findings and the per-claim figures of
``evidence/claims.parquet``; the hashes are checked first), ``state_of(con, ...)`` audits a
snapshot, and ``restate(then, now, con, lake)`` compares them: findings new, vanished and
changed (by finding type and claim), metered and busy GPU-hours, subsidy and money at stake per
claim and per programme, and per affected claim the rows that arrived after the compared
snapshot (``vouchers/sql/audit_restate_late.sql``: their ``_load`` and ``_version``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from pipeline.lake import format_as_of, open_table
from warehouse.catalog import delta_source, ident, load_sql, table_paths
from warehouse.reports.utilisation import single_threaded
from warehouse.vouchers.attribution import attribution_rows
from warehouse.vouchers.audit import Thresholds, audit, parse_thresholds
from warehouse.vouchers.pack import THRESHOLDS, PackError, check_files, read_manifest

CLAIM_FIGURES = ("metered_gpu_h", "busy_gpu_h", "subsidy_cny", "cny_at_stake")
PROGRAMME_FIGURES = ("metered_gpu_h", "busy_gpu_h", "subsidy_paid_cny", "cny_at_stake")
LATE_TABLES = ("gpu_samples", "allocations", "claims", "vouchers", "programmes", "tenants")
VOUCHER_KEYS = {
    "claims": "claim_id",
    "vouchers": "voucher_id",
    "programmes": "programme_id",
    "tenants": "tenant_id",
}
TOLERANCE = 1e-9


@dataclass(frozen=True)
class AuditState:
    """One side of a restatement: an audit report, the per-claim figures of its month and the
    table versions it read."""

    label: str
    tables: dict[str, int]
    report: dict[str, Any]
    claims: dict[str, dict[str, Any]]
    thresholds: Thresholds | None = None


def _month_claims(report: Mapping[str, Any]) -> set[str]:
    return {f["claim_id"] for f in report["findings"]} | set(report["clean"])


def _claim_figures(rows: list[dict[str, Any]], report: Mapping[str, Any]) -> dict[str, Any]:
    stake: dict[str, float] = {}
    for f in report["findings"]:
        stake[f["claim_id"]] = round(stake.get(f["claim_id"], 0.0) + f["cny_at_stake"], 2)
    wanted = _month_claims(report)
    return {
        r["claim_id"]: {
            "programme_id": r["programme_id"],
            "metered_gpu_h": r["metered_gpu_h"],
            "busy_gpu_h": r["busy_gpu_h"],
            "subsidy_cny": r["subsidy_cny"],
            "cny_at_stake": stake.get(r["claim_id"], 0.0),
        }
        for r in rows
        if r["claim_id"] in wanted
    }


def state_from_pack(pack: Path) -> tuple[AuditState, dict[str, Any]]:
    """What ``pack`` froze, and its manifest; ``PackError`` when a file fails its hash."""
    pack = Path(pack)
    manifest = read_manifest(pack)
    problems = check_files(pack, manifest)
    if problems:
        raise PackError(f"{pack}: " + "; ".join(problems))
    report = json.loads((pack / "findings.json").read_text(encoding="utf-8"))
    rows = pq.read_table(pack / "evidence" / "claims.parquet").to_pylist()
    state = AuditState(
        f"pack {pack}",
        dict(manifest["tables"]),
        report,
        _claim_figures(rows, report),
        parse_thresholds((pack / THRESHOLDS).read_bytes(), str(pack / THRESHOLDS)),
    )
    return state, manifest


def state_of(
    con: duckdb.DuckDBPyConnection,
    *,
    month: str,
    programme: str | None,
    tz: str,
    thresholds: Thresholds | None,
    label: str = "now",
) -> AuditState:
    """The audit of ``month`` on ``con`` (which keeps its attribution tables afterwards)."""
    report = audit(con, month=month, programme=programme, tz=tz, thresholds=thresholds)
    rows = attribution_rows(con, month)
    return AuditState(
        label, dict(report["lineage"]["tables"]), report, _claim_figures(rows, report), thresholds
    )


def versions_at(lake: Path, version: int) -> dict[str, int]:
    """``--since-version N``: every lake table at version N, or its latest when it has fewer."""
    out = {}
    for name, path in table_paths(Path(lake)).items():
        dt = open_table(path)
        if dt is not None:
            out[name] = min(int(version), int(dt.version()))
    return out


def _key(f: Mapping[str, Any]) -> tuple[str, str]:
    return (f["claim_id"], f["finding"])


def same(a: Any, b: Any) -> bool:
    """Equal, numbers to within 1e-9 (the rollup and raw paths agree to that, docs/rollups.md),
    recursively through evidence lists and objects."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def finding_changes(then: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{"new", "vanished", "changed"}`` findings between two audit reports of one month."""
    before = {_key(f): f for f in then["findings"]}
    after = {_key(f): f for f in now["findings"]}
    changed = []
    for key in sorted(set(before) & set(after)):
        b, a = before[key], after[key]
        if not all(same(b[k], a[k]) for k in ("severity", "cny_at_stake", "evidence")):
            changed.append(
                {
                    "finding": key[1],
                    "claim_id": key[0],
                    "programme_id": a["programme_id"],
                    "before": {k: b[k] for k in ("severity", "cny_at_stake", "evidence")},
                    "after": {k: a[k] for k in ("severity", "cny_at_stake", "evidence")},
                }
            )
    return {
        "new": [after[k] for k in sorted(set(after) - set(before))],
        "vanished": [before[k] for k in sorted(set(before) - set(after))],
        "changed": changed,
    }


def restated_counts(then: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, int]:
    """Restated findings (new + vanished + changed) per programme of either report."""
    counts = {p["programme_id"]: 0 for p in [*then["programmes"], *now["programmes"]]}
    for changes in finding_changes(then, now).values():
        for f in changes:
            counts[f["programme_id"]] = counts.get(f["programme_id"], 0) + 1
    return dict(sorted(counts.items()))


def _figure(before: Any, after: Any) -> dict[str, Any] | None:
    b = 0.0 if before is None else float(before)
    a = 0.0 if after is None else float(after)
    same_size = abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))  # relative, as ``same``
    if same_size and (before is None) == (after is None):
        return None
    return {"before": before, "after": after, "delta": a - b}


def _compare(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, names: tuple[str, ...]
) -> dict[str, Any]:
    out = {}
    for name in names:
        change = _figure((before or {}).get(name), (after or {}).get(name))
        if change is not None:
            out[name] = change
    return out


def _voucher_views(con: duckdb.DuckDBPyConnection, lake: Path, tables: Mapping[str, int]) -> None:
    """``restate_raw_<table>``: the visible rows of each voucher table with ``_version`` and
    ``_load`` (the views of ``pipeline.entity_import`` drop them)."""
    paths = table_paths(Path(lake))
    for table, key in VOUCHER_KEYS.items():
        dt = open_table(paths[table], tables.get(table)) if tables.get(table) else None
        source = delta_source(dt)
        view = ident(f"restate_raw_{table}")
        if source is None:
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT CAST(NULL AS VARCHAR) AS "
                f"{ident(key)}, CAST(NULL AS BIGINT) AS _version, CAST(NULL AS VARCHAR) AS _load "
                "WHERE false"
            )
            continue
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {ident(key)}, _version, _load "
            f"FROM {source} WHERE _import_id IN "
            f"(SELECT _import_id FROM {ident(table + '_history')})"
        )


def late_records(
    con: duckdb.DuckDBPyConnection,
    lake: Path,
    claims: list[str],
    since: Mapping[str, int],
    now: Mapping[str, int],
) -> dict[str, list[dict[str, Any]]]:
    """Per claim, the late rows under it (``vouchers/sql/audit_restate_late.sql``); ``con`` holds
    the
    attribution of the ``now`` snapshot."""
    _voucher_views(con, lake, now)
    params: dict[str, Any] = {"claims": claims}
    params.update({f"v_{t}": int(since.get(t) or 0) for t in LATE_TABLES})
    with single_threaded(con):
        cursor = con.execute(load_sql("audit_restate_late"), params)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        claim = r.pop("claim_id")
        for k in ("first_ts", "last_ts"):
            r[k] = None if r[k] is None else r[k].isoformat()
        out.setdefault(claim, []).append(r)
    return out


def _claim_changes(then: AuditState, now: AuditState, found: dict[str, list[Any]]) -> list[Any]:
    touched = {f["claim_id"] for changes in found.values() for f in changes}
    out = []
    for claim in sorted(set(then.claims) | set(now.claims)):
        b, a = then.claims.get(claim), now.claims.get(claim)
        figures = _compare(b, a, CLAIM_FIGURES)
        if figures or claim in touched:
            programme = (a or b or {}).get("programme_id")
            out.append({"claim_id": claim, "programme_id": programme, **figures})
    return out


def _programme_changes(then: AuditState, now: AuditState, found: dict[str, list[Any]]) -> list[Any]:
    before = {p["programme_id"]: p for p in then.report["programmes"]}
    after = {p["programme_id"]: p for p in now.report["programmes"]}
    counts = restated_counts(then.report, now.report)
    out = []
    for programme in sorted(set(before) | set(after)):
        figures = _compare(before.get(programme), after.get(programme), PROGRAMME_FIGURES)
        if figures or counts.get(programme):
            out.append(
                {
                    "programme_id": programme,
                    "restated_findings": counts.get(programme, 0),
                    **figures,
                }
            )
    return out


def restate(
    then: AuditState, now: AuditState, con: duckdb.DuckDBPyConnection, lake: Path
) -> dict[str, Any]:
    """The restatement of ``now`` against ``then`` (``con``: the connection ``now`` was
    audited on). ``restated`` is false when nothing changed."""
    found = finding_changes(then.report, now.report)
    claims = _claim_changes(then, now, found)
    late = late_records(con, lake, [c["claim_id"] for c in claims], then.tables, now.tables)
    for c in claims:
        c["late_records"] = late.get(c["claim_id"], [])
    for changes in found.values():
        for f in changes:
            f["late_records"] = late.get(f["claim_id"], [])
    return {
        "month": now.report["month"],
        "tz": now.report["tz"],
        "since": {"source": then.label, "tables": then.tables, "as_of": format_as_of(then.tables)},
        "lineage": now.report["lineage"],
        "restated": bool(claims or any(found.values())),
        "findings": found,
        "claims": claims,
        "programmes": _programme_changes(then, now, found),
    }
