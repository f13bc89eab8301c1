"""The local broker's KRaft storage: formatted once per data dir with ``kafka.tools.StorageTool
format --standalone`` (and, for a secure broker, the SCRAM user added there)."""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid

from gpuledger import broker_tls
from gpuledger.broker_config import BrokerError, BrokerPaths
from gpuledger.kafka_jars import tail_text

log = logging.getLogger(__name__)


def is_formatted(paths: BrokerPaths) -> bool:
    return (paths.log_dirs / "meta.properties").is_file()


def new_cluster_id() -> str:
    # Same form as Kafka's Uuid.toString(): URL-safe base64, no padding; Kafka never hands out
    # ids starting with '-' (they would read as command-line options).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


def format_storage(
    java: str, classpath: str, paths: BrokerPaths, user: broker_tls.ScramUser | None = None
) -> None:
    cluster_id = new_cluster_id()
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
