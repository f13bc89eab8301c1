"""Local single-node Apache Kafka broker, assembled from Maven Central jars.

No Docker and no Apache download site: the recipe's ``pom.xml`` (package data in
``gpuledger/deploy/kafka/``) lists the broker artifacts,
Maven copies their runtime closure into a cache folder once (:func:`ensure_jars`), and the
broker runs as a detached ``java ... kafka.Kafka server.properties`` process (KRaft, combined
broker + controller, bound to 127.0.0.1) that outlives the Python process that started it.

Layout of ``BrokerSettings.data_dir``::

    server.properties, log4j2.properties   written on every start from the recipe
    kraft-combined-logs/                    log.dirs (formatted once; holds topics and data)
    logs/server.log                         broker log at INFO (rolled)
    broker.log                              JVM stdout/stderr: WARN+ lines, crashes
    broker.pid                              pid of the running broker
    tls/, client.properties                 with ``secure=True`` (``kafka start --secure``): the
                                            SASL_SSL listener's CA and keystore, and the client
                                            settings of its SCRAM user (``broker_tls``)

The work is split by responsibility: :mod:`gpuledger.broker_config` (settings, data-dir
layout, rendered config), :mod:`gpuledger.broker_storage` (formatting the KRaft storage),
:mod:`gpuledger.broker_process` (launching, finding and stopping the JVM),
:mod:`gpuledger.broker_probe` (readiness) and :mod:`gpuledger.kafka_jars` (the jars); this
module is the interface the rest of the project uses.

Typical use::

    settings = BrokerSettings(port=9092)
    bootstrap = start(settings)             # "127.0.0.1:9092"
    pipeline.topics.ensure_topics(bootstrap)   # topic creation lives with the transport
    ...
    stop(settings)
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from gpuledger import broker_tls, kafka_jars
from gpuledger.broker_config import (
    HOST,
    BrokerError,
    BrokerPaths,
    BrokerSettings,
    configured_bootstrap,
    configured_listener,
    write_atomic,
    write_config,
)
from gpuledger.broker_probe import answers, client_security, wait_ready
from gpuledger.broker_process import (
    alive,
    find_java,
    launch,
    port_free,
    running_pid,
    send_signal,
    terminate,
    wait_dead,
)
from gpuledger.broker_storage import format_storage, is_formatted
from gpuledger.kafka_jars import file_lock

__all__ = [
    "HOST",
    "BrokerError",
    "BrokerSettings",
    "BrokerStatus",
    "ensure_jars",
    "kill",
    "restart",
    "start",
    "status",
    "stop",
    "wait_until_answers",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str | None
    answers: bool
    secure_bootstrap: str | None = None
    """The SASL_SSL listener, when the broker was started with ``secure``."""
    client_properties: Path | None = None
    secure_answers: bool | None = None


def ensure_jars(settings: BrokerSettings) -> Path:
    """The broker's jar folder in ``settings.cache_dir`` (fetched once; see kafka_jars)."""
    return kafka_jars.ensure_jars(settings.cache_dir)


# --------------------------------------------------------------------------------------------
# Start / stop / status


def start(settings: BrokerSettings, timeout_s: float = 90) -> str:
    """Start the broker for ``settings.data_dir`` (if needed) and return its bootstrap address.

    Returns once the broker answers a metadata request. An already running broker of the same
    data_dir is reused. Storage is formatted on the first start only, so topics and data survive
    :func:`stop` / :func:`kill` and a later start. The broker is detached (own session); it keeps
    running after this Python process exits.
    """
    paths = BrokerPaths.of(settings)
    paths.root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with file_lock(paths.lock):
        pid = running_pid(paths)
        if pid is not None:
            return _reuse(paths, settings, pid, deadline)
        paths.pid_file.unlink(missing_ok=True)
        java, classpath = _prepare(paths, settings)
        pid = launch(java, classpath, paths, settings)
        write_atomic(paths.pid_file, f"{pid}\n")
        log.info("started Kafka broker pid %d for %s", pid, paths.root)
        try:
            wait_ready(settings.bootstrap, deadline, paths, pid)
            if settings.secure:
                wait_ready(settings.secure_bootstrap, deadline, paths, pid, client_security(paths))
        except BrokerError:
            if alive(pid):
                terminate(pid, 10)
            paths.pid_file.unlink(missing_ok=True)
            raise
        return settings.bootstrap


