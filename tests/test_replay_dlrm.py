"""Alibaba DLRM serving trace v2025 replay: HN instances' GPU-hours over the trace window,
through ``backfill`` into a Delta lake and ``report utilisation``, against the raw file read
with the csv module. The trace is research/study use only, so it is read from
``$GPULEDGER_SHARED_DATA`` (default ``<repo>/../shared/data``) and those tests skip without it.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collectors.replay.dlrm import TRACE_FILE, DlrmReplay
from collectors.replay.table import TraceRowError
from gpuledger.cli import main
from pipeline.records import ALLOCATION
from tests.conftest import shared_data

DATA = shared_data() / "alibaba-dlrm-gpu-2025"
TIMES = ("creation_time", "scheduled_time", "deletion_time")
START = "2025-03-15T00:00:00+08:00"
TZ = ZoneInfo("Asia/Shanghai")
needs_trace = pytest.mark.skipif(
    not (DATA / TRACE_FILE).is_file(),
    reason=f"Alibaba DLRM trace not found under {DATA} (set GPULEDGER_SHARED_DATA)",
)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def raw_spans() -> tuple[float, list[tuple[float, float, float]]]:
    """The trace's largest time and every HN instance's (gpus, start s, end s), from the CSV."""
    with (DATA / TRACE_FILE).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    end = max(float(r[c]) for r in rows for c in TIMES if r[c])
    spans = [
        (
            float(r["gpu_request"]),
            float(r["scheduled_time"] or 0),
            float(r["deletion_time"] or end),
        )
        for r in rows
        if r["role"] == "HN"
    ]
    return end, spans


@needs_trace
def test_hn_gpu_hours_over_the_window_through_the_lake(
    lake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    end_s, spans = raw_spans()
    assert (len(spans), sum(g for g, _, _ in spans), end_s) == (7_386, 7_386, 2_677_541)
    expected = sum(g * (e - s) for g, s, e in spans) / 3600
    cli(capsys, "backfill", "--lake", str(lake), "replay", "dlrm", "--data-dir", str(DATA),
        "--start", START)  # fmt: skip
    out = cli(capsys, "report", "utilisation", "--lake", str(lake), "--period", "month",
              "--by", "cluster", "--format", "json")  # fmt: skip
    rows = json.loads(out)
    # 31 days from 15 March: the months are clipped, and the report stops at the trace's end
    assert [r["period"] for r in rows] == ["2025-03", "2025-04"]
    assert all(r["sources"] == "capacity=none;allocated=allocation;busy=none" for r in rows)
    assert sum(r["allocated_gpu_h"] for r in rows) == pytest.approx(expected, rel=1e-9)

    # the last day: instances still running when the trace ended count up to its end, not today
    start = datetime.fromisoformat(START)
    end = start + timedelta(seconds=end_s)
    day0 = datetime.combine(end.astimezone(TZ).date(), datetime.min.time(), TZ)
    lo = (day0 - start).total_seconds()
    last_day = sum(g * (e - max(s, lo)) for g, s, e in spans if e > lo) / 3600
    out = cli(capsys, "report", "utilisation", "--lake", str(lake), "--period", "day",
              "--by", "cluster", "--from", day0.date().isoformat(), "--format", "json")  # fmt: skip
    (row,) = json.loads(out)
    assert row["allocated_gpu_h"] == pytest.approx(last_day, rel=1e-9)
    running = sum(g for g, _, e in spans if e == end_s)
    assert running > 3_000 and row["allocated_gpu_h"] < running * 24


@needs_trace
def test_cpu_instances_are_counted_not_emitted() -> None:
    replay = DlrmReplay(DATA, start=datetime.fromisoformat(START))
    emitted = list(replay.collect())
    assert {k for k, _ in emitted} == {ALLOCATION}
    assert replay.skipped == {"cpu_only": 16_485}
    assert replay.end_s == 2_677_541


HEADER = "instance_sn,role,app_name,gpu_request,creation_time,scheduled_time,deletion_time\n"


def test_empty_times_lie_outside_the_window(tmp_path: Path) -> None:
    (tmp_path / TRACE_FILE).write_text(
        HEADER
        + "i0,HN,app_0,1,,,\n"  # running before and after the trace
        + "i1,HN,app_0,2,10,20,\n"  # scheduled inside, still running at the end
        + "i2,HN,app_1,1,,,50.5\n"  # running before, deleted inside
        + "i3,CN,app_1,0,5,5,90\n"  # CPU node: counted, not emitted
        + "i4,HN,app_1,1,30,,\n"  # created but never scheduled in the window
        + "i5,HN,app_1,1,40,41,100\n"  # the largest time of the trace: 100 s
    )
    t0 = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    replay = DlrmReplay(tmp_path, start=t0)
    got = {r["allocation_id"]: r for _, r in replay.collect()}
    ms = int(t0.timestamp() * 1000)
    assert {
        k: (r["start"] - ms, r["end"], r["event_ts"] - ms, r["state"]) for k, r in got.items()
    } == {
        "i0": (0, None, 100_000, "Running"),
        "i1": (20_000, None, 100_000, "Running"),
        "i2": (0, ms + 50_500, 50_500, "Deleted"),
        "i5": (41_000, ms + 100_000, 100_000, "Deleted"),
    }
    assert (got["i1"]["gpu_count"], got["i1"]["tenant_id"]) == (2.0, "app:app_0")
    assert replay.skipped == {"cpu_only": 1, "unscheduled": 1}


def test_a_bad_value_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / TRACE_FILE).write_text(HEADER + "i0,HN,app_0,1,,,\ni1,HN,app_0,one,,,\n")
    replay = DlrmReplay(tmp_path, start=datetime.fromisoformat(START))
    with pytest.raises(TraceRowError, match=rf"{TRACE_FILE}:3: gpu_request 'one' is not a number"):
        list(replay.collect())
