"""HTML utilisation report: self-contained, rendered by a real headless Chromium (Debian
package ``chromium``) without console errors, with every chart laid out and drawn."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from collectors.replay.helios import HeliosReplay
from pipeline.backfill import LakeSink
from tests.ops_lake import mixed_lake
from warehouse.catalog import connect
from warehouse.html import utilisation_html, write_utilisation_html
from warehouse.html.svg import heat_colour, nice_max
from warehouse.reports.utilisation import utilisation_report

NOW = 1_780_000_000_000


def render(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after load and the console messages of ``page`` in headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (run .ci/install-prometheus.sh)")
    r = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


def helios_lake(lake: Path) -> None:
    sink = LakeSink(lake, "helios-test", origin="test")
    for kind, record in HeliosReplay(vcs=["vc6YE", "vcJLV", "vcLJZ"]).collect():
        sink.add(kind, record)
    sink.flush()


def test_helios_month_by_scope_renders_in_chromium(lake: Path, tmp_path: Path) -> None:
    helios_lake(lake)
    con = connect(lake, ":memory:")
    rows = utilisation_report(con, period="day", by="scope")
    con.close()
    page = write_utilisation_html(rows, tmp_path / "report.html", "Helios Earth, May 2020")
    text = page.read_text()
    # self-contained: nothing to fetch (no src/href to anything, no http URL at all)
    assert not re.search(r"""(src|href)\s*=""", text)
    assert "http://" not in text and "https://" not in text
    dom, console = render(page, tmp_path)
    assert console == [], console
    assert 'data-charts-drawn="3"' in dom
    assert dom.count('data-drawn="yes"') == 3
    days = sorted({r["period"] for r in rows})
    scopes = {r["scope"] for r in rows}
    assert len(scopes) == 3 and len(days) >= 28
    # one heatmap cell per (scope, day); occupancy only, so the map is the allocation rate
    assert f'data-marks="{len(scopes) * len(days)}"' in dom
    assert "allocation rate" in dom
    # a real figure of the report is in the table: the first row's capacity GPU-hours
    first = rows[0]
    assert f"{first['capacity_gpu_h']:,.1f}" in dom


def test_samples_report_shows_utilisation(lake: Path, tmp_path: Path) -> None:
    mixed_lake(lake, NOW)
    con = connect(lake, ":memory:")
    rows = utilisation_report(con, period="day", by="cluster")
    con.close()
    page = write_utilisation_html(rows, tmp_path / "r.html")
    dom, console = render(page, tmp_path)
    assert console == []
    assert 'data-charts-drawn="3"' in dom
    assert "Utilisation by group and period" in dom
    assert "dc2 / k1" in dom


def test_console_errors_are_caught(tmp_path: Path) -> None:
    """The check above can fail: a page whose script throws is reported."""
    page = tmp_path / "broken.html"
    page.write_text(utilisation_html([]).replace("window.addEventListener", "undefinedThing();"))
    _, console = render(page, tmp_path)
    assert any("undefinedThing" in line for line in console)


def test_text_is_escaped() -> None:
    row = {
        "period": "2020-05-01",
        "datacentre": "<script>alert(1)</script>",
        "cluster": "c",
        "scope": None,
        "capacity_gpu_h": 1.0,
        "allocated_gpu_h": 0.5,
        "busy_gpu_h": None,
        "idle_capacity_gpu_h": 0.5,
        "allocation_rate": 0.5,
        "utilisation": None,
        "efficiency": None,
        "no_telemetry_share": 0.0,
        "sources": "capacity=occupancy",
    }
    html = utilisation_html([row])
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_scale_helpers() -> None:
    assert nice_max(7.3) == 10 and nice_max(0.0) == 1.0 and nice_max(180) == 200
    assert heat_colour(0) == "#fff7bc" and heat_colour(1) == "#253494"


def test_audit_report_renders_findings_and_flows(tmp_path: Path) -> None:
    """The synthetic voucher scenario with one planted finding of every type, audited month
    by month; every month with findings renders with both charts and every finding listed."""
    import json

    from warehouse.html import write_audit_html
    from warehouse.vouchers.attribution import open_audit
    from warehouse.vouchers.audit import audit
    from warehouse.vouchers.scenario.build import build_scenario
    from warehouse.vouchers.scenario.model import ScenarioSpec
    from warehouse.vouchers.scenario.write import write_scenario

    spec = {"months": 3, "programme_month": 1, "nodes_per_dc": 1, "sample_interval_s": 3600}
    write_scenario(build_scenario(ScenarioSpec(seed=7, anomalies=True, **spec)), tmp_path)  # type: ignore[arg-type]
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    con = open_audit(tmp_path / "lake")
    reports = [audit(con, month=m, tz=truth["tz"]) for m in truth["months"]]
    report = max(reports, key=lambda r: len(r["findings"]))
    assert report["findings"]
    page = write_audit_html(report, tmp_path / "audit.html")
    dom, console = render(page, tmp_path)
    assert console == []
    assert 'data-charts-drawn="2"' in dom
    for f in report["findings"]:
        assert f["claim_id"] in dom and f["finding"] in dom
    # one bar segment per (finding type, severity) with money at stake
    stakes = {(f["finding"], f["severity"]) for f in report["findings"] if f["cny_at_stake"] > 0}
    assert 'data-chart="bars" role="img"' in dom
    assert dom.count('class="bar"') >= len(stakes)


def test_write_page_to_file_or_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpuledger.ops_cli import write_page

    page = utilisation_html([])
    write_page(page, tmp_path / "out" / "u.html")
    assert (tmp_path / "out" / "u.html").read_text() == page
    assert "wrote" in capsys.readouterr().err
    write_page(page, None)
    assert capsys.readouterr().out == page