def _reuse(paths: BrokerPaths, settings: BrokerSettings, pid: int, deadline: float) -> str:
    """The bootstrap address of the running broker ``pid`` of this data dir, once it answers."""
    bootstrap = configured_bootstrap(paths) or settings.bootstrap
    if settings.secure and configured_listener(paths, "SASL_SSL") is None:
        raise BrokerError(
            f"the broker of {paths.root} (pid {pid}) is running without the SASL_SSL "
            "listener; stop it ('gpuledger kafka stop') and start it with --secure"
        )
    if bootstrap != settings.bootstrap:
        log.warning(
            "broker of %s is already running on %s (asked for %s); reusing it",
            paths.root,
            bootstrap,
            settings.bootstrap,
        )
    try:
        wait_ready(bootstrap, deadline, paths, pid)
    except BrokerError as exc:
        raise BrokerError(
            f"{exc}\nThe broker of {paths.root} (pid {pid}) is running but does not "
            "answer; stop it ('gpuledger kafka stop' or gpuledger.broker.stop) and start "
            "again."
        ) from exc
    log.info("broker of %s already running (pid %d) on %s", paths.root, pid, bootstrap)
    return bootstrap


def _prepare(paths: BrokerPaths, settings: BrokerSettings) -> tuple[str, str]:
    """Jars, Java, free ports, TLS material, rendered config and formatted storage for a start;
    returns the java executable and the classpath."""
    libs = ensure_jars(settings)
    java = find_java()
    for port in (settings.port, settings.controller) + (
        (settings.sasl_port,) if settings.secure else ()
    ):
        if not port_free(port):
            raise BrokerError(
                f"port {port} on {HOST} is already in use by another process (not a broker "
                f"of {paths.root}). Stop that process, or choose other ports "
                f"(BrokerSettings(port=..., controller_port=..., secure_port=...); the "
                f"broker uses port, controller_port (default port+1) and, secure, "
                f"secure_port (default port+2))."
            )
    tls = None
    if settings.secure:
        try:
            tls = broker_tls.ensure_tls(paths.tls, broker_tls.find_keytool(java))
        except broker_tls.TlsError as exc:
            raise BrokerError(f"cannot make the TLS material in {paths.tls}: {exc}") from exc
    write_config(paths, settings, tls)
    classpath = str(libs / "*")
    if not is_formatted(paths):
        user = broker_tls.new_scram_user() if tls is not None else None
        format_storage(java, classpath, paths, user)
        if user is not None and tls is not None:
            broker_tls.write_client_properties(
                paths.client_properties, user, tls.ca_pem, settings.secure_bootstrap
            )
    elif tls is not None and not paths.client_properties.is_file():
        raise BrokerError(
            f"{paths.root} was formatted without --secure (or {paths.client_properties} "
            "was removed): the SCRAM user is created when the storage is formatted. Use "
            f"another --data-dir for a secure broker, or delete {paths.root} (its topics "
            "and data go with it)."
        )
    return java, classpath


def stop(settings: BrokerSettings, timeout_s: float = 30) -> bool:
    """Stop the broker of ``settings.data_dir``: SIGTERM (controlled shutdown), then SIGKILL.

    Returns whether a running broker was stopped.
    """
    paths = BrokerPaths.of(settings)
    pid = running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    log.info("stopping Kafka broker pid %d (%s)", pid, paths.root)
    terminate(pid, timeout_s)
    paths.pid_file.unlink(missing_ok=True)
    return True


def kill(settings: BrokerSettings) -> bool:
    """SIGKILL the broker of ``settings.data_dir`` (an unclean crash); returns whether one ran.

    The next :func:`start` recovers the logs and keeps the data written before the kill.
    """
    paths = BrokerPaths.of(settings)
    pid = running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    log.info("killing Kafka broker pid %d (%s)", pid, paths.root)
    send_signal(pid, signal.SIGKILL)
    if not wait_dead(pid, 15):
        raise BrokerError(f"broker pid {pid} survived SIGKILL for 15s")
    paths.pid_file.unlink(missing_ok=True)
    return True


def restart(settings: BrokerSettings, timeout_s: float = 90) -> str:
    """Stop (if running) and start again on the same data_dir; topics and data are kept."""
    stop(settings)
    return start(settings, timeout_s)


def status(settings: BrokerSettings) -> BrokerStatus:
    """Whether the broker of ``settings.data_dir`` runs, and whether it answers metadata."""
    paths = BrokerPaths.of(settings)
    pid = running_pid(paths)
    if pid is None:
        return BrokerStatus(running=False, pid=None, bootstrap=None, answers=False)
    bootstrap = configured_bootstrap(paths) or settings.bootstrap
    secure = configured_listener(paths, "SASL_SSL")
    security = client_security(paths) if secure else None
    return BrokerStatus(
        running=True,
        pid=pid,
        bootstrap=bootstrap,
        answers=answers(bootstrap, 5),
        secure_bootstrap=secure,
        client_properties=paths.client_properties if secure else None,
        secure_answers=None if secure is None else answers(secure, 5, security),
    )


# --------------------------------------------------------------------------------------------
# Client-side helpers


def wait_until_answers(bootstrap: str, timeout_s: float) -> None:
    """Block until the broker at ``bootstrap`` answers a metadata request; BrokerError if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        if answers(bootstrap, max(1.0, min(5.0, deadline - time.monotonic()))):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout_s:g}s")
        time.sleep(0.2)
