"""The only Kafka producer: keyed, compressed, batched publishing of contract records.

Records are grouped per message key (one GPU / one scope / one allocation, so a key stays in
one partition) into messages of up to ``batch_records`` records: batching is the main
throughput lever. If the broker is unreachable the producer retries with backoff inside a
bounded buffer (``max_unacked_records``); when the buffer stays full for ``max_block_ms`` or
delivery times out, the sink
raises ``PublishError`` saying how many records were not acknowledged. Nothing is dropped
silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from pipeline.errors import TransientError
from pipeline.kafka_config import KafkaAccessError, KafkaSecurity, client_kwargs
from pipeline.kafka_connect import connect
from pipeline.records import Kind, Record
from pipeline.topics import topic_for
from pipeline.wire import encode
from pipeline.wire_arrow import ARROW_V2_HEADERS, encode_arrow

log = logging.getLogger(__name__)


class PublishError(TransientError, RuntimeError):
    """Records could not be delivered to Kafka (after retries)."""


@dataclass(frozen=True)
class PublishSettings:
    bootstrap: str
    namespace: str = ""
    batch_records: int = 64
    compression: str = "gzip"
    linger_ms: int = 20
    max_unacked_records: int = 500_000
    """Bound on records handed to the producer but not yet acknowledged by the broker."""
    max_block_ms: int = 30_000
    delivery_timeout_ms: int = 60_000
    request_timeout_ms: int = 30_000
    connect_timeout_s: float = 60.0
    security: KafkaSecurity | None = None
    """TLS / SASL settings (``--kafka-config``); None: PLAINTEXT."""
    wire: str = "json"
    """``json``: the JSON envelope (wire v1); ``arrow``: Arrow IPC (wire v2, docs/wire.md)."""


WIRES = ("json", "arrow")


def encode_message(
    k: Kind, records: list[Record], wire: str = "json"
) -> tuple[bytes, list[tuple[str, bytes]] | None]:
    """A message's value and headers in ``wire``; records Arrow will not hold (not the
    contract's types: the consumer dead-letters them) go as JSON, so they are still seen."""
    if wire == "arrow":
        try:
            return encode_arrow(k, records), ARROW_V2_HEADERS
        except Exception:  # e.g. a text where the contract has a number
            log.debug("%d %s records are not Arrow-encodable; sent as JSON", len(records), k.name)
    return encode(k, records), None


def connect_producer(settings: PublishSettings, **extra: Any) -> KafkaProducer:
    """A producer, retrying the bootstrap with backoff until ``connect_timeout_s`` (at once
    a ``PublishError`` when TLS, SASL or the protocol are wrong: retrying cannot help)."""

    def make(bootstrap_timeout_ms: int) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=settings.bootstrap,
            compression_type=settings.compression,
            linger_ms=settings.linger_ms,
            max_block_ms=settings.max_block_ms,
            delivery_timeout_ms=settings.delivery_timeout_ms,
            request_timeout_ms=settings.request_timeout_ms,
            max_request_size=8 * 1024 * 1024,
            acks="all",
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            **{**client_kwargs(settings.security), **extra},
        )

    try:
        return connect(
            make, settings.bootstrap, settings.security, settings.connect_timeout_s, "publish"
        )
    except KafkaAccessError as exc:
        raise PublishError(
            str(exc)
            + (
                ""
                if exc.final
                else "; is the broker running? Start the local one with `gpuledger kafka start`."
            )
        ) from exc


class KafkaSink:
    def __init__(
        self,
        settings: PublishSettings,
        producer_factory: Callable[[PublishSettings], KafkaProducer] = connect_producer,
    ) -> None:
        self.settings = settings
        self.producer = producer_factory(settings)
        self._buffers: dict[tuple[str, bytes], list[Record]] = defaultdict(list)
        self._kinds: dict[str, Kind] = {}
        self.sent_records = 0
        self.sent_messages = 0
        self.failed_records = 0
        self._unacked = 0
        self._lock = threading.Lock()
        self._first_error: BaseException | None = None

    def add(self, k: Kind, record: Record) -> None:
        key = k.message_key(record)
        self._kinds[k.name] = k
        buf = self._buffers[(k.name, key)]
        buf.append(record)
        if len(buf) >= self.settings.batch_records:
            del self._buffers[(k.name, key)]
            self._send(k, key, buf)

    def _send(self, k: Kind, key: bytes, records: list[Record]) -> None:
        self._raise_if_failed()
        n = len(records)
        if self._unacked + n > self.settings.max_unacked_records:
            self._wait_for_room(n)
        with self._lock:
            self._unacked += n
        try:
            topic = topic_for(k, self.settings.namespace)
            value, headers = encode_message(k, records, self.settings.wire)
            future = self.producer.send(topic, key=key, value=value, headers=headers)
        except KafkaTimeoutError as exc:
            with self._lock:
                self._unacked -= n
                self.failed_records += n
            raise PublishError(
                f"Kafka at {self.settings.bootstrap} did not take {n} {k.name} records within "
                f"{self.settings.max_block_ms} ms (producer buffer full: broker down?); "
                f"{self.sent_records} records were acknowledged before this"
            ) from exc

        def failed(exc: BaseException, n: int = n) -> None:
            with self._lock:
                self._unacked -= n
                self.failed_records += n
                if self._first_error is None:
                    self._first_error = exc

        def sent(_meta: Any, n: int = n) -> None:
            with self._lock:
                self._unacked -= n
                self.sent_records += n

        future.add_callback(sent)
        future.add_errback(failed)
        self.sent_messages += 1

    def _wait_for_room(self, n: int) -> None:
        deadline = time.monotonic() + self.settings.max_block_ms / 1000
        while self._unacked + n > self.settings.max_unacked_records:
            self._raise_if_failed()
            if time.monotonic() > deadline:
                raise PublishError(
                    f"{self._unacked} records are still unacknowledged by Kafka at "
                    f"{self.settings.bootstrap} after {self.settings.max_block_ms} ms "
                    "(broker down?); "
                    f"the buffer bound is {self.settings.max_unacked_records}; "
                    f"{self.sent_records} records were acknowledged before this"
                )
            time.sleep(0.05)

    def _raise_if_failed(self) -> None:
        if self._first_error is not None:
            raise PublishError(
                f"{self.failed_records} records were not delivered to Kafka at "
                f"{self.settings.bootstrap}: {self._first_error!r}"
            ) from self._first_error

    def flush(self) -> None:
        for (name, key), records in list(self._buffers.items()):
            del self._buffers[(name, key)]
            self._send(self._kinds[name], key, records)
        try:
            self.producer.flush(timeout=self.settings.delivery_timeout_ms / 1000 + 5)
        except KafkaError as exc:
            raise PublishError(
                f"flushing to Kafka at {self.settings.bootstrap} failed: {exc!r}"
            ) from exc
        self._raise_if_failed()

    def close(self) -> None:
        self.producer.close(timeout=10)
