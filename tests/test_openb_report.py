"""Done-when check: the openb replay's allocated GPU-hours, through the lake and the report,
match the raw pod table (README fact: 51,470.67 GPU-hours)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from collectors.replay.openb import OpenbReplay
from collectors.run import run_collector
from pipeline.backfill import LakeSink
from tests.conftest import shared_data
from warehouse.catalog import connect
from warehouse.reports.utilisation import utilisation_report

START = datetime.fromisoformat("2023-01-01T00:00:00+08:00")


def test_openb_allocated_gpu_hours_match_the_raw_pod_table(lake: Path) -> None:
    data = shared_data() / "alibaba-openb-gpu-2023"
    if not (data / "openb_pod_list_default.csv").exists():
        pytest.skip(f"Alibaba openb trace not found under {data} (set GPULEDGER_SHARED_DATA)")
    expected = 0.0  # independent computation from the raw CSV
    with open(data / "openb_pod_list_default.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            n = int(row["num_gpu"])
            if n == 0 or not row["scheduled_time"]:
                continue
            gpus = n * int(row["gpu_milli"]) / 1000 if n == 1 else n
            expected += gpus * (int(row["deletion_time"]) - int(row["scheduled_time"])) / 3600
    assert expected == pytest.approx(51_470.67, abs=0.01)

    sink = LakeSink(lake, "openb-test", origin="test")
    run_collector(OpenbReplay(data, start=START), sink)
    sink.flush()
    rows = utilisation_report(connect(lake, Path(":memory:")), period="month", by="cluster")
    assert "allocated=allocation" in rows[0]["sources"]
    assert "capacity=inventory" in rows[0]["sources"]
    assert sum(r["allocated_gpu_h"] or 0 for r in rows) == pytest.approx(expected, abs=0.01)
    assert len(rows) >= 5  # ~149 days: the month clipping spreads it over six local months
