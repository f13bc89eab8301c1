"""Backfill: same validation and writing as ingest; retries overwrite; rejects quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from pipeline.backfill import LakeSink
from pipeline.dedup import dedup
from pipeline.records import GPU_SAMPLE, coerce
from tests.conftest import gpu_sample

T0 = 1_588_262_400_000


def _count(lake: Path) -> int:
    return (
        duckdb.connect()
        .execute(
            "SELECT count(*) FROM read_parquet(?)", [str(lake / "gpu_samples" / "**" / "*.parquet")]
        )
        .fetchone()[0]
    )


def test_backfill_writes_quarantines_and_retry_overwrites(lake: Path) -> None:
    for _attempt in range(2):  # the retry must rewrite the same files, not add to them
        sink = LakeSink(lake, "load-1", origin="test", chunk_records=3)
        for i in range(5):
            sink.add(GPU_SAMPLE, gpu_sample(T0 + i * 60_000))
        sink.add(GPU_SAMPLE, gpu_sample(T0, util=7.0))  # out of range -> quarantine
        sink.flush()
    assert _count(lake) == 5
    assert sink.stats.written == {"gpu_sample": 5}
    assert sink.stats.rejected == {"gpu_sample": 1}
    [quarantine] = sink.stats.quarantine
    [letter] = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert letter["error_class"] == "out_of_range" and "util" in letter["reason"]
    assert json.loads(letter["raw"])["util"] == 7.0
    loads = (
        duckdb.connect()
        .execute(
            "SELECT sum(rows), sum(rejected) FROM read_parquet(?)",
            [str(lake / "_loads" / "*.parquet")],
        )
        .fetchone()
    )
    assert loads == (5, 1)


def test_dedup_counts_duplicates_and_conflicts() -> None:
    a = coerce(GPU_SAMPLE, gpu_sample(T0))
    b = coerce(GPU_SAMPLE, gpu_sample(T0, util=0.9))
    c = coerce(GPU_SAMPLE, gpu_sample(T0 + 60_000))
    result = dedup(GPU_SAMPLE, [a, dict(a), c, b])
    assert result.duplicates == 1 and result.conflicts == 1
    assert result.records == [c, b]  # last write wins
