"""What an ingest worker is told (``IngestSettings``, read once at start-up) and what it reports
(``IngestStats``); see :mod:`pipeline.ingest`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.kafka_config import KafkaSecurity


@dataclass(frozen=True)
class IngestSettings:
    bootstrap: str
    lake: Path
    group: str = "gpuledger-ingest"
    namespace: str = ""
    max_batch_records: int = 250_000
    max_batch_seconds: float = 10.0
    until_idle_s: float | None = None
    poll_timeout_ms: int = 500
    session_timeout_s: float = 10.0
    """A killed worker's partitions move on to the group's others within this time."""
    compact_every_s: float = 3600.0
    """Compact closed partitions in the background this often (0 = never; ``lake compact``)."""
    maintain: Callable[[Path], object] | None = None
    """Run on the lake after each background compaction (the CLI passes the rollup builder,
    ``warehouse.catalog.rollup_build.build_rollups``, which this layer cannot import)."""
    security: KafkaSecurity | None = None
    """TLS / SASL settings of the Kafka clients (``--kafka-config``); None: PLAINTEXT."""


@dataclass
class IngestStats:
    messages: int = 0
    landed: int = 0
    rejected: int = 0
    duplicates: int = 0
    conflicts: int = 0
    commits: int = 0
    fenced: int = 0
    """Batches dropped because the table already held their offsets (zombie writes)."""
    lag: int | None = None
    """Records left in the subscribed topics when ``--until-idle`` stopped (0 = drained)."""
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
