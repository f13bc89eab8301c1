"""The counters operators watch on ``ingest`` (Prometheus), in a registry the caller owns;
``serve_metrics`` serves such a registry for ``ingest --metrics-listen``."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


def serve_metrics(listen: str) -> tuple[CollectorRegistry, WSGIServer]:
    """A fresh registry served on ``listen`` (``HOST:PORT``; no host: 127.0.0.1) from a daemon
    thread, and its server (``shutdown()`` stops it; otherwise it lives as long as the
    process)."""
    registry = CollectorRegistry()
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    return registry, server


class IngestMetrics:
    """Counters operators watch (Prometheus), in a registry the caller owns."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.landed = Counter(
            "gpuledger_ingest_records_landed",
            "Records written to the lake.",
            ["topic"],
            registry=registry,
        )
        self.rejected = Counter(
            "gpuledger_ingest_records_rejected",
            "Records sent to the dead-letter topic.",
            ["topic", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "gpuledger_ingest_duplicates",
            "Identical duplicate records collapsed.",
            ["topic"],
            registry=registry,
        )
        self.conflicts = Counter(
            "gpuledger_ingest_conflicts",
            "Same key, different payload (last write kept).",
            ["topic"],
            registry=registry,
        )
        self.last_write = Gauge(
            "gpuledger_ingest_last_write_timestamp_seconds",
            "Unix time of the last lake write.",
            registry=registry,
        )
