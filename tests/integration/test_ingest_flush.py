"""When ingest lands, against the real broker: a backlog lands as soon as it is drained, with
no poll that waits its timeout for nothing first (docs/wire.md#flush)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from collectors.publish import KafkaSink, PublishSettings
from pipeline import consume
from pipeline.ingest import Ingestor, IngestSettings, IngestStats
from pipeline.records import GPU_SAMPLE
from pipeline.topics import ensure_topics
from tests.conftest import gpu_sample
from tests.integration.conftest import lake_rows

pytestmark = pytest.mark.integration
T0 = 1_588_262_400_000


def test_a_backlog_whose_last_poll_is_full_lands_without_an_idle_poll(
    kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backlog's last records come in a full poll (``max_poll_records`` of them), and the
    other topics' partitions, empty, are known to be at their end only once the consumer has
    parsed their fetch answers, queued behind the records: the next poll must not wait its
    timeout (here 60 s) before the backlog lands."""
    monkeypatch.setattr(consume, "MAX_POLL_RECORDS", 50)
    ns = f"t{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka, ns, partitions=1)
    sink = KafkaSink(PublishSettings(bootstrap=kafka, namespace=ns, batch_records=1))
    try:
        for i in range(200):
            sink.add(GPU_SAMPLE, gpu_sample(T0 + (i // 10) * 60_000, gpu=f"GPU-{i % 10}"))
        sink.flush()
    finally:
        sink.close()
    assert sink.sent_messages == 200
    settings = IngestSettings(
        bootstrap=kafka,
        lake=tmp_path,
        namespace=ns,
        group=f"g-{ns}",
        poll_timeout_ms=60_000,
        max_batch_seconds=600.0,
    )
    ingestor = Ingestor(settings)
    polls: list[tuple[int, int]] = []  # (timeout, messages) of each poll
    real = ingestor.consumer.poll

    def poll(timeout_ms: int, **kw: Any) -> Any:
        got = real(timeout_ms=timeout_ms, **kw)
        polls.append((timeout_ms, sum(len(m) for m in got.values())))
        return got

    ingestor.consumer.poll = poll
    stop = threading.Event()
    commits: list[tuple[int, int]] = []  # (polls so far, records landed) at each flush

    def progress(stats: IngestStats) -> None:
        commits.append((len(polls), stats.landed))
        stop.set()

    stats = ingestor.run(stop=stop, progress=progress)
    assert stats.landed == 200 and stats.rejected == 0
    assert commits[0][1] == 200  # one commit, the whole backlog
    assert sum(n for _, n in polls) == 200
    assert polls[:4] == [(60_000, 50)] + [(0, 50)] * 3  # records at once, each next poll quick
    idle = [i for i, (timeout, n) in enumerate(polls[: commits[0][0]]) if timeout and not n]
    assert idle == []  # no poll before the commit waited its timeout for nothing
    assert len(lake_rows(tmp_path, GPU_SAMPLE.table)) == 200
