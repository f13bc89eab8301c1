"""Philly machine list and telemetry GPU counts -> inventory of one cluster, two capacity
sources that disagree: GPU totals against the raw files read with the csv module, and the
capacity a day of ``report utilisation`` reads from a Delta lake, with the note that names the
source used and the one that disagrees. The tests that need the files skip when
``$GPULEDGER_SHARED_DATA`` (default ``<repo>/../shared/data``) does not hold them."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from collectors.replay.philly import MACHINE_FILE, TELEMETRY_FILE, philly_replay
from gpuledger.cli import main
from pipeline.backfill import LakeSink
from pipeline.records import INVENTORY, OCCUPANCY
from tests.conftest import shared_data
from warehouse.catalog import connect
from warehouse.reports.utilisation import utilisation_report

DATA = shared_data() / "philly"
START = "2017-10-03T00:00:00-07:00"
DAY = "2017-10-10"
needs_trace = pytest.mark.skipif(
    not (DATA / MACHINE_FILE).is_file() or not (DATA / TELEMETRY_FILE).is_file(),
    reason=f"Philly machine lists not found under {DATA} (set GPULEDGER_SHARED_DATA)",
)


def raw_counts(name: str, column: int) -> dict[str, int]:
    """machineId -> GPUs from one file, the csv module reading it (values stripped of spaces)."""
    with (DATA / name).open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return {r[column - 1].strip(): int(r[column]) for r in rows}


def listed() -> dict[str, int]:
    return raw_counts(MACHINE_FILE, 1)


def reported() -> dict[str, int]:
    return raw_counts(TELEMETRY_FILE, 2)


def backfill(lake: Path, counts: str) -> None:
    argv = ["backfill", "--lake", str(lake), "replay", "philly", "--data-dir", str(DATA)]
    assert main([*argv, "--start", START, "--gpu-counts", counts]) == 0


def report(capsys: pytest.CaptureFixture[str], lake: Path, by: str, fmt: str = "json") -> str:
    capsys.readouterr()
    argv = ["report", "utilisation", "--lake", str(lake), "--period", "day", "--by", by]
    assert main([*argv, "--from", DAY, "--to", DAY, "--tz", "UTC", "--format", fmt]) == 0
    return capsys.readouterr().out


@needs_trace
def test_the_two_files_give_2490_and_3205_gpus() -> None:
    assert (len(listed()), sum(listed().values())) == (552, 2_490)
    assert Counter(listed().values()) == {2: 321, 8: 231}
    assert (len(reported()), sum(reported().values())) == (552, 3_205)
    assert listed().keys() == reported().keys()
    start = datetime.fromisoformat(START)
    for counts, want, source in (
        ("machine-list", listed(), "replay:philly"),
        ("telemetry", reported(), "replay:philly:telemetry"),
    ):
        replay = philly_replay(DATA, start=start, counts=counts)  # type: ignore[arg-type]
        records = [r for k, r in replay.collect() if k is INVENTORY]
        assert {r["node"]: r["gpu_count"] for r in records} == want
        assert {(r["source"], r["gpu_model"], r["valid_to"]) for r in records} == {
            (source, None, None)
        }


@needs_trace
def test_the_report_uses_the_last_loaded_source_and_names_the_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n_list, n_seen = sum(listed().values()), sum(reported().values())
    for first, last, used in (
        ("telemetry", "machine-list", n_list),
        ("machine-list", "telemetry", n_seen),
    ):
        lake = tmp_path / last
        backfill(lake, first)
        backfill(lake, last)
        (row,) = json.loads(report(capsys, lake, "cluster"))
        assert row["capacity_gpu_h"] == used * 24
        assert row["sources"] == "capacity=inventory;allocated=none;busy=none"
        label = {"machine-list": "replay:philly", "telemetry": "replay:philly:telemetry"}
        assert row["capacity_note"] == (
            "capacity sources of philly disagree: "
            + "; ".join(
                sorted(
                    f"inventory {label[c]} {n} GPUs" + (" (used)" if c == last else "")
                    for c, n in (("machine-list", n_list), ("telemetry", n_seen))
                )
            )
        )
        (dc_row,) = json.loads(report(capsys, lake, "datacentre"))
        assert dc_row["capacity_note"] == row["capacity_note"]
        assert row["capacity_note"] in report(capsys, lake, "cluster", "table")


@needs_trace
def test_one_source_alone_has_no_note(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backfill(lake, "machine-list")
    (row,) = json.loads(report(capsys, lake, "cluster"))
    assert (row["capacity_gpu_h"], row["capacity_note"]) == (sum(listed().values()) * 24, None)


def _site_records(total: float, nodes: dict[str, int]) -> list[tuple[object, dict]]:
    t0 = int(datetime.fromisoformat("2026-03-01T00:00:00+00:00").timestamp() * 1000)
    site = {"datacentre": "dc1", "cluster": "c1"}
    occupancy = [
        {**site, "ts": t0 + i * 3_600_000, "interval_s": 3600.0, "scope": None,
         "gpus_total": total, "gpus_allocated": 1.0, "gpus_down": None, "source": "slurm"}
        for i in range(24)
    ]  # fmt: skip
    inventory = [
        {**site, "node": n, "valid_from": t0, "valid_to": None, "gpu_model": "H100",
         "gpu_count": c, "source": "cmdb"}
        for n, c in nodes.items()
    ]  # fmt: skip
    return [(OCCUPANCY, r) for r in occupancy] + [(INVENTORY, r) for r in inventory]


@pytest.mark.parametrize(
    ("total", "note"),
    [
        (16.0, None),
        (12.0, "capacity sources of c1 disagree: inventory cmdb 16 GPUs; occupancy 12 GPUs (used)"),
    ],
)
def test_occupancy_and_inventory_of_one_cluster_are_compared(
    lake: Path, total: float, note: str | None
) -> None:
    sink = LakeSink(lake, "capacity-note-test", origin="test")
    for kind, record in _site_records(total, {"n1": 8, "n2": 8}):
        sink.add(kind, record)  # type: ignore[arg-type]
    sink.flush()
    rows = utilisation_report(connect(lake, Path(":memory:")), period="day", by="cluster", tz="UTC")
    assert [(r["capacity_gpu_h"], r["capacity_note"]) for r in rows] == [(total * 24, note)]
