"""A synthetic compute-voucher landscape over synthetic metered evidence (issue 3, item 6).

**Synthetic, not real:** the tenants, allocations, vouchers and claims are invented. The only
real input is the GPU-utilisation distribution: every GPU sample's ``util`` is drawn from the
published ACME Seren ``DCGM_FI_DEV_GPU_UTIL`` CDF (``gpuledger/data/dcgm/``, CC BY 4.0). Helios
and OpenB carry no tenant-level allocations with GPU identities that a claim could name, so the
allocations are laid out here: per data centre, GPU slots of 4 rented back to back by tenants
for 1-6 days with gaps, busier after the programmes start (their intended effect).

Layout: three data centres (Shanghai, Chengdu, Gui'an; in the data-centre registry with four
more sites of other hubs that have no telemetry here), three programmes (a Shanghai city
programme also valid at the western site, a Chengdu city programme, a Sichuan provincial one),
SMEs / research institutes / large firms across regions, one voucher per eligible tenant (some
Sichuan SMEs hold a city and a provincial voucher), and one claim per (tenant, data centre, local
month) from the programme start, priced near the site's rate, covering up to the programme cap.

With ``anomalies=True`` one claim of every finding type is planted (``warehouse.scenario_plant``)
and ``ground_truth`` lists each with its claim and the CNY at stake by the audit's formulas.
``warehouse.scenario_write.write_scenario`` lands the telemetry with ``pipeline.backfill.LakeSink``
(the same validation as every backfill) and the voucher files as CSV through
``warehouse.vouchers.import_files``.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.records import ms_to_iso

H = 3_600_000
DAY = 24 * H
QUANTILES = Path(__file__).resolve().parents[1] / "gpuledger" / "data" / "dcgm"
QUANTILES = QUANTILES / "acme-seren-gpu-quantiles.csv"
SOURCE = "scenario"

# (id, region, base price CNY per GPU-hour)
DATACENTRES = (("dc-sh", "Shanghai", 14.0), ("dc-cd", "Sichuan", 11.0), ("dc-ga", "Guizhou", 9.0))
# the data-centre registry (warehouse.datacentres): the three sites above, an eastern private
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
    tz: str = "Asia/Shanghai"


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


def _allocations(
    spec: ScenarioSpec, rng: random.Random, bounds: Sequence[tuple[str, int, int]]
) -> list[Allocation]:
    t0, t_end = bounds[0][1], bounds[-1][2]
    boost = bounds[spec.programme_month][1]
    out: list[Allocation] = []
    for dc, _, _ in DATACENTRES:
        renters = [t[0] for t in TENANTS if dc in t[3]]
        for n in range(spec.nodes_per_dc):
            node = f"{dc}-n{n:02d}"
            for slot in range(spec.gpus_per_node // 4):
                gpus = [f"GPU-{node}-{slot * 4 + i}" for i in range(4)]
                t = t0 + rng.randrange(0, 48) * H
                while t < t_end:
                    mean_gap = 20 if t >= boost else 60
                    duration = rng.randrange(24, 6 * 24 + 1) * H
                    end = min(t + duration, t_end)
                    k = rng.choice((1, 2, 4, 4))
                    aid = f"{dc}-a{len(out):05d}"
                    out.append(Allocation(aid, dc, rng.choice(renters), node, gpus[:k], t, end))
                    t = end + int(rng.expovariate(1 / mean_gap)) * H
    return out


def metered(allocs: Sequence[Allocation], p0: int, p1: int) -> float:
    return sum(len(a.gpus) * overlap(a.s_ms, a.e_ms, p0, p1) for a in allocs) / H


def build_scenario(spec: ScenarioSpec) -> Scenario:
    """The landscape, allocations and claims (and planted anomalies) in memory."""
    rng = random.Random(spec.seed)
    bounds = month_bounds(spec.start, spec.months, spec.tz)
    allocations = _allocations(spec, rng, bounds)
    p_from = bounds[spec.programme_month][1]
    p_to = int(
        datetime.fromtimestamp(p_from / 1000, ZoneInfo(spec.tz))
        .replace(year=int(spec.start[:4]) + 1)
        .timestamp()
        * 1000
    )
    programmes = [
        {
            "programme_id": pid,
            "issuer": issuer,
            "region": region,
            "budget_cny": 0.0,
            "max_coverage": cov,
            "valid_from": ms_to_iso(p_from),
            "valid_to": ms_to_iso(p_to),
            "eligible_tenant_types": types,
            "eligible_datacentres": dcs,
            "price_cap_cny_per_gpu_hour": cap,
        }
        for pid, issuer, region, cov, types, dcs, cap in PROGRAMMES
    ]
    tenants = [
        {
            "tenant_id": tid,
            "name": tid[2:].replace("-", " ").title(),
            "tenant_type": tt,
            "region": rg,
        }
        for tid, tt, rg, _, _ in TENANTS
    ]
    vouchers = [
        {
            "voucher_id": f"v-{pid}-{tid[2:]}",
            "programme_id": pid,
            "tenant_id": tid,
            "face_value_cny": 0.0,
            "issued_at": ms_to_iso(p_from),
            "expires_at": ms_to_iso(p_to),
        }
        for tid, _, _, _, pids in TENANTS
        for pid in pids
    ]
    scenario = Scenario(
        spec,
        bounds,
        allocations,
        {
            "programme": programmes,
            "tenant": tenants,
            "voucher": vouchers,
            "claim": [],
            "datacentre": registry(),
        },
    )
    for tid, _, _, dcs, pids in TENANTS:
        for dc in dcs:
            pid = next((p for p in pids if _eligible(p, dc)), None)
            if pid is None:
                continue
            for label, p0, p1 in bounds[spec.programme_month :]:
                claim = make_claim(scenario, rng, f"v-{pid}-{tid[2:]}", tid, dc, label, p0, p1)
                if claim is not None:
                    scenario.entities["claim"].append(claim)
    if spec.anomalies:
        from warehouse.scenario_plant import plant

        plant(scenario, rng)
    _set_faces(scenario)
    return scenario


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


def _set_faces(scenario: Scenario) -> None:
    """Face values with headroom over each voucher's claims (unless planted otherwise); each
    programme's budget covers its vouchers."""
    claims = scenario.entities["claim"]
    for v in scenario.entities["voucher"]:
        if v.get("_face") is not None:
            v["face_value_cny"] = v.pop("_face")
            continue
        v.pop("_face", None)
        total = sum(c["subsidy_cny"] for c in claims if c["voucher_id"] == v["voucher_id"])
        v["face_value_cny"] = float(math.ceil(total * 1.5 / 1000) * 1000 + 10_000)
    for p in scenario.entities["programme"]:
        faces = [
            v["face_value_cny"]
            for v in scenario.entities["voucher"]
            if v["programme_id"] == p["programme_id"]
        ]
        p["budget_cny"] = float(math.ceil(sum(faces) * 1.2 / 10_000) * 10_000)
