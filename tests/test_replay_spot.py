"""Alibaba spot-GPU trace v2026 node table -> inventory: GPUs per model and in total, and the
capacity a day of ``report utilisation`` reads from a Delta lake, against the raw CSV read
with the csv module. Research/study use only: read from ``$GPULEDGER_SHARED_DATA`` (default
``<repo>/../shared/data``); the tests skip without it."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from collectors.replay.spot import NODE_FILE, spot_replay
from collectors.replay.table import TraceRowError
from gpuledger.cli import main
from pipeline.records import INVENTORY, coerce
from tests.conftest import shared_data

DATA = shared_data() / "alibaba-spot-gpu-2026"
START = "2026-01-01T00:00:00+08:00"
needs_trace = pytest.mark.skipif(
    not (DATA / NODE_FILE).is_file(),
    reason=f"Alibaba spot-GPU trace not found under {DATA} (set GPULEDGER_SHARED_DATA)",
)


def raw_gpus_by_model() -> Counter[str]:
    gpus: Counter[str] = Counter()
    with (DATA / NODE_FILE).open(newline="") as fh:
        for row in csv.DictReader(fh):
            gpus[row["gpu_model"]] += int(row["gpu_capacity_num"])
    return gpus


@needs_trace
def test_inventory_holds_every_node_and_gpu() -> None:
    replay = spot_replay(DATA, start=datetime.fromisoformat(START))
    records = [r for k, r in replay.collect() if k is INVENTORY]
    got: Counter[str] = Counter()
    for r in records:
        got[r["gpu_model"]] += r["gpu_count"]
        assert coerce(INVENTORY, r) == r
    assert got == raw_gpus_by_model()
    assert (len(records), len({r["node"] for r in records}), sum(got.values())) == (
        4_278,
        4_278,
        10_412,
    )
    assert replay.skipped == {}


@needs_trace
def test_a_day_of_capacity_through_the_lake(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["backfill", "--lake", str(lake), "replay", "spot", "--data-dir", str(DATA)]
    assert main([*argv, "--start", START]) == 0
    capsys.readouterr()
    report = "report utilisation --period day --by cluster --format json"
    report += " --from 2026-02-01 --to 2026-02-01"
    assert main([*report.split(), "--lake", str(lake)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["sources"] == "capacity=inventory;allocated=none;busy=none"
    assert row["capacity_gpu_h"] == sum(raw_gpus_by_model().values()) * 24
    assert row["capacity_note"] is None


def test_columns_are_read_by_name_and_a_bad_count_is_named(tmp_path: Path) -> None:
    (tmp_path / NODE_FILE).write_text(
        "node_name,cpu_num,gpu_capacity_num,gpu_model\n7,96,8,H800\n9,96,0,A10\n"
    )
    replay = spot_replay(tmp_path, start=datetime.fromisoformat(START))
    ((_, record),) = list(replay.collect())
    assert (record["node"], record["gpu_model"], record["gpu_count"]) == ("7", "H800", 8)
    assert replay.skipped == {"no_gpu": 1}
    (tmp_path / NODE_FILE).write_text(
        "node_name,cpu_num,gpu_capacity_num,gpu_model\n7,96,8.5,H800\n"
    )
    with pytest.raises(
        TraceRowError, match=rf"{NODE_FILE}:2: gpu_capacity_num '8.5' is not a whole"
    ):
        list(spot_replay(tmp_path, start=datetime.fromisoformat(START)).collect())
