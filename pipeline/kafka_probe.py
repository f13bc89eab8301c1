"""Why a Kafka client cannot connect: ``diagnose`` probes the bootstrap server the way the
client would (a TCP connect, the TLS handshake with the client's CA and host check, a
SaslHandshake request for the mechanisms the listener offers) and says whether retrying can
help. Never sends a password. ``pipeline.kafka_config.connect`` asks it after a failed attempt.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from dataclasses import dataclass

from pipeline.kafka_config import PLAINTEXT, KafkaConfigError, KafkaSecurity

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    final: bool
    """Retrying cannot help (a wrong protocol, certificate or password), unlike a broker that
    is down or still starting."""


def diagnose(
    bootstrap: str, security: KafkaSecurity | None, timeout_s: float = PROBE_TIMEOUT_S
) -> Diagnosis:
    """Why a client with ``security`` cannot bootstrap from ``bootstrap``: a TCP connect, the
    TLS handshake (with the client's CA and host check), and which SASL mechanisms the listener
    offers (a SaslHandshake request). Never sends a password."""
    sec = security or PLAINTEXT
    host, port = _first_server(bootstrap)
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except ConnectionRefusedError:
        return Diagnosis(
            "connection refused: nothing listens there (broker down, wrong port?)", False
        )
    except TimeoutError:
        return Diagnosis(f"no answer to a TCP connect within {timeout_s:g}s", False)
    except OSError as exc:
        return Diagnosis(f"cannot connect: {exc}", False)
    with contextlib.closing(sock):
        sock.settimeout(timeout_s)
        channel: socket.socket = sock
        if sec.tls:
            try:
                channel = _ssl_context(sec).wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                return Diagnosis(
                    f"the TLS handshake failed: the broker certificate is not trusted "
                    f"({exc.verify_message}); check ssl.ca.location and the host name",
                    True,
                )
            except (ssl.SSLError, OSError) as exc:
                return Diagnosis(
                    f"the TLS handshake failed ({type(exc).__name__}: {exc}): this port does not "
                    f"speak TLS (a PLAINTEXT listener?) but security.protocol is {sec.protocol}",
                    True,
                )
        mechanisms = _sasl_mechanisms(channel, sec.sasl_mechanism or "PLAIN")
    return _judge(sec, mechanisms, host, port, timeout_s)


def _judge(
    sec: KafkaSecurity, mechanisms: list[str] | None, host: str, port: int, timeout_s: float
) -> Diagnosis:
    """The cause, once the connection (and TLS) worked, from what the listener said to a
    SaslHandshake request: ``mechanisms`` as ``_sasl_mechanisms`` gives them."""
    if not sec.tls and mechanisms is _NO_ANSWER and _speaks_tls(host, port, timeout_s):
        return Diagnosis(
            f"this port speaks TLS (an SSL or SASL_SSL listener) but the client is {sec.protocol}:"
            " give the client settings with --kafka-config (security.protocol=SASL_SSL, ...)",
            True,
        )
    if mechanisms is _NO_ANSWER:
        return Diagnosis(
            "the port accepts connections but gave no Kafka answer (not a Kafka listener, or "
            "still starting?)",
            False,
        )
    if sec.sasl:
        if mechanisms is None:
            return Diagnosis(
                f"this listener takes no SASL authentication but security.protocol is "
                f"{sec.protocol} (is it a {'SSL' if sec.tls else 'PLAINTEXT'} listener?)",
                True,
            )
        if sec.sasl_mechanism not in mechanisms:
            return Diagnosis(
                f"this listener does not enable sasl.mechanism {sec.sasl_mechanism}; it offers "
                f"{', '.join(mechanisms) or 'none'}",
                True,
            )
        return Diagnosis(
            f"{sec.sasl_mechanism} authentication as user {sec.username!r} failed: the "
            "listener offers that mechanism"
            + (" and TLS works" if sec.tls else "")
            + ", but it closed the connection or did not answer: wrong sasl.username or "
            "sasl.password?",
            True,
        )
    if mechanisms is not None:
        return Diagnosis(
            f"this listener expects SASL authentication ({', '.join(mechanisms)}) but the client "
            f"is {sec.protocol}: give the client settings with --kafka-config",
            True,
        )
    return Diagnosis("the broker accepts connections but did not answer in time", False)


def _first_server(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        return host.strip("[]") or "localhost", int(port)
    except ValueError:
        raise KafkaConfigError(f"bootstrap must be HOST:PORT, not {first!r}") from None


def _ssl_context(sec: KafkaSecurity) -> ssl.SSLContext:
    """The context kafka-python builds from the same settings (kafka.net.transport)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = sec.client_kwargs().get("ssl_check_hostname", True)
    if sec.ssl_ca is not None:
        ctx.load_verify_locations(str(sec.ssl_ca))
    else:
        ctx.load_default_certs()
    if sec.ssl_cert is not None:
        ctx.load_cert_chain(
            str(sec.ssl_cert),
            str(sec.ssl_key) if sec.ssl_key else None,
            sec.ssl_key_password,
        )
    return ctx


def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as sock,
            ctx.wrap_socket(sock, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


_NO_ANSWER: list[str] = []


def _sasl_mechanisms(channel: socket.socket, mechanism: str) -> list[str] | None:
    """The mechanisms the listener offers (a SaslHandshake v1 request for ``mechanism``), None
    if it takes no SASL, ``_NO_ANSWER`` if it gave no Kafka answer."""
    client_id = b"gpuledger-probe"
    body = (
        struct.pack(">hhih", 17, 1, 1, len(client_id))
        + client_id
        + struct.pack(">h", len(mechanism))
        + mechanism.encode()
    )
    try:
        channel.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(channel, 4))[0]
        if not 6 <= size <= 1 << 16:
            return _NO_ANSWER
        data = _read(channel, size)
    except (OSError, ssl.SSLError, struct.error, EOFError):
        return _NO_ANSWER
    correlation, code = struct.unpack(">ih", data[:6])
    if correlation != 1:
        return _NO_ANSWER
    if code == 34:  # ILLEGAL_SASL_STATE: a listener without SASL
        return None
    offered = []
    try:
        (count,) = struct.unpack(">i", data[6:10])
        at = 10
        for _ in range(max(0, count)):
            (n,) = struct.unpack(">h", data[at : at + 2])
            offered.append(data[at + 2 : at + 2 + n].decode("utf-8", "replace"))
            at += 2 + n
    except struct.error:
        return _NO_ANSWER
    return offered


def _read(channel: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = channel.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out
