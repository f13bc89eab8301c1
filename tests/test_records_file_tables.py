"""The column-wise path for Parquet records files (``collect_tables``) accepts exactly the
records ``collect`` accepts, with the same values, and refuses exactly the same files with the
same problems (file and row), whatever the column types."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors import records_file
from collectors.records_file import InputFileError, RecordsFileCollector
from collectors.run import run_collector
from pipeline.backfill import LakeSink
from pipeline.columnar import to_records
from pipeline.records import ALLOCATION, GPU_SAMPLE, INVENTORY, Kind
from tests.test_records_file import EXPECTED_ALLOCATIONS, FIXTURES, T0, collect, fleet_parquet
from warehouse.catalog import connect


def outcome(kind: Kind, path: Path, tables: bool, **kw: Any) -> list[dict] | list[str]:
    collector = RecordsFileCollector(kind, path, **kw)
    got: list[dict] = []
    try:
        if tables:
            it = collector.collect_tables()
            assert it is not None
            for k, table in it:
                assert k is kind and table.schema == kind.arrow_schema()
                got += to_records(kind, table)
        else:
            got = [r for _, r in collector.collect()]
    except InputFileError as exc:
        assert got == []
        return exc.problems
    return got


def both(kind: Kind, path: Path, **kw: Any) -> list[dict] | list[str]:
    rows, columns = outcome(kind, path, False, **kw), outcome(kind, path, True, **kw)
    assert columns == rows
    return rows


def write(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def test_a_good_file_and_one_with_bad_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_file, "PARQUET_TABLE_ROWS", 333)
    good = fleet_parquet(tmp_path / "good.parquet", 2_000)
    assert len(both(GPU_SAMPLE, good)) == 2_000
    assert len(both(GPU_SAMPLE, good, buffer_records=10)) == 2_000  # two passes
    bad = fleet_parquet(tmp_path / "bad.parquet", 2_000, bad_rows=(1, 334, 2_000))
    assert both(GPU_SAMPLE, bad) == [f"{bad}:{n}: util=1.5 is above 1.0" for n in (1, 334, 2_000)]


def test_allocations_with_lists_and_nulls(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(EXPECTED_ALLOCATIONS, schema=ALLOCATION.arrow_schema())
    assert both(ALLOCATION, write(tmp_path / "a.parquet", table)) == EXPECTED_ALLOCATIONS
    broken = [dict(r) for r in EXPECTED_ALLOCATIONS]
    broken[1]["end"] = broken[1]["start"] - 1  # end before start: a relation between fields
    broken[2]["allocation_id"] = ""  # required text left empty
    table = pa.Table.from_pylist(broken, schema=ALLOCATION.arrow_schema())
    problems = both(ALLOCATION, write(tmp_path / "b.parquet", table))
    assert [str(p).split(": ", 1)[0] for p in problems] == [
        f"{tmp_path / 'b.parquet'}:{n}" for n in (2, 3)
    ]


def test_other_column_types_are_judged_as_the_record_path_does(tmp_path: Path) -> None:
    rows = collect(INVENTORY, FIXTURES / "inventory.csv")
    base = pa.Table.from_pylist(rows, schema=INVENTORY.arrow_schema())
    i = base.schema.get_field_index
    cases = {
        # gpu_count as int32 and as float64 (7.0 for an int field)
        "int32": base.set_column(i("gpu_count"), "gpu_count", base["gpu_count"].cast(pa.int32())),
        "float": base.set_column(i("gpu_count"), "gpu_count", base["gpu_count"].cast(pa.float64())),
        # naive timestamps are refused; microsecond and second timestamps converted
        "naive": base.set_column(
            i("valid_from"), "valid_from", pa.array([datetime(2025, 1, 1)] * 2, pa.timestamp("ms"))
        ),
        "us": base.set_column(
            i("valid_from"),
            "valid_from",
            pa.array([T0 * 1000 + 400, T0 * 1000]).cast(pa.timestamp("us", tz="UTC")),
        ),
        "dictionary": base.set_column(i("node"), "node", pa.array(["a", "b"]).dictionary_encode()),
        "missing column": base.drop_columns(["gpu_model"]),
        "missing required column": base.drop_columns(["node"]),
        "unknown column": base.append_column("rack", pa.array(["r1", "r2"])),
        "ints as text": base.set_column(i("gpu_count"), "gpu_count", pa.array(["8", "x"])),
    }
    seen = {}
    for name, table in cases.items():
        seen[name] = both(INVENTORY, write(tmp_path / f"{name}.parquet", table))
    assert seen["int32"] == seen["float"] == rows
    assert all("no UTC offset" in p for p in seen["naive"])
    assert [r["valid_from"] for r in seen["us"]] == [T0, T0]  # type: ignore[index]
    assert [r["node"] for r in seen["dictionary"]] == ["a", "b"]  # type: ignore[index]
    assert "unknown column(s) for inventory: rack" in seen["unknown column"][0]


def test_float32_values_and_nan_in_nullable_fields(tmp_path: Path) -> None:
    path = fleet_parquet(tmp_path / "s.parquet", 500)
    table = pq.read_table(path)
    util = np.array(table["util"].to_numpy(zero_copy_only=False), dtype=np.float32)
    power = np.where(np.arange(500) % 7 == 0, np.nan, 250.0)
    table = table.set_column(table.schema.get_field_index("util"), "util", pa.array(util))
    table = table.set_column(table.schema.get_field_index("power_w"), "power_w", pa.array(power))
    assert len(both(GPU_SAMPLE, write(tmp_path / "f.parquet", table))) == 500


def test_backfill_takes_the_column_wise_path_with_the_same_lake(tmp_path: Path) -> None:
    path = fleet_parquet(tmp_path / "s.parquet", 30_000)
    a, b = tmp_path / "a", tmp_path / "b"
    records = [(k, r) for k, r in RecordsFileCollector(GPU_SAMPLE, path).collect()]

    class Records:
        def collect(self):  # type: ignore[no-untyped-def]
            return iter(records)

    for lake, collector in ((a, RecordsFileCollector(GPU_SAMPLE, path)), (b, Records())):
        sink = LakeSink(lake, "load", origin="test")
        stats = run_collector(collector, sink)  # type: ignore[arg-type]
        sink.flush()
        assert stats.records == 30_000
    query = "SELECT * EXCLUDE (_version, _load, _file, _row) FROM raw_gpu_samples ORDER BY ALL"
    assert connect(a, ":memory:").execute(query).fetchall() == (
        connect(b, ":memory:").execute(query).fetchall()
    )
