"""Is the local broker ready? A readiness probe (TCP connect, then a metadata request that lists
a broker), the wait for it after a start, and the diagnosis when it never answers."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from gpuledger.broker_config import BrokerError, BrokerPaths
from gpuledger.broker_process import START_BANNER, alive, children
from gpuledger.kafka_jars import tail_text
from pipeline.kafka_config import KafkaConfigError, KafkaSecurity, client_kwargs, load_kafka_config

log = logging.getLogger(__name__)


def _admin_client(
    cls: Any, bootstrap: str, timeout_s: float, security: KafkaSecurity | None = None
) -> Any:
    timeout_ms = max(1000, int(timeout_s * 1000))
    return cls(
        bootstrap_servers=bootstrap,
        client_id="gpuledger-broker",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        **client_kwargs(security),
    )


def client_security(paths: BrokerPaths) -> KafkaSecurity:
    try:
        return load_kafka_config(paths.client_properties)
    except KafkaConfigError as exc:
        raise BrokerError(f"the SASL_SSL client settings are unusable: {exc}") from exc


def answers(bootstrap: str, timeout_s: float, security: KafkaSecurity | None = None) -> bool:
    """One readiness probe: TCP connect, then a metadata request that lists a broker."""
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=min(timeout_s, 2.0)):
            pass
    except OSError:
        return False
    from kafka.admin import KafkaAdminClient

    try:
        admin = _admin_client(KafkaAdminClient, bootstrap, timeout_s, security)
    except Exception as exc:
        log.debug("Kafka at %s not ready: %r", bootstrap, exc)
        return False
    try:
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception as exc:
        log.debug("Kafka at %s not ready: %r", bootstrap, exc)
        return False
    finally:
        admin.close()


def wait_ready(
    bootstrap: str,
    deadline: float,
    paths: BrokerPaths,
    pid: int,
    security: KafkaSecurity | None = None,
) -> None:
    started = time.monotonic()
    while True:
        if not alive(pid):
            code = children[pid].returncode if pid in children else None
            how = f" with exit code {code}" if code is not None else ""
            raise BrokerError(
                f"the Kafka broker (pid {pid}) exited{how} before it answered on {bootstrap}."
                + _diagnosis(paths)
            )
        if answers(bootstrap, max(1.0, min(5.0, deadline - time.monotonic())), security):
            log.info("Kafka broker on %s answers (%.1fs)", bootstrap, time.monotonic() - started)
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"the Kafka broker (pid {pid}) did not answer on {bootstrap} in time."
                + _diagnosis(paths)
            )
        time.sleep(0.2)


def _diagnosis(paths: BrokerPaths) -> str:
    tail = _broker_log_tail(paths, 30)
    hints = []
    if "Address already in use" in tail or "BindException" in tail:
        hints.append("a port is taken by another process: choose other ports")
    if "OutOfMemoryError" in tail:
        hints.append("the heap is too small: raise BrokerSettings.heap")
    if "InconsistentClusterIdException" in tail or "meta.properties" in tail:
        hints.append(f"the storage in {paths.log_dirs} looks inconsistent: delete {paths.root}")
    hints.append(
        f"fix the cause above and start again; {paths.root} keeps topics and data "
        "(delete it for a fresh broker)"
    )
    hints.append(f"full log: {paths.logs / 'server.log'}")
    return f"\n--- last lines of {paths.broker_log} ---\n{tail}\n--- what to do ---\n" + "\n".join(
        f"- {h}" for h in hints
    )


def _broker_log_tail(paths: BrokerPaths, lines: int) -> str:
    try:
        with paths.broker_log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no broker.log)"
    banner = text.rfind(START_BANNER)
    if banner >= 0:
        text = text[banner:]
    return tail_text(text, lines)
