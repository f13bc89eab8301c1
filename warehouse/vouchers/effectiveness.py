"""Programme effectiveness (docs/audit.md#programme-effectiveness): did the programme fill the data
centres, and for whom.

``effectiveness(con, programme_id, months=3, tz=...)`` needs
``warehouse.vouchers.attribution.open_audit``
and reports, for the programme's data centres (its ``eligible_datacentres``, or where its claims
were made when that list is empty):

- ``monthly``: the utilisation report (``warehouse.reports.utilisation``, by data centre and local
  month) for
  the ``months`` months before and after the month of ``valid_from``, each row with a ``phase``;
- ``phases``: per data centre and phase, allocation rate and utilisation over the phase
  (Σ allocated / Σ capacity, Σ busy / Σ capacity);
- ``subsidised_share``: metered GPU-hours of the programme's claims in the after window divided
  by the capacity of its data centres in that window;
- ``concentration``: subsidy by tenant and by tenant region: top-10 share and Gini;
- ``median_claim_delay_days``: median days from claim period end to submission;
- ``by_region`` and ``by_ownership``: did the subsidised demand reach the under-used (western,
  public) data centres? Per local month of the window and region (ownership) of the data-centre
  registry, over every data centre of the lake: capacity, allocated and busy GPU-hours with
  their rates (from the summed hours), the programme's subsidised (metered) GPU-hours and
  subsidy of claims at those data centres in that month, and their share of the capacity;
  data centres the registry does not list are the group ``unregistered``;
- ``lineage``: the lake table versions read (``warehouse.reports.render.Lineage.to_json``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

import duckdb

from pipeline.defaults import DEFAULT_TZ
from pipeline.entities import UNREGISTERED
from warehouse.catalog import load_sql
from warehouse.reports.utilisation import lineage, single_threaded, utilisation_report
from warehouse.vouchers.attribution import attribute


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient of non-negative amounts (0 = even, -> 1 = one takes all)."""
    xs = sorted(values)
    total = sum(xs)
    if not xs or total <= 0:
        return None
    n = len(xs)
    return 2 * sum(i * x for i, x in enumerate(xs, start=1)) / (n * total) - (n + 1) / n


def top_share(values: Sequence[float], k: int = 10) -> float | None:
    total = sum(values)
    return sum(sorted(values, reverse=True)[:k]) / total if total > 0 else None


