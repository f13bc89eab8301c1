"""Planting one claim of every audit finding type into a scenario, with its ground truth.

Each anomaly goes on its own claim (and, for the voucher-level ones, its own voucher), so every
planted claim carries exactly one finding. The CNY at stake is computed with the audit's
formulas (``warehouse.vouchers.audit``) from the generator's own figures, independently of the SQL.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from pipeline.records import ms_to_iso
from warehouse.vouchers.scenario.model import (
    DAY,
    Scenario,
    claim_allocations,
    make_claim,
    metered,
    programme_of,
)

IDLE_UTIL = 0.03


@dataclass
class _Planting:
    """The scenario being planted, its rng, and the claims and vouchers already carrying a
    finding (each planted claim carries exactly one)."""

    scenario: Scenario
    rng: random.Random
    used_claims: set[str] = field(default_factory=set)
    used_vouchers: set[str] = field(default_factory=set)

    @property
    def claims(self) -> list[dict[str, Any]]:
        claims: list[dict[str, Any]] = self.scenario.entities["claim"]
        return claims

    def use(self, claim: dict[str, Any]) -> None:
        self.used_claims.add(claim["claim_id"])
        self.used_vouchers.add(claim["voucher_id"])

    def record(self, finding: str, claim: dict[str, Any], cny: float) -> None:
        self.scenario.ground_truth.append(
            {
                "finding": finding,
                "claim_id": claim["claim_id"],
                "month": claim["_month"],
                "cny_at_stake": round(cny, 2),
            }
        )
        self.use(claim)

    def pick(self, **match: Any) -> dict[str, Any]:
        free = [
            c
            for c in self.claims
            if c["claim_id"] not in self.used_claims
            and c["voucher_id"] not in self.used_vouchers
            and all(c[k] == v for k, v in match.items())
        ]
        if not free:
            raise RuntimeError(f"scenario too small to plant an anomaly on a claim with {match}")
        return self.rng.choice(free)


def plant(scenario: Scenario, rng: random.Random) -> None:
    """Plant one claim of every finding type (in this order: the rng draws depend on it) and
    record each in ``scenario.ground_truth``."""
    p = _Planting(scenario, rng)
    _ineligible(p)
    _double_claim(p)
    _over_claim(p)
    _no_telemetry(p)
    _idle_subsidised(p)
    _coverage_exceeded(p)
    price_claim, cap_price = _price_anomaly(p)
    _out_of_validity(p)
    _voucher_overspent(p)
    # the price limit needs the final market median of the data centre's claims
    prices = [c["unit_price_cny"] for c in p.claims if c["datacentre"] == price_claim["datacentre"]]
    price = price_claim["unit_price_cny"]
    limit = min(cap_price, 2.0 * statistics.median(prices))
    p.record("PRICE_ANOMALY", price_claim, price_claim["subsidy_cny"] * (price - limit) / price)


def _ineligible(p: _Planting) -> None:
    """INELIGIBLE: a large firm given a Shanghai voucher claims its Shanghai rentals."""
    scenario = p.scenario
    vid = "v-SH-CV-mega"
    issued = programme_of(scenario, "v-SH-CV-aurora")
    scenario.entities["voucher"].append(
        {
            "voucher_id": vid,
            "programme_id": "SH-CV",
            "tenant_id": "t-mega",
            "face_value_cny": 0.0,
            "issued_at": issued["valid_from"],
            "expires_at": issued["valid_to"],
        }
    )
    claim = _first_claim(scenario, p.rng, vid, "t-mega", "dc-sh")
    p.claims.append(claim)
    p.record("INELIGIBLE", claim, claim["subsidy_cny"])


def _double_claim(p: _Planting) -> None:
    """DOUBLE_CLAIM: a Chengdu claim claimed again under the provincial voucher, days later."""
    first = p.pick(tenant_id="t-panda", datacentre="dc-cd")
    second = dict(first)
    second["claim_id"] = first["claim_id"].replace("-cd-", "-cdprov-")
    second["voucher_id"] = "v-SC-PROV-panda"
    second["_submitted"] = first["_submitted"] + 3 * DAY
    second["submitted_at"] = ms_to_iso(second["_submitted"])
    second["subsidy_cny"] = math.floor(first["invoice_cny"] * 0.45 * 100) / 100
    p.claims.append(second)
    p.use(first)
    p.record("DOUBLE_CLAIM", second, second["subsidy_cny"])


def _over_claim(p: _Planting) -> None:
    """OVER_CLAIM: 25 % more GPU-hours than metered, invoiced and subsidised accordingly."""
    claim = p.pick()
    hours = metered(claim_allocations(p.scenario, claim), claim["_p0"], claim["_p1"])
    ratio = claim["subsidy_cny"] / claim["invoice_cny"]
    claim["claimed_gpu_hours"] = round(hours * 1.25, 2)
    claim["invoice_cny"] = round(claim["claimed_gpu_hours"] * claim["unit_price_cny"], 2)
    claim["subsidy_cny"] = math.floor(claim["invoice_cny"] * ratio * 100) / 100
    c = claim["claimed_gpu_hours"]
    p.record("OVER_CLAIM", claim, claim["subsidy_cny"] * (c - hours) / c)


def _no_telemetry(p: _Planting) -> None:
    """NO_TELEMETRY: the claimed allocations report no samples during the claim period."""
    claim = p.pick()
    ids = [a.allocation_id for a in claim_allocations(p.scenario, claim)]
    p.scenario.no_samples.append((ids, claim["_p0"], claim["_p1"]))
    p.record("NO_TELEMETRY", claim, claim["subsidy_cny"])


def _idle_subsidised(p: _Planting) -> None:
    """IDLE_SUBSIDISED: every sample under the claimed allocations at 3 % busy."""
    claim = p.pick()
    ids = [a.allocation_id for a in claim_allocations(p.scenario, claim)]
    p.scenario.idle.append((ids, claim["_p0"], claim["_p1"], IDLE_UTIL))
    p.record("IDLE_SUBSIDISED", claim, claim["subsidy_cny"] * (1 - IDLE_UTIL))


def _coverage_exceeded(p: _Planting) -> None:
    """COVERAGE_EXCEEDED: subsidy 10 points above the programme's cap."""
    claim = p.pick()
    cap = programme_of(p.scenario, claim["voucher_id"])["max_coverage"]
    claim["subsidy_cny"] = round(claim["invoice_cny"] * (cap + 0.1), 2)
    p.record("COVERAGE_EXCEEDED", claim, claim["subsidy_cny"] - cap * claim["invoice_cny"])


