"""Prometheus exporter: fleet and pipeline gauges computed from the warehouse at scrape time.

``build_registry(settings)`` returns a fresh ``CollectorRegistry`` holding one
``WarehouseCollector``; nothing registers itself at import. Every scrape opens the lake with
an in-memory DuckDB catalogue (``fleet.connect_ops``), so the exporter never holds the
warehouse file's lock and always sees the files written since the last scrape.

Metrics (base units, ratios 0-1, ``_total`` counters; the fleet semantics are those of
``warehouse.ops.fleet``):

- ``gpuledger_capacity_gpus``, ``gpuledger_allocated_gpus``, ``gpuledger_busy_gpus``,
  ``gpuledger_idle_gpus``, ``gpuledger_held_idle_gpus`` {datacentre, cluster, scope}: now.
- ``gpuledger_allocation_ratio``, ``gpuledger_utilisation_ratio`` {datacentre, cluster, scope,
  window}:
  allocated / capacity and busy / capacity GPU-seconds over the last 5 minutes and 1 hour
  (the whole 15-minute bins of a window from the rollup where it is fresh: docs/rollups.md).
- ``gpuledger_telemetry_newest_timestamp_seconds`` and ``gpuledger_telemetry_age_seconds``
  {datacentre, cluster, kind}: stale telemetry.
- ``gpuledger_lake_records_landed_total``, ``gpuledger_lake_records_rejected_total`` {topic},
  ``gpuledger_lake_last_write_timestamp_seconds``: from the ``_loads`` log.
- ``gpuledger_dead_letters_total`` {topic, reason, path}: ``path="stream"`` from the ``*.dlq``
  topics (with ``--kafka``), ``path="backfill"`` from ``<lake>/_quarantine``.
- ``gpuledger_consumer_lag_records`` {group, topic, partition} (with ``--kafka``).
- ``gpuledger_audit_restated_findings`` {month, pack, programme}: findings of a signed audit
  pack registered in the lake that are new, vanished or changed now (``warehouse.vouchers.gauge``,
  cached on the lake's table versions).
- ``gpuledger_exporter_up`` {part}, ``gpuledger_exporter_scrape_duration_seconds``.

"Now" is the wall clock; with ``as_of="data"`` (a replay of a past trace) it is the newest
record instant in the lake, so the gauges follow the replay.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.dead_letter import QUARANTINE_DIR
from pipeline.health import KafkaHealth
from pipeline.kafka_config import KafkaSecurity
from pipeline.records import KINDS
from pipeline.topics import kind_for_topic
from warehouse.ops import fleet
from warehouse.reports.utilisation import lineage
from warehouse.vouchers.gauge import RestatedFindings

log = logging.getLogger(__name__)

WINDOWS: tuple[tuple[str, float], ...] = (("5m", 300.0), ("1h", 3600.0))
FLEET = ("datacentre", "cluster", "scope")


@dataclass(frozen=True)
class ExporterSettings:
    lake: Path
    kafka: str | None = None
    namespace: str = ""
    group: str = "gpuledger-ingest"
    listen: str = "127.0.0.1:9108"
    horizon_s: float = 3600.0
    """A unit (scope, node, GPU) silent for longer drops out of the "now" gauges."""
    as_of: Literal["wall", "data"] = "wall"
    """"now" is the wall clock, or (replays of past traces) the newest instant in the lake."""
    security: KafkaSecurity | None = None
    """How the Kafka health clients connect (``--kafka-config``); None: PLAINTEXT."""


def _g(name: str, doc: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class QuarantineCounts:
    """Dead letters of backfill loads per (topic, reason), re-read only when a file changes."""

    def __init__(self, lake: Path) -> None:
        self.folder = Path(lake) / QUARANTINE_DIR
        self._files: dict[Path, tuple[float, Counter[tuple[str, str]]]] = {}

    def counts(self) -> Counter[tuple[str, str]]:
        total: Counter[tuple[str, str]] = Counter()
        seen = set()
        for path in sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []:
            seen.add(path)
            mtime = path.stat().st_mtime
            cached = self._files.get(path)
            if cached is None or cached[0] != mtime:
                c: Counter[tuple[str, str]] = Counter()
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            d = json.loads(line)
                            k = KINDS.get(d.get("kind") or "")
                            c[(k.topic if k else "unknown", d.get("error_class") or "unknown")] += 1
                cached = (mtime, c)
                self._files[path] = cached
            total.update(cached[1])
        for gone in set(self._files) - seen:
            del self._files[gone]
        return total


class WarehouseCollector(Collector):
    """Computes every gauge from the lake (and the broker, when given) at scrape time."""

    def __init__(
        self,
        settings: ExporterSettings,
        kafka: KafkaHealth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.clock = clock
        self.quarantine = QuarantineCounts(settings.lake)
        self.restated = RestatedFindings(settings.lake)
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # the HTTP server is threaded; one scrape computes at a time
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        up = _g("gpuledger_exporter_up", "1 if the part answered this scrape, else 0.", ["part"])
        try:
            yield from self._warehouse(int(self.clock() * 1000))
            up.add_metric(["warehouse"], 1)
        except Exception:
            log.exception("warehouse metrics failed")
            up.add_metric(["warehouse"], 0)
        if self.kafka is not None:
            try:
                yield from self._kafka(self.kafka)
                up.add_metric(["kafka"], 1)
            except Exception:
                log.exception("kafka metrics failed")
                up.add_metric(["kafka"], 0)
                self.kafka.close()  # reconnect on the next scrape
        yield up
        took = _g("gpuledger_exporter_scrape_duration_seconds", "Time to compute this scrape.", [])
        took.add_metric([], time.monotonic() - started)
        yield took

    def _warehouse(self, now_ms: int) -> Iterator[Metric]:
        con = fleet.connect_ops(self.settings.lake)
        try:
            if self.settings.as_of == "data":
                now_ms = fleet.data_now_ms(con) or now_ms
            now = fleet.fleet_now(con, now_ms, self.settings.horizon_s)
            windows = [(w, fleet.fleet_window(con, now_ms, s)) for w, s in WINDOWS]
            newest = fleet.telemetry_newest(con, now_ms)
            loads = fleet.lake_loads(con)
            versions = lineage(con).versions
        finally:
            con.close()
        yield from _fleet_metrics(now)
        yield from _window_metrics(windows)
        yield from _telemetry_metrics(newest, now_ms)
        yield from self._lake_metrics(loads)
        yield self.restated.family(versions)  # registered audit packs (docs/audit-packs.md)

    def _lake_metrics(self, loads: list[fleet.LoadTotals]) -> Iterator[Metric]:
        landed = CounterMetricFamily(
            "gpuledger_lake_records_landed", "Records written to the lake.", labels=["topic"]
        )
        rejected = CounterMetricFamily(
            "gpuledger_lake_records_rejected",
            "Records rejected by the loads that wrote the lake.",
            labels=["topic"],
        )
        last = _g(
            "gpuledger_lake_last_write_timestamp_seconds",
            "Unix time of the newest successful lake write.",
            [],
        )
        newest = None
        for t in loads:
            topic = KINDS[t.kind].topic if t.kind in KINDS else t.kind
            landed.add_metric([topic], t.landed)
            rejected.add_metric([topic], t.rejected)
            if t.last_write_ms is not None:
                newest = max(newest or 0, t.last_write_ms)
        if newest is not None:
            last.add_metric([], newest / 1000.0)
        yield landed
        yield rejected
        yield last
        dead = CounterMetricFamily(
            "gpuledger_dead_letters",
            "Rejected records kept with their raw bytes: path=stream on the *.dlq topics, "
            "path=backfill in the lake's quarantine files.",
            labels=["topic", "reason", "path"],
        )
        for (topic, reason), n in sorted(self.quarantine.counts().items()):
            dead.add_metric([topic, reason, "backfill"], n)
        if self.kafka is not None:
            try:
                for (topic, reason), n in sorted(self.kafka.dead_letters().items()):
                    dead.add_metric([self._bare(topic), reason, "stream"], n)
            except Exception:
                log.exception("reading the dead-letter topics failed")
                self.kafka.close()
        yield dead

    def _bare(self, topic: str) -> str:
        try:
            return kind_for_topic(topic, self.settings.namespace).topic
        except KeyError:
            return topic

    def _kafka(self, kafka: KafkaHealth) -> Iterator[Metric]:
        lag = _g(
            "gpuledger_consumer_lag_records",
            "Records in the partition not yet committed by the ingest consumer group.",
            ["group", "topic", "partition"],
        )
        for p in kafka.lag():
            lag.add_metric([kafka.group, self._bare(p.topic), str(p.partition)], p.lag)
        yield lag


def _fleet_metrics(rows: list[fleet.FleetNow]) -> Iterator[Metric]:
    cap = _g("gpuledger_capacity_gpus", "GPUs in service now (newest record per unit).", FLEET)
    alloc = _g("gpuledger_allocated_gpus", "GPUs allocated to tenants now.", FLEET)
    busy = _g("gpuledger_busy_gpus", "Sum of GPU busy fractions now (GPU-equivalents).", FLEET)
    idle = _g("gpuledger_idle_gpus", "Idle capacity now: capacity minus allocated.", FLEET)
    held = _g(
        "gpuledger_held_idle_gpus",
        "Allocated but not busy now: allocated minus busy on held GPUs (allocation records only).",
        FLEET,
    )
    for r in rows:
        labels = [r.datacentre, r.cluster, r.scope]
        for family, value in (
            (cap, r.capacity),
            (alloc, r.allocated),
            (busy, r.busy),
            (idle, r.idle),
            (held, r.held_idle),
        ):
            if value is not None:
                family.add_metric(labels, value)
    yield from (cap, alloc, busy, idle, held)


def _window_metrics(windows: list[tuple[str, list[fleet.FleetWindow]]]) -> Iterator[Metric]:
    labels = ["datacentre", "cluster", "scope", "window"]
    rate = _g(
        "gpuledger_allocation_ratio",
        "Allocated / capacity GPU-seconds over the trailing window.",
        labels,
    )
    util = _g(
        "gpuledger_utilisation_ratio",
        "Busy / capacity GPU-seconds over the trailing window.",
        labels,
    )
    for window, rows in windows:
        for r in rows:
            if r.allocation_rate is not None:
                rate.add_metric([r.datacentre, r.cluster, r.scope, window], r.allocation_rate)
            if r.utilisation is not None:
                util.add_metric([r.datacentre, r.cluster, r.scope, window], r.utilisation)
    yield rate
    yield util


def _telemetry_metrics(rows: list[fleet.Newest], now_ms: int) -> Iterator[Metric]:
    labels = ["datacentre", "cluster", "kind"]
    ts = _g(
        "gpuledger_telemetry_newest_timestamp_seconds",
        "Unix time of the newest record of this kind.",
        labels,
    )
    age = _g(
        "gpuledger_telemetry_age_seconds",
        "Seconds since the newest record of this kind (stale telemetry).",
        labels,
    )
    for r in rows:
        ts.add_metric([r.datacentre, r.cluster, r.kind], r.newest_ms / 1000.0)
        age.add_metric([r.datacentre, r.cluster, r.kind], max(0.0, (now_ms - r.newest_ms) / 1000))
    yield ts
    yield age


def build_registry(
    settings: ExporterSettings, clock: Callable[[], float] = time.time
) -> tuple[CollectorRegistry, WarehouseCollector]:
    registry = CollectorRegistry()
    kafka = (
        KafkaHealth(settings.kafka, settings.namespace, settings.group, security=settings.security)
        if settings.kafka
        else None
    )
    collector = WarehouseCollector(settings, kafka=kafka, clock=clock)
    registry.register(collector)
    return registry, collector


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(settings: ExporterSettings, stop: threading.Event) -> None:
    """Serve ``/metrics`` on ``settings.listen`` until ``stop`` is set."""
    from prometheus_client import start_http_server

    registry, collector = build_registry(settings)
    host, port = parse_listen(settings.listen)
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("exporter serving %s on http://%s:%d/metrics", settings.lake, host, port)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        if collector.kafka is not None:
            collector.kafka.close()
