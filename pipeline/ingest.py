"""``ingest``: the consumer group that lands Kafka records in the Parquet lake.

Per message: decode the envelope, validate every record (``pipeline.validate``), send rejects
to ``<topic>.dlq`` with the raw bytes and the reason. Per partition, records are buffered and
flushed by size or age: dedup, write Parquet (temp file, fsync, rename), record the load, make
the dead letters durable, and only then commit the offsets. A transient failure (broker, disk)
raises before the commit, so the records are consumed again.

Crash safety: file names derive from topic/partition/offset range. When a partition is
assigned, files whose first offset is at or past the committed offset (written by a worker
that died before committing) are removed, because those records will be consumed again and
the new batch boundaries may differ. Killing ``ingest`` at any point therefore neither loses
nor duplicates a record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    RetriableError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.dead_letter import DeadLetter
from pipeline.dedup import dedup
from pipeline.records import Kind, Record, RecordError
from pipeline.topics import contract_topics, kind_for_topic
from pipeline.validate import validate_batch
from pipeline.wire import decode, encode_record
from pipeline.write import record_load, stream_file_name, uncommitted_stream_files, write_records

log = logging.getLogger(__name__)
COMMIT_RETRY_S = 300.0
JOIN_GRACE_S = 60.0


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


@dataclass
class IngestStats:
    messages: int = 0
    landed: int = 0
    rejected: int = 0
    duplicates: int = 0
    conflicts: int = 0
    files: int = 0
    commits: int = 0
    removed_uncommitted: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass
class _Buffer:
    kind: Kind
    first: int
    last: int = -1
    records: list[Record] = field(default_factory=list)
    rejected: int = 0


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


class _Rebalance(ConsumerRebalanceListener):
    """Queues rebalance events for the main loop (the client's IO thread must not block)."""

    def __init__(self) -> None:
        self.events: deque[tuple[str, list[TopicPartition]]] = deque()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.events.append(("revoked", list(revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.events.append(("assigned", list(assigned)))


class Ingestor:
    def __init__(
        self,
        settings: IngestSettings,
        registry: CollectorRegistry | None = None,
        consumer_factory: Callable[[IngestSettings], KafkaConsumer] | None = None,
        producer_factory: Callable[[IngestSettings], KafkaProducer] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = IngestMetrics(registry or CollectorRegistry())
        self.stats = IngestStats()
        self.buffers: dict[TopicPartition, _Buffer] = {}
        self.consumer = (consumer_factory or _consumer)(settings)
        self.dlq = (producer_factory or _producer)(settings)
        self._dlq_errors: list[BaseException] = []
        self._rebalance = _Rebalance()
        self._buffered = 0
        self._assigned_at: float | None = None

    def _handle_rebalance(self) -> None:
        """Apply queued rebalances before touching any polled record."""
        while self._rebalance.events:
            event, partitions = self._rebalance.events.popleft()
            if event == "revoked":  # uncommitted buffers will be consumed again by the new owner
                for tp in partitions:
                    dropped = self.buffers.pop(tp, None)
                    if dropped:
                        self._buffered -= len(dropped.records) + dropped.rejected
            else:
                self.recover(partitions)
                self._assigned_at = time.monotonic()

    # -- recovery ---------------------------------------------------------------------------
    def recover(self, partitions: list[TopicPartition]) -> None:
        """Remove files of writes whose offsets were never committed (see module doc)."""
        if not partitions:
            return
        beginnings = self.consumer.beginning_offsets(partitions)
        for tp in partitions:
            meta = self.consumer.committed(tp)
            committed = meta if isinstance(meta, int) else beginnings.get(tp, 0)
            for path in uncommitted_stream_files(
                self.settings.lake, tp.topic, tp.partition, committed
            ):
                log.warning(
                    "removing %s: written but never committed; its records are re-read", path
                )
                path.unlink()
                self.stats.removed_uncommitted += 1

    # -- main loop --------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event | None = None,
        progress: Callable[[IngestStats], None] | None = None,
    ) -> IngestStats:
        stop = stop or threading.Event()
        self.consumer.subscribe(contract_topics(self.settings.namespace), listener=self._rebalance)
        last_record = time.monotonic()
        oldest: float | None = None
        try:
            while not stop.is_set():
                try:
                    polled = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
                except RetriableError as exc:  # broker away: positions are kept, poll again
                    log.warning("poll failed (%r); retrying", exc)
                    stop.wait(1.0)
                    continue
                self._handle_rebalance()
                now = time.monotonic()
                for tp, messages in polled.items():
                    for msg in messages:
                        self._buffered += self._take(tp, msg)
                        if self._buffered >= self.settings.max_batch_records:
                            self.flush()  # bounded memory, even inside one large poll
                    if messages:
                        last_record = now
                        oldest = oldest or now
                due = oldest is not None and now - oldest >= self.settings.max_batch_seconds
                if self.buffers and (due or not polled):
                    self.flush()
                    oldest = None
                    if progress:
                        progress(self.stats)
                idle = self.settings.until_idle_s
                # Idle time counts from the partition assignment: joining a group whose last
                # member was killed can take a session timeout (10 s), longer than a short idle.
                since = (
                    last_record
                    if self._assigned_at is None
                    else max(last_record, self._assigned_at)
                )
                grace = 0.0 if self._assigned_at is not None else JOIN_GRACE_S
                if idle is not None and not self.buffers and now - since >= idle + grace:
                    log.info("no new records for %.1fs: stopping", idle)
                    break
            self.flush()
        finally:
            self.close()
        return self.stats

    def _take(self, tp: TopicPartition, msg: Any) -> int:
        """Buffer one message; return how many records (good or rejected) it carried."""
        self.stats.messages += 1
        k = kind_for_topic(tp.topic, self.settings.namespace)
        buf = self.buffers.get(tp)
        if buf is None:
            buf = self.buffers[tp] = _Buffer(k, first=msg.offset)
        buf.last = msg.offset
        try:
            kind, raws = decode(msg.value)
            if kind is not k:
                raise RecordError(f"{kind.name} records on topic {tp.topic}", "wrong_topic")
        except RecordError as err:
            self._dead_letter(
                DeadLetter(
                    msg.value or b"",
                    err.reason,
                    err.error_class,
                    None,
                    tp.topic,
                    tp.partition,
                    msg.offset,
                    None,
                )
            )
            buf.rejected += 1
            return 1
        good, bad = validate_batch(k, raws)
        buf.records.extend(good)
        for r in bad:
            self._dead_letter(
                DeadLetter(
                    encode_record(r.raw),
                    r.error.reason,
                    r.error.error_class,
                    k.name,
                    tp.topic,
                    tp.partition,
                    msg.offset,
                    r.index,
                )
            )
        buf.rejected += len(bad)
        return len(raws)

    def _dead_letter(self, letter: DeadLetter) -> None:
        self.stats.rejected += 1
        reasons = self.stats.rejected_by_reason
        reasons[letter.error_class] = reasons.get(letter.error_class, 0) + 1
        self.metrics.rejected.labels(letter.origin, letter.error_class).inc()
        future = self.dlq.send(
            f"{letter.origin}.dlq",
            key=letter.message_key(),
            value=letter.raw,
            headers=letter.headers(),
        )
        future.add_errback(self._dlq_errors.append)

    # -- flush ------------------------------------------------------------------------------
    def flush(self) -> None:
        if not self.buffers:
            return
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, buf in list(self.buffers.items()):
            result = dedup(buf.kind, buf.records)
            name = stream_file_name(tp.topic, tp.partition, buf.first, buf.last)
            files = write_records(self.settings.lake, buf.kind, result.records, name)
            record_load(
                self.settings.lake,
                name,
                f"{tp.topic}/{tp.partition}/{buf.first}-{buf.last}",
                buf.kind,
                files,
                rejected=buf.rejected,
            )
            self.stats.landed += len(result.records)
            self.stats.duplicates += result.duplicates
            self.stats.conflicts += result.conflicts
            self.stats.files += len(files)
            self.metrics.landed.labels(tp.topic).inc(len(result.records))
            self.metrics.duplicates.labels(tp.topic).inc(result.duplicates)
            self.metrics.conflicts.labels(tp.topic).inc(result.conflicts)
            offsets[tp] = OffsetAndMetadata(buf.last + 1, "", -1)
        self.dlq.flush(timeout=60)
        if self._dlq_errors:
            raise RuntimeError(
                f"dead-letter writes failed, not committing: {self._dlq_errors[0]!r}"
            )
        self._commit(offsets)
        self.stats.commits += 1
        self.buffers.clear()
        self._buffered = 0
        self.metrics.last_write.set_to_current_time()

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit after the files are durable; ride out a broker restart with backoff.

        Retriable errors (broker or coordinator away) are retried for ``COMMIT_RETRY_S``; a
        commit refused because the group rebalanced is given up: the partitions' new owner
        removes these files and consumes the records again (see ``recover``).
        """
        deadline = time.monotonic() + COMMIT_RETRY_S
        delay = 0.5
        while True:
            try:
                self.consumer.commit(offsets)
                return
            except RetriableError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("offset commit failed (%r); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
            except (
                CommitFailedError,
                RebalanceInProgressError,
                UnknownMemberIdError,
                IllegalGenerationError,
            ) as exc:
                log.warning("commit refused after a rebalance (%r); records will be re-read", exc)
                return

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.dlq.close(timeout=10)


def _consumer(settings: IngestSettings) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=settings.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        max_poll_interval_ms=600_000,
        session_timeout_ms=10_000,  # a killed worker's partitions move on within 10 s
        bootstrap_timeout_ms=30_000,
    )


def _producer(settings: IngestSettings) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        compression_type="gzip",
        bootstrap_timeout_ms=30_000,
        max_request_size=16 * 1024 * 1024,
    )
