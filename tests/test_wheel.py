"""The wheel works outside the checkout.

``pip wheel`` builds it from a copy of the project's sources, a fresh virtual environment in a
temporary folder gets it (the pinned dependencies come from the environment running the tests,
through a ``.pth`` file, so nothing is downloaded but the build backend), and ``gpuledger demo``
runs there from a folder outside the checkout: the broker recipe, the audit thresholds, the SQL
views and the demo's inputs (the Helios trace and the DCGM stream, both package data of
``gpuledger/data/``) must all come from the installed package. The same installation's
``gpuledger deploy export`` writes the operator files (Prometheus rules, Grafana dashboards, the
alert rules) byte for byte as the package holds them. The broker jars come from the
usual cache (``$GPULEDGER_CACHE``, else ``~/.cache/gpuledger``; fetched with Maven once), so a
warm cache keeps this to the demo's run time.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

HELIOS = REPO / "gpuledger" / "data" / "helios"
DEPLOY = REPO / "gpuledger" / "deploy"
PACKAGES = ("gpuledger", "collectors", "pipeline", "warehouse")
PROBE = """
from collectors.replay.helios import DEFAULT_HELIOS_DIR
from gpuledger.demo import DCGM_STREAM
from gpuledger.kafka_jars import deploy_dir
from warehouse.vouchers.audit import DEFAULT_THRESHOLDS
from warehouse.catalog import load_sql
import collectors, gpuledger, pipeline, warehouse
for module in (collectors, gpuledger, pipeline, warehouse):
    print(module.__file__)
for path in (DEFAULT_HELIOS_DIR, DCGM_STREAM, deploy_dir() / "pom.xml", DEFAULT_THRESHOLDS):
    assert path.exists(), path
    print(path)
"""


def _ports() -> int:
    """A port P on 127.0.0.1 with P + 1 (the controller) free as well."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def _needs() -> str | None:
    """Why the test cannot run here, or None."""
    if not any(HELIOS.glob("*_cluster_sequence_vc.csv.gz")):
        return f"the Helios trace is not in {HELIOS} (its README.md says where it comes from)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "the broker needs Java 17+"
    cache = Path(os.environ.get("GPULEDGER_CACHE", "~/.cache/gpuledger")).expanduser()
    if shutil.which("mvn") is None and not any(cache.glob("kafka-*/libs")):
        return f"no Maven and no broker jars in {cache}"
    return None


