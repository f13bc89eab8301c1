"""The Kafka side of ``ingest``: clients, rebalance events, where to resume, lag.

Where a partition resumes comes from the lake, not from Kafka: the offset stored in the
table's app transaction ``<group>:<topic>:<partition>`` (``pipeline.lake``). The group's
committed offsets are still written after each lake commit, so standard lag tools see the
group's progress; ``lag`` reads the lake's offsets, which are the truth.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from pipeline import lake as lakes
from pipeline.kafka_config import KafkaSecurity, client_kwargs
from pipeline.kafka_connect import connect
from pipeline.topics import kind_for_topic
from pipeline.write import table_of

log = logging.getLogger(__name__)
MAX_POLL_RECORDS = 5000


@dataclass(frozen=True)
class ClientSettings:
    bootstrap: str
    group: str
    session_timeout_ms: int = 10_000
    """How soon a dead worker's partitions move on to the others."""
    security: KafkaSecurity | None = None
    """TLS / SASL settings (``--kafka-config``); None: PLAINTEXT."""
    connect_timeout_s: float = 30.0


class Rebalance(ConsumerRebalanceListener):
    """Queues rebalance events for the main loop, which applies them after ``poll``."""

    def __init__(self) -> None:
        self.events: deque[tuple[str, list[TopicPartition]]] = deque()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.events.append(("revoked", list(revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.events.append(("assigned", list(assigned)))


def stored_offsets(
    lake: Path, group: str, namespace: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int | None]:
    """The last offset the lake holds for each partition (None = nothing landed yet)."""
    out: dict[TopicPartition, int | None] = {}
    tables: dict[str, Any] = {}
    for tp in partitions:
        k = kind_for_topic(tp.topic, namespace)
        if k.table not in tables:
            tables[k.table] = lakes.open_table(table_of(lake, k))
        dt = tables[k.table]
        app = lakes.app_id(group, tp.topic, tp.partition)
        out[tp] = None if dt is None else dt.transaction_version(app)
    return out


def lag(
    consumer: KafkaConsumer, lake: Path, group: str, namespace: str, topics: Iterable[str]
) -> int:
    """Records in ``topics`` past what the lake holds for ``group`` (every partition, whoever
    owns it)."""
    tps = [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    if not tps:
        return 0
    ends = consumer.end_offsets(tps)
    begins = consumer.beginning_offsets(tps)
    stored = stored_offsets(lake, group, namespace, tps)
    total = 0
    for tp in tps:
        done = stored[tp]
        position = begins[tp] if done is None else max(done + 1, begins[tp])
        total += max(0, ends[tp] - position)
    return total


def commit_for_lag(
    consumer: KafkaConsumer, offsets: dict[TopicPartition, int], *, wait: bool = True
) -> None:
    """Tell Kafka how far the group got (monitoring only: a failure is logged, not raised);
    ``wait=False`` sends it without waiting for the answer."""
    if not offsets:
        return
    committed = {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}
    try:
        if wait:
            consumer.commit(committed)
        else:
            consumer.commit_async(committed, callback=_commit_answered)
    except (KafkaError, AssertionError, OSError) as exc:  # e.g. after a rebalance, or closed
        log.info("offset commit for lag monitoring failed (%r); the lake holds the offsets", exc)


def _commit_answered(_offsets: Any, response: Any) -> None:
    if isinstance(response, BaseException):
        log.info(
            "offset commit for lag monitoring failed (%r); the lake holds the offsets", response
        )


def short_of_end(consumer: KafkaConsumer, tp: TopicPartition, messages: Sequence[Any]) -> bool:
    """Whether a poll's ``messages`` of ``tp`` stop before the end its fetch saw (the high
    watermark): more was already there to read, a backlog."""
    if not messages:
        return False
    try:
        end = consumer.highwater(tp)
    except Exception:  # e.g. a partition revoked meanwhile: nothing known
        return False
    return end is not None and messages[-1].offset + 1 < end


def read_to_end(
    consumer: KafkaConsumer,
    polled: Mapping[TopicPartition, Sequence[Any]] | None = None,
    timeout_ms: int = 500,
) -> bool:
    """Whether every assigned partition has been returned up to the end its last fetch saw
    (its high watermark); False while any is unknown. ``polled`` (the last poll's records)
    answers at once for a partition it left short of its end. Waits up to about
    ``timeout_ms`` for positions being reset (a seek to the beginning)."""
    try:
        for tp, messages in (polled or {}).items():
            if short_of_end(consumer, tp, messages):
                return False
        assigned = consumer.assignment()
        if not assigned:
            return False
        for tp in assigned:
            end = consumer.highwater(tp)
            if end is None:
                return False
            position = consumer.position(tp, timeout_ms=timeout_ms)
            if position is None or position < end:
                return False
    except Exception:  # e.g. a partition revoked meanwhile: not known to be at its end
        return False
    return True


def new_consumer(settings: ClientSettings) -> KafkaConsumer:
    def make(bootstrap_timeout_ms: int) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            group_id=settings.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_POLL_RECORDS,
            max_poll_interval_ms=600_000,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(100, settings.session_timeout_ms // 4),
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            **client_kwargs(settings.security),
        )

    return connect(
        make, settings.bootstrap, settings.security, settings.connect_timeout_s, "consume"
    )


def new_producer(settings: ClientSettings) -> KafkaProducer:
    def make(bootstrap_timeout_ms: int) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=settings.bootstrap,
            acks="all",
            compression_type="gzip",
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            max_request_size=16 * 1024 * 1024,
            **client_kwargs(settings.security),
        )

    return connect(
        make,
        settings.bootstrap,
        settings.security,
        settings.connect_timeout_s,
        "produce dead letters",
    )
