"""Planting one claim of every audit finding type into a scenario, with its ground truth.

Each anomaly goes on its own claim (and, for the voucher-level ones, its own voucher), so every
planted claim carries exactly one finding. The CNY at stake is computed with the audit's
formulas (``warehouse.vouchers.audit``) from the generator's own figures, independently of the SQL.
"""

from __future__ import annotations

import math
import random
import statistics
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


def plant(scenario: Scenario, rng: random.Random) -> None:
    claims: list[dict[str, Any]] = scenario.entities["claim"]
    truth = scenario.ground_truth
    used_claims: set[str] = set()
    used_vouchers: set[str] = set()

    def record(finding: str, claim: dict[str, Any], cny: float) -> None:
        truth.append(
            {
                "finding": finding,
                "claim_id": claim["claim_id"],
                "month": claim["_month"],
                "cny_at_stake": round(cny, 2),
            }
        )
        used_claims.add(claim["claim_id"])
        used_vouchers.add(claim["voucher_id"])

    def pick(**match: Any) -> dict[str, Any]:
        free = [
            c
            for c in claims
            if c["claim_id"] not in used_claims
            and c["voucher_id"] not in used_vouchers
            and all(c[k] == v for k, v in match.items())
        ]
        if not free:
            raise RuntimeError(f"scenario too small to plant an anomaly on a claim with {match}")
        return rng.choice(free)

    # INELIGIBLE: a large firm given a Shanghai voucher claims its Shanghai rentals
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
    claim = _first_claim(scenario, rng, vid, "t-mega", "dc-sh")
    claims.append(claim)
    record("INELIGIBLE", claim, claim["subsidy_cny"])

    # DOUBLE_CLAIM: a Chengdu claim claimed again under the provincial voucher, days later
    first = pick(tenant_id="t-panda", datacentre="dc-cd")
    second = dict(first)
    second["claim_id"] = first["claim_id"].replace("-cd-", "-cdprov-")
    second["voucher_id"] = "v-SC-PROV-panda"
    second["_submitted"] = first["_submitted"] + 3 * DAY
    second["submitted_at"] = ms_to_iso(second["_submitted"])
    second["subsidy_cny"] = math.floor(first["invoice_cny"] * 0.45 * 100) / 100
    claims.append(second)
    used_claims.add(first["claim_id"])
    used_vouchers.add(first["voucher_id"])
    record("DOUBLE_CLAIM", second, second["subsidy_cny"])

    # OVER_CLAIM: 25 % more GPU-hours than metered, invoiced and subsidised accordingly
    claim = pick()
    hours = metered(claim_allocations(scenario, claim), claim["_p0"], claim["_p1"])
    ratio = claim["subsidy_cny"] / claim["invoice_cny"]
    claim["claimed_gpu_hours"] = round(hours * 1.25, 2)
    claim["invoice_cny"] = round(claim["claimed_gpu_hours"] * claim["unit_price_cny"], 2)
    claim["subsidy_cny"] = math.floor(claim["invoice_cny"] * ratio * 100) / 100
    c = claim["claimed_gpu_hours"]
    record("OVER_CLAIM", claim, claim["subsidy_cny"] * (c - hours) / c)

    # NO_TELEMETRY: the claimed allocations report no samples during the claim period
    claim = pick()
    ids = [a.allocation_id for a in claim_allocations(scenario, claim)]
    scenario.no_samples.append((ids, claim["_p0"], claim["_p1"]))
    record("NO_TELEMETRY", claim, claim["subsidy_cny"])

    # IDLE_SUBSIDISED: every sample under the claimed allocations at 3 % busy
    claim = pick()
    ids = [a.allocation_id for a in claim_allocations(scenario, claim)]
    scenario.idle.append((ids, claim["_p0"], claim["_p1"], IDLE_UTIL))
    record("IDLE_SUBSIDISED", claim, claim["subsidy_cny"] * (1 - IDLE_UTIL))

    # COVERAGE_EXCEEDED: subsidy 10 points above the programme's cap
    claim = pick()
    cap = programme_of(scenario, claim["voucher_id"])["max_coverage"]
    claim["subsidy_cny"] = round(claim["invoice_cny"] * (cap + 0.1), 2)
    record("COVERAGE_EXCEEDED", claim, claim["subsidy_cny"] - cap * claim["invoice_cny"])

    # PRICE_ANOMALY: a claim under a capped programme at 1.6x the cap
    price_claim = _capped(pick, scenario)
    ratio = price_claim["subsidy_cny"] / price_claim["invoice_cny"]
    cap_price = programme_of(scenario, price_claim["voucher_id"])["price_cap_cny_per_gpu_hour"]
    price_claim["unit_price_cny"] = round(cap_price * 1.6, 2)
    price_claim["invoice_cny"] = round(
        price_claim["claimed_gpu_hours"] * price_claim["unit_price_cny"], 2
    )
    price_claim["subsidy_cny"] = math.floor(price_claim["invoice_cny"] * ratio * 100) / 100
    used_claims.add(price_claim["claim_id"])
    used_vouchers.add(price_claim["voucher_id"])

    # OUT_OF_VALIDITY: a voucher issued 10 days into the period of its only first-month claim
    claim = _first_month_single(scenario, claims, used_vouchers)
    voucher = _voucher(scenario, claim["voucher_id"])
    voucher["issued_at"] = ms_to_iso(claim["_p0"] + 10 * DAY)
    share = 10 * DAY / (claim["_p1"] - claim["_p0"])
    record("OUT_OF_VALIDITY", claim, claim["subsidy_cny"] * share)

    # VOUCHER_OVERSPENT: face value 40 % of the last claim's subsidy short of the total
    vouchers = sorted({c["voucher_id"] for c in claims} - used_vouchers)
    voucher = _voucher(scenario, rng.choice(vouchers))
    mine = [c for c in claims if c["voucher_id"] == voucher["voucher_id"]]
    last = max(mine, key=lambda c: (c["_submitted"], c["claim_id"]))
    excess = round(last["subsidy_cny"] * 0.4, 2)
    voucher["_face"] = round(sum(c["subsidy_cny"] for c in mine) - excess, 2)
    record("VOUCHER_OVERSPENT", last, excess)

    # the price limit needs the final market median of the data centre's claims
    prices = [c["unit_price_cny"] for c in claims if c["datacentre"] == price_claim["datacentre"]]
    p = price_claim["unit_price_cny"]
    limit = min(cap_price, 2.0 * statistics.median(prices))
    record("PRICE_ANOMALY", price_claim, price_claim["subsidy_cny"] * (p - limit) / p)


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
