"""The scenario generator: planted anomalies are all found, a clean scenario has no finding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from warehouse.attribution import open_audit
from warehouse.audit import FINDINGS, audit
from warehouse.scenario import ScenarioSpec, build_scenario, util_quantiles, write_scenario

SMALL = {"months": 3, "programme_month": 1, "nodes_per_dc": 1, "sample_interval_s": 3600}


def audited(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    truth = json.loads((out / "ground_truth.json").read_text())
    con = open_audit(out / "lake")
    reports = [audit(con, month=m, tz=truth["tz"]) for m in truth["months"]]
    return truth, reports


def test_quantiles_are_the_published_cdf() -> None:
    q = util_quantiles()
    assert len(q) == 2000 and min(q) == 0.0 and max(q) == 1.0
    assert sum(q) / len(q) == pytest.approx(0.5245, abs=1e-3)


def test_clean_scenario_has_no_findings(tmp_path: Path) -> None:
    scenario = build_scenario(ScenarioSpec(seed=3, **SMALL))  # type: ignore[arg-type]
    write_scenario(scenario, tmp_path)
    truth, reports = audited(tmp_path)
    assert truth["findings"] == [] and len(truth["months"]) == 2
    assert [f for r in reports for f in r["findings"]] == []
    clean = sorted(c for r in reports for c in r["clean"])
    assert clean == sorted(c["claim_id"] for c in scenario.entities["claim"])
    for report in reports:
        for prog in report["programmes"]:
            assert prog["busy_gpu_h"] < prog["metered_gpu_h"]
            assert prog["metered_gpu_h"] == pytest.approx(prog["claimed_gpu_h"], abs=0.1)


def test_every_planted_anomaly_found_with_type_claim_and_money(tmp_path: Path) -> None:
    scenario = build_scenario(ScenarioSpec(seed=7, anomalies=True, **SMALL))  # type: ignore[arg-type]
    write_scenario(scenario, tmp_path)
    truth, reports = audited(tmp_path)
    planted = sorted((f["finding"], f["claim_id"], f["cny_at_stake"]) for f in truth["findings"])
    assert sorted(p[0] for p in planted) == sorted(FINDINGS)
    found = sorted(
        (f["finding"], f["claim_id"], f["cny_at_stake"]) for r in reports for f in r["findings"]
    )
    assert [f[:2] for f in found] == [p[:2] for p in planted]
    for (_, _, got), (_, _, want) in zip(found, planted, strict=True):
        assert got == pytest.approx(want, abs=0.011)
    by_type = {f["finding"]: f for r in reports for f in r["findings"]}
    double = by_type["DOUBLE_CLAIM"]["evidence"]
    assert double["other_programme_ids"] == ["CD-CV"]
    assert by_type["DOUBLE_CLAIM"]["programme_id"] == "SC-PROV"
    assert by_type["NO_TELEMETRY"]["evidence"]["covered_gpu_h"] == 0
    assert all(r["programmes"] for r in reports)
