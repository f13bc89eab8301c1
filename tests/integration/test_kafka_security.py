"""The pipeline through a SASL_SSL (SCRAM-SHA-512) listener of a real broker started with
``secure=True`` (``kafka start --secure``): collect -> ingest -> lake -> exporter, dead
letters and alerts, all through the CLI with ``--kafka-config``; a wrong password, a PLAINTEXT
client at the TLS port and a closed port fail within bounded time with a clear message that
never shows a password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from gpuledger import broker
from pipeline.kafka_config import load_kafka_config
from pipeline.records import GPU_SAMPLE
from pipeline.topics import TopicError, create_topics, topic_for
from tests.conftest import REPO, gpu_sample
from tests.integration.conftest import free_port, lake_rows

pytestmark = pytest.mark.integration
T0 = 1_588_262_400_000
GPUS = 4
SAMPLES = 40


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerSettings]:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    port, controller, sasl = sorted(ports)
    settings = broker.BrokerSettings(
        port=port,
        controller_port=controller,
        secure_port=sasl,
        secure=True,
        data_dir=tmp_path_factory.mktemp("secure-kafka"),
    )
    broker.start(settings)
    yield settings
    broker.stop(settings)


def gpuledger(*argv: str, timeout: float = 120, env: dict[str, str] | None = None) -> tuple:
    """Run the CLI as a subprocess: (exit code, stdout + stderr, seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gpuledger.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})),
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def password(settings: broker.BrokerSettings) -> str:
    value = load_kafka_config(settings.client_properties).password
    assert value
    return value


