"""``ingest``: the consumer group that lands Kafka records in the Delta lake, exactly once.

Per partition and poll, decode its messages in runs of up to ``MAX_RUN``, at once
(``pipeline.wire_batch``: JSON v1 envelopes and Arrow v2 streams into Arrow columns), validate
every record of a run at once, column-wise (``pipeline.columnar``; message by message and
record by record, ``pipeline.validate``, when that cannot decide), send rejects to
``<topic>.dlq`` with the raw bytes and the reason; anything that raises while one message is
decoded is a dead letter too, never a crash (docs/wire.md: the wire formats). Per
partition, the validated rows are buffered as Arrow tables and flushed by size or age: dedup,
make the dead letters durable, then one Delta commit per table carrying the rows and one app
transaction per Kafka partition (``<group>:<topic>:<partition>`` -> last offset written;
``pipeline.lake``).

Exactly once: on assignment a worker seeks every partition to just after the offset stored in
the table (the Kafka committed offset is kept for lag monitoring only). A commit whose first
offset is not past the stored one (a zombie whose partition moved on) is fenced: its batch is
dropped and the partition re-read from the stored offset. Killing ``ingest`` at any point
therefore neither loses nor duplicates a record, and consumer groups on one lake never touch
each other's rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from kafka.errors import RetriableError
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from pipeline import lake as lakes
from pipeline.columnar import land
from pipeline.consume import (
    ClientSettings,
    Rebalance,
    commit_for_lag,
    lag,
    new_consumer,
    new_producer,
    read_to_end,
    short_of_end,
    stored_offsets,
)
from pipeline.dead_letter import DLQ_MAX_RAW_BYTES, DeadLetter
from pipeline.ingest_buffer import PartitionBuffer, take
from pipeline.ingest_maintenance import start_compactor
from pipeline.ingest_metrics import IngestMetrics
from pipeline.ingest_settings import IngestSettings, IngestStats
from pipeline.records import Kind, dead_letter_topic
from pipeline.topics import contract_topics, kind_for_topic
from pipeline.wire import encode_record
from pipeline.write import commit_rows

__all__ = ["Ingestor", "IngestSettings", "IngestStats"]

log = logging.getLogger(__name__)
LAG_CHECK_S = 1.0
MAX_RUN = 1024
"""Most messages of one partition decoded and validated at once (``pipeline.wire_batch``)."""


class Ingestor:
    def __init__(self, settings: IngestSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = IngestMetrics(registry or CollectorRegistry())
        self.stats = IngestStats()
        self.buffers: dict[TopicPartition, PartitionBuffer] = {}
        clients = ClientSettings(
            settings.bootstrap,
            settings.group,
            int(settings.session_timeout_s * 1000),
            security=settings.security,
        )
        self.consumer = new_consumer(clients)
        self.dlq = new_producer(clients)
        self._dlq_errors: list[BaseException] = []
        self._rebalance = Rebalance()
        self._buffered = 0
        self._backlog = False  # records found waiting at the assignment (``_caught_up``)
        self._settled = False  # read to the end since the assignment: a live stream since
        self._unconfirmed: dict[TopicPartition, int] = {}
        """Next offsets told Kafka without waiting (``flush``), confirmed when ``run`` ends."""
        self._refetch: set[TopicPartition] = set()
        """Partitions fenced during this poll: the rest of its records for them are not taken
        (they follow the dropped batch; the partition is read again after the lake's offset)."""
        self._topics = contract_topics(settings.namespace)

    def _handle_rebalance(
        self, polled: Mapping[TopicPartition, Sequence[Any]] | None = None
    ) -> set[TopicPartition]:
        """Apply queued rebalances; return the partitions whose records from the poll that saw
        the rebalance must not be used: those revoked, and those just (re)positioned unless
        ``polled`` brought their records from exactly where the lake resumes them."""
        moved: set[TopicPartition] = set()
        while self._rebalance.events:
            event, partitions = self._rebalance.events.popleft()
            for tp in partitions:  # unflushed buffers are re-read by whoever owns it next
                dropped = self.buffers.pop(tp, None)
                if dropped:
                    self._buffered -= dropped.taken
                self._unconfirmed.pop(tp, None)
            moved.update(partitions)
            if event == "assigned":
                moved -= self.resume(partitions, polled or {})
                self._settled = False
        return moved

    def resume(
        self,
        partitions: list[TopicPartition],
        polled: Mapping[TopicPartition, Sequence[Any]] | None = None,
    ) -> set[TopicPartition]:
        """Seek each partition to just after the offset its table holds (or its beginning);
        return those whose ``polled`` records already start there (they are kept, unseeked:
        reading them again would cost a fetch)."""
        polled = polled or {}
        stored = stored_offsets(
            self.settings.lake, self.settings.group, self.settings.namespace, partitions
        )
        fresh = [tp for tp, offset in stored.items() if offset is None and polled.get(tp)]
        begins: dict[TopicPartition, int] = {}
        if fresh:
            try:
                begins = self.consumer.beginning_offsets(fresh)
            except Exception as exc:  # then they are read again from their beginning
                log.info("no beginning offsets (%r); seeking to the beginning", exc)
        kept: set[TopicPartition] = set()
        for tp, offset in stored.items():
            messages = polled.get(tp)
            target = begins.get(tp) if offset is None else offset + 1
            if messages and target is not None and messages[0].offset == target:
                kept.add(tp)
            elif offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset + 1)
            log.info("%s/%d resumes after lake offset %s", tp.topic, tp.partition, offset)
        return kept

    # -- main loop --------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event | None = None,
        progress: Callable[[IngestStats], None] | None = None,
    ) -> IngestStats:
        stop = stop or threading.Event()
        self.consumer.subscribe(self._topics, listener=self._rebalance)
        halt = threading.Event()
        compactor = start_compactor(self.settings, halt)
        last_record = time.monotonic()
        oldest: float | None = None
        drained_since: float | None = None
        checked = 0.0
        try:
            while not stop.is_set():
                try:
                    polled = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
                except RetriableError as exc:  # broker away: positions are kept, poll again
                    log.warning("poll failed (%r); retrying", exc)
                    stop.wait(1.0)
                    continue
                moved = self._handle_rebalance(polled)
                now = time.monotonic()
                if self._take_polled(polled, moved):
                    last_record = now
                    oldest = oldest or now
                    drained_since = None
                due = oldest is not None and now - oldest >= self.settings.max_batch_seconds
                ready = self._caught_up(polled)  # once a poll: it ends a backlog, buffers or none
                if self.buffers and (due or not polled or ready):
                    self.flush()
                    oldest = None
                    if progress:
                        progress(self.stats)
                idle = self.settings.until_idle_s
                if idle is None or self.buffers or now - checked < LAG_CHECK_S:
                    continue
                # Drained = every partition of every topic consumed to its end (whoever owns
                # it); only then does the idle clock run.
                checked = now
                self.stats.lag = self.lag()
                if self.stats.lag:
                    drained_since = None
                    continue
                drained_since = drained_since or now
                if now - max(last_record, drained_since) >= idle:
                    log.info("drained, and no new records for %.1fs: stopping", idle)
                    break
            self.flush()
            self._confirm_lag()
        finally:
            halt.set()
            self.close()
            if compactor is not None:
                compactor.join(timeout=60)
        return self.stats

    def _take_polled(
        self, polled: dict[TopicPartition, list[Any]], moved: set[TopicPartition]
    ) -> bool:
        """Decode and validate one poll's messages, in runs per partition; whether any
        partition brought some. Memory stays bounded inside one large poll: a flush as soon as
        ``max_batch_records`` are buffered, the runs sized to fit what is left."""
        got = short = False
        self._refetch.clear()
        for tp, messages in polled.items():
            if tp in moved:
                continue  # fetched from before the seek: read again from the lake's offset
            at = 0
            while at < len(messages) and tp not in self._refetch:
                run = messages[at : at + self._run_length(tp)]
                at += len(run)
                self._buffered += self._take(tp, run)
                if self._buffered >= self.settings.max_batch_records:
                    self.flush()
            got = got or bool(messages)
            short = short or short_of_end(self.consumer, tp, messages)
        if not self._settled:
            self._backlog = self._backlog or short
            self._settled = got and not self._backlog
        return got

    def _caught_up(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> bool:
        """Whether to land now rather than wait for an empty poll or ``max_batch_seconds``:
        every assigned partition is read to its end, and at least half of ``max_batch_records``
        is buffered or the backlog that the first polls after the assignment stopped short of
        (a restart, a replay) is drained: once, so that a live stream's commits stay large
        (docs/wire.md#flush). A drained backlog's flag is cleared, buffers or none."""
        half = self._buffered * 2 >= self.settings.max_batch_records
        if not (half or self._backlog) or not read_to_end(self.consumer, polled):
            return False
        self._backlog, self._settled = False, True
        return True

    def _run_length(self, tp: TopicPartition) -> int:
        """Messages to decode at once: about what still fits before ``max_batch_records`` at
        the partition's records per message so far (at least 1, at most ``MAX_RUN``; the
        first run of a buffer is one message, to learn it)."""
        buf = self.buffers.get(tp)
        if buf is None or not buf.messages:
            return 1
        room = self.settings.max_batch_records - self._buffered
        return int(min(MAX_RUN, max(1, room // max(buf.taken / buf.messages, 1.0))))

    def lag(self) -> int:
        s = self.settings
        return lag(self.consumer, s.lake, s.group, s.namespace, self._topics)

    def _take(self, tp: TopicPartition, messages: list[Any]) -> int:
        """Buffer a run of one partition's messages and dead-letter its rejects; return how
        many records it carried (a dead message counts one)."""
        self.stats.messages += len(messages)
        buf = self.buffers.get(tp)
        if buf is None:
            k = kind_for_topic(tp.topic, self.settings.namespace)
            buf = self.buffers[tp] = PartitionBuffer(k, first=messages[0].offset)
        before = buf.taken
        for letter in take(buf, messages, tp.topic):
            raw, why = letter.raw, (letter.reason, letter.error_class)
            self._reject(tp, letter.offset, raw, *why, letter.kind, letter.index)
        return buf.taken - before

    def _reject(
        self,
        tp: TopicPartition,
        offset: int | None,
        raw: bytes,
        reason: str,
        error_class: str,
        k: Kind | None = None,
        index: int | None = None,
    ) -> None:
        kind = None if k is None else k.name
        letter = DeadLetter(raw, reason, error_class, kind, tp.topic, tp.partition, offset, index)
        self._dead_letter(letter)

    def _dead_letter(self, letter: DeadLetter) -> None:
        self.stats.rejected += 1
        reasons = self.stats.rejected_by_reason
        reasons[letter.error_class] = reasons.get(letter.error_class, 0) + 1
        self.metrics.rejected.labels(letter.origin, letter.error_class).inc()
        letter = letter.fitted(DLQ_MAX_RAW_BYTES)
        future = self.dlq.send(
            dead_letter_topic(letter.origin),
            key=letter.message_key(),
            value=letter.raw,
            headers=letter.headers(),
        )
        future.add_errback(self._dlq_errors.append)

    # -- flush ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Land every buffer: per table one commit with its partitions' offsets."""
        if not self.buffers:
            return
        batches: dict[str, list[tuple[TopicPartition, PartitionBuffer, pa.Table]]] = {}
        for tp, buf in self.buffers.items():
            batches.setdefault(buf.kind.name, []).append((tp, buf, self._rows(tp, buf)))
        self.dlq.flush(timeout=60)
        if self._dlq_errors:
            raise RuntimeError(
                f"dead-letter writes failed, not committing: {self._dlq_errors[0]!r}"
            )
        landed: dict[TopicPartition, int] = {}
        for items in batches.values():
            landed.update(self._commit(items))
        commit_for_lag(self.consumer, landed, wait=False)
        self._unconfirmed.update(landed)
        self.buffers.clear()
        self._buffered = 0
        self.metrics.last_write.set_to_current_time()

    def _confirm_lag(self) -> None:
        """Tell Kafka, waiting, the last offsets landed of the partitions still ours."""
        mine = self.consumer.assignment()
        commit_for_lag(self.consumer, {tp: o for tp, o in self._unconfirmed.items() if tp in mine})
        self._unconfirmed.clear()

    def _rows(self, tp: TopicPartition, buf: PartitionBuffer) -> pa.Table:
        """Dedup one partition's records into Arrow rows; dead-letter those Arrow refuses."""
        rows, duplicates, conflicts, refused = land(buf.kind, buf.parts)
        self.stats.duplicates += duplicates
        self.stats.conflicts += conflicts
        self.metrics.duplicates.labels(tp.topic).inc(duplicates)
        self.metrics.conflicts.labels(tp.topic).inc(conflicts)
        if refused:
            listed = [r for part in buf.parts if isinstance(part, list) for r in part]
            origin = {id(r): o for r, o in zip(listed, buf.origins, strict=True)}
            for record, error in refused:
                offset, index = origin.get(id(record), (None, None))
                reason = f"not writable: {error!r}"
                raw = encode_record(record)
                self._reject(tp, offset, raw, reason, "unwritable", buf.kind, index)
            buf.rejected += len(refused)
        return rows

    def _commit(
        self, items: list[tuple[TopicPartition, PartitionBuffer, pa.Table]]
    ) -> dict[TopicPartition, int]:
        """One commit of one table's partitions; a fenced partition is dropped and re-read
        from the lake's offset, the others committed. Returns the next offset per partition."""
        group = self.settings.group
        live = {lakes.app_id(group, item[0].topic, item[0].partition): item for item in items}
        k = items[0][1].kind
        topic = items[0][0].topic
        while live:
            offsets = [lakes.Offsets(a, b.first, b.last) for a, (_, b, _) in live.items()]
            rows = pa.concat_tables([t for _, _, t in live.values()])
            rejected = sum(b.rejected for _, b, _ in live.values())
            parts = ",".join(f"p{tp.partition}@{b.first}-{b.last}" for tp, b, _ in live.values())
            load_id = f"{group}:{topic}:{parts}"
            try:
                version = commit_rows(
                    self.settings.lake,
                    k,
                    rows,
                    load_id=load_id,
                    origin=f"kafka {topic} group {group}",
                    rejected=rejected,
                    offsets=offsets,
                )
            except lakes.Fenced as fenced:
                tp, buf, _ = live.pop(fenced.app_id)
                self._fenced(tp, buf, fenced.stored)
                continue
            log.debug("%s version %d: %d rows", k.table, version, rows.num_rows)
            self.stats.commits += 1
            self.stats.landed += rows.num_rows
            for tp, _, t in live.values():
                self.metrics.landed.labels(tp.topic).inc(t.num_rows)
            return {tp: b.last + 1 for tp, b, _ in live.values()}
        return {}

    def _fenced(self, tp: TopicPartition, buf: PartitionBuffer, stored: int) -> None:
        self.stats.fenced += 1
        self._refetch.add(tp)
        log.warning(
            "%s/%d: the lake already holds offset %d (another worker wrote it); dropping "
            "offsets %d-%d and re-reading after %d",
            tp.topic,
            tp.partition,
            stored,
            buf.first,
            buf.last,
            stored,
        )
        try:
            self.consumer.seek(tp, stored + 1)
        except Exception as exc:  # no longer ours: the rebalance hands it to its owner
            log.info("not seeking %s/%d: %r", tp.topic, tp.partition, exc)

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.dlq.close(timeout=10)
