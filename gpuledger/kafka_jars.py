"""The local broker's jars: Apache Kafka assembled from Maven Central (``pom.xml`` of the
broker recipe, package data in ``gpuledger/deploy/kafka/``).

Maven copies the pom's runtime closure into ``<cache>/kafka-<version>/libs`` once; a marker
holding the pom's sha256 is written only after a complete copy, so a partial download or a
changed pom is fetched again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from pipeline.errors import TerminalError

log = logging.getLogger(__name__)

JAR_MARKER = ".gpuledger-complete"
MVN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


class JarError(TerminalError, RuntimeError):
    """The broker jars could not be found or fetched."""


def deploy_dir() -> Path:
    """The folder with pom.xml, server.properties, log4j2.properties and secure.properties.

    The default is the package data folder ``gpuledger/deploy/kafka`` (found with
    importlib.resources, so an installed wheel finds it too); ``$GPULEDGER_KAFKA_DEPLOY``
    overrides it.
    """
    override = os.environ.get("GPULEDGER_KAFKA_DEPLOY")
    if override:
        return Path(override).expanduser().resolve()
    recipe = resources.files("gpuledger") / "deploy" / "kafka"
    if not isinstance(recipe, Path):
        raise JarError(
            f"the broker recipe {recipe} is not a folder on disk (gpuledger installed as a zip?); "
            "set GPULEDGER_KAFKA_DEPLOY to a folder holding pom.xml and the .properties files"
        )
    return recipe


def kafka_version() -> str:
    """The Kafka version pinned in the recipe's pom.xml (``<kafka.version>``)."""
    pom = deploy_dir() / "pom.xml"
    try:
        text = pom.read_text(encoding="utf-8")
    except OSError as exc:
        raise JarError(f"cannot read {pom}: {exc}") from exc
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", text)
    if match is None:
        raise JarError(f"{pom} has no <kafka.version> property")
    return match.group(1)


def ensure_jars(cache_dir: Path) -> Path:
    """Fetch the broker jars into ``<cache_dir>/kafka-<version>/libs`` (once) and return it.

    A marker file (holding the pom's sha256) is written only after a complete copy, so a broken
    or partial download, or a changed pom, is fetched again. Needs ``mvn`` on PATH the first time.
    """
    pom = deploy_dir() / "pom.xml"
    version = kafka_version()
    pom_hash = hashlib.sha256(pom.read_bytes()).hexdigest()
    root = cache_dir.expanduser() / f"kafka-{version}"
    libs = root / "libs"
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        if _jars_complete(libs, pom_hash):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise JarError(
                "Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka "
                f"{version} jars from Maven Central into {libs}. Install it (e.g. "
                "'apt-get install maven') or copy an existing libs folder there together "
                f"with a {JAR_MARKER} file."
            )
        partial = root / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        log.info("fetching Kafka %s jars from Maven Central into %s", version, libs)
        started = time.monotonic()
        _fetch(mvn, pom, version, partial)
        (partial / JAR_MARKER).write_text(pom_hash + "\n", encoding="utf-8")
        partial.rename(libs)
        log.info(
            "fetched %d jars in %.1fs", len(list(libs.glob("*.jar"))), time.monotonic() - started
        )
        return libs


def _fetch(mvn: str, pom: Path, version: str, partial: Path) -> None:
    """Maven's copy of the pom's runtime closure into ``partial``; JarError if incomplete."""
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"{MVN_DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800
        )
    except subprocess.TimeoutExpired as exc:
        raise JarError(f"Maven did not finish fetching the Kafka jars in {exc.timeout}s") from exc
    if proc.returncode != 0:
        output = tail_text((proc.stdout or "") + (proc.stderr or ""), 40)
        raise JarError(
            f"fetching the Kafka {version} jars failed (mvn exit {proc.returncode}).\n"
            f"command: {' '.join(cmd)}\n{output}\n"
            "Check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml) "
            f"and that version {version} exists."
        )
    missing = [
        name
        for name in (f"kafka_2.13-{version}.jar", "log4j-slf4j-impl-")
        if not any(p.name.startswith(name) for p in partial.glob("*.jar"))
    ]
    if missing:
        raise JarError(f"Maven finished but {partial} lacks {missing}; see {pom}")


def _jars_complete(libs: Path, pom_hash: str) -> bool:
    try:
        return (libs / JAR_MARKER).read_text(encoding="utf-8").strip() == pom_hash
    except OSError:
        return False


def tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (concurrent start()s / jar fetches of the same folder)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