def _source(tmp: Path) -> Path:
    """What the build reads, copied out of the checkout: setuptools builds in the source tree
    and its build/ would keep modules that no longer exist, and the checkout stays untouched."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=skip)
    return src


def _install(tmp: Path) -> Path:
    """Build the wheel, install it into a fresh venv under ``tmp``; return the venv's bin/."""
    wheels = tmp / "wheel"
    build = [sys.executable, "-m", "pip", "wheel", _source(tmp), "--no-deps", "-q", "-w", wheels]
    subprocess.run(build, check=True, cwd=tmp, timeout=600)
    (wheel,) = wheels.glob("gpuledger-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"]
    subprocess.run([*install, "--no-index", wheel], check=True, cwd=tmp, timeout=300)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies: this environment's site-packages, after the venv's own.
    (Path(purelib) / "_gpuledger_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def _outside(text: str) -> list[str]:
    """The absolute paths in ``text`` that lie inside the checkout."""
    paths = re.findall(r"/[^\s'\":;,()]+", text)
    return [p for p in paths if p == str(REPO) or p.startswith(f"{REPO}/")]


@dataclass(frozen=True)
class Installed:
    """The wheel installed in a fresh venv: its bin/ and an environment that runs it."""

    tmp: Path
    bin_dir: Path
    env: dict[str, str]

    def run(
        self, *argv: str | Path, cwd: Path, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` (the first a name in bin/) run in ``cwd``, its output captured."""
        command = [self.bin_dir / argv[0], *argv[1:]]
        return subprocess.run(
            command, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """One build and installation for the tests of this module."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(REPO)
    bin_dir = _install(tmp)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "GPULEDGER_KAFKA_DEPLOY")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return Installed(tmp, bin_dir, env)


def test_wheel_runs_the_demo_outside_the_checkout(installed: Installed, tmp_path: Path) -> None:
    why = _needs()
    if why is not None:
        pytest.skip(why)
    bin_dir, env = installed.bin_dir, installed.env
    work = tmp_path / "work"
    work.mkdir()

    probe = installed.run("python", "-c", PROBE, cwd=work)
    assert probe.returncode == 0, probe.stderr
    used = probe.stdout.split()
    assert len(used) == 8
    assert all(Path(p).is_relative_to(bin_dir.parent) for p in used), used

    gpuledger = str(bin_dir / "gpuledger")
    demo = [gpuledger, "demo", "--lake", "lake", "--port", str(_ports()), "--kafka-dir", "kafka"]
    try:
        run = subprocess.run(demo, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
        pid = (work / "kafka" / "broker.pid").read_text().strip()
        broker_cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
    finally:
        stop = [gpuledger, "kafka", "stop", "--data-dir", "kafka"]
        subprocess.run(stop, cwd=work, env=env, capture_output=True, timeout=120)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for step in ("[4/6] monthly utilisation report", "per cluster:", "audit 2026-05", "done in"):
        assert step in run.stdout
    assert "capacity_gpu_h" in run.stdout and "OVER_CLAIM" in run.stdout
    reports = work / "lake" / "_reports"
    assert (reports / "utilisation_month_by_scope.csv").is_file()
    # the HTML pages, their paths printed before the first table
    pages = sorted(reports.glob("*.html"))
    names = {p.name for p in pages}
    assert {"utilisation_day_by_scope.html", "audit_2026-04.html", "audit_2026-05.html"} <= names
    assert any(n.startswith("statement_") and n.endswith("_2026-05.html") for n in names)
    before_tables = run.stdout.split("capacity_gpu_h", 1)[0]
    assert all(str(p.resolve()) in before_tables for p in pages), before_tables[-2000:]
    if shutil.which("chromium"):  # the pages render (tests/test_demo_pages.py checks each chart)
        from tests.test_html_report import render

        for page in pages:
            assert render(page, tmp_path)[1] == [], page
    assert _outside(run.stdout + run.stderr) == []
    assert "kafka.Kafka" in broker_cmdline
    assert _outside(broker_cmdline) == []
    assert _outside((work / "kafka" / "server.properties").read_text()) == []


def test_wheel_exports_the_deploy_files(installed: Installed, tmp_path: Path) -> None:
    """``gpuledger deploy export`` of the installed wheel writes every operator file of the
    package byte for byte (the installed copy and the checkout's), refuses to overwrite without
    ``--force``; the exported Prometheus rules pass promtool where it is installed."""
    probe = "import gpuledger, warehouse.ops.alerts.rules as r; print(gpuledger.__file__)\n"
    probe += "print(r.DEFAULT_RULES_FILE); print(len(r.DEFAULT_RULES))"
    found = installed.run("python", "-c", probe, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    package, rules_file, n_rules = found.stdout.split()
    package_deploy = Path(package).parent / "deploy"
    assert package_deploy.is_relative_to(installed.bin_dir.parent), package
    assert Path(rules_file) == package_deploy / "alerts" / "rules.toml" and int(n_rules) >= 2

    out = tmp_path / "ops"
    export = ("gpuledger", "deploy", "export", "--out", str(out))
    run = installed.run(*export, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    parts = ("prometheus", "alerts", "grafana", "kafka", "audit")
    expected = sorted(
        p.relative_to(DEPLOY)
        for part in parts
        for p in (DEPLOY / part).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert sorted(Path(p).relative_to(out) for p in run.stdout.split()) == expected
    dashboards = [r for r in expected if r.parts[:2] == ("grafana", "dashboards")]
    must = [Path("prometheus/rules.yml"), Path("alerts/rules.toml"), *dashboards]
    assert (
        dashboards and all(r.suffix == ".json" for r in dashboards) and set(must) <= set(expected)
    )
    for rel in expected:
        data = (out / rel).read_bytes()
        assert data == (DEPLOY / rel).read_bytes() == (package_deploy / rel).read_bytes(), rel

    again = installed.run(*export, cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr, again.stderr
    assert installed.run(*export, "--force", cwd=tmp_path).returncode == 0

    promtool = shutil.which("promtool")  # as tests/test_promtool.py finds it
    if promtool is not None:
        check = [promtool, "check", "rules", str(out / "prometheus" / "rules.yml")]
        r = subprocess.run(check, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
