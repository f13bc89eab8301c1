"""Shared by the audit pack and restatement tests: the anomalies scenario lake (small: one node
per data centre, hourly samples) and the real command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpuledger.cli import main
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec
from warehouse.vouchers.scenario.write import write_scenario

SMALL = {"months": 3, "programme_month": 1, "nodes_per_dc": 1, "sample_interval_s": 3600}
MONTH = "2026-05"


def scenario_lake(root: Path) -> Path:
    """``<root>/lake``: the seed-7 scenario with one planted case of every finding."""
    spec = ScenarioSpec(seed=7, anomalies=True, **SMALL)  # type: ignore[arg-type]
    write_scenario(build_scenario(spec), root)
    return root / "lake"


def copy_lake(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``gpuledger <argv>`` through ``gpuledger.cli.main``: (exit status, stdout)."""
    capsys.readouterr()
    rc = main(list(argv))
    return rc, capsys.readouterr().out
