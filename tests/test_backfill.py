"""Backfill: same validation and writing as ingest; re-runs replace their own rows in one
commit; rejects quarantined; the load id follows the content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.backfill import LakeSink, backfill_load_id
from pipeline.dedup import dedup
from pipeline.lake import open_table
from pipeline.records import GPU_SAMPLE, coerce
from tests.conftest import gpu_sample
from warehouse.catalog import connect

T0 = 1_588_262_400_000
DAY = 86_400_000


def _rows(lake: Path, sql: str = "SELECT count(*) FROM raw_gpu_samples") -> list[tuple]:
    return connect(lake, ":memory:").execute(sql).fetchall()


def _load(lake: Path, load_id: str, records: list[dict], chunk: int = 3) -> LakeSink:
    sink = LakeSink(lake, load_id, origin="test", chunk_records=chunk)
    for r in records:
        sink.add(GPU_SAMPLE, r)
    sink.flush()
    return sink


def test_backfill_writes_quarantines_and_retry_replaces(lake: Path) -> None:
    records = [gpu_sample(T0 + i * 60_000) for i in range(5)]
    records.append(gpu_sample(T0, util=7.0))  # out of range -> quarantine
    for _attempt in range(2):  # the retry must replace the first run's rows, not add to them
        sink = _load(lake, "load-1", records)
    assert _rows(lake) == [(5,)]
    assert sink.stats.written == {"gpu_sample": 5}
    assert sink.stats.rejected == {"gpu_sample": 1}
    assert sink.stats.commits == 1  # six records in two chunks: one commit
    [quarantine] = sink.stats.quarantine
    [letter] = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert letter["error_class"] == "out_of_range" and "util" in letter["reason"]
    assert json.loads(letter["raw"])["util"] == 7.0
    loads = _rows(lake, "SELECT load_id, version, rows, rejected FROM _loads ORDER BY version")
    assert loads == [("load-1", 1, 5, 1), ("load-1", 2, 5, 1)]
    assert not (lake / "_staging" / "load-1").exists()


def test_rerun_replaces_rows_whose_correction_moved_them_to_another_day(lake: Path) -> None:
    _load(lake, "load-1", [gpu_sample(T0), gpu_sample(T0 + 60_000, gpu="GPU-1")])
    _load(lake, "load-1", [gpu_sample(T0 + 3 * DAY), gpu_sample(T0 + 60_000, gpu="GPU-1")])
    got = _rows(lake, "SELECT epoch_ms(ts), gpu_uuid FROM raw_gpu_samples ORDER BY ALL")
    assert got == [(T0 + 60_000, "GPU-1"), (T0 + 3 * DAY, "GPU-0")]
    dt = open_table(lake / "gpu_samples")
    assert dt is not None
    metrics = dt.history(1)[0]["operationMetrics"]  # the re-run is one commit: remove + add
    assert (metrics["num_removed_files"], metrics["num_added_files"]) == (1, 2)
    assert dt.version() == 2


def test_other_loads_are_left_alone_and_the_newest_commit_wins(lake: Path) -> None:
    _load(lake, "load-a", [gpu_sample(T0, util=0.1)])
    _load(lake, "load-b", [gpu_sample(T0, util=0.9)])
    _load(lake, "load-a", [gpu_sample(T0, util=0.1)])  # re-run of a: now the newest write
    assert _rows(lake) == [(2,)]
    assert _rows(lake, "SELECT util FROM gpu_samples") == [(0.1,)]
    conflicts = _rows(lake, "SELECT _load, _kept FROM gpu_samples_conflicts ORDER BY _load")
    assert conflicts == [("load-a", True), ("load-b", False)]


def test_a_failing_source_writes_nothing(lake: Path) -> None:
    sink = LakeSink(lake, "load-1", origin="test", chunk_records=2)
    for i in range(5):
        sink.add(GPU_SAMPLE, gpu_sample(T0 + i * 60_000))
    # the collector raises here: flush is never called, nothing is committed
    assert open_table(lake / "gpu_samples") is None
    assert _rows(lake) == [(0,)]


def test_load_id_follows_content_not_spelling(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_text('{"x": 1}\n')
    spelled = tmp_path / "sub" / ".." / "a.jsonl"
    (tmp_path / "sub").mkdir()
    same = backfill_load_id("records", {"file": a, "kind": "gpu_sample", "verbose": False})
    assert (
        backfill_load_id("records", {"file": spelled, "kind": "gpu_sample", "verbose": True})
        == same
    )
    copy = tmp_path / "b.jsonl"
    copy.write_bytes(a.read_bytes())
    assert backfill_load_id("records", {"file": copy, "kind": "gpu_sample"}) == same
    a.write_text('{"x": 2}\n')
    assert backfill_load_id("records", {"file": a, "kind": "gpu_sample"}) != same
    assert backfill_load_id("records", {"file": copy, "kind": "occupancy"}) != same


@pytest.mark.parametrize("chunk", [1, 1000])
def test_dedup_within_a_load(lake: Path, chunk: int) -> None:
    sink = _load(lake, "load-1", [gpu_sample(T0), gpu_sample(T0)], chunk=chunk)
    assert _rows(lake, "SELECT count(*) FROM gpu_samples") == [(1,)]
    assert sink.stats.duplicates == (0 if chunk == 1 else 1)


def test_dedup_counts_duplicates_and_conflicts() -> None:
    a = coerce(GPU_SAMPLE, gpu_sample(T0))
    b = coerce(GPU_SAMPLE, gpu_sample(T0, util=0.9))
    c = coerce(GPU_SAMPLE, gpu_sample(T0 + 60_000))
    result = dedup(GPU_SAMPLE, [a, dict(a), c, b])
    assert result.duplicates == 1 and result.conflicts == 1
    assert result.records == [c, b]  # last write wins
