"""Topic names come from the record contract only (``Kind.topic``, ``Kind.dlq_topic``)."""

from __future__ import annotations

import urllib.request

from pipeline.ingest_metrics import IngestMetrics, serve_metrics
from pipeline.records import KINDS, dead_letter_topic, origin_topic
from pipeline.topics import all_topics, contract_topics, dlq_topic_for, dlq_topics, topic_for
from tests.integration.conftest import free_port


def test_dead_letter_topics_derive_from_the_contract() -> None:
    k = KINDS["gpu_sample"]
    assert k.dlq_topic == dead_letter_topic(k.topic) == "gpu.samples.v1.dlq"
    assert dlq_topic_for(k) == k.dlq_topic
    assert dlq_topic_for(k, "site1") == "site1.gpu.samples.v1.dlq"
    assert dlq_topic_for(k, "site1") == dead_letter_topic(topic_for(k, "site1"))
    assert origin_topic(dlq_topic_for(k, "site1")) == topic_for(k, "site1")


def test_every_kind_has_a_topic_and_a_dead_letter_topic() -> None:
    assert dlq_topics("ns") == [dead_letter_topic(t) for t in contract_topics("ns")]
    assert all_topics("ns") == contract_topics("ns") + dlq_topics("ns")
    assert len(set(all_topics())) == 2 * len(KINDS)


def test_serve_metrics_serves_the_ingest_counters() -> None:
    port = free_port()
    registry, server = serve_metrics(f"127.0.0.1:{port}")
    try:
        IngestMetrics(registry).landed.labels("gpu.samples.v1").inc(3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'gpuledger_ingest_records_landed_total{topic="gpu.samples.v1"} 3.0' in text
