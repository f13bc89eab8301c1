"""RecordsFileCollector: records from JSON lines, CSV and Parquet; a bad file is refused whole."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.records_file import InputFileError, RecordsFileCollector
from pipeline.records import ALLOCATION, INVENTORY, Kind

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
