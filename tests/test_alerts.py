"""Built-in alerting: the alert life cycle over a real lake, delivered to a real HTTP receiver."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gpuledger.ops_cli import main
from tests.ops_lake import MIN, occupancy, write_occupancy
from warehouse.ops.alerts.rules import (
    DEFAULT_RULES,
    DEFAULT_RULES_FILE,
    AlertRule,
    Evaluator,
    load_rules,
    parse_duration,
)
from warehouse.ops.alerts.runner import replay
from warehouse.ops.alerts.sinks import WebhookSink

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "gpuledger" / "deploy" / "alerts" / "rules.toml"
T0 = 1_780_000_000_000  # 2026-05-28T20:26:40Z


def iso(ms: int) -> str:
    from warehouse.ops.alerts.rules import iso as _iso

    return _iso(ms)


def idle_period_lake(lake: Path) -> None:
    """16 GPUs in two scopes, one record a minute for 100 minutes; from minute 10 to 69 only
    1 of 16 GPUs is allocated (94 % idle), otherwise 14 of 16."""
    recs = [
        occupancy(T0 + i * MIN, scope, 8, 0.5 if 10 <= i < 70 else 7)
        for i in range(100)
        for scope in ("a", "b")
    ]
    write_occupancy(lake, recs, "idle")


def test_rules_file_is_the_default() -> None:
    assert load_rules(RULES) == DEFAULT_RULES
    assert DEFAULT_RULES_FILE.resolve() == RULES.resolve()
    # what the file states (docs/operations.md's table of default rules, checked below)
    assert (
        AlertRule(
            "GpuledgerIdleCapacity",
            "idle_capacity",
            0.5,
            1800.0,
            "warning",
            "{datacentre}: {value:.0%} of GPU capacity unallocated for {for}",
            for_text="30m",
        ),
        AlertRule(
            "GpuledgerStaleTelemetry",
            "stale_telemetry",
            600.0,
            300.0,
            "warning",
            "{datacentre}/{cluster}: no {kind} records for {value:.0f} s",
            for_text="5m",
        ),
    ) == DEFAULT_RULES


def prometheus_alert(name: str) -> tuple[float, str, str]:
    """Threshold, for-duration and severity of the Prometheus alert ``name`` in rules.yml."""
    text = (REPO / "gpuledger" / "deploy" / "prometheus" / "rules.yml").read_text()
    block = re.search(
        rf"- alert: {name}\n(.*?)(?=\n\s*- (?:alert|record):|\n  - name:|\Z)", text, re.S
    )
    assert block is not None, name
    expr = re.search(r"^\s*expr: .* > (\d+(?:\.\d+)?)\s*$", block[1], re.M)
    duration = re.search(r"^\s*for: (\S+)\s*$", block[1], re.M)
    severity = re.search(r"^\s*severity: (\S+)\s*$", block[1], re.M)
    assert expr and duration and severity, block[1]
    return float(expr[1]), duration[1], severity[1]


def test_default_rules_are_the_prometheus_rules_and_the_documented_ones() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    for rule in DEFAULT_RULES:
        threshold, duration, severity = prometheus_alert(rule.name)
        assert (rule.threshold, rule.for_text, rule.severity) == (threshold, duration, severity)
        assert parse_duration(duration) == rule.for_s
        assert f"`{rule.name}`: > {rule.threshold:g} for {rule.for_text} |" in doc, rule.name


def test_bad_rules_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "r.toml"
    bad.write_text('[[rule]]\nname = "x"\ncondition = "idle"\nthreshold = 1\n')
    with pytest.raises(ValueError, match="condition must be"):
        load_rules(bad)
    bad.write_text('[[rule]]\nname = "x"\ncondition = "idle_capacity"\nfor = "ten"\nthreshold=1\n')
    with pytest.raises(ValueError, match="not a duration"):
        load_rules(bad)


def test_idle_period_fires_after_for_duration_and_resolves(lake: Path) -> None:
    idle_period_lake(lake)
    events = [
        ((t - T0) // MIN, a)
        for t, alerts in replay(lake, Evaluator(DEFAULT_RULES), T0, T0 + 99 * MIN, 60)
        for a in alerts
    ]
    assert [(m, a.status, a.labels["alertname"]) for m, a in events] == [
        (40, "firing", "GpuledgerIdleCapacity"),
        (70, "resolved", "GpuledgerIdleCapacity"),
    ]
    firing, resolved = events[0][1], events[1][1]
    assert firing.labels == {
        "alertname": "GpuledgerIdleCapacity",
        "datacentre": "dc1",
        "severity": "warning",
    }
    assert firing.value == pytest.approx(15 / 16)
    assert firing.startsAt == iso(T0 + 10 * MIN)
    assert firing.endsAt == "0001-01-01T00:00:00Z"
    assert firing.annotations["summary"] == "dc1: 94% of GPU capacity unallocated for 30m"
    assert resolved.fingerprint == firing.fingerprint
    assert resolved.endsAt == iso(T0 + 70 * MIN)


def test_short_idle_period_never_fires(lake: Path) -> None:
    recs = [occupancy(T0 + i * MIN, None, 8, 0 if 10 <= i < 35 else 8) for i in range(60)]
    write_occupancy(lake, recs, "short")
    fired = [
        a for _, al in replay(lake, Evaluator(DEFAULT_RULES), T0, T0 + 59 * MIN, 60) for a in al
    ]
    assert fired == []


def test_stale_telemetry_fires_when_records_stop(lake: Path) -> None:
    write_occupancy(lake, [occupancy(T0 + i * MIN, None, 8, 8) for i in range(10)], "s")
    events = [
        ((t - T0) // MIN, a.status, a.labels.get("kind"))
        for t, al in replay(lake, Evaluator(DEFAULT_RULES), T0, T0 + 30 * MIN, 60)
        for a in al
    ]
    # newest record at minute 9; older than 600 s from minute 20 (strictly after 19); for 5m
    assert events == [(25, "firing", "occupancy")]


def test_cli_once_with_state_carries_the_for_duration(
    lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    idle_period_lake(lake)
    state = tmp_path / "state.json"
    out = []
    # first seen idle at minute 20 (the first evaluation): fires 30 minutes later
    for minute in (20, 49, 50, 51, 70, 71):
        at = iso(T0 + minute * MIN)
        assert (
            main(["alerts", "--lake", str(lake), "--once", "--at", at, "--state", str(state)]) == 0
        )
        out += [
            (minute, json.loads(line)["status"])
            for line in capsys.readouterr().out.split("\n")
            if line
        ]
    assert out == [(50, "firing"), (70, "resolved")]


class Receiver:
    """A real HTTP server on loopback that records what an Alertmanager webhook would get."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.fail = False
        bodies = self.bodies
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                bodies.append(json.loads(data))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_webhook_gets_alertmanager_payloads(lake: Path, receiver: Receiver) -> None:
    idle_period_lake(lake)
    argv = ["alerts", "--lake", str(lake), "--webhook", receiver.url]
    argv += ["--replay-from", iso(T0), "--replay-to", iso(T0 + 99 * MIN)]
    assert main(argv) == 0
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]
    firing = receiver.bodies[0]
    assert firing["version"] == "4"
    assert firing["receiver"] == "gpuledger"
    assert firing["groupLabels"] == {"alertname": "GpuledgerIdleCapacity"}
    assert firing["commonLabels"]["datacentre"] == "dc1"
    (alert,) = firing["alerts"]
    assert set(alert) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert alert["startsAt"] == iso(T0 + 10 * MIN)
    assert receiver.bodies[1]["alerts"][0]["endsAt"] == iso(T0 + 70 * MIN)


