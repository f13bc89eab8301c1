"""The synthetic voucher landscape's model: its sites, programmes and tenants, the records it
holds (``Scenario``) and the rules a claim follows (``make_claim``, ``metered``); the builder
(``warehouse.vouchers.scenario.build``) and the planted anomalies (``...scenario.plant``) use it."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.defaults import DEFAULT_TZ
from pipeline.records import ms_to_iso

H = 3_600_000
DAY = 24 * H
QUANTILES = Path(str(resources.files("gpuledger").joinpath("data", "dcgm")))
QUANTILES = QUANTILES / "acme-seren-gpu-quantiles.csv"
SOURCE = "scenario"

# (id, region, base price CNY per GPU-hour)
DATACENTRES = (("dc-sh", "Shanghai", 14.0), ("dc-cd", "Sichuan", 11.0), ("dc-ga", "Guizhou", 9.0))
# the data-centre registry (pipeline.entities): the three sites above, an eastern private
# one and western public ones in the other hubs (sites without telemetry in this scenario)
# (id, name, region, operator, ownership, national hub)
REGISTRY = """
dc-sh | Lingang AI Compute Centre | Shanghai | Lingang Compute Co. | private | yangtze-river-delta
dc-cd | Chengdu Intelligent Computing Centre | Sichuan | Chengdu city | public | chengdu-chongqing
dc-ga | Gui'an Public Compute Centre | Guizhou | Guizhou data group | public | guizhou
dc-gz | Nansha Compute Park | Guangdong | Nansha Cloud Ltd. | private | guangdong-hong-kong-macao
dc-qy | Qingyang Compute Hub | Gansu | Gansu compute group | public | gansu
dc-zw | Zhongwei Cloud Base | Ningxia | Ningxia compute group | public | ningxia
dc-hl | Horinger Compute Park | Inner Mongolia | Horinger compute group | public | inner-mongolia
"""
# (id, issuer, region, max_coverage, tenant types, data centres ([] = any), price cap)
PROGRAMMES: tuple[tuple[str, str, str, float, list[str], list[str], float | None], ...] = (
    ("SH-CV", "Shanghai", "Shanghai", 0.8, ["sme", "research"], ["dc-sh", "dc-ga"], 20.0),
    ("CD-CV", "Chengdu", "Sichuan", 0.6, ["sme", "research"], ["dc-cd"], None),
    ("SC-PROV", "Sichuan", "Sichuan", 0.5, ["sme"], [], 18.0),
)
# (id, type, region, data centres it rents in, vouchers in preference order)
TENANTS = (
    ("t-aurora", "sme", "Shanghai", ("dc-sh",), ("SH-CV",)),
    ("t-bund", "sme", "Shanghai", ("dc-sh", "dc-ga"), ("SH-CV",)),
    ("t-fudan-ai", "research", "Shanghai", ("dc-sh",), ("SH-CV",)),
    ("t-lingang", "sme", "Shanghai", ("dc-ga",), ("SH-CV",)),
    ("t-panda", "sme", "Sichuan", ("dc-cd",), ("CD-CV", "SC-PROV")),
    ("t-tianfu", "sme", "Sichuan", ("dc-cd", "dc-sh"), ("CD-CV", "SC-PROV")),
    ("t-uestc", "research", "Sichuan", ("dc-cd",), ("CD-CV",)),
    ("t-jinjiang", "sme", "Sichuan", ("dc-cd",), ("SC-PROV",)),
    ("t-gui-bigdata", "sme", "Guizhou", ("dc-ga",), ("SC-PROV",)),
    ("t-mega", "large", "Beijing", ("dc-sh", "dc-ga"), ()),
    ("t-hyper", "large", "Shanghai", ("dc-cd", "dc-sh"), ()),
)


@dataclass(frozen=True)
class ScenarioSpec:
    start: str = "2026-03"
    """First local month (YYYY-MM) of telemetry."""
    months: int = 4
    programme_month: int = 2
    """Index of the month the programmes start (claims from then on)."""
    nodes_per_dc: int = 2
    gpus_per_node: int = 8
    sample_interval_s: int = 900
    seed: int = 7
    anomalies: bool = False
    tz: str = DEFAULT_TZ


@dataclass
class Allocation:
    allocation_id: str
    datacentre: str
    tenant_id: str
    node: str
    gpus: list[str]
    s_ms: int
    e_ms: int


@dataclass
class Scenario:
    spec: ScenarioSpec
    month_bounds: list[tuple[str, int, int]]
    allocations: list[Allocation]
    entities: dict[str, list[dict[str, Any]]]
    ground_truth: list[dict[str, Any]] = field(default_factory=list)
    no_samples: list[tuple[list[str], int, int]] = field(default_factory=list)
    """(allocation ids, from, to): planted telemetry gaps."""
    idle: list[tuple[list[str], int, int, float]] = field(default_factory=list)
    """(allocation ids, from, to, util): planted idle allocations (every sample at ``util``)."""


def month_bounds(start: str, months: int, tz: str) -> list[tuple[str, int, int]]:
    """``(label, start_ms, end_ms)`` of ``months`` local months from ``start`` (YYYY-MM)."""
    zone = ZoneInfo(tz)
    year, month = (int(x) for x in start.split("-"))
    out = []
    for _ in range(months):
        nxt = (year + month // 12, month % 12 + 1)
        lo = datetime(year, month, 1, tzinfo=zone)
        hi = datetime(nxt[0], nxt[1], 1, tzinfo=zone)
        out.append(
            (f"{year:04d}-{month:02d}", int(lo.timestamp() * 1000), int(hi.timestamp() * 1000))
        )
        year, month = nxt
    return out


def util_quantiles(path: Path = QUANTILES) -> list[float]:
    with path.open(newline="") as fh:
        return [float(r["value"]) / 100.0 for r in csv.DictReader(fh)]


def overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def metered(allocs: Sequence[Allocation], p0: int, p1: int) -> float:
    return sum(len(a.gpus) * overlap(a.s_ms, a.e_ms, p0, p1) for a in allocs) / H


def registry() -> list[dict[str, Any]]:
    """The data-centre registry rows (``REGISTRY``) the scenario imports."""
    names = ("datacentre", "name", "region", "operator", "ownership", "hub")
    rows = [line.split(" | ") for line in REGISTRY.strip().splitlines()]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _eligible(pid: str, dc: str) -> bool:
    dcs = next(p[5] for p in PROGRAMMES if p[0] == pid)
    return not dcs or dc in dcs


def programme_of(scenario: Scenario, voucher_id: str) -> dict[str, Any]:
    v = next(v for v in scenario.entities["voucher"] if v["voucher_id"] == voucher_id)
    return next(p for p in scenario.entities["programme"] if p["programme_id"] == v["programme_id"])


def claim_allocations(scenario: Scenario, claim: dict[str, Any]) -> list[Allocation]:
    p0, p1 = claim["_p0"], claim["_p1"]
    return [
        a
        for a in scenario.allocations
        if a.tenant_id == claim["tenant_id"]
        and a.datacentre == claim["datacentre"]
        and overlap(a.s_ms, a.e_ms, p0, p1) > 0
    ]


def make_claim(
    scenario: Scenario,
    rng: random.Random,
    voucher_id: str,
    tenant_id: str,
    dc: str,
    label: str,
    p0: int,
    p1: int,
) -> dict[str, Any] | None:
    mine = [a for a in scenario.allocations if a.tenant_id == tenant_id and a.datacentre == dc]
    mine = [a for a in mine if overlap(a.s_ms, a.e_ms, p0, p1) > 0]
    if not mine:
        return None
    hours = round(metered(mine, p0, p1), 2)
    base = next(d[2] for d in DATACENTRES if d[0] == dc)
    price = round(base * rng.uniform(0.92, 1.08), 2)
    invoice = round(hours * price, 2)
    cov = programme_of(scenario, voucher_id)["max_coverage"] * rng.uniform(0.85, 1.0)
    submitted = p1 + rng.randrange(5 * 24, 60 * 24) * H
    return {
        "claim_id": f"cl-{label}-{tenant_id[2:]}-{dc[3:]}-{voucher_id.split('-')[1].lower()}",
        "voucher_id": voucher_id,
        "tenant_id": tenant_id,
        "datacentre": dc,
        "period_start": ms_to_iso(p0),
        "period_end": ms_to_iso(p1),
        "allocation_ids": [a.allocation_id for a in mine] if rng.random() < 0.7 else None,
        "claimed_gpu_hours": hours,
        "unit_price_cny": price,
        "invoice_cny": invoice,
        "subsidy_cny": math.floor(invoice * cov * 100) / 100,
        "submitted_at": ms_to_iso(submitted),
        "_p0": p0,
        "_p1": p1,
        "_month": label,
        "_submitted": submitted,
    }
