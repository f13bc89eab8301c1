"""The counters operators watch on ``ingest`` (Prometheus), in a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
