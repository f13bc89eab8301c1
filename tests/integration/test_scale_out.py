"""Ingest scales out by consumer group: several ``gpuledger ingest`` processes in one group
share a 12-partition topic; a worker SIGKILLed mid-stream hands its partitions on, a worker
that joins mid-stream takes some over, and the lake ends with every record exactly once and
every partition's stored offset at the end of the partition."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from collectors.publish import KafkaSink, PublishSettings
from pipeline.lake import app_id, open_table
from pipeline.records import GPU_SAMPLE
from pipeline.topics import contract_topics, ensure_topics, topic_for
from tests.conftest import REPO, gpu_sample
from warehouse.catalog import connect

pytestmark = pytest.mark.integration

T0 = 1_588_262_400_000
RECORDS = 200_000
PER_MESSAGE = 64
MESSAGES = RECORDS // PER_MESSAGE  # 3,125
GPUS = 125  # keys: 25 messages per GPU, spread over every partition
PARTITIONS = 12
IDLE_S = 10.0  # --until-idle: long enough that a stall of the stream never stops a worker
DEADLINE_S = 170.0


def message(m: int) -> list[dict]:
    """The 64 records of message ``m``: 64 consecutive minutes of one GPU."""
    gpu, block = m % GPUS, m // GPUS
    return [
        gpu_sample(T0 + (block * PER_MESSAGE + j) * 60_000, gpu=f"GPU-{gpu:03d}")
        for j in range(PER_MESSAGE)
    ]


class Stream(threading.Thread):
    """Publishes the records with the project's KafkaSink at a steady pace. At each hold point
    it slows to a trickle (one message per 0.2 s, so workers keep receiving records and never
    go idle) until that hold's event is set: the kill and the join happen mid-stream however
    slowly the workers start on a loaded machine."""

    STEP = 32  # messages between flushes
    PAUSE_S = 0.15

    def __init__(self, kafka: str, namespace: str, holds: dict[int, threading.Event]) -> None:
        super().__init__(name="stream", daemon=True)
        self.kafka, self.namespace, self.holds = kafka, namespace, holds
        self.sent = 0
        self.error: BaseException | None = None
        self.abort = threading.Event()

    def run(self) -> None:
        try:
            settings = PublishSettings(
                bootstrap=self.kafka, namespace=self.namespace, batch_records=PER_MESSAGE
            )
            sink = KafkaSink(settings)
            try:
                for m in range(MESSAGES):
                    if self.abort.is_set():
                        return
                    for record in message(m):
                        sink.add(GPU_SAMPLE, record)  # sends at 64: one message, one key
                    held = any(m >= at and not ev.is_set() for at, ev in self.holds.items())
                    if held or (m + 1) % self.STEP == 0:
                        sink.flush()
                        self.sent = m + 1
                        time.sleep(0.2 if held else self.PAUSE_S)
                sink.flush()
                self.sent = MESSAGES
                assert sink.sent_records == RECORDS and sink.failed_records == 0
            finally:
                sink.close()
        except BaseException as exc:  # reported by the test
            self.error = exc


class Worker:
    """One ``gpuledger ingest`` process; its output goes to a file the test reads."""

    def __init__(self, kafka: str, namespace: str, lake: Path, group: str, log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
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
            group,
            "--partitions",
            str(PARTITIONS),
            "--until-idle",
            str(IDLE_S),
            "--max-batch-records",
            "5000",
            "--max-batch-seconds",
            "0.5",
            "--session-timeout",
            "5",
            "--compact-every",
            "0",
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def landed(self) -> int:
        """Records this worker has landed so far (its progress line after each flush)."""
        found = re.findall(r"ingest: landed ([\d,]+)", self.output())
        return int(found[-1].replace(",", "")) if found else 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        self.kill()
        self._out.close()


def wait_for(what: str, condition: Callable[[], bool], deadline: float, stream: Stream) -> None:
    while not condition():
        assert stream.error is None, f"publishing failed: {stream.error!r}"
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.2)


def stored(lake: Path, group: str, topic: str) -> dict[int, int | None]:
    dt = open_table(lake / "gpu_samples")
    if dt is None:
        return dict.fromkeys(range(PARTITIONS))
    return {p: dt.transaction_version(app_id(group, topic, p)) for p in range(PARTITIONS)}


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.close()


def test_workers_in_one_group_share_the_stream_through_a_kill_and_a_join(
    kafka: str, lake: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    ns = f"s{uuid.uuid4().hex[:10]}"
    group = f"g-{ns}"
    topic = topic_for(GPU_SAMPLE, ns)
    ensure_topics(kafka, ns, partitions=PARTITIONS)

    killed, joined = threading.Event(), threading.Event()
    stream = Stream(kafka, ns, {MESSAGES // 3: killed, 2 * MESSAGES // 3: joined})
    stream.start()

    def start(name: str) -> Worker:
        w = Worker(kafka, ns, lake, group, tmp_path / f"{name}.log")
        workers.append(w)
        return w

    try:
        victim, first, second = start("victim"), start("first"), start("second")

        # The victim has committed batches of its partitions: kill it mid-stream.
        wait_for("the victim to land records", lambda: victim.landed() > 0, deadline, stream)
        assert victim.proc.poll() is None, victim.output()
        victim.kill()
        at_kill = stored(lake, group, topic)
        assert stream.sent < MESSAGES, "the stream ended before the kill"
        killed.set()

        # Its partitions move on once its session expires: every partition advances.
        def taken_over() -> bool:
            now = stored(lake, group, topic)
            return all(now[p] is not None and now[p] != at_kill[p] for p in now)

        wait_for("every partition to advance after the kill", taken_over, deadline, stream)

        # A new worker joins mid-stream and takes some partitions over.
        joiner = start("joiner")
        wait_for("the joiner to land records", lambda: joiner.landed() > 0, deadline, stream)
        assert stream.sent < MESSAGES, "the stream ended before the join"
        joined.set()

        stream.join(timeout=max(1.0, deadline - time.monotonic()))
        assert stream.error is None, f"publishing failed: {stream.error!r}"
        assert not stream.is_alive(), "publishing did not finish in time"

        live = [first, second, joiner]
        for w in live:
            left = max(1.0, deadline - time.monotonic())
            try:
                w.proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                pytest.fail(f"a worker did not drain and stop in time:\n{w.output()[-3000:]}")
        for w in live:
            out = w.output()
            assert w.proc.returncode == 0, out[-3000:]
            assert "lag left 0 records" in out, out[-3000:]
            assert w.landed() > 0, f"a worker landed nothing:\n{out[-3000:]}"
            assert "partitions, fewer than" not in out, out[-3000:]
    finally:
        stream.abort.set()
        killed.set()
        joined.set()
        for w in workers:  # shown when the test fails
            print(w.log.stem, w.proc.poll(), w.landed(), w.output().strip()[-400:])

    # Every record once, at raw level (no dedup by the views).
    con = connect(lake, ":memory:")
    total, unique = con.execute(
        "SELECT count(*), count(DISTINCT (datacentre, cluster, gpu_uuid, ts)) FROM raw_gpu_samples"
    ).fetchone()
    assert unique == RECORDS, "records lost"
    assert total == RECORDS, "records duplicated"

    # Every partition has records, and the lake holds its offsets up to its end.
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        assert consumer.partitions_for_topic(topic) == set(range(PARTITIONS))
        assert consumer.partitions_for_topic(f"{topic}.dlq") == {0, 1, 2}  # at most 3
        ends = consumer.end_offsets(tps)
        others = [TopicPartition(t, 0) for t in contract_topics(ns) if t != topic]
        assert set(consumer.end_offsets(others).values()) == {0}
    finally:
        consumer.close()
    assert sum(ends.values()) == MESSAGES
    assert all(ends[tp] > 0 for tp in tps), ends
    assert stored(lake, group, topic) == {tp.partition: ends[tp] - 1 for tp in tps}


def test_existing_topics_keep_their_partitions_and_a_warning_says_how_to_add_more(
    kafka: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_for(GPU_SAMPLE, namespace)  # created with 2 partitions by the fixture
    with caplog.at_level(logging.WARNING, logger="pipeline.topics"):
        ensure_topics(kafka, namespace, partitions=PARTITIONS)
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1}
    finally:
        consumer.close()
    said = [r.getMessage() for r in caplog.records if f"topic {topic} " in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "2 partitions, fewer than the 12 asked for" in said[0]
    how = f"kafka-topics.sh --bootstrap-server {kafka} --alter --topic {topic} --partitions 12"
    assert how in said[0]
