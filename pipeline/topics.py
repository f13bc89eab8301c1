"""The topics of the contract (and their dead-letter twins), created if missing."""

from __future__ import annotations

import contextlib
import logging
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.records import BY_TOPIC, KINDS, Kind

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4


def topic_for(k: Kind, namespace: str = "") -> str:
    """The topic of a kind; a namespace (a site, a test) prefixes it: ``ns.gpu.samples.v1``."""
    return f"{namespace}.{k.topic}" if namespace else k.topic


def kind_for_topic(topic: str, namespace: str = "") -> Kind:
    bare = topic[len(namespace) + 1 :] if namespace and topic.startswith(namespace + ".") else topic
    return BY_TOPIC[bare]


def contract_topics(namespace: str = "") -> list[str]:
    return [topic_for(k, namespace) for k in KINDS.values()]


def all_topics(namespace: str = "") -> list[str]:
    topics = contract_topics(namespace)
    return topics + [f"{t}.dlq" for t in topics]


def ensure_topics(
    bootstrap: str,
    namespace: str = "",
    partitions: int = DEFAULT_PARTITIONS,
    timeout_s: float = 30.0,
) -> None:
    """Create every contract topic and its DLQ (in ``namespace``) if they do not exist."""
    wanted = {t: partitions for t in all_topics(namespace)}
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
