"""How every gpuledger Kafka client connects: security protocol, SASL and TLS settings.

One ``KafkaSecurity`` is built from a client properties file (``--kafka-config FILE``) with the
standard client property names::

    security.protocol=SASL_SSL
    sasl.mechanism=SCRAM-SHA-512
    sasl.username=gpuledger
    sasl.password=${KAFKA_PASSWORD}
    ssl.ca.location=/etc/gpuledger/ca.pem

``${NAME}`` is replaced by the environment variable NAME (an unset one is an error naming it),
so secrets need not be written in the file. Relative file paths are relative to the
properties file's folder. ``client_kwargs()`` gives the keyword arguments of kafka-python's
``KafkaProducer`` / ``KafkaConsumer`` / ``KafkaAdminClient``; without a file every client is
PLAINTEXT, as before. The password never appears in ``repr``/``str`` or in any message.

``connect`` makes a client, retrying while the broker may be down or starting; when an attempt
fails, ``diagnose`` (``pipeline.kafka_probe``) finds why (refused, TLS, SASL mechanism,
credentials) and a cause that retrying cannot fix raises ``KafkaAccessError`` at once: one
message naming the bootstrap, the protocol and mechanism, and the cause.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import TerminalError, TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MASK = "***"

# property name -> KafkaSecurity field
_KEYS = {
    "security.protocol": "protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.username": "username",
    "sasl.password": "password",
    "ssl.ca.location": "ssl_ca",
    "ssl.certificate.location": "ssl_cert",
    "ssl.key.location": "ssl_key",
    "ssl.key.password": "ssl_key_password",
    "ssl.endpoint.identification.algorithm": "ssl_endpoint_identification",
}
_HINTS = {
    "bootstrap.servers": "give the bootstrap with --kafka HOST:PORT",
    "sasl.jaas.config": "use sasl.username and sasl.password",
    "ssl.truststore.location": "give the CA certificate as PEM with ssl.ca.location",
    "ssl.keystore.location": "give ssl.certificate.location and ssl.key.location (PEM)",
}
_ENV = re.compile(r"\$\{([^}]*)\}")


class KafkaConfigError(TerminalError, ValueError):
    """A client properties file that cannot be used (the message names file and line)."""


class KafkaAccessError(TransientError, RuntimeError):
    """A Kafka client could not connect or authenticate (bootstrap and mechanism named).

    Transient by type: the broker may be away. ``final`` says when the cause is in the
    settings instead, so that waiting longer in this run cannot help."""

    def __init__(self, message: str, final: bool = True) -> None:
        super().__init__(message)
        self.final = final
        """The cause is in the settings (TLS, SASL, protocol), not a broker that is away."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Security settings of a Kafka client; the default is PLAINTEXT (no TLS, no SASL)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ssl_ca: Path | None = None
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    ssl_key_password: str | None = None
    ssl_endpoint_identification: str = "https"
    """``https`` (default): the broker certificate must name the host; empty or ``none``: not
    checked (the chain still is)."""
    source: Path | None = None
    """The properties file these settings came from (for messages)."""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"security.protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}"
            )
        if self.sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(
                    f"security.protocol {self.protocol} needs sasl.mechanism, one of "
                    f"{', '.join(SASL_MECHANISMS)} (got {self.sasl_mechanism!r})"
                )
            if not self.username or self.password is None:
                raise ValueError(
                    f"sasl.mechanism {self.sasl_mechanism} needs sasl.username and sasl.password"
                )
        if self.ssl_key is not None and self.ssl_cert is None:
            raise ValueError("ssl.key.location needs ssl.certificate.location")
        if self.ssl_endpoint_identification.lower() not in ("https", "", "none"):
            raise ValueError(
                "ssl.endpoint.identification.algorithm must be https, none or empty, not "
                f"{self.ssl_endpoint_identification!r}"
            )

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """The protocol and mechanism, e.g. ``SASL_SSL/SCRAM-SHA-512 as user 'gpuledger'``."""
        text = self.protocol
        if self.sasl:
            text += f"/{self.sasl_mechanism} as user {self.username!r}"
        if self.source is not None:
            text += f" (settings from {self.source})"
        return text

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.username
            out["sasl_plain_password"] = self.password
        if self.tls:
            if self.ssl_ca is not None:
                out["ssl_cafile"] = str(self.ssl_ca)
            if self.ssl_cert is not None:
                out["ssl_certfile"] = str(self.ssl_cert)
            if self.ssl_key is not None:
                out["ssl_keyfile"] = str(self.ssl_key)
            if self.ssl_key_password is not None:
                out["ssl_password"] = self.ssl_key_password
            out["ssl_check_hostname"] = self.ssl_endpoint_identification.lower() == "https"
        return out

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            secret = f.name in ("password", "ssl_key_password") and value is not None
            parts.append(f"{f.name}={MASK if secret else repr(value)}")
        return f"KafkaSecurity({', '.join(parts)})"

    __str__ = __repr__


