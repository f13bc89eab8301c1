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

Typical use::

    settings = BrokerSettings(port=9092)
    bootstrap = start(settings)             # "127.0.0.1:9092"
    pipeline.topics.ensure_topics(bootstrap)   # topic creation lives with the transport
    ...
    stop(settings)
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuledger import broker_tls, kafka_jars
from gpuledger.kafka_jars import deploy_dir, file_lock, tail_text
from pipeline.kafka_config import KafkaConfigError, KafkaSecurity, client_kwargs, load_kafka_config

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# Kafka's own G1 settings (bin/kafka-run-class.sh KAFKA_JVM_PERFORMANCE_OPTS).
JVM_PERFORMANCE_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
)
_START_BANNER = "----- gpuledger: starting Kafka broker"

# Broker processes started by this interpreter, so that a dead child is reaped (and not seen as a
# live zombie) when its liveness is checked.
_children: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The local broker could not be provisioned, started, stopped or reached."""


def _default_cache_dir() -> Path:
    return Path(os.environ.get("GPULEDGER_CACHE", "~/.cache/gpuledger")).expanduser()


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how the local broker runs. Ports are on 127.0.0.1."""

    port: int = 9092
    controller_port: int | None = None  # None: port + 1
    data_dir: Path = Path(".gpuledger/kafka")
    heap: str = "512m"  # -Xms and -Xmx
    cache_dir: Path = field(default_factory=_default_cache_dir)
    secure: bool = False
    """Also a SASL_SSL listener (SCRAM-SHA-512) on ``secure_port``; see ``broker_tls``."""
    secure_port: int | None = None  # None: port + 2

    def __post_init__(self) -> None:
        ports = [("port", self.port), ("controller_port", self.controller)]
        if self.secure:
            ports.append(("secure_port", self.sasl_port))
        for name, value in ports:
            if not 0 < value < 65536:
                raise ValueError(f"{name} must be in 1..65535, got {value}")
        if self.controller == self.port:
            raise ValueError(f"controller_port must differ from port ({self.port})")
        if self.secure and self.sasl_port in (self.port, self.controller):
            raise ValueError(
                f"secure_port ({self.sasl_port}) must differ from port and controller_port"
            )
        if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", self.heap):
            raise ValueError(f"heap must look like 512m or 1g, got {self.heap!r}")

    @property
    def controller(self) -> int:
        """The KRaft controller listener port."""
        return self.controller_port if self.controller_port is not None else self.port + 1

    @property
    def sasl_port(self) -> int:
        """The SASL_SSL listener port (with ``secure``)."""
        return self.secure_port if self.secure_port is not None else self.port + 2

    @property
    def bootstrap(self) -> str:
        """bootstrap_servers for clients of a broker started with these settings."""
        return f"{HOST}:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        """bootstrap_servers of the SASL_SSL listener (with ``secure``)."""
        return f"{HOST}:{self.sasl_port}"

    @property
    def client_properties(self) -> Path:
        """The client settings (``--kafka-config``) of the SASL_SSL listener's user."""
        return _Paths.of(self).client_properties


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


@dataclass(frozen=True)
class _Paths:
    root: Path

    @classmethod
    def of(cls, settings: BrokerSettings) -> _Paths:
        return cls(settings.data_dir.expanduser().resolve())

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def log_dirs(self) -> Path:
        return self.root / "kraft-combined-logs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def broker_log(self) -> Path:
        return self.root / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def lock(self) -> Path:
        return self.root / ".broker.lock"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def client_properties(self) -> Path:
        return self.root / "client.properties"


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
    paths = _Paths.of(settings)
    paths.root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with file_lock(paths.lock):
        pid = _running_pid(paths)
        if pid is not None:
            bootstrap = _configured_bootstrap(paths) or settings.bootstrap
            if settings.secure and _configured_listener(paths, "SASL_SSL") is None:
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
                _wait_ready(bootstrap, deadline, paths, pid)
            except BrokerError as exc:
                raise BrokerError(
                    f"{exc}\nThe broker of {paths.root} (pid {pid}) is running but does not "
                    "answer; stop it ('gpuledger kafka stop' or gpuledger.broker.stop) and start "
                    "again."
                ) from exc
            log.info("broker of %s already running (pid %d) on %s", paths.root, pid, bootstrap)
            return bootstrap
        paths.pid_file.unlink(missing_ok=True)

        libs = ensure_jars(settings)
        java = _find_java()
        for port in (settings.port, settings.controller) + (
            (settings.sasl_port,) if settings.secure else ()
        ):
            if not _port_free(port):
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
        _write_config(paths, settings, tls)
        classpath = str(libs / "*")
        if not _is_formatted(paths):
            user = broker_tls.new_scram_user() if tls is not None else None
            _format_storage(java, classpath, paths, user)
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

        cmd = [
            java,
            f"-Xms{settings.heap}",
            f"-Xmx{settings.heap}",
            *JVM_PERFORMANCE_OPTS,
            f"-Dlog4j2.configurationFile={paths.log4j}",
            f"-Dkafka.logs.dir={paths.logs}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(paths.server_properties),
        ]
        with paths.broker_log.open("ab") as out:
            out.write(
                f"{_START_BANNER} at {time.strftime('%Y-%m-%d %H:%M:%S')} "
                f"on {settings.bootstrap} -----\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=paths.root,
                start_new_session=True,
                close_fds=True,
            )
        _children[proc.pid] = proc
        _write_atomic(paths.pid_file, f"{proc.pid}\n")
        log.info("started Kafka broker pid %d for %s", proc.pid, paths.root)
        try:
            _wait_ready(settings.bootstrap, deadline, paths, proc.pid)
            if settings.secure:
                _wait_ready(
                    settings.secure_bootstrap,
                    deadline,
                    paths,
                    proc.pid,
                    _client_security(paths),
                )
        except BrokerError:
            if _alive(proc.pid):
                _terminate(proc.pid, 10)
            paths.pid_file.unlink(missing_ok=True)
            raise
        return settings.bootstrap


