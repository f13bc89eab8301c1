"""A backfill's rows are written once as the table's own data files and committed in one
transaction: the same rows, statistics and exactly-once re-runs as a ``deltalake`` write,
even when a re-run shares files with other loads (compaction) or another writer commits
first; a refused Parquet file spooled on its first pass yields nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors import records_file
from collectors.records_file import InputFileError, RecordsFileCollector
from pipeline import lake as lakes
from pipeline.backfill import LakeSink
from pipeline.maintain import compact
from pipeline.records import GPU_SAMPLE
from tests.conftest import gpu_sample
from tests.test_records_file import fleet_parquet
from warehouse.catalog import connect

T0 = 1_588_262_400_000
DAY = 86_400_000
ROWS = "SELECT epoch_ms(ts), datacentre, gpu_uuid, util, _load, _version FROM raw_gpu_samples"


def _load(lake: Path, load_id: str, records: list[dict]) -> LakeSink:
    sink = LakeSink(lake, load_id, origin="test", chunk_records=2)
    for r in records:
        sink.add(GPU_SAMPLE, r)
    sink.flush()
    return sink


def _rows(lake: Path) -> list[tuple]:
    return connect(lake, ":memory:").execute(ROWS + " ORDER BY ALL").fetchall()


def test_odd_partition_values_and_statistics_round_trip(lake: Path) -> None:
    records = [gpu_sample(T0 + i * DAY, datacentre="dc a/b%é", gpu=f"G{i}") for i in range(3)]
    records.append(gpu_sample(T0, util=None))
    _load(lake, "load-1", records)
    got = _rows(lake)
    assert sorted((r[1], r[2], r[5]) for r in got) == [
        ("dc a/b%é", "G0", 1),
        ("dc a/b%é", "G1", 1),
        ("dc a/b%é", "G2", 1),
        ("dc1", "GPU-0", 1),
    ]
    dt = lakes.open_table(lake / "gpu_samples")
    assert dt is not None
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    assert sorted(a["partition.datacentre"] for a in actions) == ["dc a/b%é"] * 3 + ["dc1"]
    for a in actions:
        assert (a["min._version"], a["max._version"], a["num_records"]) == (1, 1, 1)
        assert a["min._load"] == a["max._load"] == "load-1"
    [plain] = [a for a in actions if a["partition.datacentre"] == "dc1"]
    assert plain["null_count.util"] == 1 and plain["min.util"] is None
    assert plain["min.ts"].timestamp() * 1000 == T0
    for path, values in lakes.active_files(dt):  # the partition columns live in the log
        assert Path(path).is_file() and "datacentre" not in pq.read_schema(path).names
        assert values["date"] is not None
    _load(lake, "load-1", records[1:])  # a re-run replaces the odd partitions' files too
    again = sorted((r[1], r[2]) for r in _rows(lake))
    assert again == [("dc a/b%é", "G1"), ("dc a/b%é", "G2"), ("dc1", "GPU-0")]
    dt = lakes.open_table(lake / "gpu_samples")
    assert dt is not None and len(dt.file_uris()) == 3


def test_a_rerun_replaces_its_rows_in_files_it_shares_with_another_load(lake: Path) -> None:
    _load(lake, "load-a", [gpu_sample(T0, gpu="A"), gpu_sample(T0 + 60_000, gpu="A")])
    _load(lake, "load-b", [gpu_sample(T0, gpu="B")])
    compact(lake, before=None)  # one file now holds both loads' rows
    dt = lakes.open_table(lake / "gpu_samples")
    assert dt is not None and len(dt.file_uris()) == 1
    _load(lake, "load-a", [gpu_sample(T0 + 3 * DAY, gpu="A")])  # corrected: moved a day
    got = [(r[0], r[2], r[4]) for r in _rows(lake)]
    assert got == [(T0, "B", "load-b"), (T0 + 3 * DAY, "A", "load-a")]
    dt = lakes.open_table(lake / "gpu_samples")
    assert dt is not None
    metrics = dt.history(1)[0]["operationMetrics"]
    assert (metrics["num_removed_files"], metrics["num_added_files"]) == (1, 2)  # B kept apart


def test_a_commit_that_lost_its_version_is_stamped_again(lake: Path) -> None:
    sink = LakeSink(lake, "load-1", origin="test", chunk_records=1)
    sink.add(GPU_SAMPLE, gpu_sample(T0, gpu="late"))
    sink.add(GPU_SAMPLE, gpu_sample(T0 + 1, gpu="late"))  # staged for version 1
    _load(lake, "other", [gpu_sample(T0, gpu="first")])  # another writer takes version 1
    sink.flush()
    assert sink.stats.versions == {"gpu_samples": 2}
    got = [(r[2], r[4], r[5]) for r in _rows(lake)]
    assert got == [("first", "other", 1), ("late", "load-1", 2), ("late", "load-1", 2)]
    assert not (lake / "_staging" / "load-1").exists()


def test_a_spooled_file_refused_late_yields_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_file, "PARQUET_TABLE_ROWS", 100)
    monkeypatch.setattr(records_file.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = fleet_parquet(tmp_path / "s.parquet", 2_000, bad_rows=(1_950,))
    collector = RecordsFileCollector(GPU_SAMPLE, path, buffer_records=150)
    tables = collector.collect_tables()
    assert tables is not None
    got = []
    with pytest.raises(InputFileError) as info:
        for item in tables:
            got.append(item)
    assert got == [] and info.value.problems == [f"{path}:1950: util=1.5 is above 1.0"]
    assert list((tmp_path / "tmp").iterdir()) == []  # the spool is gone
    good = fleet_parquet(tmp_path / "g.parquet", 2_000)
    again = RecordsFileCollector(GPU_SAMPLE, good, buffer_records=150).collect_tables()
    assert again is not None
    assert sum(t.num_rows for _, t in again) == 2_000
    assert list((tmp_path / "tmp").iterdir()) == []


def test_commit_metadata_is_the_load_log_entry(lake: Path) -> None:
    _load(lake, "load-1", [gpu_sample(T0), gpu_sample(T0, util=7.0)])
    dt = lakes.open_table(lake / "gpu_samples")
    assert dt is not None
    info = dt.history(1)[0]
    assert info["gpuledger.load_id"] == "load-1"
    assert (info["gpuledger.rows"], info["gpuledger.rejected"]) == ("1", "1")
    assert json.loads(info["gpuledger.offsets"]) == {}
