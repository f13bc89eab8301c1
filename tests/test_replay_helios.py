"""Helios Earth replay against the packaged per-minute VC sequences (SC '21 artifact).

One full replay pass (all 16 VCs, 714,240 records) is shared by the tests; the independent
reference figures are computed here from the raw CSVs with the csv module.
"""

from __future__ import annotations

import csv
import gzip
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collectors.replay.helios import DEFAULT_HELIOS_DIR, HeliosReplay
from pipeline.records import OCCUPANCY, coerce

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOP10 = ["vc6YE", "vcvlY", "vchbv", "vcMod", "vcLJZ", "vc3sl", "vcpDC", "vcTJs", "vc8Sj", "vccaA"]
# SC '21 Figure 4 (README "facts computed"): mean / median allocation %, May 10 excluded.
FIG4 = {
    "vc6YE": (93.3, 94.7),
    "vcvlY": (69.6, 75.0),
    "vchbv": (42.5, 37.5),
    "vcMod": (53.0, 75.0),
    "vcLJZ": (90.1, 100.0),
    "vc3sl": (64.8, 71.9),
    "vcpDC": (94.1, 96.4),
    "vcTJs": (75.4, 100.0),
    "vc8Sj": (51.5, 66.7),
    "vccaA": (46.2, 46.9),
}
SIZE_ON_MAY_1 = {
    "vc6YE": 208,
    "vcvlY": 96,
    "vchbv": 64,
    "vcMod": 64,
    "vcLJZ": 64,
    "vc3sl": 64,
    "vcpDC": 56,
    "vcTJs": 48,
    "vc8Sj": 48,
    "vccaA": 32,
}


@dataclass
class Pass:
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    allocated: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    total: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    first: dict[str, dict] = field(default_factory=dict)
    last: dict[str, dict] = field(default_factory=dict)
    rates_no_may10: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    vc6ye: list[dict] = field(default_factory=list)
    in_order: bool = True
    seconds: float = 0.0


@pytest.fixture(scope="module")
def full() -> Pass:
    p = Pass()
    # 2020-05-10 local = [05-09 16:00Z, 05-10 16:00Z)
    may10 = (
        int(datetime(2020, 5, 10, tzinfo=SHANGHAI).timestamp() * 1000),
        int(datetime(2020, 5, 11, tzinfo=SHANGHAI).timestamp() * 1000),
    )
    previous = -1
    started = time.monotonic()
    for k, r in HeliosReplay(DEFAULT_HELIOS_DIR).collect():
        assert k is OCCUPANCY
        vc = r["scope"]
        p.in_order &= r["ts"] >= previous
        previous = r["ts"]
        p.count[vc] += 1
        p.allocated[vc] += r["gpus_allocated"]
        p.total[vc] += r["gpus_total"]
        p.first.setdefault(vc, r)
        p.last[vc] = r
        if vc in FIG4 and not may10[0] <= r["ts"] < may10[1]:
            p.rates_no_may10[vc].append(r["gpus_allocated"] / r["gpus_total"])
        if vc == "vc6YE":
            p.vc6ye.append(r)
    p.seconds = time.monotonic() - started
    return p


