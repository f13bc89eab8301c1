"""Exporter: the /metrics a Prometheus server would scrape, computed from a real lake."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.dead_letter import DeadLetter, write_quarantine
from tests.integration.conftest import free_port
from tests.ops_lake import MIN, mixed_lake
from warehouse.ops.exporter import ExporterSettings, build_registry, parse_listen, serve

NOW = 1_780_000_000_000  # a fixed instant: the clock seam, not the wall clock


def scrape(lake: Path, now_ms: int = NOW) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry, _ = build_registry(ExporterSettings(lake=lake), clock=lambda: now_ms / 1000)
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP"
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m: dict, name: str, **labels: str) -> float:
    return m[(name, tuple(sorted(labels.items())))]


def test_fleet_gauges_now(lake: Path) -> None:
    mixed_lake(lake, NOW)
    m = scrape(lake)
    assert val(m, "gpuledger_exporter_up", part="warehouse") == 1
    a = {"datacentre": "dc1", "cluster": "c1", "scope": "a"}
    b = {"datacentre": "dc1", "cluster": "c1", "scope": "b"}
    assert val(m, "gpuledger_capacity_gpus", **a) == 8
    assert val(m, "gpuledger_allocated_gpus", **a) == 2
    assert val(m, "gpuledger_idle_gpus", **a) == 6
    assert val(m, "gpuledger_idle_gpus", **b) == 2
    # occupancy says nothing about busy or held GPUs: no such series
    assert ("gpuledger_busy_gpus", tuple(sorted(a.items()))) not in m
    k = {"datacentre": "dc2", "cluster": "k1", "scope": ""}
    assert val(m, "gpuledger_capacity_gpus", **k) == 4  # 4 reporting GPUs
    assert val(m, "gpuledger_allocated_gpus", **k) == 2
    assert val(m, "gpuledger_busy_gpus", **k) == pytest.approx(2.0)
    # held: g0 (0.5 busy) and g2 (idle) -> 2 allocated - 0.5 busy = 1.5 held idle
    assert val(m, "gpuledger_held_idle_gpus", **k) == pytest.approx(1.5)


def test_window_ratios_and_staleness(lake: Path) -> None:
    mixed_lake(lake, NOW)
    m = scrape(lake, NOW + 30_000)
    c1 = {"datacentre": "dc1", "cluster": "c1"}
    # last 5 min: both scopes fully covered, 2 / 8 and 6 / 8 allocated
    assert val(m, "gpuledger_allocation_ratio", window="5m", scope="a", **c1) == 0.25
    assert val(m, "gpuledger_allocation_ratio", window="1h", scope="b", **c1) == 0.75
    k1 = {"datacentre": "dc2", "cluster": "k1", "scope": ""}
    assert val(m, "gpuledger_utilisation_ratio", window="5m", **k1) == pytest.approx(0.5)
    assert val(m, "gpuledger_allocation_ratio", window="5m", **k1) == pytest.approx(0.5)
    # 1 h window: only 10 minutes of samples, capacity is the covered GPU time -> still 0.5
    assert val(m, "gpuledger_utilisation_ratio", window="1h", **k1) == pytest.approx(0.5)
    age = val(
        m, "gpuledger_telemetry_age_seconds", kind="gpu_sample", datacentre="dc2", cluster="k1"
    )
    assert age == pytest.approx(30.0)
    assert val(
        m, "gpuledger_telemetry_newest_timestamp_seconds", kind="occupancy", **c1
    ) == pytest.approx(NOW / 1000)


def test_silent_units_drop_out_after_the_horizon(lake: Path) -> None:
    mixed_lake(lake, NOW)
    m = scrape(lake, NOW + 2 * 3600_000)
    assert not [k for k in m if k[0] == "gpuledger_capacity_gpus"]
    age = val(
        m, "gpuledger_telemetry_age_seconds", datacentre="dc1", cluster="c1", kind="occupancy"
    )
    assert age == pytest.approx(7200.0)


def test_pipeline_counters(lake: Path) -> None:
    mixed_lake(lake, NOW)
    letters = [
        DeadLetter(b'{"util": 7}', "util 7 above 1", "out_of_range", "gpu_sample", "file x"),
        DeadLetter(b'{"util": 8}', "util 8 above 1", "out_of_range", "gpu_sample", "file x"),
        DeadLetter(b"{", "bad json", "bad_json", None, "file x"),
    ]
    write_quarantine(lake, "load-1", letters)
    m = scrape(lake)
    assert val(m, "gpuledger_lake_records_landed_total", topic="cluster.occupancy.v1") == 20
    assert val(m, "gpuledger_lake_records_landed_total", topic="gpu.samples.v1") == 40
    assert val(m, "gpuledger_lake_records_rejected_total", topic="gpu.samples.v1") == 2
    assert (
        val(
            m,
            "gpuledger_dead_letters_total",
            topic="gpu.samples.v1",
            reason="out_of_range",
            path="backfill",
        )
        == 2
    )
    assert (
        val(m, "gpuledger_dead_letters_total", topic="unknown", reason="bad_json", path="backfill")
        == 1
    )
    assert val(m, "gpuledger_lake_last_write_timestamp_seconds") == pytest.approx(
        time.time(), abs=120
    )


def test_empty_lake_scrapes(lake: Path) -> None:
    m = scrape(lake)
    assert val(m, "gpuledger_exporter_up", part="warehouse") == 1
    assert not [k for k in m if k[0].startswith("gpuledger_capacity")]


def test_nothing_registered_at_import() -> None:
    from prometheus_client import REGISTRY

    import warehouse.ops.exporter  # noqa: F401

    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("gpuledger_")]


def test_serves_metrics_over_http_on_loopback(lake: Path) -> None:
    mixed_lake(lake, int(time.time() * 1000) - MIN)
    port = free_port()
    stop = threading.Event()
    t = threading.Thread(
        target=serve, args=(ExporterSettings(lake=lake, listen=f"127.0.0.1:{port}"), stop)
    )
    t.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        text = body.decode()
        assert 'gpuledger_capacity_gpus{cluster="c1",datacentre="dc1",scope="a"} 8.0' in text
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen(":9108") == ("127.0.0.1", 9108)
    with pytest.raises(ValueError):
        parse_listen("9108x")


def test_as_of_data_follows_a_replay_of_the_past(lake: Path) -> None:
    past = 1_588_291_200_000  # 2020-05-01: hours before the wall clock
    mixed_lake(lake, past)
    registry, _ = build_registry(ExporterSettings(lake=lake, as_of="data"))
    text = generate_latest(registry).decode()
    assert 'gpuledger_capacity_gpus{cluster="c1",datacentre="dc1",scope="a"} 8.0' in text
    wall, _ = build_registry(ExporterSettings(lake=lake))
    assert "gpuledger_capacity_gpus{" not in generate_latest(wall).decode()


def test_exporter_command_serves_and_stops_on_sigterm(lake: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    mixed_lake(lake, int(time.time() * 1000) - MIN)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuledger.ops_cli", "exporter", "--lake", str(lake)]
        + ["--listen", f"127.0.0.1:{port}"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert 'gpuledger_idle_gpus{cluster="c1",datacentre="dc1",scope="b"} 2.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.stderr.read() if proc.stderr else ""


def test_window_figures_agree_with_the_utilisation_report(lake: Path) -> None:
    """A one-day window gives the GPU-hours of the day row of the utilisation report (the
    report's hand-checked SQL over the full coverage views), duplicates included."""
    from datetime import date

    from pipeline.records import GPU_SAMPLE
    from pipeline.write import write_records
    from tests.ops_lake import sample
    from warehouse.catalog import connect
    from warehouse.ops import fleet
    from warehouse.reports.utilisation import utilisation_report

    mixed_lake(lake, NOW)
    # the same samples again in a later file, one of them with a different util (a conflict)
    again = [sample(NOW - i * MIN, "g1", 0.5 if i else 0.9) for i in range(10)]
    write_records(lake, GPU_SAMPLE, again, "zz-again")
    day_end = 1_780_012_800_000  # 2026-05-29T00:00Z
    con = connect(lake, ":memory:")
    try:
        window = {
            (r.datacentre, r.cluster, r.scope): r for r in fleet.fleet_window(con, day_end, 86400)
        }
        rows = utilisation_report(
            con,
            period="day",
            by="scope",
            date_from=date(2026, 5, 28),
            date_to=date(2026, 5, 28),
            tz="UTC",
        )
    finally:
        con.close()
    assert len(rows) == 3  # dc1/c1 scopes a and b, dc2/k1
    for r in rows:
        w = window[(r["datacentre"], r["cluster"], r["scope"] or "")]
        assert w.capacity_s / 3600 == pytest.approx(r["capacity_gpu_h"])
        assert w.allocated_s / 3600 == pytest.approx(r["allocated_gpu_h"])
        if r["busy_gpu_h"] is None:
            assert w.busy_s is None
        else:
            assert w.busy_s / 3600 == pytest.approx(r["busy_gpu_h"])


def test_kafka_health_connects_with_the_settings_security(lake: Path) -> None:
    from pipeline.kafka_config import KafkaSecurity

    security = KafkaSecurity(
        protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="u", password="s3cr3t-pw"
    )
    settings = ExporterSettings(lake=lake, kafka="127.0.0.1:9", security=security)
    _, collector = build_registry(settings)
    assert collector.kafka is not None and collector.kafka.security is security
    assert "s3cr3t-pw" not in repr(settings)  # secrets never printed
    _, plain = build_registry(ExporterSettings(lake=lake, kafka="127.0.0.1:9"))
    assert plain.kafka is not None and plain.kafka.security is None
