"""RecordsFileCollector: records from JSON lines, CSV and Parquet; a bad file is refused whole."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors import records_file
from collectors.records_file import InputFileError, RecordsFileCollector
from collectors.run import run_collector
from pipeline import readers
from pipeline.backfill import LakeSink
from pipeline.lake import open_table
from pipeline.records import ALLOCATION, GPU_SAMPLE, INVENTORY, Kind, RecordError
from pipeline.write import table_of
from warehouse.catalog import connect

FIXTURES = Path(__file__).parent / "fixtures" / "records"

EXPECTED_ALLOCATIONS = [
    {
        "allocation_id": "job-1001",
        "datacentre": "sh-lingang",
        "cluster": "a800",
        "tenant_id": "00123",  # digits stay text: types come from the contract
        "event_ts": 1_740_794_400_000,  # 2025-03-01T10:00:00+08:00
        "job_id": "42",
        "gpu_count": 8.0,
        "gpu_uuids": ["GPU-aa", "GPU-bb"],
        "nodes": ["node-01"],
        "start": 1_740_787_200_000,
        "end": 1_740_794_400_000,
        "state": "COMPLETED",
        "source": "slurm",
    },
    {
        "allocation_id": "job-1002",
        "datacentre": "sh-lingang",
        "cluster": "a800",
        "tenant_id": "t-acme",
        "event_ts": 1_740_794_400_000,
        "job_id": None,
        "gpu_count": 0.5,
        "gpu_uuids": None,
        "nodes": ["node-02", "node-03"],
        "start": 1_740_790_800_000,
        "end": None,
        "state": "RUNNING",
        "source": "slurm",
    },
    {
        "allocation_id": "job-1003",
        "datacentre": "sh-lingang",
        "cluster": "a800",
        "tenant_id": "t-acme",
        "event_ts": 1_740_796_200_000,
        "job_id": None,
        "gpu_count": 2.0,
        "gpu_uuids": None,
        "nodes": None,
        "start": 1_740_794_400_000,
        "end": 1_740_796_200_000,
        "state": "FAILED",
        "source": "slurm",
    },
]


def collect(kind: Kind, path: Path) -> list[dict]:
    out = []
    for k, record in RecordsFileCollector(kind, path).collect():
        assert k is kind
        out.append(record)
    return out


@pytest.mark.parametrize("name", ["allocations.jsonl", "allocations.csv"])
def test_valid_file_yields_canonical_records(name: str) -> None:
    assert collect(ALLOCATION, FIXTURES / name) == EXPECTED_ALLOCATIONS


def test_json_suffix_is_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "allocations.json"
    path.write_bytes((FIXTURES / "allocations.jsonl").read_bytes())
    assert collect(ALLOCATION, path) == EXPECTED_ALLOCATIONS


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "allocations.parquet"
    table = pa.Table.from_pylist(
        collect(ALLOCATION, FIXTURES / "allocations.jsonl"), schema=ALLOCATION.arrow_schema()
    )
    pq.write_table(table, path)
    assert collect(ALLOCATION, path) == EXPECTED_ALLOCATIONS


def test_csv_types_come_from_the_contract() -> None:
    records = collect(INVENTORY, FIXTURES / "inventory.csv")
    assert [(r["node"], r["gpu_count"], r["gpu_model"], r["valid_to"]) for r in records] == [
        ("node-01", 8, "NVIDIA A800-SXM4-80GB", None),
        ("node-02", 4, None, 1_748_707_200_000),
    ]
    assert all(type(r["gpu_count"]) is int for r in records)


def refused(kind: Kind, path: Path) -> InputFileError:
    collector = RecordsFileCollector(kind, path)
    got: list = []
    with pytest.raises(InputFileError) as info:
        for item in collector.collect():
            got.append(item)
    assert got == []  # nothing half published
    assert isinstance(info.value, ValueError)
    return info.value


def test_bad_csv_is_refused_whole_with_every_bad_line() -> None:
    path = FIXTURES / "allocations_bad.csv"
    error = refused(ALLOCATION, path)
    # header = line 1; job-2001 spans lines 2-3 (quoted newline) and is fine
    assert len(error.problems) == 2
    assert error.problems[0].startswith(f"{path}:4: ")
    assert "no UTC offset" in error.problems[0]
    assert error.problems[1] == f"{path}:6: gpu_count: 'two' is not a number"
    assert f"{path}:4: " in str(error) and f"{path}:6: " in str(error)


def test_bad_json_lines_reports_physical_lines() -> None:
    path = FIXTURES / "allocations_bad.jsonl"
    error = refused(ALLOCATION, path)
    assert [p.split(": ", 1)[0] for p in error.problems] == [f"{path}:2", f"{path}:4"]
    assert "'2025-03-01T10:00:00' has no UTC offset" in error.problems[0]
    assert error.problems[1] == f"{path}:4: allocation end is before its start"


def test_naive_parquet_timestamps_are_refused(tmp_path: Path) -> None:
    rows = collect(INVENTORY, FIXTURES / "inventory.csv")
    for r in rows:
        r["valid_from"] = datetime(2025, 1, 1)  # naive
        r["valid_to"] = None
    path = tmp_path / "inventory.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert pa.types.is_timestamp(pq.read_schema(path).field("valid_from").type)
    error = refused(INVENTORY, path)
    assert [p.split(": ", 1)[0] for p in error.problems] == [f"{path}:1", f"{path}:2"]
    assert all("has no UTC offset" in p for p in error.problems)


def test_unknown_columns_malformed_json_and_file_types(tmp_path: Path) -> None:
    csv_path = tmp_path / "inventory.csv"
    csv_path.write_text(
        (FIXTURES / "inventory.csv").read_text().replace("source\n", "source,rack\n", 1)
    )
    error = refused(INVENTORY, csv_path)
    assert error.problems[0] == f"{csv_path}:1: unknown column(s) for inventory: rack"

    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"node": \n[1, 2]\n')
    error = refused(INVENTORY, jsonl)
    assert error.problems[0].startswith(f"{jsonl}:1: not valid JSON")
    assert error.problems[1] == f"{jsonl}:2: expected a JSON object, got list"

    txt = tmp_path / "x.txt"
    txt.write_text("")
    assert "unsupported file type" in refused(INVENTORY, txt).problems[0]


# ------------------------------------------------------------------ bounded memory, streaming

T0 = 1_740_787_200_000  # 2025-03-01T00:00:00Z
GPUS = 200


def fleet_parquet(path: Path, rows: int, bad_rows: tuple[int, ...] = ()) -> Path:
    """``rows`` gpu_samples of ``GPUS`` GPUs every 15 s, written in chunks; ``bad_rows``
    (1-based) get util 1.5, which the contract refuses."""
    schema = GPU_SAMPLE.arrow_schema()
    gpus = np.arange(GPUS)
    uuid = np.array([f"GPU-{g:04d}" for g in gpus])
    node = np.array([f"node-{g // 8:03d}" for g in gpus])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 100_000):
            i = np.arange(start, min(start + 100_000, rows))
            g = i % GPUS
            util = (i % 101) / 100
            for bad in bad_rows:
                if start < bad <= start + len(i):
                    util[bad - 1 - start] = 1.5
            columns = {
                "ts": T0 + (i // GPUS) * 15_000,
                "interval_s": np.full(len(i), 15.0),
                "datacentre": np.where(g < GPUS // 2, "dc1", "dc2"),
                "cluster": np.where(g % 4 < 2, "c1", "c2"),
                "node": node[g],
                "gpu_uuid": uuid[g],
                "gpu_index": g % 8,
                "util": util,
                "source": np.full(len(i), "test"),
            }
            writer.write_table(
                pa.table(
                    [
                        pa.array(columns[f.name], f.type)
                        if f.name in columns
                        else pa.nulls(len(i), f.type)
                        for f in schema
                    ],
                    schema=schema,
                )
            )
    return path


def test_parquet_in_small_batches_and_two_passes_yields_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fleet_parquet(tmp_path / "s.parquet", 1_000)
    once = collect(GPU_SAMPLE, path)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 7)
    twice = [r for _, r in RecordsFileCollector(GPU_SAMPLE, path, buffer_records=0).collect()]
    assert twice == once and len(once) == 1_000
    assert once[999]["ts"] == T0 + 4 * 15_000 and once[999]["gpu_uuid"] == "GPU-0199"
    assert all(type(r["ts"]) is int for r in once)


@pytest.mark.parametrize("buffer_records", [0, 10_000])
@pytest.mark.parametrize("single_pass", [False, True])
def test_one_bad_parquet_row_refuses_the_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buffer_records: int, single_pass: bool
) -> None:
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 64)
    path = fleet_parquet(tmp_path / "s.parquet", 1_000, bad_rows=(500,))
    collector = RecordsFileCollector(
        GPU_SAMPLE, path, buffer_records=buffer_records, single_pass=single_pass
    )
    got: list = []
    with pytest.raises(InputFileError) as info:
        for item in collector.collect():
            got.append(item)
    assert info.value.problems == [f"{path}:500: util=1.5 is above 1.0"]
    assert len(got) == (499 if single_pass else 0)  # single pass: for a commit-at-flush sink


def test_problems_beyond_the_limit_are_counted(tmp_path: Path) -> None:
    path = fleet_parquet(tmp_path / "s.parquet", 100, bad_rows=tuple(range(1, 101, 10)))
    with pytest.raises(InputFileError) as info:
        list(RecordsFileCollector(GPU_SAMPLE, path, max_problems=3).collect())
    error = info.value
    assert [p.split(": ", 1)[0] for p in error.problems] == [f"{path}:{n}" for n in (1, 11, 21)]
    assert error.more == 7
    assert "refused whole, 10 problem(s)" in str(error) and str(error).endswith("... and 7 more")


def test_a_file_changed_between_the_passes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fleet_parquet(tmp_path / "s.parquet", 50)
    stamps = iter([(1, 1, 1), (2, 2, 2)])
    monkeypatch.setattr(records_file, "_stamp", lambda _path: next(stamps))
    collector = RecordsFileCollector(GPU_SAMPLE, path, buffer_records=10)
    got: list = []
    with pytest.raises(InputFileError, match="changed while being read; nothing imported"):
        for item in collector.collect():
            got.append(item)
    assert got == []


@pytest.mark.parametrize(
    ("unit", "value"),
    [("s", 1_740_787_200), ("ms", T0 + 1), ("us", (T0 + 1) * 1_000), ("ns", (T0 + 1) * 10**6)],
)
def test_aware_parquet_timestamps_become_epoch_ms(tmp_path: Path, unit: str, value: int) -> None:
    rows = collect(INVENTORY, FIXTURES / "inventory.csv")
    table = pa.Table.from_pylist(rows, schema=INVENTORY.arrow_schema())
    column = pa.array([value, value], pa.int64()).cast(pa.timestamp(unit, tz="+08:00"))
    table = table.set_column(table.schema.get_field_index("valid_from"), "valid_from", column)
    path = tmp_path / "inventory.parquet"
    pq.write_table(table, path)
    got = collect(INVENTORY, path)
    want = value * 1000 if unit == "s" else T0 + 1
    assert [r["valid_from"] for r in got] == [want, want]
    assert all(type(r["valid_from"]) is int for r in got)


def test_sub_millisecond_parquet_timestamps_round_as_before(tmp_path: Path) -> None:
    rows = collect(INVENTORY, FIXTURES / "inventory.csv")
    table = pa.Table.from_pylist(rows, schema=INVENTORY.arrow_schema())
    us = [T0 * 1_000 + 400, T0 * 1_000 + 600]
    column = pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.schema.get_field_index("valid_from"), "valid_from", column)
    path = tmp_path / "inventory.parquet"
    pq.write_table(table, path)
    assert [r["valid_from"] for r in collect(INVENTORY, path)] == [T0, T0 + 1]


def test_single_pass_into_the_lake_commits_nothing_when_refused(lake: Path) -> None:
    """A collector raising under run_collector means no flush, so LakeSink commits nothing."""
    path = fleet_parquet(lake.parent / "s.parquet", 2_000, bad_rows=(1_999,))
    sink = LakeSink(lake, "load-1", origin="test", chunk_records=100)
    collector = RecordsFileCollector(GPU_SAMPLE, path, single_pass=True)
    with pytest.raises(InputFileError):
        run_collector(collector, sink)
    assert sink.stats.commits == 0
    assert open_table(table_of(lake, GPU_SAMPLE)) is None


CHILD = """
import json, resource, sys
from gpuledger.cli import main
rc = main(["backfill", "--lake", sys.argv[2], "records", "--kind", "gpu_sample",
           "--file", sys.argv[1]])
