"""What the local broker is configured as: its settings, the layout of its data dir and the
``server.properties`` / ``log4j2.properties`` rendered there from the packaged recipe
(``gpuledger/deploy/kafka/``, see :func:`gpuledger.kafka_jars.deploy_dir`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gpuledger import broker_tls
from gpuledger.kafka_jars import deploy_dir
from pipeline.atomic import AtomicFile
from pipeline.errors import TransientError

HOST = "127.0.0.1"


class BrokerError(TransientError, RuntimeError):
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
        return BrokerPaths.of(self).client_properties


@dataclass(frozen=True)
class BrokerPaths:
    """The files and folders in a broker's data dir (see :mod:`gpuledger.broker`)."""

    root: Path

    @classmethod
    def of(cls, settings: BrokerSettings) -> BrokerPaths:
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


def write_config(
    paths: BrokerPaths, settings: BrokerSettings, tls: broker_tls.TlsMaterial | None = None
) -> None:
    """Render the recipe's templates for ``settings`` into the data dir."""
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
    write_atomic(paths.server_properties, rendered, private=tls is not None)
    write_atomic(paths.log4j, log4j)


def configured_bootstrap(paths: BrokerPaths) -> str | None:
    """The PLAINTEXT listener of the config the running broker was started with."""
    return configured_listener(paths, "PLAINTEXT")


def configured_listener(paths: BrokerPaths, name: str) -> str | None:
    """HOST:PORT of listener ``name`` in the config the running broker was started with."""
    try:
        text = paths.server_properties.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(
        rf"^listeners=(?:.*,)?{re.escape(name)}://([^:,\s]+):(\d+)", text, re.MULTILINE
    )
    return f"{match.group(1)}:{match.group(2)}" if match else None


def write_atomic(path: Path, text: str, private: bool = False) -> None:
    """Put ``text`` in ``path`` whole (``pipeline.atomic.AtomicFile``): mode 0600 if
    ``private``, else 0644 less the umask."""
    with AtomicFile(path, private=private) as f:
        if not private:  # AtomicFile creates it 0666 less the umask
            fd = f.fh.fileno()
            os.fchmod(fd, os.fstat(fd).st_mode & 0o644)
        f.fh.write(text)
