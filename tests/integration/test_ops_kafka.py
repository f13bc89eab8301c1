"""Operator surfaces against the real broker: consumer lag and dead letters in the exporter,
alerts published to the alerts.v1 topic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpuledger.ops_cli import main
from pipeline.dead_letter import DeadLetter
from pipeline.records import GPU_SAMPLE
from pipeline.topics import topic_for
from tests.ops_lake import MIN
from tests.test_alerts import T0, idle_period_lake, iso
from warehouse.ops.exporter import ExporterSettings, build_registry

pytestmark = pytest.mark.integration


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }


def test_exporter_reports_lag_and_dead_letters(kafka: str, namespace: str, tmp_path: Path) -> None:
    topic = topic_for(GPU_SAMPLE, namespace)
    producer = KafkaProducer(bootstrap_servers=kafka)
    for _ in range(7):
        producer.send(topic, value=b"{}", partition=0)
    for i, cls in enumerate(["out_of_range", "out_of_range", "bad_json"]):
        letter = DeadLetter(b"x", f"why {i}", cls, "gpu_sample", topic, 0, i, 0)
        producer.send(f"{topic}.dlq", value=letter.raw, headers=letter.headers(), partition=1)
    producer.flush()
    producer.close()
    group = f"{namespace}-ingest"
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    from kafka.structs import OffsetAndMetadata

    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    consumer.close()

    settings = ExporterSettings(lake=tmp_path, kafka=kafka, namespace=namespace, group=group)
    registry, collector = build_registry(settings)
    try:
        text = generate_latest(registry).decode()
        lag = samples(text, "gpuledger_consumer_lag_records")
        key = (("group", group), ("partition", "0"), ("topic", "gpu.samples.v1"))
        assert lag[key] == 4
        dead = samples(text, "gpuledger_dead_letters_total")
        k = (("path", "stream"), ("reason", "out_of_range"), ("topic", "gpu.samples.v1"))
        assert dead[k] == 2
        assert dead[(("path", "stream"), ("reason", "bad_json"), ("topic", "gpu.samples.v1"))] == 1
        assert samples(text, "gpuledger_exporter_up")[(("part", "kafka"),)] == 1
        # the DLQ is read incrementally: a new dead letter adds one, nothing is recounted
        producer = KafkaProducer(bootstrap_servers=kafka)
        letter = DeadLetter(b"y", "why", "bad_json", "gpu_sample", topic, 0, 9, 0)
        producer.send(f"{topic}.dlq", value=letter.raw, headers=letter.headers())
        producer.flush()
        producer.close()
        dead = samples(generate_latest(registry).decode(), "gpuledger_dead_letters_total")
        assert dead[(("path", "stream"), ("reason", "bad_json"), ("topic", "gpu.samples.v1"))] == 2
        assert dead[k] == 2
    finally:
        assert collector.kafka is not None
        collector.kafka.close()


def test_alerts_published_to_the_alerts_topic(kafka: str, namespace: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    idle_period_lake(lake)
    argv = ["alerts", "--lake", str(lake), "--kafka", kafka, "--namespace", namespace]
    argv += ["--replay-from", iso(T0), "--replay-to", iso(T0 + 99 * MIN), "--step", "2m"]
    assert main(argv) == 0
    consumer = KafkaConsumer(
        f"{namespace}.alerts.v1",
        bootstrap_servers=kafka,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
    )
    got = []
    for msg in consumer:
        got.append((msg.key.decode(), json.loads(msg.value)))
        if len(got) == 2:
            break
    consumer.close()
    assert [v["status"] for _, v in got] == ["firing", "resolved"]
    assert got[0][0] == got[1][0] == got[0][1]["fingerprint"]
    assert got[0][1]["labels"]["alertname"] == "GpuledgerIdleCapacity"
