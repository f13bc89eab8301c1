"""The Prometheus deployment files, checked by the real promtool / amtool (Debian packages
``prometheus`` and ``prometheus-alertmanager``; ``.ci/install-prometheus.sh`` installs them)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from tests.ops_lake import mixed_lake
from warehouse.ops.exporter import ExporterSettings, build_registry

REPO = Path(__file__).resolve().parents[1]
PROM = REPO / "gpuledger" / "deploy" / "prometheus"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (run .ci/install-prometheus.sh)")
    return path


def run(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_check_rules() -> None:
    r = run(tool("promtool"), "check", "rules", "rules.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_rule_unit_tests_pass() -> None:
    """Includes the replayed idle period: fires after 30 minutes idle, resolves after."""
    r = run(tool("promtool"), "test", "rules", "rules_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against a rule file whose idle threshold is wrong must fail."""
    rules = (PROM / "rules.yml").read_text()
    broken = rules.replace("datacentre:gpuledger_idle_capacity:ratio > 0.5", "x > 0.99")
    assert broken != rules
    (tmp_path / "rules.yml").write_text(broken)
    shutil.copy(PROM / "rules_test.yml", tmp_path)
    r = run(tool("promtool"), "test", "rules", "rules_test.yml", cwd=tmp_path)
    assert r.returncode != 0
    assert "GpuledgerIdleCapacity" in r.stdout + r.stderr


def test_check_config() -> None:
    r = run(tool("promtool"), "check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_alertmanager_config() -> None:
    r = run(tool("amtool"), "check-config", "alertmanager.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_use_only_metrics_the_exporter_exposes(tmp_path: Path) -> None:
    """Every gpuledger_* name in the rules is a metric the exporter really serves."""
    mixed_lake(tmp_path, 1_780_000_000_000)
    registry, _ = build_registry(ExporterSettings(lake=tmp_path), clock=lambda: 1_780_000_000)
    served = set(re.findall(r"^# TYPE (\S+)", generate_latest(registry).decode(), re.M))
    served |= {n + "_total" for n in served}
    # served only with --kafka; tests/integration/test_prometheus.py checks it on a real broker
    served.add("gpuledger_consumer_lag_records")
    rules = (PROM / "rules.yml").read_text()
    used = set(re.findall(r"(?<![:\w])(gpuledger_\w+)", rules))
    assert used, "no gpuledger metric found in rules.yml"
    assert used <= served, sorted(used - served)


def test_readme_documents_every_exported_metric(tmp_path: Path) -> None:
    mixed_lake(tmp_path, 1_780_000_000_000)
    registry, _ = build_registry(ExporterSettings(lake=tmp_path), clock=lambda: 1_780_000_000)
    text = generate_latest(registry).decode()
    served = set(re.findall(r"^# TYPE (\S+)", text, re.M))  # counters: with _total
    served.add("gpuledger_consumer_lag_records")
    served.discard("gpuledger_exporter_scrape_duration_seconds")  # the exporter's own timing
    documented = set(re.findall(r"`(gpuledger_\w+)`", (PROM / "README.md").read_text()))
    assert served <= documented, sorted(served - documented)
    assert documented <= served, sorted(documented - served)
