"""The topics of the contract (and their dead-letter twins), created if missing."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pipeline.errors import TransientError
from pipeline.kafka_config import KafkaAccessError, KafkaSecurity, client_kwargs
from pipeline.kafka_connect import connect
from pipeline.records import BY_TOPIC, KINDS, Kind

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 12
"""Partitions of each contract topic: the most ``ingest`` workers one consumer group can keep
busy (a partition is read by one worker of the group at a time)."""
DEFAULT_DLQ_PARTITIONS = 3
"""At most this many partitions per dead-letter topic: dead letters are few, and a flood from
a broken collector still spreads over more than one partition."""


def _prefixed(name: str, namespace: str) -> str:
    return f"{namespace}.{name}" if namespace else name


def topic_for(k: Kind, namespace: str = "") -> str:
    """The topic of a kind; a namespace (a site, a test) prefixes it: ``ns.gpu.samples.v1``."""
    return _prefixed(k.topic, namespace)


def dlq_topic_for(k: Kind, namespace: str = "") -> str:
    """The dead-letter topic of a kind (``Kind.dlq_topic``), prefixed like ``topic_for``."""
    return _prefixed(k.dlq_topic, namespace)


def kind_for_topic(topic: str, namespace: str = "") -> Kind:
    bare = topic[len(namespace) + 1 :] if namespace and topic.startswith(namespace + ".") else topic
    return BY_TOPIC[bare]


def contract_topics(namespace: str = "") -> list[str]:
    return [topic_for(k, namespace) for k in KINDS.values()]


def dlq_topics(namespace: str = "") -> list[str]:
    return [dlq_topic_for(k, namespace) for k in KINDS.values()]


def all_topics(namespace: str = "") -> list[str]:
    return contract_topics(namespace) + dlq_topics(namespace)


def ensure_topics(
    bootstrap: str,
    namespace: str = "",
    partitions: int = DEFAULT_PARTITIONS,
    timeout_s: float = 30.0,
    security: KafkaSecurity | None = None,
    dlq_partitions: int | None = None,
) -> None:
    """Create every contract topic (``partitions`` each) and its DLQ (``dlq_partitions``,
    default ``min(partitions, DEFAULT_DLQ_PARTITIONS)``) in ``namespace`` if they do not exist.

    Existing topics are left as they are: Kafka cannot remove partitions, and adding them is
    the operator's decision (a warning says how when a topic has fewer than asked)."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    dlq = min(partitions, DEFAULT_DLQ_PARTITIONS) if dlq_partitions is None else dlq_partitions
    wanted = {t: partitions for t in contract_topics(namespace)}
    wanted |= {t: dlq for t in dlq_topics(namespace)}
    create_topics(bootstrap, wanted, timeout_s, security)


class TopicError(TransientError, RuntimeError):
    """Topics could not be created (broker unreachable, invalid name, ...)."""


_TOPIC_ALREADY_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
_RETRIABLE_CREATE_ERRORS = {
    38,  # INVALID_REPLICATION_FACTOR: broker not registered with the controller yet
    7,  # REQUEST_TIMED_OUT
    41,  # NOT_CONTROLLER
}


def _remaining_ms(deadline: float) -> int:
    return max(1000, int((deadline - time.monotonic()) * 1000))


def _error_name(code: int) -> str:
    from kafka.errors import for_code

    try:
        return str(for_code(code).__name__)
    except Exception:
        return "unknown error"


def _connect_admin(
    bootstrap: str, timeout_s: float, security: KafkaSecurity | None
) -> KafkaAdminClient:
    """An admin client of ``bootstrap``, retried until ``timeout_s`` (``TopicError`` if none)."""
    from kafka.admin import KafkaAdminClient  # here: the CLI imports this module to start up

    timeout_ms = max(1000, int(timeout_s * 1000))

    def make(bootstrap_timeout_ms: int) -> KafkaAdminClient:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            request_timeout_ms=timeout_ms,
            **client_kwargs(security),
        )

    try:
        return connect(make, bootstrap, security, timeout_s, "create topics")
    except KafkaAccessError as exc:
        raise TopicError(str(exc)) from exc
    except Exception as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap} to create topics: {exc!r}") from exc


def _create_missing(
    admin: KafkaAdminClient, topics: dict[str, int], deadline: float, bootstrap: str
) -> None:
    """Ask for every topic; retry the ones refused with a retriable error until ``deadline``."""
    pending = dict(topics)
    while pending:
        request = {
            name: {"num_partitions": parts, "replication_factor": 1}
            for name, parts in pending.items()
        }
        response = admin.create_topics(
            request, timeout_ms=_remaining_ms(deadline), raise_errors=False
        )
        retry: dict[str, int] = {}
        for result in response["topics"]:
            name, code = result["name"], result["error_code"]
            if code in (0, _TOPIC_ALREADY_EXISTS):
                continue
            if code in _RETRIABLE_CREATE_ERRORS and time.monotonic() < deadline:
                retry[name] = pending[name]
                continue
            raise TopicError(
                f"creating topic {name!r} on {bootstrap} failed: error {code} "
                f"{result.get('error_message') or _error_name(code)}"
            )
        pending = retry
        if pending:
            time.sleep(0.5)


def _warn_fewer_partitions(admin: KafkaAdminClient, topics: dict[str, int], bootstrap: str) -> None:
    """A warning, with the command that adds them, for each topic with fewer partitions than
    asked."""
    for described in admin.describe_topics(list(topics)):
        name = described["name"]
        have = len(described.get("partitions") or [])
        if have < topics[name]:
            log.warning(
                "topic %s exists with %d partitions, fewer than the %d asked for; it is left "
                "as it is (at most %d workers of a group share it). To add partitions: "
                "kafka-topics.sh --bootstrap-server %s --alter --topic %s --partitions %d "
                "(records already published stay where they are; new records of a key may "
                "go to another partition)",
                name,
                have,
                topics[name],
                have,
                bootstrap,
                name,
                topics[name],
            )


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout_s: float = 30,
    security: KafkaSecurity | None = None,
) -> None:
    """Create ``{name: partitions}`` topics with replication factor 1 and wait for them.

    Topics that already exist are left as they are; one with fewer partitions than asked is
    logged as a warning with the ``kafka-topics`` command that adds them.
    Returns once every topic has a leader for each partition in the broker's metadata.
    """
    if not topics:
        return
    deadline = time.monotonic() + timeout_s
    admin = _connect_admin(bootstrap, timeout_s, security)
    try:
        _create_missing(admin, topics, deadline, bootstrap)
        admin.wait_for_topics(list(topics), timeout_ms=_remaining_ms(deadline))
        _warn_fewer_partitions(admin, topics, bootstrap)
    except TopicError:
        raise
    except Exception as exc:  # kafka-python raises its own error hierarchy
        raise TopicError(
            f"creating topics {sorted(topics)} on {bootstrap} failed: {exc!r}"
        ) from exc
    finally:
        admin.close()
