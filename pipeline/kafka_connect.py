"""Making a Kafka client, retrying while the broker may be down or starting; when an attempt
fails, ``pipeline.kafka_probe.diagnose`` says whether another can help, and a cause retrying
cannot fix (TLS, SASL, wrong protocol) raises ``KafkaAccessError`` at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from pipeline.kafka_config import PLAINTEXT, KafkaAccessError, KafkaSecurity, explain
from pipeline.kafka_probe import diagnose

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPT_S = 8.0
"""One bootstrap attempt: long enough for a TLS + SCRAM login on a loaded machine; after a
failed one, ``diagnose`` decides whether another can help."""


def connect(
    make: Callable[[int], T],
    bootstrap: str,
    security: KafkaSecurity | None,
    timeout_s: float,
    what: str = "connect",
) -> T:
    """``make(bootstrap_timeout_ms)`` (a kafka-python client) with retries and backoff while
    the broker may just be down or starting, for at most about ``timeout_s``; a cause that
    retrying cannot fix (``diagnose``: TLS, SASL, wrong protocol) raises ``KafkaAccessError``
    after the first failed attempt."""
    from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        attempt = max(1.0, min(ATTEMPT_S, deadline - time.monotonic()))
        try:
            return make(int(attempt * 1000))
        except (KafkaTimeoutError, KafkaConnectionError) as exc:
            found = diagnose(bootstrap, security)
            if found.final or time.monotonic() + delay >= deadline:
                raise KafkaAccessError(
                    f"cannot {what}: Kafka at {bootstrap} via {(security or PLAINTEXT).describe()}"
                    f": {found.cause}"
                    + ("" if found.final else f" (gave up after {timeout_s:g}s)"),
                    final=found.final,
                ) from exc
            log.warning("Kafka at %s: %s; retrying in %.1fs", bootstrap, found.cause, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        except KafkaError as exc:
            raise KafkaAccessError(f"cannot {what}: {explain(exc, bootstrap, security)}") from exc
