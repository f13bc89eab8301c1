"""Wire v2 (Arrow IPC) through the real broker into the lake: the same rows as wire v1, and a
v2 message that cannot be read is one dead letter with its reason while its neighbours land
(docs/wire.md)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from collectors.publish import KafkaSink, PublishSettings
from pipeline.ingest import Ingestor, IngestSettings, IngestStats
from pipeline.records import GPU_SAMPLE, OCCUPANCY
from pipeline.topics import ensure_topics, topic_for
from pipeline.wire import encode
from pipeline.wire_arrow import ARROW_V2_HEADERS, encode_arrow
from tests.conftest import gpu_sample
from tests.integration.conftest import lake_rows, read_dead_letters

pytestmark = pytest.mark.integration
T0 = 1_588_262_400_000


def publish(kafka: str, namespace: str, wire: str, n: int, batch: int) -> None:
    settings = PublishSettings(bootstrap=kafka, namespace=namespace, batch_records=batch, wire=wire)
    sink = KafkaSink(settings)
    try:
        for i in range(n):
            record = gpu_sample(T0 + (i // 20) * 60_000, gpu=f"GPU-{i % 20}")
            if i % 7 == 0:
                record["util"] = 1.5  # out of range: a dead letter on both wires
            if i % 5 == 0:
                record["pod"] = None
            sink.add(GPU_SAMPLE, record)
        sink.flush()
    finally:
        sink.close()
    assert sink.sent_records == n and sink.failed_records == 0


def ingest(kafka: str, namespace: str, lake: Path) -> IngestStats:
    settings = IngestSettings(
        bootstrap=kafka, lake=lake, namespace=namespace, group=f"g-{namespace}", until_idle_s=3.0
    )
    return Ingestor(settings).run()


@pytest.mark.parametrize("batch", [1, 64])
def test_v2_lands_the_same_rows_and_dead_letters_as_v1(
    kafka: str, tmp_path: Path, batch: int
) -> None:
    n = 1_500 if batch == 64 else 300
    got = {}
    for wire in ("json", "arrow"):
        ns = f"t{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka, ns, partitions=2)
        publish(kafka, ns, wire, n, batch)
        stats = ingest(kafka, ns, tmp_path / wire)
        rejected = n // 7 + 1
        assert (stats.landed, stats.rejected) == (n - rejected, rejected)
        letters = read_dead_letters(kafka, f"{topic_for(GPU_SAMPLE, ns)}.dlq", expect=rejected)
        got[wire] = (
            sorted(lake_rows(tmp_path / wire, "gpu_samples")),
            sorted((dl.error_class, dl.reason, dl.raw) for dl in letters),
        )
    assert got["arrow"] == got["json"]
    assert len(got["json"][0]) == n - (n // 7 + 1)


def _v2_of_other_types() -> bytes:
    table = pa.table({f.name: pa.array([None], pa.string()) for f in GPU_SAMPLE.fields})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_a_corrupt_v2_message_is_dead_lettered_and_its_neighbours_land(
    kafka: str, namespace: str, lake: Path
) -> None:
    topic = topic_for(GPU_SAMPLE, namespace)
    good = [gpu_sample(T0 + i * 60_000) for i in range(4)]
    corrupt = encode_arrow(GPU_SAMPLE, [good[1]])[:-40]
    wrong_kind = encode_arrow(OCCUPANCY, [{"ts": T0}])
    producer = KafkaProducer(bootstrap_servers=kafka)
    sends = [
        (encode_arrow(GPU_SAMPLE, [good[0]]), ARROW_V2_HEADERS),
        (corrupt, ARROW_V2_HEADERS),
        (_v2_of_other_types(), ARROW_V2_HEADERS),
        (wrong_kind, ARROW_V2_HEADERS),
        (encode(GPU_SAMPLE, [good[2]]), None),  # v1 next to v2
        (encode_arrow(GPU_SAMPLE, [good[3]]), ARROW_V2_HEADERS),
    ]
    for value, headers in sends:
        producer.send(topic, key=b"k", value=value, headers=headers)
    producer.flush()
    producer.close()

    stats = ingest(kafka, namespace, lake)
    rows = lake_rows(lake, "gpu_samples")
    assert sorted(r[0].timestamp() * 1000 for r in rows) == [T0 + i * 60_000 for i in (0, 2, 3)]
    assert stats.rejected == 3
    letters = read_dead_letters(kafka, f"{topic}.dlq", expect=3)
    by_class = {dl.error_class: dl for dl in letters}
    assert set(by_class) == {"bad_envelope", "bad_schema", "wrong_topic"}
    assert by_class["bad_envelope"].raw == corrupt
    assert "Arrow IPC" in by_class["bad_envelope"].reason
    assert "schema" in by_class["bad_schema"].reason
    assert by_class["wrong_topic"].raw == wrong_kind
    assert all(dl.index is None and dl.origin == topic for dl in letters)
    offsets = sorted(dl.offset for dl in letters)
    assert offsets == sorted(offsets) and len(set(offsets)) == 3


def test_ingest_resumes_from_the_lake_whatever_the_group_told_kafka(
    kafka: str, namespace: str, lake: Path
) -> None:
    """The records of the poll that sees an assignment are used only when they start where
    the lake resumes: with the group's Kafka offsets behind the lake (nothing twice), or
    ahead of it (nothing lost); and a drained backlog of over half a batch lands at once."""
    topic = topic_for(GPU_SAMPLE, namespace)
    group = f"g-{namespace}"
    settings = IngestSettings(
        bootstrap=kafka,
        lake=lake,
        namespace=namespace,
        group=group,
        until_idle_s=1.0,
        max_batch_records=300,
    )

    def send(first: int, n: int) -> None:
        producer = KafkaProducer(bootstrap_servers=kafka)
        for i in range(first, first + n):
            value = encode(GPU_SAMPLE, [gpu_sample(T0 + i * 60_000)])
            producer.send(topic, key=f"k{i % 7}".encode(), value=value)
        producer.flush()
        producer.close()

    def tell_kafka(where: str) -> None:
        consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group)
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = consumer.end_offsets(parts)
        consumer.commit(
            {tp: OffsetAndMetadata(0 if where == "behind" else ends[tp], "", -1) for tp in parts}
        )
        consumer.close()

    send(0, 500)
    assert Ingestor(settings).run().landed == 500
    send(500, 200)
    tell_kafka("behind")
    assert Ingestor(settings).run().landed == 200
    send(700, 250)
    tell_kafka("ahead")
    stats = Ingestor(settings).run()
    assert (stats.landed, stats.rejected, stats.fenced) == (250, 0, 0)
    rows = lake_rows(lake, "gpu_samples")
    assert sorted(r[0].timestamp() * 1000 for r in rows) == [T0 + i * 60_000 for i in range(950)]
