"""A synthetic compute-voucher landscape over synthetic metered evidence
(docs/audit.md#synthetic-scenario).

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

With ``anomalies=True`` one claim of every finding type is planted
(``warehouse.vouchers.scenario.plant``)
and ``ground_truth`` lists each with its claim and the CNY at stake by the audit's formulas.
``warehouse.vouchers.scenario.write.write_scenario`` lands the telemetry with
``pipeline.backfill.LakeSink``
(the same validation as every backfill) and the voucher files as CSV through
``pipeline.entity_import.import_files``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.records import ms_to_iso
from warehouse.vouchers.scenario.model import (
    DATACENTRES,
    PROGRAMMES,
    TENANTS,
    Allocation,
    H,
    Scenario,
    ScenarioSpec,
    _eligible,
    make_claim,
    month_bounds,
    registry,
)


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


def build_scenario(spec: ScenarioSpec) -> Scenario:
    """The landscape, allocations and claims (and planted anomalies) in memory."""
    rng = random.Random(spec.seed)
    bounds = month_bounds(spec.start, spec.months, spec.tz)
    allocations = _allocations(spec, rng, bounds)
    p_from, p_to = _programme_window(spec, bounds)
    scenario = Scenario(
        spec,
        bounds,
        allocations,
        {
            "programme": _programmes(p_from, p_to),
            "tenant": _tenants(),
            "voucher": _vouchers(p_from, p_to),
            "claim": [],
            "datacentre": registry(),
        },
    )
    _add_claims(scenario, rng)
    if spec.anomalies:
        from warehouse.vouchers.scenario.plant import plant

        plant(scenario, rng)
    _set_faces(scenario)
    return scenario


def _programme_window(
    spec: ScenarioSpec, bounds: Sequence[tuple[str, int, int]]
) -> tuple[int, int]:
    """The programmes' validity [from, to) in ms: from the programme month's start, one year."""
    p_from = bounds[spec.programme_month][1]
    p_to = int(
        datetime.fromtimestamp(p_from / 1000, ZoneInfo(spec.tz))
        .replace(year=int(spec.start[:4]) + 1)
        .timestamp()
        * 1000
    )
    return p_from, p_to


def _programmes(p_from: int, p_to: int) -> list[dict[str, Any]]:
    return [
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


def _tenants() -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": tid,
            "name": tid[2:].replace("-", " ").title(),
            "tenant_type": tt,
            "region": rg,
        }
        for tid, tt, rg, _, _ in TENANTS
    ]


def _vouchers(p_from: int, p_to: int) -> list[dict[str, Any]]:
    """One voucher per tenant and programme it holds, valid as the programmes are."""
    return [
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


def _add_claims(scenario: Scenario, rng: random.Random) -> None:
    """One claim per (tenant, data centre, month from the programme start) where the tenant
    has allocations, under its first voucher eligible there."""
    start = scenario.spec.programme_month
    for tid, _, _, dcs, pids in TENANTS:
        for dc in dcs:
            pid = next((p for p in pids if _eligible(p, dc)), None)
            if pid is None:
                continue
            for label, p0, p1 in scenario.month_bounds[start:]:
                claim = make_claim(scenario, rng, f"v-{pid}-{tid[2:]}", tid, dc, label, p0, p1)
                if claim is not None:
                    scenario.entities["claim"].append(claim)


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