def stop(settings: BrokerSettings, timeout_s: float = 30) -> bool:
    """Stop the broker of ``settings.data_dir``: SIGTERM (controlled shutdown), then SIGKILL.

    Returns whether a running broker was stopped.
    """
    paths = _Paths.of(settings)
    pid = _running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    log.info("stopping Kafka broker pid %d (%s)", pid, paths.root)
    _terminate(pid, timeout_s)
    paths.pid_file.unlink(missing_ok=True)
    return True


def kill(settings: BrokerSettings) -> bool:
    """SIGKILL the broker of ``settings.data_dir`` (an unclean crash); returns whether one ran.

    The next :func:`start` recovers the logs and keeps the data written before the kill.
    """
    paths = _Paths.of(settings)
    pid = _running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    log.info("killing Kafka broker pid %d (%s)", pid, paths.root)
    _signal(pid, signal.SIGKILL)
    if not _wait_dead(pid, 15):
        raise BrokerError(f"broker pid {pid} survived SIGKILL for 15s")
    paths.pid_file.unlink(missing_ok=True)
    return True


def restart(settings: BrokerSettings, timeout_s: float = 90) -> str:
    """Stop (if running) and start again on the same data_dir; topics and data are kept."""
    stop(settings)
    return start(settings, timeout_s)


def status(settings: BrokerSettings) -> BrokerStatus:
    """Whether the broker of ``settings.data_dir`` runs, and whether it answers metadata."""
    paths = _Paths.of(settings)
    pid = _running_pid(paths)
    if pid is None:
        return BrokerStatus(running=False, pid=None, bootstrap=None, answers=False)
    bootstrap = _configured_bootstrap(paths) or settings.bootstrap
    secure = _configured_listener(paths, "SASL_SSL")
    security = _client_security(paths) if secure else None
    return BrokerStatus(
        running=True,
        pid=pid,
        bootstrap=bootstrap,
        answers=_answers(bootstrap, 5),
        secure_bootstrap=secure,
        client_properties=paths.client_properties if secure else None,
        secure_answers=None if secure is None else _answers(secure, 5, security),
    )


# --------------------------------------------------------------------------------------------
# Client-side helpers