PLAINTEXT = KafkaSecurity()


def client_kwargs(security: KafkaSecurity | None) -> dict[str, Any]:
    """``security.client_kwargs()``, or nothing (kafka-python's PLAINTEXT default) for None."""
    return {} if security is None else security.client_kwargs()


def load_optional(path: Path | str | None) -> KafkaSecurity | None:
    """``load_kafka_config(path)``, or None (PLAINTEXT) without a path: ``--kafka-config``."""
    return None if path is None else load_kafka_config(path)


def load_kafka_config(path: Path | str) -> KafkaSecurity:
    """Read a client properties file (``key=value`` or ``key: value``, ``#``/``!`` comments).

    Raises ``KafkaConfigError`` naming the file (and line) for an unreadable file, an unknown
    key, an unset ``${ENV}`` variable, a missing certificate file or an invalid combination.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KafkaConfigError(f"cannot read Kafka client settings {path}: {exc}") from exc
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if match is None:
            raise KafkaConfigError(f"{path}:{number}: expected key=value, got {line[:40]!r}")
        key, value = match.group(1), match.group(2).strip()
        if key not in _KEYS:
            hint = _HINTS.get(key)
            raise KafkaConfigError(
                f"{path}:{number}: unknown key {key!r}"
                + (f" ({hint})" if hint else f"; known keys: {', '.join(_KEYS)}")
            )
        if key in lines:
            raise KafkaConfigError(
                f"{path}:{number}: {key} given twice (first on line {lines[key]})"
            )
        lines[key] = number
        values[_KEYS[key]] = _expand(value, path, number, key)
    for name in ("ssl_ca", "ssl_cert", "ssl_key"):
        if name in values:
            values[name] = _existing_file(values[name], path, lines, name)
    if "protocol" in values:
        values["protocol"] = values["protocol"].upper()
    try:
        return KafkaSecurity(**values, source=path)
    except ValueError as exc:
        raise KafkaConfigError(f"{path}: {exc}") from None


def _expand(value: str, path: Path, number: int, key: str) -> str:
    def env(match: re.Match[str]) -> str:
        name = match.group(1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise KafkaConfigError(f"{path}:{number}: {key}: bad variable reference ${{{name}}}")
        if name not in os.environ:
            raise KafkaConfigError(
                f"{path}:{number}: {key} refers to the environment variable {name}, which is "
                "not set"
            )
        return os.environ[name]

    return _ENV.sub(env, value)


def _existing_file(value: str, path: Path, lines: dict[str, int], name: str) -> Path:
    key = next(k for k, v in _KEYS.items() if v == name)
    file = Path(value).expanduser()
    if not file.is_absolute():
        file = path.parent / file
    if not file.is_file():
        raise KafkaConfigError(f"{path}:{lines[key]}: {key}: no such file {file}")
    return file.resolve()


def explain(exc: BaseException, bootstrap: str, security: KafkaSecurity | None) -> str:
    """One message for a client error: where, how, and what was seen (never a secret)."""
    sec = security or PLAINTEXT
    name = type(exc).__name__
    detail = _scrub(f"{name}: {exc}" if str(exc) else name, sec)
    return f"Kafka at {bootstrap} via {sec.describe()}: {detail}"


def _scrub(text: str, security: KafkaSecurity) -> str:
    for secret in (security.password, security.ssl_key_password):
        if secret:
            text = text.replace(secret, MASK)
    return text
