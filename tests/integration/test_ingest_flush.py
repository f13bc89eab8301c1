"""When ingest lands, against the real broker: a backlog lands as soon as it is drained, with
no poll that waits its timeout for nothing first (docs/wire.md#flush)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline import consume
from pipeline.ingest import Ingestor, IngestStats
from pipeline.records import GPU_SAMPLE
from pipeline.topics import ensure_topics
from tests.integration.conftest import lake_rows
from tests.integration.test_ingest import publish, settings_for

pytestmark = pytest.mark.integration


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
    publish(kafka, ns, 200, gpus=10, batch=1)  # 200 messages
    settings = settings_for(kafka, ns, tmp_path, poll_timeout_ms=60_000, max_batch_seconds=600.0)
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
