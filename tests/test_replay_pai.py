"""Alibaba PAI GPU trace v2020 machine spec -> inventory: GPU machines and GPUs per type, and
the capacity a day of ``report utilisation`` reads from a Delta lake, against the raw CSV read
with the csv module. The tests skip when ``$GPULEDGER_SHARED_DATA`` (default
``<repo>/../shared/data``) does not hold the file."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from collectors.replay.pai import MACHINE_FILE, pai_replay
from collectors.replay.table import TraceRowError
from gpuledger.cli import main
from pipeline.records import INVENTORY
from tests.conftest import shared_data

DATA = shared_data() / "alibaba-pai-gpu-2020"
START = "2020-07-01T00:00:00+08:00"
needs_trace = pytest.mark.skipif(
    not (DATA / MACHINE_FILE).is_file(),
    reason=f"Alibaba PAI machine spec not found under {DATA} (set GPULEDGER_SHARED_DATA)",
)


def raw_machines() -> list[dict[str, str]]:
    with (DATA / MACHINE_FILE).open(newline="") as fh:
        return list(csv.DictReader(fh))


@needs_trace
def test_gpu_machines_become_inventory_cpu_machines_are_counted() -> None:
    rows = raw_machines()
    want: Counter[str] = Counter()
    for r in rows:
        if r["gpu_type"] != "CPU":
            want[r["gpu_type"]] += int(r["cap_gpu"])
    replay = pai_replay(DATA, start=datetime.fromisoformat(START))
    records = [r for k, r in replay.collect() if k is INVENTORY]
    got: Counter[str] = Counter()
    for rec in records:
        got[rec["gpu_model"]] += rec["gpu_count"]
    assert got == want
    assert (len(records), sum(got.values())) == (1_814, 6_742)
    assert (
        replay.skipped
        == {"no_gpu": sum(1 for r in rows if r["gpu_type"] == "CPU")}
        == {"no_gpu": 83}
    )


@needs_trace
def test_a_day_of_capacity_through_the_lake(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["backfill", "--lake", str(lake), "replay", "pai", "--data-dir", str(DATA)]
    assert main(argv) == 0  # the default --start
    capsys.readouterr()
    report = "report utilisation --period day --by datacentre --format json"
    report += " --from 2020-07-02 --to 2020-07-02"
    assert main([*report.split(), "--lake", str(lake)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    gpus = sum(int(r["cap_gpu"]) for r in raw_machines() if r["gpu_type"] != "CPU")
    assert (row["datacentre"], row["capacity_gpu_h"]) == ("alibaba-pai", gpus * 24)
    assert row["no_telemetry_share"] == 0.0


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    (tmp_path / MACHINE_FILE).write_text("machine,gpu_type,cap_cpu,cap_mem\nm1,T4,96,512\n")
    with pytest.raises(TraceRowError, match=rf"{MACHINE_FILE}:1: missing column\(s\) cap_gpu"):
        list(pai_replay(tmp_path, start=datetime.fromisoformat(START)).collect())
