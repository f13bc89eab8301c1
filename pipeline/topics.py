"""The topics of the contract (and their dead-letter twins), created if missing."""

from __future__ import annotations

import contextlib
import logging
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.records import KINDS

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4


def contract_topics() -> list[str]:
    return [k.topic for k in KINDS.values()]


def all_topics() -> list[str]:
    return contract_topics() + [k.dlq_topic for k in KINDS.values()]


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create the given topics (default: every contract topic and DLQ) if they do not exist."""
    wanted = topics or {t: DEFAULT_PARTITIONS for t in all_topics()}
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, bootstrap_timeout_ms=int(timeout_s * 1000)
    )
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, n, 1) for t, n in wanted.items() if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
        deadline = time.monotonic() + timeout_s
        while not set(wanted) <= set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise KafkaError(f"topics {sorted(wanted)} not visible after {timeout_s}s")
            time.sleep(0.2)
    finally:
        admin.close()
