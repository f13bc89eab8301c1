"""The publisher with the broker away: backoff, a bounded buffer, a clear error, no silent loss."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from collectors.publish import KafkaSink, PublishError, PublishSettings
from gpuledger import broker
from pipeline.records import GPU_SAMPLE
from pipeline.topics import ensure_topics
from tests.conftest import gpu_sample
from tests.integration.conftest import broker_settings, free_port

pytestmark = pytest.mark.integration
T0 = 1_588_262_400_000


def test_no_broker_gives_a_clear_error_after_retrying() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        KafkaSink(PublishSettings(bootstrap=address, connect_timeout_s=4))
    assert time.monotonic() - started >= 3  # it retried with backoff before giving up
    assert address in str(info.value) and "gpuledger kafka start" in str(info.value)


def test_broker_dying_mid_stream_fills_the_bounded_buffer_then_fails_loudly(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path / "kafka")
    bootstrap = broker.start(settings)
    try:
        ensure_topics(bootstrap)
        sink = KafkaSink(
            PublishSettings(
                bootstrap=bootstrap,
                batch_records=10,
                max_unacked_records=200,
                max_block_ms=3_000,
                delivery_timeout_ms=5_000,
                request_timeout_ms=2_000,
            )
        )
        for i in range(50):
            sink.add(GPU_SAMPLE, gpu_sample(T0 + i * 60_000))
        sink.flush()
        assert sink.sent_records == 50
        broker.kill(settings)
        with pytest.raises(PublishError) as info:
            for i in range(50, 5_000):
                sink.add(GPU_SAMPLE, gpu_sample(T0 + i * 60_000))
            sink.flush()
        message = str(info.value)
        assert bootstrap in message and ("unacknowledged" in message or "not delivered" in message)
        # Nothing silent: every record handed over is either acknowledged, failed, or still pending.
        assert sink.sent_records == 50
        assert sink.failed_records > 0 or "unacknowledged" in message
        with pytest.raises(KafkaError):  # closing cannot deliver them either, and says so
            sink.producer.close(timeout=1)
    finally:
        broker.kill(settings)