def wait_until_answers(bootstrap: str, timeout_s: float) -> None:
    """Block until the broker at ``bootstrap`` answers a metadata request; BrokerError if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        if _answers(bootstrap, max(1.0, min(5.0, deadline - time.monotonic()))):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout_s:g}s")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# Internals


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


def _client_security(paths: _Paths) -> KafkaSecurity:
    try:
        return load_kafka_config(paths.client_properties)
    except KafkaConfigError as exc:
        raise BrokerError(f"the SASL_SSL client settings are unusable: {exc}") from exc


def _answers(bootstrap: str, timeout_s: float, security: KafkaSecurity | None = None) -> bool:
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


def _wait_ready(
    bootstrap: str,
    deadline: float,
    paths: _Paths,
    pid: int,
    security: KafkaSecurity | None = None,
) -> None:
    started = time.monotonic()
    while True:
        if not _alive(pid):
            code = _children[pid].returncode if pid in _children else None
            how = f" with exit code {code}" if code is not None else ""
            raise BrokerError(
                f"the Kafka broker (pid {pid}) exited{how} before it answered on {bootstrap}."
                + _diagnosis(paths)
            )
        if _answers(bootstrap, max(1.0, min(5.0, deadline - time.monotonic())), security):
            log.info("Kafka broker on %s answers (%.1fs)", bootstrap, time.monotonic() - started)
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"the Kafka broker (pid {pid}) did not answer on {bootstrap} in time."
                + _diagnosis(paths)
            )
        time.sleep(0.2)


def _diagnosis(paths: _Paths) -> str:
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


def _broker_log_tail(paths: _Paths, lines: int) -> str:
    try:
        with paths.broker_log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no broker.log)"
    banner = text.rfind(_START_BANNER)
    if banner >= 0:
        text = text[banner:]
    return tail_text(text, lines)


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("'java' is not on PATH (and JAVA_HOME is unset); Kafka needs Java 17+")
    return java


def _write_config(
    paths: _Paths, settings: BrokerSettings, tls: broker_tls.TlsMaterial | None = None
) -> None:
    source = deploy_dir()
    try:
        template = (source / "server.properties").read_text(encoding="utf-8")
        log4j = (source / "log4j2.properties").read_text(encoding="utf-8")
        secure = (source / "secure.properties").read_text(encoding="utf-8") if tls else ""
    except OSError as exc:
        raise BrokerError(f"cannot read the broker config templates in {source}: {exc}") from exc
    listener = f",SASL_SSL://{HOST}:{settings.sasl_port}" if tls else ""
    rendered = (
        template.replace("@PORT@", str(settings.port))
        .replace("@CONTROLLER_PORT@", str(settings.controller))
        .replace("@LOG_DIRS@", str(paths.log_dirs))
        .replace("@SECURE_LISTENER@", listener)
        .replace("@SECURE_PROTOCOL@", ",SASL_SSL:SASL_SSL" if tls else "")
    )
    if tls is not None:
        rendered += "\n" + (
            secure.replace("@KEYSTORE@", str(tls.keystore))
            .replace("@TRUSTSTORE@", str(tls.truststore))
            .replace("@STORE_PASSWORD@", tls.store_password)
        )
    leftover = re.search(r"@[A-Z_]+@", rendered)
    if leftover:
        raise BrokerError(f"unknown placeholder {leftover.group(0)} in {source}/server.properties")
    paths.logs.mkdir(parents=True, exist_ok=True)
    _write_atomic(paths.server_properties, rendered, private=tls is not None)
    _write_atomic(paths.log4j, log4j)


def _configured_bootstrap(paths: _Paths) -> str | None:
    """The PLAINTEXT listener of the config the running broker was started with."""
    return _configured_listener(paths, "PLAINTEXT")


def _configured_listener(paths: _Paths, name: str) -> str | None:
    """HOST:PORT of listener ``name`` in the config the running broker was started with."""
    try:
        text = paths.server_properties.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(
        rf"^listeners=(?:.*,)?{re.escape(name)}://([^:,\s]+):(\d+)", text, re.MULTILINE
    )
    return f"{match.group(1)}:{match.group(2)}" if match else None


def _is_formatted(paths: _Paths) -> bool:
    return (paths.log_dirs / "meta.properties").is_file()


def _new_cluster_id() -> str:
    # Same form as Kafka's Uuid.toString(): URL-safe base64, no padding; Kafka never hands out
    # ids starting with '-' (they would read as command-line options).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


def _format_storage(
    java: str, classpath: str, paths: _Paths, user: broker_tls.ScramUser | None = None
) -> None:
    cluster_id = _new_cluster_id()
    scram = ["--add-scram", user.format_arg()] if user is not None else []
    cmd = [
        java,
        "-Xmx256m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.log4j}",
        f"-Dkafka.logs.dir={paths.logs}",
        "-cp",
        classpath,
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(paths.server_properties),
        *scram,
    ]
    log.info("formatting Kafka storage %s (cluster id %s)", paths.log_dirs, cluster_id)
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"formatting {paths.log_dirs} did not finish in 120s") from exc
    if proc.returncode != 0:
        output = tail_text(proc.stdout + proc.stderr, 30)
        if user is not None:
            output = output.replace(user.password, "***")
        raise BrokerError(
            f"formatting the Kafka storage {paths.log_dirs} failed (exit {proc.returncode}):\n"
            f"{output}\nIf this data dir is from an older or broken setup, delete {paths.root}."
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like the JVM's server sockets: TIME_WAIT leftovers of a previous broker don't count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _running_pid(paths: _Paths) -> int | None:
    """Pid of the live broker of this data_dir: from broker.pid, else found among processes."""
    try:
        pid: int | None = int(paths.pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and _alive(pid) and _is_our_broker(pid, paths):
        return pid
    return _scan_for_broker(paths)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode("utf-8", errors="replace").split("\0")


def _is_our_broker(pid: int, paths: _Paths) -> bool:
    args = _cmdline(pid)
    if args is None:  # no /proc (not Linux) or gone: trust the pid file if the process lives
        return not Path("/proc").is_dir() and _alive(pid)
    return "kafka.Kafka" in args and str(paths.server_properties) in args


def _scan_for_broker(paths: _Paths) -> int | None:
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return None
    for entry in proc_root.iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if _is_our_broker(pid, paths) and _alive(pid):
                return pid
    return None


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    _children.pop(pid, None)
    return True


def _terminate(pid: int, timeout_s: float) -> None:
    _signal(pid, signal.SIGTERM)
    if _wait_dead(pid, timeout_s):
        return
    log.warning("broker pid %d ignored SIGTERM for %gs; sending SIGKILL", pid, timeout_s)
    _signal(pid, signal.SIGKILL)
    if not _wait_dead(pid, 15):
        raise BrokerError(f"broker pid {pid} survived SIGKILL for 15s")


def _write_atomic(path: Path, text: str, private: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    if private:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)