def raw_rows(vc: str) -> list[dict[str, str]]:
    path = DEFAULT_HELIOS_DIR / f"{vc}_cluster_sequence_vc.csv.gz"
    with gzip.open(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_vc_every_minute_in_time_order(full: Pass) -> None:
    files = sorted(DEFAULT_HELIOS_DIR.glob("*_cluster_sequence_vc.csv.gz"))
    assert len(files) == 16
    for path in files:
        with gzip.open(path, "rt") as fh:
            rows = sum(1 for _ in fh) - 1
        assert full.count[path.name.split("_")[0]] == rows == 44_640
    assert sum(full.count.values()) == 714_240
    assert full.in_order
    print(f"helios replay: {714_240 / full.seconds:,.0f} records/s")


def test_local_time_becomes_utc(full: Pass) -> None:
    # 2020-05-01 00:00 Asia/Shanghai (UTC+8) is 2020-04-30 16:00 UTC; last row 05-31 23:59 local.
    for vc in full.count:
        assert full.first[vc]["ts"] == int(datetime(2020, 4, 30, 16, tzinfo=UTC).timestamp() * 1000)
        assert full.last[vc]["ts"] == int(
            datetime(2020, 5, 31, 15, 59, tzinfo=UTC).timestamp() * 1000
        )


def test_vc6ye_matches_the_raw_file_row_by_row(full: Pass) -> None:
    rows = raw_rows("vc6YE")
    assert len(rows) == len(full.vc6ye)
    for raw, rec in zip(rows, full.vc6ye, strict=True):
        local = datetime.strptime(raw["time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
        assert rec == {
            "ts": int(local.timestamp()) * 1000,
            "interval_s": 60.0,
            "datacentre": "helios",
            "cluster": "earth",
            "scope": "vc6YE",
            "gpus_total": float(raw["total_gpu_num"]),
            "gpus_allocated": float(raw["running_gpu_num"]),
            "gpus_down": None,
            "source": "replay:helios",
        }
        assert coerce(OCCUPANCY, rec) == rec
    assert {r["gpus_total"] for r in full.vc6ye} == {208.0}


@pytest.mark.parametrize("vc", ["vc6YE", "vchbv"])
def test_may_mean_allocation_rate_matches_independent_computation(full: Pass, vc: str) -> None:
    rows = raw_rows(vc)
    expected = sum(int(r["running_gpu_num"]) for r in rows) / sum(
        int(r["total_gpu_num"]) for r in rows
    )
    assert full.allocated[vc] / full.total[vc] == pytest.approx(expected, abs=1e-12)


def test_sc21_figure4_means_and_medians(full: Pass) -> None:
    for vc, (mean_pct, median_pct) in FIG4.items():
        rates = full.rates_no_may10[vc]
        assert len(rates) == 44_640 - 1_440
        assert round(100 * statistics.mean(rates), 1) == mean_pct, vc
        assert round(100 * statistics.median(rates), 1) == median_pct, vc
    size = {vc: full.first[vc]["gpus_total"] for vc in full.first}
    assert {vc: size[vc] for vc in TOP10} == SIZE_ON_MAY_1
    # The 9 largest are unambiguous; the 10th place is a tie at 32 GPUs (vccaA, vcSoL).
    assert set(sorted(size, key=lambda vc: -size[vc])[:9]) == set(TOP10[:9])
    assert sorted(vc for vc in size if size[vc] == 32) == ["vcSoL", "vccaA"]


def test_vc_selection_and_unknown_vc() -> None:
    records = [r for _, r in HeliosReplay(DEFAULT_HELIOS_DIR, vcs=["vccaA"]).collect()]
    assert len(records) == 44_640
    assert {r["scope"] for r in records} == {"vccaA"}
    with pytest.raises(ValueError, match="vcNOPE"):
        list(HeliosReplay(DEFAULT_HELIOS_DIR, vcs=["vcNOPE"]).collect())


def test_speed_paces_the_replay_and_out_of_order_is_refused(tmp_path: Path) -> None:
    header = "time,total_gpu_num,running_gpu_num\n"
    with gzip.open(tmp_path / "vcA_cluster_sequence_vc.csv.gz", "wt") as fh:
        fh.write(header + "2020-05-01 00:00:00,8,4\n2020-05-01 00:01:00,8,6\n")
    with gzip.open(tmp_path / "vcB_cluster_sequence_vc.csv.gz", "wt") as fh:
        fh.write(header + "2020-05-01 00:00:30,4,1\n2020-05-01 00:02:00,4,2\n")
    started = time.monotonic()
    records = [r for _, r in HeliosReplay(tmp_path, speed=600).collect()]
    elapsed = time.monotonic() - started
    # 2 trace minutes at 600x real time = 0.2 s
    assert 0.19 <= elapsed < 2.0
    assert [(r["scope"], r["gpus_allocated"]) for r in records] == [
        ("vcA", 4.0),
        ("vcB", 1.0),
        ("vcA", 6.0),
        ("vcB", 2.0),
    ]
    with gzip.open(tmp_path / "vcB_cluster_sequence_vc.csv.gz", "wt") as fh:
        fh.write(header + "2020-05-01 00:02:00,4,1\n2020-05-01 00:01:00,4,2\n")
    with pytest.raises(ValueError, match="not after the previous row"):
        list(HeliosReplay(tmp_path).collect())
