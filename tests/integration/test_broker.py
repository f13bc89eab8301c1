"""Integration tests for gpuledger.broker: a real single-node Kafka broker from Maven jars.

Each test gets its own data dir and free ports. The jars are cached in the normal cache
(``$GPULEDGER_CACHE`` or ~/.cache/gpuledger), so only the very first run fetches them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from gpuledger import broker
from pipeline.topics import TopicError, create_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_ports() -> tuple[int, int]:
    while True:
        port, controller = _free_port(), _free_port()
        if port != controller:
            return port, controller


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[broker.BrokerSettings]:
    port, controller = _free_ports()
    s = broker.BrokerSettings(port=port, controller_port=controller, data_dir=tmp_path / "kafka")
    yield s
    broker.kill(s)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for value in values:
            producer.send(topic, value=value, key=b"k").get(timeout=30)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 30) -> list[bytes]:
    """All values of a 1-partition topic from the beginning, without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(values) < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


def _cluster_id(settings: broker.BrokerSettings) -> str:
    meta = (settings.data_dir / "kraft-combined-logs" / "meta.properties").read_text()
    return next(line.split("=", 1)[1] for line in meta.splitlines() if line.startswith("cluster."))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_lifecycle_keeps_data_across_stop_and_start(settings: broker.BrokerSettings) -> None:
    t0 = time.monotonic()
    bootstrap = broker.start(settings)
    cold_s = time.monotonic() - t0
    assert bootstrap == f"127.0.0.1:{settings.port}"

    st = broker.status(settings)
    assert st.running and st.answers and st.pid is not None
    assert st.bootstrap == bootstrap
    assert (settings.data_dir / "broker.pid").read_text().strip() == str(st.pid)
    cluster_id = _cluster_id(settings)

    create_topics(bootstrap, {"lifecycle": 1, "four": 4})
    create_topics(bootstrap, {"lifecycle": 1})  # already exists: no error

    _produce(bootstrap, "lifecycle", [b"hello"])
    # A consumer group too: exercises __consumer_offsets (1 partition, RF 1, no rebalance delay).
    consumer = KafkaConsumer(
        "lifecycle",
        bootstrap_servers=bootstrap,
        group_id="g1",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    try:
        got = [next(consumer).value]
        consumer.commit()
    finally:
        consumer.close()
    assert got == [b"hello"]
    rss = _rss_mib(st.pid)

    assert broker.stop(settings) is True
    assert broker.status(settings) == broker.BrokerStatus(False, None, None, False)
    assert not (settings.data_dir / "broker.pid").exists()
    assert broker.stop(settings) is False

    t0 = time.monotonic()
    assert broker.start(settings) == bootstrap
    warm_s = time.monotonic() - t0
    assert _cluster_id(settings) == cluster_id  # not re-formatted
    assert _read_all(bootstrap, "lifecycle", expect=1) == [b"hello"]
    committed = KafkaConsumer(bootstrap_servers=bootstrap, group_id="g1")
    try:
        assert committed.committed(TopicPartition("lifecycle", 0)) == 1
    finally:
        committed.close()

    assert broker.kill(settings) is True
    assert not broker.status(settings).running
    print(f"\nbroker cold start {cold_s:.1f}s, warm start {warm_s:.1f}s, RSS {rss:.0f} MiB")


def test_start_again_reuses_running_broker(settings: broker.BrokerSettings) -> None:
    bootstrap = broker.start(settings)
    pid = broker.status(settings).pid
    t0 = time.monotonic()
    assert broker.start(settings) == bootstrap
    assert time.monotonic() - t0 < 10
    assert broker.status(settings).pid == pid
    with pytest.raises(TopicError, match="bad name"):
        create_topics(bootstrap, {"bad name!": 1})


def test_restart_after_kill_recovers_data(settings: broker.BrokerSettings) -> None:
    bootstrap = broker.start(settings)
    create_topics(bootstrap, {"crash": 1})
    _produce(bootstrap, "crash", [b"a", b"b"])
    assert broker.kill(settings) is True
    assert broker.start(settings) == bootstrap
    _produce(bootstrap, "crash", [b"c"])
    assert _read_all(bootstrap, "crash", expect=3) == [b"a", b"b", b"c"]


def test_broker_outlives_the_process_that_started_it(settings: broker.BrokerSettings) -> None:
    code = (
        "import sys; from pathlib import Path; from gpuledger import broker; "
        "print(broker.start(broker.BrokerSettings(port=int(sys.argv[1]), "
        "controller_port=int(sys.argv[2]), data_dir=Path(sys.argv[3]))))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code, str(settings.port), str(settings.controller_port)]
        + [str(settings.data_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == settings.bootstrap
    st = broker.status(settings)
    assert st.running and st.answers
    broker.wait_until_answers(settings.bootstrap, 10)
    assert broker.stop(settings) is True


def test_port_taken_by_another_process(settings: broker.BrokerSettings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.port))
        squatter.listen()
        with pytest.raises(broker.BrokerError, match=f"port {settings.port}.*in use"):
            broker.start(settings)
    assert not broker.status(settings).running


def test_wait_until_answers_times_out_without_broker() -> None:
    with pytest.raises(broker.BrokerError, match="did not answer"):
        broker.wait_until_answers(f"127.0.0.1:{_free_port()}", 1)
