"""A real Prometheus (Debian package) scrapes a running exporter: the idle-capacity rule of
gpuledger/deploy/prometheus/rules.yml fires on an idle period and resolves after, and every panel
of the Grafana dashboards returns data."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collectors.replay.helios import HeliosReplay
from pipeline.dead_letter import DeadLetter, write_quarantine
from pipeline.records import OCCUPANCY
from pipeline.write import write_records
from tests.integration.conftest import free_port
from tests.ops_lake import mixed_lake, occupancy, write_occupancy
from warehouse.ops.exporter import ExporterSettings, serve

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "gpuledger" / "deploy" / "grafana" / "dashboards"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def fast_rules(src: str) -> str:
    """rules.yml with the same expressions, evaluated every second and 'for' in seconds."""
    out = re.sub(r"interval: 1m", "interval: 1s", src)
    return re.sub(r"for: (\d+)[mh]", r"for: 4s", out)


def dashboard_exprs() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for t in panel.get("targets", []):
                found.append((f"{path.stem}: {panel['title']}", t["expr"]))
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("expr"):
                found.append((f"{path.stem}: annotation {a['name']}", a["expr"]))
    return found


def as_query(expr: str) -> str:
    return expr.replace("$datacentre", ".*").replace("$__rate_interval", "1m")


@contextlib.contextmanager
def running_stack(lake: Path, tmp_path: Path, settings: dict[str, Any]) -> Iterator[str]:
    """An exporter over ``lake`` and a real Prometheus scraping it every second with the rules
    of gpuledger/deploy/prometheus/rules.yml (for-durations shortened); yields Prometheus' base
    URL."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (run .ci/install-prometheus.sh)")
    port = free_port()
    stop = threading.Event()
    exporter = threading.Thread(
        target=serve,
        args=(ExporterSettings(lake=lake, listen=f"127.0.0.1:{port}", **settings), stop),
        daemon=True,
    )
    exporter.start()
    conf = tmp_path / "prom"
    conf.mkdir()
    rules = REPO / "gpuledger" / "deploy" / "prometheus" / "rules.yml"
    (conf / "rules.yml").write_text(fast_rules(rules.read_text()))
    (conf / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: gpuledger\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    web = free_port()
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={conf / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{web}"
    try:
        wait_for(
            "prometheus ready", lambda: urllib.request.urlopen(f"{base}/-/ready").status == 200
        )
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        stop.set()
        exporter.join(10)


@pytest.fixture
def stack(kafka: str, namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    lake = tmp_path / "lake"
    now = int(time.time() * 1000)
    mixed_lake(lake, now - 60_000)
    # dc1 goes idle: 1 of 16 GPUs allocated from now on
    write_occupancy(lake, [occupancy(now, s, 8, 0.5) for s in ("a", "b")], "idle")
    letter = DeadLetter(b'{"util": 3}', "util above 1", "out_of_range", "gpu_sample", "f")
    write_quarantine(lake, "bad-load", [letter])
    with running_stack(lake, tmp_path, {"kafka": kafka, "namespace": namespace}) as base:
        yield {"base": base, "lake": lake}


def query(base: str, expr: str) -> list[dict[str, Any]]:
    body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def idle_alerts(base: str, state: str) -> list[dict[str, Any]]:
    return [
        a
        for a in get(f"{base}/api/v1/alerts")["data"]["alerts"]
        if a["labels"]["alertname"] == "GpuledgerIdleCapacity" and a["state"] == state
    ]


def test_idle_alert_fires_and_resolves_and_every_panel_has_data(stack: dict[str, Any]) -> None:
    base, lake = stack["base"], stack["lake"]
    firing = wait_for("the idle-capacity alert to fire", lambda: idle_alerts(base, "firing"))
    assert [a["labels"]["datacentre"] for a in firing] == ["dc1"]
    assert float(firing[0]["value"]) == pytest.approx(15 / 16)
    # dc2 (2 of 4 allocated) never alerts

    exprs = dashboard_exprs()
    assert len(exprs) >= 15

    # rate()/increase() need two scrapes of the counters: wait for the slowest panel
    def all_have_data() -> bool:
        return all(query(base, as_query(e)) for _, e in exprs)

    try:
        wait_for("every dashboard panel to return data", all_have_data, timeout_s=30)
    finally:
        empty = [(t, e) for t, e in exprs if not query(base, as_query(e))]
        assert not empty, f"panels without data: {empty}"
    values = get(
        f"{base}/api/v1/label/datacentre/values?"
        + urllib.parse.urlencode({"match[]": "gpuledger_capacity_gpus"})
    )["data"]
    assert values == ["dc1", "dc2"]

    # the GPUs are allocated again: the alert resolves
    write_occupancy(lake, [occupancy(int(time.time() * 1000), s, 8, 7) for s in ("a", "b")], "busy")
    wait_for(
        "the idle-capacity alert to resolve",
        lambda: not idle_alerts(base, "firing") and not idle_alerts(base, "pending"),
    )
    ratio = query(base, "datacentre:gpuledger_idle_capacity:ratio")
    assert {r["metric"]["datacentre"]: float(r["value"][1]) for r in ratio}["dc1"] == 2 / 16


def test_helios_idle_day_replayed_fires_and_resolves(tmp_path: Path) -> None:
    """Helios Earth replayed from the evening of 2020-05-09 to the night of 2020-05-11
    (Asia/Shanghai): on May 10 the trace shows none of the GPUs of these VCs allocated. Written
    into the lake chunk by chunk while Prometheus scrapes an exporter that follows the replay
    (--as-of data), the idle-capacity alert fires during May 10 and resolves on May 11."""
    tz = ZoneInfo("Asia/Shanghai")
    t0 = int(datetime(2020, 5, 9, 20, tzinfo=tz).timestamp() * 1000)
    idle_from = int(datetime(2020, 5, 10, tzinfo=tz).timestamp() * 1000)
    idle_to = int(datetime(2020, 5, 11, tzinfo=tz).timestamp() * 1000)
    t1 = int(datetime(2020, 5, 11, 4, tzinfo=tz).timestamp() * 1000)
    records = [
        r for _, r in HeliosReplay(vcs=["vc6YE", "vcJLV", "vcLJZ"]).collect() if t0 <= r["ts"] < t1
    ]
    lake = tmp_path / "lake"
    chunk_ms = 20 * 60_000
    seen: list[tuple[int, str]] = []  # (trace instant written so far, alert state)
    with running_stack(lake, tmp_path, {"as_of": "data"}) as base:
        for i, start in enumerate(range(t0, t1, chunk_ms)):
            chunk = [r for r in records if start <= r["ts"] < start + chunk_ms]
            write_records(lake, OCCUPANCY, chunk, f"replay-{i:04d}", origin="test replay")
            time.sleep(0.25)
            for a in idle_alerts(base, "firing"):
                seen.append((start + chunk_ms, a["labels"]["datacentre"]))
        wait_for("the alert to resolve", lambda: not idle_alerts(base, "firing"), timeout_s=20)
    assert seen, "the idle-capacity alert never fired during the replayed idle day"
    span = [datetime.fromtimestamp(t / 1000, tz).isoformat() for t in (seen[0][0], seen[-1][0])]
    print("idle-capacity alert firing while the replay wrote", *span)
    assert {dc for _, dc in seen} == {"helios"}
    first, last = seen[0][0], seen[-1][0]
    assert idle_from < first < idle_to  # fired during the idle day (after its for-duration)
    assert last <= idle_to + 3 * 3_600_000  # resolved soon after the GPUs were allocated again
