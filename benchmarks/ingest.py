"""Ingest throughput, measured side by side in one run (not a test).

For 1 and for 64 records per message, on one topic (``gpu.samples.v1`` of a fresh namespace):
publish N records, then time (a) a bare kafka-python consume loop over all messages and
(b) ``gpuledger ingest`` (validate, dedup, Parquet, commit) until all N are landed. Prints
landed records/s of ingest divided by records/s of the bare loop.

    .venv/bin/python benchmarks/ingest.py --kafka 127.0.0.1:19292 [--records 200000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from collectors.publish import KafkaSink, PublishSettings  # noqa: E402
from pipeline.ingest import Ingestor, IngestSettings, IngestStats  # noqa: E402
from pipeline.records import GPU_SAMPLE  # noqa: E402
from pipeline.topics import ensure_topics, topic_for  # noqa: E402

T0 = 1_588_262_400_000


def publish(bootstrap: str, ns: str, n: int, batch: int) -> int:
    """Publish n samples of 256 GPUs; return the number of messages sent."""
    sink = KafkaSink(PublishSettings(bootstrap=bootstrap, namespace=ns, batch_records=batch))
    for i in range(n):
        sink.add(
            GPU_SAMPLE,
            {
                "ts": T0 + (i // 256) * 30_000,
                "interval_s": 30.0,
                "datacentre": "bench",
                "cluster": "c1",
                "node": f"n{(i % 256) // 8}",
                "gpu_uuid": f"GPU-{i % 256}",
                "gpu_index": i % 8,
                "gpu_model": "H100",
                "util": (i % 100) / 100,
                "mem_used_bytes": 1 << 33,
                "mem_total_bytes": 80 << 30,
                "power_w": 400.0,
                "temp_c": 60.0,
                "sm_active": None,
                "pod": None,
                "namespace": None,
                "job_id": None,
                "source": "bench",
            },
        )
    sink.flush()
    sink.close()
    return sink.sent_messages


def bare_consume(bootstrap: str, topic: str, messages: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    seen = 0
    started = time.perf_counter()
    while seen < messages:
        for batch in consumer.poll(timeout_ms=1000).values():
            seen += len(batch)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def ours(bootstrap: str, ns: str, n: int) -> float:
    stop = threading.Event()
    done: list[float] = []

    def progress(s: IngestStats) -> None:
        if s.landed >= n and not done:
            done.append(time.perf_counter())
            stop.set()

    with tempfile.TemporaryDirectory() as lake:
        ingestor = Ingestor(
            IngestSettings(
                bootstrap=bootstrap,
                lake=Path(lake),
                namespace=ns,
                group=f"{ns}-bench",
                max_batch_seconds=2.0,
            )
        )
        started = time.perf_counter()
        ingestor.run(stop=stop, progress=progress)
    if not done:
        raise RuntimeError("ingest stopped before landing every record")
    return done[0] - started


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--records", type=int, default=200_000)
    a = ap.parse_args()
    print(
        f"{'records/msg':>11} {'records':>9} {'bare rec/s':>11} {'ingest rec/s':>12} {'ratio':>6}"
    )
    for batch in (1, 64):
        ns = f"bench{uuid.uuid4().hex[:8]}"
        ensure_topics(a.kafka, ns)
        messages = publish(a.kafka, ns, a.records, batch)
        topic = topic_for(GPU_SAMPLE, ns)
        bare = a.records / bare_consume(a.kafka, topic, messages)
        landed = a.records / ours(a.kafka, ns, a.records)
        print(f"{batch:>11} {a.records:>9,} {bare:>11,.0f} {landed:>12,.0f} {landed / bare:>6.3f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