def test_webhook_keeps_alerts_while_the_receiver_is_down(lake: Path, receiver: Receiver) -> None:
    idle_period_lake(lake)
    sink = WebhookSink(receiver.url)
    receiver.fail = True
    for _, alerts in replay(lake, Evaluator(DEFAULT_RULES), T0, T0 + 99 * MIN, 60):
        if alerts:
            sink.deliver(alerts)
    assert receiver.bodies == []
    assert [a.status for a in sink.backlog] == ["firing", "resolved"]
    receiver.fail = False
    sink.deliver([])
    assert sink.backlog == []
    # both transitions of the one alert arrive, in order, in one group message
    assert [a["status"] for a in receiver.bodies[0]["alerts"]] == ["firing", "resolved"]


def test_cli_once_as_of_data_evaluates_at_the_newest_record(
    lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replay of a past trace: 'now' is the newest record, so nothing looks stale."""
    write_occupancy(lake, [occupancy(T0 + i * MIN, None, 8, 0) for i in range(60)], "idle")
    argv = ["alerts", "--lake", str(lake), "--once", "--state", str(tmp_path / "s.json")]
    state = tmp_path / "s.json"

    def pending() -> list[str]:
        return sorted(t["rule"] for t in json.loads(state.read_text()).values())

    assert main(argv + ["--as-of", "data"]) == 0
    assert main(argv + ["--as-of", "data"]) == 0
    assert pending() == ["GpuledgerIdleCapacity"]  # idle at the newest record; not stale
    assert main(argv) == 0
    # at the wall clock the records are months old: stale, and out of the 'now' horizon
    assert pending() == ["GpuledgerStaleTelemetry"]
    assert capsys.readouterr().out == ""  # pending only: nothing delivered


def test_webhook_payload_has_the_shape_real_alertmanager_sends(
    lake: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """Real Alertmanager (Debian package) posts an alert to the same loopback receiver; our
    payload has the same fields, at the top level and per alert, with the same value types."""
    import shutil
    import subprocess
    import time
    import urllib.request

    from tests.integration.conftest import free_port

    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("alertmanager is not installed (run .ci/install-prometheus.sh)")
    (tmp_path / "am.yml").write_text(
        "route: {receiver: hook, group_wait: 0s, group_interval: 1s, group_by: [alertname]}\n"
        f"receivers: [{{name: hook, webhook_configs: [{{url: '{receiver.url}'}}]}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        alert = [
            {
                "labels": {"alertname": "GpuledgerIdleCapacity", "datacentre": "dc1"},
                "annotations": {"summary": "idle"},
            }
        ]
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v2/alerts",
                    data=json.dumps(alert).encode(),
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
                urllib.request.urlopen(req, timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        while not receiver.bodies and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
    assert receiver.bodies, "alertmanager sent nothing"
    real = receiver.bodies[0]
    receiver.bodies.clear()

    idle_period_lake(lake)
    argv = ["alerts", "--lake", str(lake), "--webhook", receiver.url]
    assert main(argv + ["--replay-from", iso(T0), "--replay-to", iso(T0 + 45 * MIN)]) == 0
    (ours,) = receiver.bodies  # the firing message
    assert set(ours) == set(real)
    assert set(ours["alerts"][0]) == set(real["alerts"][0])
    for key, value in real.items():
        assert type(ours[key]) is type(value), key
    for key, value in real["alerts"][0].items():
        assert type(ours["alerts"][0][key]) is type(value), key


def test_cron_run_with_the_receiver_down_resends_on_the_next_run(
    lake: Path, tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    idle_period_lake(lake)
    state = tmp_path / "state.json"
    argv = ["alerts", "--lake", str(lake), "--webhook", receiver.url, "--once"]
    argv += ["--state", str(state)]
    assert main(argv + ["--at", iso(T0 + 15 * MIN)]) == 0  # pending
    receiver.fail = True
    assert main(argv + ["--at", iso(T0 + 45 * MIN)]) == 1  # fires, receiver down
    assert "not delivered" in capsys.readouterr().err
    receiver.fail = False
    assert main(argv + ["--at", iso(T0 + 46 * MIN)]) == 0  # fires again, delivered
    assert main(argv + ["--at", iso(T0 + 47 * MIN)]) == 0  # still firing: nothing new
    assert [b["status"] for b in receiver.bodies] == ["firing"]
    assert receiver.bodies[0]["alerts"][0]["startsAt"] == iso(T0 + 15 * MIN)
