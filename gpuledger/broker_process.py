"""The local broker as an operating-system process: finding Java, launching the detached
``java ... kafka.Kafka server.properties``, finding it again by its pid file or command line,
and stopping it (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from gpuledger.broker_config import HOST, BrokerError, BrokerPaths, BrokerSettings

log = logging.getLogger(__name__)

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
START_BANNER = "----- gpuledger: starting Kafka broker"

# Broker processes started by this interpreter, so that a dead child is reaped (and not seen as a
# live zombie) when its liveness is checked.
children: dict[int, subprocess.Popen[bytes]] = {}


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("'java' is not on PATH (and JAVA_HOME is unset); Kafka needs Java 17+")
    return java


def launch(java: str, classpath: str, paths: BrokerPaths, settings: BrokerSettings) -> int:
    """Start the broker detached (own session), appending its output to broker.log; its pid."""
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
            f"{START_BANNER} at {time.strftime('%Y-%m-%d %H:%M:%S')} "
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
    children[proc.pid] = proc
    return proc.pid


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like the JVM's server sockets: TIME_WAIT leftovers of a previous broker don't count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def running_pid(paths: BrokerPaths) -> int | None:
    """Pid of the live broker of this data_dir: from broker.pid, else found among processes."""
    try:
        pid: int | None = int(paths.pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and alive(pid) and _is_our_broker(pid, paths):
        return pid
    return _scan_for_broker(paths)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode("utf-8", errors="replace").split("\0")


def _is_our_broker(pid: int, paths: BrokerPaths) -> bool:
    args = _cmdline(pid)
    if args is None:  # no /proc (not Linux) or gone: trust the pid file if the process lives
        return not Path("/proc").is_dir() and alive(pid)
    return "kafka.Kafka" in args and str(paths.server_properties) in args


def _scan_for_broker(paths: BrokerPaths) -> int | None:
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return None
    for entry in proc_root.iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if _is_our_broker(pid, paths) and alive(pid):
                return pid
    return None


def alive(pid: int) -> bool:
    child = children.get(pid)
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


def send_signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    children.pop(pid, None)
    return True


def terminate(pid: int, timeout_s: float) -> None:
    send_signal(pid, signal.SIGTERM)
    if wait_dead(pid, timeout_s):
        return
    log.warning("broker pid %d ignored SIGTERM for %gs; sending SIGKILL", pid, timeout_s)
    send_signal(pid, signal.SIGKILL)
    if not wait_dead(pid, 15):
        raise BrokerError(f"broker pid {pid} survived SIGKILL for 15s")
