"""ingest against the real broker: exactly-once landing, dead letters, crash and restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from collectors.publish import KafkaSink, PublishSettings
from gpuledger import broker
from gpuledger.cli import main as cli_main
from pipeline.ingest import Ingestor, IngestSettings
from pipeline.records import GPU_SAMPLE, OCCUPANCY, coerce
from pipeline.topics import ensure_topics, topic_for
from pipeline.wire import encode
from pipeline.write import stream_file_name, write_records
from tests.conftest import REPO, gpu_sample
from tests.integration.conftest import broker_settings, lake_rows, read_dead_letters

pytestmark = pytest.mark.integration
T0 = 1_588_262_400_000


def publish(bootstrap: str, namespace: str, n: int, gpus: int = 20, batch: int = 64) -> None:
    sink = KafkaSink(PublishSettings(bootstrap=bootstrap, namespace=namespace, batch_records=batch))
    try:
        for i in range(n):
            sink.add(GPU_SAMPLE, gpu_sample(T0 + (i // gpus) * 60_000, gpu=f"GPU-{i % gpus}"))
        sink.flush()
    finally:
        sink.close()
    assert sink.sent_records == n and sink.failed_records == 0


def ingest(bootstrap: str, namespace: str, lake: Path, **kw: object) -> object:
    settings = IngestSettings(
        bootstrap=bootstrap,
        lake=lake,
        namespace=namespace,
        group=f"g-{namespace}",
        until_idle_s=3.0,
        **kw,
    )  # type: ignore[arg-type]
    return Ingestor(settings).run()


def keys(rows: list[tuple]) -> set[tuple]:
    return {(r[0], r[5]) for r in rows}  # (ts, gpu_uuid) within one datacentre/cluster


def test_n_records_in_exactly_n_unique_rows_out(kafka: str, namespace: str, lake: Path) -> None:
    publish(kafka, namespace, 5_000)
    stats = ingest(kafka, namespace, lake, max_batch_records=1_500)
    rows = lake_rows(lake, "gpu_samples")
    assert len(rows) == 5_000
    assert len(keys(rows)) == 5_000
    assert stats.landed == 5_000 and stats.rejected == 0  # type: ignore[attr-defined]
    loads = lake_rows(lake, "_loads")
    assert sum(r[4] for r in loads) == 5_000
    # A second run of the same group finds nothing new and changes nothing.
    ingest(kafka, namespace, lake)
    assert len(lake_rows(lake, "gpu_samples")) == 5_000


def test_malformed_records_go_to_the_dlq_and_neighbours_land(
    kafka: str, namespace: str, lake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = topic_for(GPU_SAMPLE, namespace)
    good = [gpu_sample(T0 + i * 60_000) for i in range(3)]
    bad = gpu_sample(T0 + 10 * 60_000, util=1.7)
    producer = KafkaProducer(bootstrap_servers=kafka)
    producer.send(topic, key=b"k", value=encode(GPU_SAMPLE, [good[0], bad, good[1]]))
    producer.send(topic, key=b"k", value=b"\x00garbage that is not an envelope")
    producer.send(
        topic, key=b"k", value=encode(OCCUPANCY, [{"ts": T0}])
    )  # wrong topic for the kind
    producer.send(topic, key=b"k", value=encode(GPU_SAMPLE, [good[2]]))
    producer.flush()
    producer.close()

    stats = ingest(kafka, namespace, lake)
    rows = lake_rows(lake, "gpu_samples")
    assert sorted(r[0].timestamp() * 1000 for r in rows) == [T0, T0 + 60_000, T0 + 120_000]
    assert stats.rejected == 3  # type: ignore[attr-defined]

    letters = read_dead_letters(kafka, f"{topic}.dlq", expect=3)
    by_class = {dl.error_class: dl for dl in letters}
    assert set(by_class) == {"out_of_range", "bad_envelope", "wrong_topic"}
    rec = by_class["out_of_range"]
    assert "util" in rec.reason and rec.origin == topic and rec.index == 1
    assert rec.offset is not None and rec.partition is not None
    assert b'"util":1.7' in rec.raw
    assert by_class["bad_envelope"].raw == b"\x00garbage that is not an envelope"
    assert by_class["bad_envelope"].index is None

    # ... and an operator finds them with the CLI, as JSON lines
    assert (
        cli_main(["dlq", "--kafka", kafka, "--namespace", namespace, "--kind", "gpu_sample"]) == 0
    )
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(p["error_class"] for p in printed) == [
        "bad_envelope",
        "out_of_range",
        "wrong_topic",
    ]


def _ingest_process(kafka: str, namespace: str, lake: Path, idle: float | None) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "gpuledger.cli",
        "ingest",
        "--kafka",
        kafka,
        "--lake",
        str(lake),
        "--namespace",
        namespace,
        "--group",
        f"g-{namespace}",
        "--max-batch-records",
        "2000",
        "--max-batch-seconds",
        "0.5",
    ]
    if idle:
        cmd += ["--until-idle", str(idle)]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


def _wait_for_files(lake: Path, at_least: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while len(list(lake.rglob("s-*.parquet"))) < at_least:
        assert time.monotonic() < deadline, "ingest wrote nothing in time"
        time.sleep(0.05)


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka: str, namespace: str, lake: Path
) -> None:
    n = 200_000
    publish(kafka, namespace, n, gpus=50)
    for more_files in (3, 5):  # kill twice, at different points
        before = len(list(lake.rglob("s-*.parquet")))
        proc = _ingest_process(kafka, namespace, lake, idle=None)
        _wait_for_files(lake, before + more_files)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert 0 < len(lake_rows(lake, "gpu_samples")) < n, "the kill did not land mid-stream"
    proc = _ingest_process(kafka, namespace, lake, idle=3.0)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    rows = lake_rows(lake, "gpu_samples")
    assert len(keys(rows)) == n, "records lost"
    assert len(rows) == n, "records duplicated"


def test_files_written_but_never_committed_are_replaced_not_duplicated(
    kafka: str, namespace: str, lake: Path
) -> None:
    """A worker that died between the Parquet rename and the offset commit left files behind."""
    publish(kafka, namespace, 1_000, gpus=10)
    topic = topic_for(GPU_SAMPLE, namespace)
    orphan = [coerce(GPU_SAMPLE, gpu_sample(T0 + i * 60_000, gpu="GPU-0")) for i in range(50)]
    for partition in (0, 1):  # its batch boundaries differ from the ones the restart will use
        write_records(lake, GPU_SAMPLE, orphan, stream_file_name(topic, partition, 0, 7))
    stats = ingest(kafka, namespace, lake, max_batch_records=300)
    rows = lake_rows(lake, "gpu_samples")
    assert len(rows) == 1_000 == len(keys(rows))
    assert stats.removed_uncommitted == 2  # type: ignore[attr-defined]


def test_broker_restart_mid_stream(tmp_path: Path, lake: Path) -> None:
    settings = broker_settings(tmp_path / "own-kafka")
    bootstrap = broker.start(settings)
    try:
        ensure_topics(bootstrap, "restart", partitions=2)
        n = 30_000
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                sink = KafkaSink(
                    PublishSettings(
                        bootstrap=bootstrap,
                        namespace="restart",
                        batch_records=16,
                        delivery_timeout_ms=120_000,
                    )
                )
                for i in range(n):
                    sink.add(GPU_SAMPLE, gpu_sample(T0 + (i // 10) * 60_000, gpu=f"GPU-{i % 10}"))
                    if i % 1000 == 0:
                        time.sleep(0.1)  # keep the stream going while the broker restarts
                sink.flush()
                sink.close()
            except BaseException as exc:  # reported below
                errors.append(exc)

        producer = threading.Thread(target=produce)
        producer.start()
        proc = _ingest_process(bootstrap, "restart", lake, idle=None)
        _wait_for_files(lake, 1)
        broker.stop(settings)
        time.sleep(2)
        broker.start(settings)
        producer.join(timeout=240)
        assert not errors, errors
        deadline = time.monotonic() + 180
        while len(lake_rows(lake, "gpu_samples")) < n and time.monotonic() < deadline:
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        rows = lake_rows(lake, "gpu_samples")
        assert len(keys(rows)) == n, f"records lost; ingest said: {out[-2000:]!r}"
        assert len(rows) == n, "records duplicated"
    finally:
        broker.kill(settings)