def _price_anomaly(p: _Planting) -> tuple[dict[str, Any], float]:
    """PRICE_ANOMALY: a claim under a capped programme at 1.6x the cap. Recorded by ``plant``
    last, once the data centre's market median is final; returns the claim and the cap."""
    price_claim = _capped(p.pick, p.scenario)
    ratio = price_claim["subsidy_cny"] / price_claim["invoice_cny"]
    cap_price = programme_of(p.scenario, price_claim["voucher_id"])["price_cap_cny_per_gpu_hour"]
    price_claim["unit_price_cny"] = round(cap_price * 1.6, 2)
    price_claim["invoice_cny"] = round(
        price_claim["claimed_gpu_hours"] * price_claim["unit_price_cny"], 2
    )
    price_claim["subsidy_cny"] = math.floor(price_claim["invoice_cny"] * ratio * 100) / 100
    p.use(price_claim)
    return price_claim, cap_price


def _out_of_validity(p: _Planting) -> None:
    """OUT_OF_VALIDITY: a voucher issued 10 days into the period of its only first-month
    claim."""
    claim = _first_month_single(p.scenario, p.claims, p.used_vouchers)
    voucher = _voucher(p.scenario, claim["voucher_id"])
    voucher["issued_at"] = ms_to_iso(claim["_p0"] + 10 * DAY)
    share = 10 * DAY / (claim["_p1"] - claim["_p0"])
    p.record("OUT_OF_VALIDITY", claim, claim["subsidy_cny"] * share)


def _voucher_overspent(p: _Planting) -> None:
    """VOUCHER_OVERSPENT: face value 40 % of the last claim's subsidy short of the total."""
    vouchers = sorted({c["voucher_id"] for c in p.claims} - p.used_vouchers)
    voucher = _voucher(p.scenario, p.rng.choice(vouchers))
    mine = [c for c in p.claims if c["voucher_id"] == voucher["voucher_id"]]
    last = max(mine, key=lambda c: (c["_submitted"], c["claim_id"]))
    excess = round(last["subsidy_cny"] * 0.4, 2)
    voucher["_face"] = round(sum(c["subsidy_cny"] for c in mine) - excess, 2)
    p.record("VOUCHER_OVERSPENT", last, excess)


def _capped(pick: Any, scenario: Scenario) -> dict[str, Any]:
    for _ in range(100):
        claim: dict[str, Any] = pick()
        if programme_of(scenario, claim["voucher_id"])["price_cap_cny_per_gpu_hour"] is not None:
            return claim
    raise RuntimeError("no claim under a programme with a price cap")


def _voucher(scenario: Scenario, voucher_id: str) -> dict[str, Any]:
    return next(v for v in scenario.entities["voucher"] if v["voucher_id"] == voucher_id)


def _first_claim(
    scenario: Scenario, rng: random.Random, vid: str, tenant: str, dc: str
) -> dict[str, Any]:
    start = scenario.spec.programme_month
    for label, p0, p1 in scenario.month_bounds[start:]:
        claim = make_claim(scenario, rng, vid, tenant, dc, label, p0, p1)
        if claim is not None:
            return claim
    raise RuntimeError(f"{tenant} has no allocation at {dc} after the programme start")


def _first_month_single(
    scenario: Scenario, claims: list[dict[str, Any]], used: set[str]
) -> dict[str, Any]:
    first = scenario.month_bounds[scenario.spec.programme_month][0]
    for vid in sorted({c["voucher_id"] for c in claims} - used):
        mine = [c for c in claims if c["voucher_id"] == vid and c["_month"] == first]
        if len(mine) == 1:
            return mine[0]
    raise RuntimeError("no voucher with a single claim in the programme's first month")