def test_broker_writes_private_client_settings_and_reports_both_listeners(
    secure: broker.BrokerSettings,
) -> None:
    props = secure.client_properties
    assert props.stat().st_mode & 0o077 == 0
    sec = load_kafka_config(props)
    assert (sec.protocol, sec.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert sec.ssl_ca is not None and sec.ssl_ca.read_text().startswith("-----BEGIN CERTIFICATE")
    code, out, _ = gpuledger("kafka", "status", "--data-dir", str(secure.data_dir))
    assert code == 0, out
    st = json.loads(out.strip().splitlines()[-1])
    assert st["bootstrap"] == secure.bootstrap and st["answers"] is True
    assert st["secure_bootstrap"] == secure.secure_bootstrap and st["secure_answers"] is True
    assert st["client_properties"] == str(props)
    assert password(secure) not in out
    # a second start reuses the running broker, both listeners included
    assert broker.start(secure) == secure.bootstrap


def test_collect_ingest_exporter_dlq_and_alerts_over_sasl_ssl(
    secure: broker.BrokerSettings, tmp_path: Path
) -> None:
    boot, props = secure.secure_bootstrap, str(secure.client_properties)
    ns, group = "sec", "sec-ingest"
    records = tmp_path / "samples.jsonl"
    records.write_text(
        "".join(
            json.dumps(gpu_sample(T0 + (i // GPUS) * 60_000, gpu=f"GPU-{i % GPUS}")) + "\n"
            for i in range(SAMPLES)
        )
    )
    code, out, _ = gpuledger(
        "collect", "--kafka", boot, "--kafka-config", props, "--namespace", ns,
        "records", "--kind", "gpu_sample", "--file", str(records),
    )  # fmt: skip
    assert code == 0, out
    assert f"published {SAMPLES} records" in out

    # one message that is no envelope: ingest must dead-letter it through the secure producer
    producer = KafkaProducer(bootstrap_servers=boot, **load_kafka_config(props).client_kwargs())
    producer.send(topic_for(GPU_SAMPLE, ns), key=b"GPU-x", value=b"\x00not an envelope")
    producer.flush()
    producer.close()

    lake = tmp_path / "lake"
    code, out, _ = gpuledger(
        "ingest", "--kafka", boot, "--kafka-config", props, "--lake", str(lake),
        "--namespace", ns, "--group", group, "--until-idle", "3", "--max-batch-seconds", "1",
    )  # fmt: skip
    assert code == 0, out
    assert f"landed {SAMPLES} records" in out and "rejected 1 " in out
    rows = lake_rows(lake, "gpu_samples")
    assert len(rows) == SAMPLES
    assert {r[5] for r in rows} == {f"GPU-{i}" for i in range(GPUS)}

    code, out, _ = gpuledger(
        "dlq", "--kafka", boot, "--kafka-config", props, "--namespace", ns, "--wait", "2"
    )
    assert code == 0, out
    letters = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [d["error_class"] for d in letters] == ["bad_envelope"]

    listen = f"127.0.0.1:{free_port()}"
    exporter = subprocess.Popen(
        [
            sys.executable, "-m", "gpuledger.cli", "exporter", "--lake", str(lake),
            "--kafka", boot, "--kafka-config", props, "--namespace", ns, "--group", group,
            "--listen", listen, "--as-of", "data",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    try:
        text = _scrape(f"http://{listen}/metrics", exporter)
    finally:
        exporter.terminate()
        _, err = exporter.communicate(timeout=30)
    assert 'gpuledger_exporter_up{part="kafka"} 1.0' in text, err
    assert 'gpuledger_exporter_up{part="warehouse"} 1.0' in text
    assert f'gpuledger_lake_records_landed_total{{topic="gpu.samples.v1"}} {SAMPLES}.0' in text
    assert 'reason="bad_envelope"' in text and 'path="stream"' in text
    lag = [
        line
        for line in text.splitlines()
        if line.startswith("gpuledger_consumer_lag_records{") and "gpu.samples.v1" in line
    ]
    assert lag and all(line.endswith(" 0.0") for line in lag), lag

    code, out, _ = gpuledger(
        "alerts", "--lake", str(lake), "--kafka", boot, "--kafka-config", props,
        "--namespace", ns, "--once", "--state", str(tmp_path / "state.json"), "--as-of", "data",
    )  # fmt: skip
    assert code == 0, out
    assert password(secure) not in out


def _scrape(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, "exporter exited"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                text = str(resp.read().decode())
            if 'gpuledger_exporter_up{part="kafka"}' in text:
                return text
        except OSError:
            pass
        assert time.monotonic() < deadline, "exporter never answered"
        time.sleep(0.3)


def test_wrong_password_fails_fast_and_clearly_without_showing_it(
    secure: broker.BrokerSettings, tmp_path: Path
) -> None:
    good = password(secure)
    wrong = "not-the-password-4711"
    props = tmp_path / "wrong.properties"
    props.write_text(
        secure.client_properties.read_text().replace(
            f"sasl.password={good}", "sasl.password=${GPULEDGER_TEST_KAFKA_PASSWORD}"
        )
    )
    records = tmp_path / "one.jsonl"
    records.write_text(json.dumps(gpu_sample(T0)) + "\n")
    boot = secure.secure_bootstrap
    for argv in (
        ["collect", "--kafka", boot, "--kafka-config", str(props), "records", "--kind",
         "gpu_sample", "--file", str(records)],
        ["ingest", "--kafka", boot, "--kafka-config", str(props), "--lake", str(tmp_path / "l"),
         "--until-idle", "1"],
    ):  # fmt: skip
        code, out, took = gpuledger(*argv, env={"GPULEDGER_TEST_KAFKA_PASSWORD": wrong})
        assert code == 2, out
        assert took < 30, f"took {took:.0f}s"
        last = out.strip().splitlines()[-1]
        assert last.startswith("gpuledger: error:") and boot in last, out
        assert "SCRAM-SHA-512" in last and "sasl.password" in last, last
        assert wrong not in out and good not in out


def test_plaintext_client_at_the_sasl_ssl_port_fails_clearly(
    secure: broker.BrokerSettings, tmp_path: Path
) -> None:
    records = tmp_path / "one.jsonl"
    records.write_text(json.dumps(gpu_sample(T0)) + "\n")
    boot = secure.secure_bootstrap
    code, out, took = gpuledger(
        "collect", "--kafka", boot, "records", "--kind", "gpu_sample", "--file", str(records)
    )
    assert code == 2 and took < 30, out
    last = out.strip().splitlines()[-1]
    assert boot in last and "PLAINTEXT" in last and "speaks TLS" in last, last
    # ... and SASL_SSL settings at the PLAINTEXT port
    code, out, took = gpuledger(
        "dlq", "--kafka", secure.bootstrap, "--kafka-config", str(secure.client_properties)
    )
    assert code == 2 and took < 30, out
    last = out.strip().splitlines()[-1]
    assert secure.bootstrap in last and "TLS handshake failed" in last, last


def test_closed_secure_port_fails_within_the_timeout(secure: broker.BrokerSettings) -> None:
    boot = f"127.0.0.1:{free_port()}"
    sec = load_kafka_config(secure.client_properties)
    started = time.monotonic()
    with pytest.raises(TopicError) as info:
        create_topics(boot, {"never": 1}, timeout_s=4, security=sec)
    assert time.monotonic() - started < 15
    assert boot in str(info.value) and "connection refused" in str(info.value)
    assert "SASL_SSL/SCRAM-SHA-512" in str(info.value)
    assert password(secure) not in str(info.value)