print(json.dumps({"rc": rc, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def backfill_in_child(path: Path, lake: Path) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes, stderr) of ``gpuledger backfill ... records`` in a child."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(lake)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["rc"], out["maxrss_kib"] * 1024, done.stderr


def test_backfill_of_a_large_parquet_file_runs_in_bounded_memory(tmp_path: Path) -> None:
    """Peak RSS barely grows with the file: holding 400k more rows as dicts (the former
    whole-file read) would add well over 400 MiB (about 1.3 KiB per row, measured 650 MiB)."""
    small = fleet_parquet(tmp_path / "small.parquet", 100_000)
    large = fleet_parquet(tmp_path / "large.parquet", 500_000)
    rc, small_rss, err = backfill_in_child(small, tmp_path / "lake-small")
    assert rc == 0, err
    rc, large_rss, err = backfill_in_child(large, tmp_path / "lake-large")
    assert rc == 0, err
    assert large_rss < 1.5 * 2**30
    assert large_rss - small_rss < 200 * 2**20, (small_rss, large_rss)
    rows = connect(tmp_path / "lake-large", ":memory:").execute(
        "SELECT count(*), count(DISTINCT gpu_uuid) FROM raw_gpu_samples"
    )
    assert rows.fetchall() == [(500_000, GPUS)]


def test_backfill_of_a_parquet_file_with_one_bad_row_writes_nothing(tmp_path: Path) -> None:
    path = fleet_parquet(tmp_path / "s.parquet", 30_000, bad_rows=(15_001,))  # two passes
    lake = tmp_path / "lake"
    rc, _rss, err = backfill_in_child(path, lake)
    assert rc == 2
    assert f"{path}:15001: util=1.5 is above 1.0" in err and "refused whole" in err
    assert open_table(table_of(lake, GPU_SAMPLE)) is None
    assert not (lake / "_staging").exists() or not any((lake / "_staging").iterdir())


def test_a_null_entry_in_a_text_list_refuses_a_parquet_file_on_both_paths(
    tmp_path: Path,
) -> None:
    good = dict(EXPECTED_ALLOCATIONS[0])
    rows = [good, dict(good, allocation_id="job-2", nodes=["node-01", None])]
    path = tmp_path / "allocations.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ALLOCATION.arrow_schema()), path)
    problems = []
    for tables in (False, True):
        collector = RecordsFileCollector(ALLOCATION, path)
        read = collector.collect_tables() if tables else collector.collect()
        assert read is not None
        with pytest.raises(InputFileError) as info:
            list(read)
        problems.append(info.value.problems)
    assert problems[0] == problems[1]
    assert [p.split(": ")[0] for p in problems[0]] == [f"{path}:2"]
    assert "nodes must be a list of text" in problems[0][0]


def test_a_parquet_file_is_streamed_not_read_ahead(tmp_path: Path) -> None:
    """Reading a records file holds about one row group and one batch, not the file: Arrow's
    pre-buffering (the reader's default) would read every row group's column chunks ahead,
    so the memory of a 171M-row backfill grew to the file's size."""
    rng = np.random.default_rng(7)
    path = tmp_path / "random.parquet"
    schema = pa.schema([f.with_nullable(True) for f in GPU_SAMPLE.arrow_schema()])
    rows = 100_000
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for _ in range(30):  # random values: the file is about as large as its data
            columns = {
                "ts": pa.array(rng.integers(T0, T0 + 10**9, rows), pa.int64()),
                "util": pa.array(rng.random(rows)),
                "power_w": pa.array(rng.random(rows) * 700),
                "temp_c": pa.array(rng.random(rows) * 90),
                "mem_used_bytes": pa.array(rng.integers(0, 80 << 30, rows), pa.int64()),
            }
            writer.write_table(
                pa.table(
                    [columns.get(f.name, pa.nulls(rows, f.type)) for f in schema], schema=schema
                )
            )
    size = path.stat().st_size
    assert size > 100 * 2**20
    base = pa.total_allocated_bytes()
    peak = seen = 0
    for batch in readers.parquet_batches(GPU_SAMPLE, path, 65_536):
        assert not isinstance(batch, RecordError)
        seen += batch[1]
        peak = max(peak, pa.total_allocated_bytes() - base)
    assert seen == 30 * rows
    assert peak < size / 3, (peak, size)
