"""ingest against the real broker: exactly-once landing, dead letters, crash and restart,
poison pills, two groups on one lake, zombies, draining."""

from __future__ import annotations

import json
import os
import random
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
from pipeline.lake import open_table
from pipeline.records import GPU_SAMPLE, OCCUPANCY
from pipeline.topics import ensure_topics, topic_for
from pipeline.wire import encode
from tests.conftest import REPO, gpu_sample
from tests.integration.conftest import broker_settings, lake_rows, read_dead_letters
from warehouse.catalog import connect

pytestmark = pytest.mark.integration
T0 = 1_588_262_400_000


def publish(
    bootstrap: str, namespace: str, n: int, gpus: int = 20, batch: int = 64, t0: int = T0
) -> None:
    sink = KafkaSink(PublishSettings(bootstrap=bootstrap, namespace=namespace, batch_records=batch))
    try:
        for i in range(n):
            sink.add(GPU_SAMPLE, gpu_sample(t0 + (i // gpus) * 60_000, gpu=f"GPU-{i % gpus}"))
        sink.flush()
    finally:
        sink.close()
    assert sink.sent_records == n and sink.failed_records == 0


def settings_for(bootstrap: str, namespace: str, lake: Path, **kw: object) -> IngestSettings:
    """The settings of a test's ingest: the namespace's own group."""
    return IngestSettings(
        bootstrap=bootstrap, lake=lake, namespace=namespace, group=f"g-{namespace}", **kw
    )  # type: ignore[arg-type]


def ingest(bootstrap: str, namespace: str, lake: Path, **kw: object) -> object:
    return Ingestor(settings_for(bootstrap, namespace, lake, **{"until_idle_s": 3.0, **kw})).run()


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
    dt = open_table(lake / "gpu_samples")  # each partition's last offset is in the table
    topic = topic_for(GPU_SAMPLE, namespace)
    stored = [dt.transaction_version(f"g-{namespace}:{topic}:{p}") for p in (0, 1)]  # type: ignore[union-attr]
    assert None not in stored
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


def _ingest_process(
    kafka: str,
    namespace: str,
    lake: Path,
    idle: float | None,
    group: str | None = None,
    batch: int = 2000,
) -> subprocess.Popen:
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
        group or f"g-{namespace}",
        "--max-batch-records",
        str(batch),
        "--max-batch-seconds",
        "0.5",
        "--session-timeout",
        "3",
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


def _version(lake: Path) -> int:
    dt = open_table(lake / "gpu_samples")
    return -1 if dt is None else int(dt.version())


def _wait_for_commits(lake: Path, at_least: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while _version(lake) < at_least:
        assert time.monotonic() < deadline, "ingest committed nothing in time"
        time.sleep(0.05)


def test_sigkill_at_random_moments_then_restart_loses_and_duplicates_nothing(
    kafka: str, namespace: str, lake: Path
) -> None:
    n = 200_000
    publish(kafka, namespace, n, gpus=50)
    rng = random.Random(8)
    seen_mid_stream = 0
    for kill in range(20):
        before = _version(lake)
        proc = _ingest_process(kafka, namespace, lake, idle=None, batch=1500)
        if kill % 4 == 3:  # during start-up or the group join
            time.sleep(rng.uniform(0.2, 1.0))
        else:  # mid-stream: after 1 or 2 of this worker's commits (of at most 1,500 records),
            # however fast or slow the machine makes its start and its pace
            _wait_for_commits(lake, before + rng.randint(1, 2))
            time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        landed = len(lake_rows(lake, "gpu_samples"))
        assert landed < n, "the stream ended before the kills did"
        seen_mid_stream += landed > 0
    assert seen_mid_stream >= 10, "most kills should land mid-stream"
    # right after a kill: the dead member still holds partitions until its session expires;
    # --until-idle must wait for them, drain them, and say it left no lag
    proc = _ingest_process(kafka, namespace, lake, idle=1.0)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert b"lag left 0 records" in out, out[-2000:]
    rows = lake_rows(lake, "gpu_samples")
    assert len(keys(rows)) == n, "records lost"
    assert len(rows) == n, "records duplicated"


def _landed(lake: Path) -> int:
    return len(lake_rows(lake, "gpu_samples"))


@pytest.mark.parametrize(
    ("n", "batch"),
    [(12_000, 250_000), (8_000, 4_000)],  # the second: full batches land it all, none left over
)
def test_a_backlog_lands_once_drained_and_a_live_trickle_still_waits(
    kafka: str, namespace: str, lake: Path, n: int, batch: int
) -> None:
    """Records found waiting at assignment (one per message: more than one poll takes) land
    as soon as every partition is read to its end, not after an empty poll; after that the
    stream is live and its trickle waits as before (for half a batch, an empty poll or the
    batch's age: all far off here), also when the backlog's last records filled a batch."""
    publish(kafka, namespace, n, batch=1)
    settings = settings_for(
        kafka,
        namespace,
        lake,
        poll_timeout_ms=90_000,
        max_batch_seconds=600.0,
        max_batch_records=batch,
    )
    ingestor = Ingestor(settings)
    stop = threading.Event()
    worker = threading.Thread(target=ingestor.run, args=(stop,), daemon=True)
    started = time.monotonic()
    worker.start()
    while _landed(lake) < n and time.monotonic() - started < 60:
        time.sleep(0.2)
    assert _landed(lake) == n, "the drained backlog waited (for an empty poll of 90 s?)"
    assert ingestor.stats.commits >= 1
    later = T0 + 86_400_000  # records after the backlog's
    publish(kafka, namespace, 5, batch=1, t0=later)
    time.sleep(5)
    assert _landed(lake) == n, "a live trickle read at its end landed at once"
    stop.set()
    wake = later + 60_000  # a record that wakes the poll: the loop sees stop, lands the rest
    publish(kafka, namespace, 1, batch=1, t0=wake)
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert _landed(lake) in (n + 5, n + 6)  # the trickle; the waking record if it was taken


def test_two_groups_on_one_lake_never_delete_each_other(
    kafka: str, namespace: str, lake: Path
) -> None:
    publish(kafka, namespace, 3_000, gpus=10)
    ingest(kafka, namespace, lake)
    first = lake_rows(lake, "gpu_samples")
    assert len(first) == 3_000
    settings = IngestSettings(
        bootstrap=kafka,
        lake=lake,
        namespace=namespace,
        group=f"other-{namespace}",
        until_idle_s=2.0,
    )
    stats = Ingestor(settings).run()
    assert stats.landed == 3_000  # its own copy: it resumes from its own offsets
    raw = lake_rows(lake, "gpu_samples")
    assert len(raw) == 6_000 and set(first) <= set(raw)
    con = connect(lake, ":memory:")
    assert con.execute("SELECT count(*) FROM gpu_samples").fetchone() == (3_000,)
    ingest(kafka, namespace, lake)  # the first group finds its offsets and lands nothing
    assert len(lake_rows(lake, "gpu_samples")) == 6_000


def test_a_zombie_worker_is_fenced(kafka: str, namespace: str, lake: Path) -> None:
    """A worker that buffered records, then lost its partitions (a long pause), must not land
    them after their new owner did."""
    n = 2_000
    publish(kafka, namespace, n, gpus=10)
    settings = settings_for(kafka, namespace, lake, until_idle_s=2.0, session_timeout_s=2.0)
    zombie = Ingestor(settings)
    zombie.consumer.subscribe(zombie._topics, listener=zombie._rebalance)
    deadline = time.monotonic() + 60
    while zombie._buffered < n and time.monotonic() < deadline:
        polled = zombie.consumer.poll(timeout_ms=500)
        moved = zombie._handle_rebalance()
        for tp, messages in polled.items():
            if tp not in moved and messages:
                zombie._buffered += zombie._take(tp, messages)
    assert zombie._buffered == n
    zombie.consumer.close(autocommit=False)  # its session ends; the partitions move on
    owner = Ingestor(settings).run()
    assert owner.landed == n
    zombie.flush()  # wakes up and tries to land the same offsets
    zombie.dlq.close(timeout=5)
    assert zombie.stats.fenced == 2 and zombie.stats.landed == 0
    assert len(lake_rows(lake, "gpu_samples")) == n


def test_poison_pills_are_dead_lettered_and_ingest_keeps_running(
    kafka: str, namespace: str, lake: Path
) -> None:
    topic = topic_for(GPU_SAMPLE, namespace)

    def envelope(*records: str) -> bytes:
        return ('{"v":1,"kind":"gpu_sample","records":[' + ",".join(records) + "]}").encode()

    def rec(at: int, **raw: str) -> str:
        fields = {k: json.dumps(v) for k, v in gpu_sample(at).items()}
        fields.update(raw)
        return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"

    good = [rec(T0 + i * 60_000) for i in range(4)]
    poison = {
        "ts year 10000": rec(0, ts="253402300800000"),
        "ts 1e300": rec(0, ts="1e300"),
        "gpu_index 2**70": rec(T0, gpu_index=str(2**70)),
        "lone surrogate": rec(T0, gpu_uuid='"\\ud800"'),
        "long datacentre": rec(T0, datacentre=json.dumps("d" * 250)),
        "power_w 10**400": rec(T0, power_w="1" + "0" * 400),
    }
    nested = b'{"v":1,"kind":"gpu_sample","records":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    huge = rec(T0, node=json.dumps("n" * 3_000_000))  # a dead letter over the DLQ's limit
    producer = KafkaProducer(bootstrap_servers=kafka, max_request_size=10_000_000)
    producer.send(topic, key=b"k", value=envelope(good[0], *poison.values(), good[1]))
    producer.send(topic, key=b"k", value=nested)
    producer.send(topic, key=b"k", value=envelope(good[2], huge))
    producer.send(topic, key=b"k", value=envelope(good[3]))
    producer.flush()
    producer.close()

    stats = ingest(kafka, namespace, lake)
    rows = lake_rows(lake, "gpu_samples")
    assert sorted(int(r[0].timestamp() * 1000) for r in rows) == [T0 + i * 60_000 for i in range(4)]
    assert stats.rejected == len(poison) + 2  # type: ignore[attr-defined]
    letters = read_dead_letters(kafka, f"{topic}.dlq", expect=len(poison) + 2)
    assert all(dl.reason for dl in letters)
    cut = [dl for dl in letters if dl.truncated_from]
    assert len(cut) == 1 and cut[0].truncated_from > len(cut[0].raw) and cut[0].raw_sha256
    assert any(dl.index is None and dl.raw == nested for dl in letters)
    # and ingest is still alive: a later record lands
    publish(kafka, namespace, 1, gpus=1)
    ingest(kafka, namespace, lake)
    assert len(lake_rows(lake, "gpu_samples")) == 5


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
        _wait_for_commits(lake, 1)
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
