"""The scenario generator: planted anomalies are all found, a clean scenario has no finding."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from gpuledger.audit_cli import add_commands, add_effectiveness_report
from warehouse.vouchers.attribution import open_audit
from warehouse.vouchers.audit import FINDING_KEYS, FINDINGS, audit
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec, util_quantiles
from warehouse.vouchers.scenario.write import write_scenario

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


def cli(*argv: str) -> int:
    """The commands wired as gpuledger/cli.py does (add_commands, add_effectiveness_report)."""
    parser = argparse.ArgumentParser(prog="gpuledger")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    report = sub.add_parser("report").add_subparsers(dest="report", required=True)
    add_effectiveness_report(report)
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_audit_json_reports_exactly_the_planted_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["--months", "3", "--programme-month", "1", "--nodes", "1", "--interval", "3600"]
    assert cli("scenario", "--out", str(tmp_path), "--seed", "7", "--anomalies", *small) == 0
    assert "9 planted finding(s)" in capsys.readouterr().out
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    planted = sorted((f["finding"], f["claim_id"], f["cny_at_stake"]) for f in truth["findings"])
    assert sorted(p[0] for p in planted) == sorted(FINDINGS)
    found, reports = [], []
    for month in truth["months"]:
        assert (
            cli("audit", "--lake", str(tmp_path / "lake"), "--month", month, "--format", "json")
            == 0
        )
        report = json.loads(capsys.readouterr().out)
        reports.append(report)
        for f in report["findings"]:
            assert list(f) == list(FINDING_KEYS)
            found.append((f["finding"], f["claim_id"], f["cny_at_stake"]))
    found.sort()
    assert [f[:2] for f in found] == [p[:2] for p in planted]
    for (_, _, got), (_, _, want) in zip(found, planted, strict=True):
        assert got == pytest.approx(want, abs=0.011)
    by_type = {f["finding"]: f for r in reports for f in r["findings"]}
    double = by_type["DOUBLE_CLAIM"]["evidence"]
    assert double["other_programme_ids"] == ["CD-CV"]
    assert by_type["DOUBLE_CLAIM"]["programme_id"] == "SC-PROV"
    assert by_type["NO_TELEMETRY"]["evidence"]["covered_gpu_h"] == 0
    assert all(r["programmes"] for r in reports)
    assert all("allocation_ids" in f["evidence"] for r in reports for f in r["findings"])

    # the table names every finding; a re-import of the scenario's own files changes nothing
    assert cli("audit", "--lake", str(tmp_path / "lake"), "--month", truth["months"][-1]) == 0
    table = capsys.readouterr().out
    assert all(f[1] in table for f in planted if f[1].startswith(f"cl-{truth['months'][-1]}"))
    claims = str(tmp_path / "vouchers" / "claims.csv")
    assert cli("vouchers", "import", "--lake", str(tmp_path / "lake"), "--claims", claims) == 0
    assert "nothing changed" in capsys.readouterr().out

    bad = str(Path(__file__).parent / "fixtures" / "vouchers" / "claims_bad.csv")
    assert cli("vouchers", "import", "--lake", str(tmp_path / "lake"), "--claims", bad) == 1
    assert f"{bad}:2: subsidy_cny=-5.0 is below 0.0" in capsys.readouterr().err

    lake = str(tmp_path / "lake")
    assert (
        cli("report", "effectiveness", "--lake", lake, "--programme", "SH-CV", "--format", "json")
        == 0
    )
    effect = json.loads(capsys.readouterr().out)
    assert effect["datacentres"] == ["dc-ga", "dc-sh"] and effect["claims"] > 0
