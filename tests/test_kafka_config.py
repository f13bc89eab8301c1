"""The Kafka client settings file (``--kafka-config``): parsing, ``${ENV}`` secrets, masking,
kafka-python keyword arguments, and clear errors naming file and line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.kafka_config import (
    KafkaConfigError,
    KafkaSecurity,
    client_kwargs,
    load_kafka_config,
    load_optional,
)
from pipeline.kafka_probe import diagnose

SECRET = "s3cr3t-Pa55w0rd"


def write(tmp_path: Path, text: str, name: str = "client.properties") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return path


def test_sasl_ssl_file_gives_kafka_python_keyword_arguments(tmp_path: Path, ca: Path) -> None:
    path = write(
        tmp_path,
        "# local broker\n"
        "! also a comment\n"
        "\n"
        "security.protocol = sasl_ssl\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.username: gpuledger\n"
        f"sasl.password={SECRET}\n"
        "ssl.ca.location=ca.pem\n",  # relative: to the file's folder
    )
    sec = load_kafka_config(path)
    assert sec.protocol == "SASL_SSL" and sec.source == path
    assert client_kwargs(sec) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gpuledger",
        "sasl_plain_password": SECRET,
        "ssl_cafile": str(ca.resolve()),
        "ssl_check_hostname": True,
    }
    assert "SCRAM-SHA-512" in sec.describe() and "gpuledger" in sec.describe()


def test_client_certificate_and_no_host_check(tmp_path: Path, ca: Path) -> None:
    cert = write(tmp_path, "cert", "client.pem")
    key = write(tmp_path, "key", "client.key")
    sec = load_kafka_config(
        write(
            tmp_path,
            "security.protocol=SSL\n"
            f"ssl.ca.location={ca}\n"
            f"ssl.certificate.location={cert}\n"
            f"ssl.key.location={key}\n"
            f"ssl.key.password={SECRET}\n"
            "ssl.endpoint.identification.algorithm=\n",
        )
    )
    kw = sec.client_kwargs()
    assert kw["security_protocol"] == "SSL" and "sasl_mechanism" not in kw
    assert kw["ssl_certfile"] == str(cert) and kw["ssl_keyfile"] == str(key)
    assert kw["ssl_password"] == SECRET and kw["ssl_check_hostname"] is False
    assert SECRET not in repr(sec)


def test_without_a_file_clients_stay_plaintext() -> None:
    assert load_optional(None) is None
    assert client_kwargs(None) == {}
    assert KafkaSecurity().client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_password_from_the_environment(
    tmp_path: Path, ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPULEDGER_TEST_KAFKA_PW", SECRET)
    monkeypatch.setenv("GPULEDGER_TEST_KAFKA_USER", "ops")
    path = write(
        tmp_path,
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-256\n"
        "sasl.username=${GPULEDGER_TEST_KAFKA_USER}\n"
        "sasl.password=pre-${GPULEDGER_TEST_KAFKA_PW}\n"
        f"ssl.ca.location={ca}\n",
    )
    sec = load_kafka_config(path)
    assert sec.username == "ops" and sec.password == f"pre-{SECRET}"


def test_unset_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPULEDGER_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=u\n"
        "sasl.password=${GPULEDGER_TEST_UNSET}\n",
    )
    with pytest.raises(KafkaConfigError) as info:
        load_kafka_config(path)
    assert f"{path}:4" in str(info.value) and "GPULEDGER_TEST_UNSET" in str(info.value)
    assert "not set" in str(info.value)


def test_repr_and_str_mask_the_password(tmp_path: Path, ca: Path) -> None:
    sec = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="gpuledger",
        password=SECRET,
        ssl_ca=ca,
        ssl_key_password="key-" + SECRET,
    )
    for text in (repr(sec), str(sec), f"{sec}", sec.describe(), str([sec])):
        assert SECRET not in text
    assert "password=***" in repr(sec) and "gpuledger" in repr(sec)


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "security.protocol=PLAINTEXT\n\nsasl.usernme=typo\n")
    with pytest.raises(KafkaConfigError) as info:
        load_kafka_config(path)
    assert f"{path}:3" in str(info.value) and "sasl.usernme" in str(info.value)
    with pytest.raises(KafkaConfigError, match="--kafka HOST:PORT"):
        load_kafka_config(write(tmp_path, "bootstrap.servers=x:1\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("security.protocol=TLS\n", "security.protocol must be one of"),
        ("security.protocol=SASL_SSL\nsasl.username=u\nsasl.password=p\n", "sasl.mechanism"),
        ("security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\n", "sasl.mechanism"),
        ("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=u\n", "sasl.password"),
        ("security.protocol=SSL\nssl.ca.location=missing.pem\n", "no such file"),
        ("security.protocol=SSL\nsecurity.protocol=SSL\n", "given twice"),
        ("just some words\n", "expected key=value"),
        ("sasl.password=${not a name}\n", "bad variable reference"),
    ],
)
def test_bad_files_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(KafkaConfigError, match=message) as info:
        load_kafka_config(path)
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match="cannot read"):
        load_kafka_config(tmp_path / "nope.properties")


def test_diagnose_a_closed_port_is_not_final() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    found = diagnose(f"127.0.0.1:{port}", None, timeout_s=2)
    assert "refused" in found.cause and not found.final


def test_diagnose_a_port_that_is_not_kafka(tmp_path: Path) -> None:
    """A listener that accepts and says nothing: no Kafka answer, worth another try."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = diagnose(f"127.0.0.1:{port}", None, timeout_s=1)
    assert "no Kafka answer" in found.cause and not found.final
