"""Pipeline health read from the real broker: consumer lag and dead letters by reason.

``KafkaHealth`` keeps one consumer (no group: it commits nothing and joins nothing) and one
admin client for the life of the exporter. ``lag()`` compares the ingest group's committed
offsets with each partition's end offset. ``dead_letters()`` reads the ``*.dlq`` topics from
where the last call stopped and keeps running counts per (origin topic, reason), the reason
being the dead letter's ``error_class`` header (a small, fixed vocabulary: fit for a label).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import TopicPartition

from pipeline.dead_letter import DeadLetter
from pipeline.kafka_config import KafkaSecurity, client_kwargs
from pipeline.kafka_connect import connect
from pipeline.records import origin_topic
from pipeline.topics import contract_topics, dlq_topics

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


class KafkaHealth:
    def __init__(
        self,
        bootstrap: str,
        namespace: str = "",
        group: str = "gpuledger-ingest",
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.namespace = namespace
        self.group = group
        self.security = security
        self._consumer: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None
        self._dlq_counts: Counter[tuple[str, str]] = Counter()
        self._next: dict[TopicPartition, int] = {}

    def _clients(self) -> tuple[KafkaConsumer, KafkaAdminClient]:
        security = client_kwargs(self.security)
        if self._consumer is None:
            self._consumer = connect(
                lambda ms: KafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    enable_auto_commit=False,
                    request_timeout_ms=10000,
                    bootstrap_timeout_ms=ms,
                    **security,
                ),
                self.bootstrap,
                self.security,
                CONNECT_TIMEOUT_S,
                "read consumer lag",
            )
        if self._admin is None:
            self._admin = connect(
                lambda ms: KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=ms, **security
                ),
                self.bootstrap,
                self.security,
                CONNECT_TIMEOUT_S,
                "read consumer lag",
            )
        return self._consumer, self._admin

    def _partitions(self, topics: list[str]) -> list[TopicPartition]:
        consumer, _ = self._clients()
        out = []
        for topic in topics:
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                out.append(TopicPartition(topic, p))
        return out

    def lag(self) -> list[PartitionLag]:
        consumer, admin = self._clients()
        tps = self._partitions(contract_topics(self.namespace))
        if not tps:
            return []
        ends = consumer.end_offsets(tps)
        committed = admin.list_group_offsets({self.group: None}).get(self.group, {})
        return [
            PartitionLag(
                tp.topic,
                tp.partition,
                committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None,
                int(ends[tp]),
            )
            for tp in tps
        ]

    def dead_letters(self, max_polls: int = 100) -> dict[tuple[str, str], int]:
        """Running count of dead letters per (origin topic, reason), read up to the end.

        The next offset to read is kept per partition, so a reconnect (after a broker error)
        resumes where the count stopped instead of counting a letter twice."""
        consumer, _ = self._clients()
        tps = set(self._partitions(dlq_topics(self.namespace)))
        if not tps:
            return dict(self._dlq_counts)
        if set(consumer.assignment()) != tps:
            consumer.assign(sorted(tps, key=lambda tp: (tp.topic, tp.partition)))
            fresh = [tp for tp in tps if tp not in self._next]
            if fresh:
                consumer.seek_to_beginning(*fresh)
            for tp in tps - set(fresh):
                consumer.seek(tp, self._next[tp])
        ends = consumer.end_offsets(list(tps))
        for _ in range(max_polls):
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for tp, msgs in consumer.poll(timeout_ms=500, max_records=10000).items():
                for m in msgs:
                    letter = DeadLetter.from_headers(m.value or b"", list(m.headers or []))
                    origin = letter.origin or origin_topic(m.topic)
                    self._dlq_counts[(origin, letter.error_class or "unknown")] += 1
                    self._next[tp] = m.offset + 1
        return dict(self._dlq_counts)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._admin is not None:
            self._admin.close()
        self._consumer = self._admin = None