def _shift(d: date, months: int) -> date:
    m = d.year * 12 + d.month - 1 + months
    return date(m // 12, m % 12 + 1, 1)


def _concentration(amounts: dict[str, float]) -> dict[str, Any]:
    values = list(amounts.values())
    return {
        "n": len(values),
        "top10_share": top_share(values),
        "gini": gini(values),
        "subsidy_cny": {k: round(v, 2) for k, v in sorted(amounts.items(), key=lambda kv: -kv[1])},
    }


def effectiveness(
    con: duckdb.DuckDBPyConnection,
    programme_id: str,
    *,
    months: int = 3,
    tz: str = DEFAULT_TZ,
) -> dict[str, Any]:
    with single_threaded(con):  # reproducible to the last digit (``--as-of``)
        return _effectiveness(con, programme_id, months, tz)


def _effectiveness(
    con: duckdb.DuckDBPyConnection, programme_id: str, months: int, tz: str
) -> dict[str, Any]:
    eligible, valid_from = _programme(con, programme_id, tz)
    attribute(con, tz)
    cursor = con.execute(load_sql("effectiveness_claims"), {"p": programme_id})
    names = [d[0] for d in cursor.description]
    claims = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    start = date.fromisoformat(valid_from).replace(day=1)
    dcs = sorted(eligible or {c["datacentre"] for c in claims})
    lo, hi = _shift(start, -months), _shift(start, months)
    last_day = date.fromordinal(hi.toordinal() - 1)
    report = utilisation_report(
        con, period="month", by="datacentre", date_from=lo, date_to=last_day, tz=tz
    )
    monthly = [
        {**r, "phase": "before" if r["period"] < start.strftime("%Y-%m") else "after"}
        for r in report
        if r["datacentre"] in dcs
    ]
    sums = _phase_sums(monthly)
    after_cap = sum(v[0] for (_, phase), v in sums.items() if phase == "after")
    after = [c for c in claims if start.strftime("%Y-%m") <= c["month"] < hi.strftime("%Y-%m")]
    delays = [c["delay_days"] for c in claims]
    return {
        "programme_id": programme_id,
        "start": start.isoformat(),
        "datacentres": dcs,
        "window": [lo.isoformat(), hi.isoformat()],
        "monthly": monthly,
        "phases": _phases(sums),
        "subsidised_share": sum(c["metered_gpu_h"] for c in after) / after_cap
        if after_cap
        else None,
        "claims": len(claims),
        "subsidy_cny": round(sum(c["subsidy_cny"] for c in claims), 2),
        "concentration": _concentrations(claims),
        "median_claim_delay_days": statistics.median(delays) if delays else None,
        **_reach(con, report, claims, (lo.strftime("%Y-%m"), hi.strftime("%Y-%m"))),
        "lineage": lineage(con).to_json(),
    }


def _programme(con: duckdb.DuckDBPyConnection, programme_id: str, tz: str) -> tuple[Any, str]:
    """The programme's ``eligible_datacentres`` and the local date of its ``valid_from``."""
    row = con.execute(
        "SELECT eligible_datacentres, strftime(timezone($tz, valid_from), '%Y-%m-%d') "
        "FROM programmes WHERE programme_id = $p",
        {"p": programme_id, "tz": tz},
    ).fetchone()
    if row is None:
        raise ValueError(f"no programme {programme_id!r} in the lake")
    return row[0], row[1]


def _phase_sums(monthly: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """Σ capacity, allocated and busy GPU-hours per (data centre, phase)."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in monthly:
        acc = sums[(r["datacentre"], r["phase"])]
        acc[0] += r["capacity_gpu_h"] or 0.0
        acc[1] += r["allocated_gpu_h"] or 0.0
        acc[2] += r["busy_gpu_h"] or 0.0
    return sums


def _phases(sums: dict[tuple[str, str], list[float]]) -> list[dict[str, Any]]:
    """Per data centre, ``before`` then ``after``: capacity and the rates over the phase."""
    return [
        {
            "datacentre": dc,
            "phase": phase,
            "capacity_gpu_h": cap,
            "allocation_rate": alloc / cap if cap else None,
            "utilisation": busy / cap if cap else None,
        }
        for (dc, phase), (cap, alloc, busy) in sorted(
            sums.items(), key=lambda kv: (kv[0][0], kv[0][1] != "before")
        )
    ]


def _concentrations(claims: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Subsidy concentration by tenant and by tenant region."""
    by_tenant: dict[str, float] = defaultdict(float)
    by_region: dict[str, float] = defaultdict(float)
    for c in claims:
        by_tenant[c["tenant_id"]] += c["subsidy_cny"]
        by_region[c["tenant_region"]] += c["subsidy_cny"]
    return {"tenant": _concentration(by_tenant), "region": _concentration(by_region)}


REACH_COLUMNS = (
    "datacentres",
    "capacity_gpu_h",
    "allocated_gpu_h",
    "busy_gpu_h",
    "allocation_rate",
    "utilisation",
    "subsidised_gpu_h",
    "subsidy_cny",
    "subsidised_share",
)
"""The columns of ``by_region`` / ``by_ownership`` rows after ``period`` and the group."""


def _reach(
    con: duckdb.DuckDBPyConnection,
    report: Sequence[dict[str, Any]],
    claims: Sequence[dict[str, Any]],
    window: tuple[str, str],
) -> dict[str, list[dict[str, Any]]]:
    """``by_region`` and ``by_ownership`` from the by-datacentre report rows of the window and
    the programme's claims whose local month is in ``window`` ([first, end) as YYYY-MM)."""
    cursor = con.execute(load_sql("effectiveness_datacentres"))
    registry = {str(dc): (str(region), str(owner)) for dc, region, owner in cursor.fetchall()}
    inside = [c for c in claims if window[0] <= c["month"] < window[1]]
    return {
        f"by_{by}": _grouped(report, inside, {dc: g[i] for dc, g in registry.items()}, by)
        for i, by in enumerate(("region", "ownership"))
    }


def _grouped(
    report: Sequence[dict[str, Any]],
    claims: Sequence[dict[str, Any]],
    group_of: dict[str, str],
    by: str,
) -> list[dict[str, Any]]:
    acc: dict[tuple[str, str], dict[str, Any]] = {}

    def slot(period: str, dc: str) -> dict[str, Any]:
        key = (period, group_of.get(dc, UNREGISTERED))
        return acc.setdefault(key, {"dcs": set(), "sums": defaultdict(float), "busy": False})

    for r in report:
        a = slot(r["period"], r["datacentre"])
        a["dcs"].add(r["datacentre"])
        for col in ("capacity_gpu_h", "allocated_gpu_h", "busy_gpu_h"):
            if r[col] is not None:
                a["sums"][col] += r[col]
                a["busy"] |= col == "busy_gpu_h"
    for c in claims:
        a = slot(c["month"], c["datacentre"])
        a["dcs"].add(c["datacentre"])
        a["sums"]["subsidised_gpu_h"] += c["metered_gpu_h"]
        a["sums"]["subsidy_cny"] += c["subsidy_cny"]
    return [_reach_row(period, by, group, a) for (period, group), a in sorted(acc.items())]


def _reach_row(period: str, by: str, group: str, a: dict[str, Any]) -> dict[str, Any]:
    sums = a["sums"]
    cap = sums.get("capacity_gpu_h")
    busy = sums["busy_gpu_h"] if a["busy"] else None
    values = [
        "+".join(sorted(a["dcs"])),
        cap,
        sums.get("allocated_gpu_h"),
        busy,
        sums["allocated_gpu_h"] / cap if cap else None,
        busy / cap if cap and busy is not None else None,
        sums["subsidised_gpu_h"],
        round(sums["subsidy_cny"], 2),
        sums["subsidised_gpu_h"] / cap if cap else None,
    ]
    return {"period": period, by: group, **dict(zip(REACH_COLUMNS, values, strict=True))}
