"""OpenB (Alibaba GPU-sharing trace v2023) replay against the real files and their README facts.

The trace is research/study use only, so it is read from ``$GPULEDGER_SHARED_DATA`` (default
``<repo>/../shared/data``), never copied; the tests skip when it is absent.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.replay.openb import OpenbReplay
from pipeline.records import ALLOCATION, INVENTORY, RecordError, coerce

SHARED = Path(
    os.environ.get("GPULEDGER_SHARED_DATA", Path(__file__).resolve().parents[1] / "../shared/data")
)
OPENB = SHARED / "alibaba-openb-gpu-2023"
START = datetime(2023, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)

pytestmark = pytest.mark.skipif(
    not (OPENB / "openb_pod_list_default.csv").is_file(),
    reason=f"OpenB trace not found at {OPENB} (set GPULEDGER_SHARED_DATA)",
)


@pytest.fixture(scope="module")
def replay() -> tuple[OpenbReplay, list]:
    r = OpenbReplay(OPENB, start=START)
    return r, list(r.collect())


def test_inventory_first_1213_gpu_nodes_6212_gpus(replay: tuple[OpenbReplay, list]) -> None:
    _, emitted = replay
    kinds = [k for k, _ in emitted]
    inventory = [r for k, r in emitted if k is INVENTORY]
    assert kinds[: len(inventory)] == [INVENTORY] * 1_213  # inventory comes before allocations
    assert len({r["node"] for r in inventory}) == 1_213
    by_model: Counter[str] = Counter()
    for r in inventory:
        by_model[r["gpu_model"]] += r["gpu_count"]
        assert (r["valid_from"], r["valid_to"], r["source"]) == (START_MS, None, "replay:openb")
        assert coerce(INVENTORY, r) == r
    assert sum(by_model.values()) == 6_212
    assert by_model == {
        "G2": 4_392,
        "T4": 842,
        "G3": 312,
        "P100": 265,
        "V100M32": 204,
        "V100M16": 195,
        "A10": 2,
    }


def test_skipped_pods_are_counted_by_reason(replay: tuple[OpenbReplay, list]) -> None:
    r, emitted = replay
    allocations = [x for k, x in emitted if k is ALLOCATION]
    # README: 8,152 pods; 897 Pending (no scheduled_time); 1,088 with num_gpu 0, of which 36
    # are Pending too (counted once, as pending).
    assert r.skipped == {"pending": 897, "no_gpu": 1_088 - 36}
    assert len(allocations) + sum(r.skipped.values()) == 8_152
    assert len(allocations) == 7_064 - 861


def test_allocated_gpu_hours_match_readme(replay: tuple[OpenbReplay, list]) -> None:
    _, emitted = replay
    allocations = [x for k, x in emitted if k is ALLOCATION]
    gpu_hours = sum(a["gpu_count"] * (a["end"] - a["start"]) / 3_600_000 for a in allocations)
    assert gpu_hours == pytest.approx(51_470.67, abs=0.01)


def test_allocations_match_the_raw_rows(replay: tuple[OpenbReplay, list]) -> None:
    _, emitted = replay
    by_id = {x["allocation_id"]: x for k, x in emitted if k is ALLOCATION}
    with (OPENB / "openb_pod_list_default.csv").open(newline="") as fh:
        every_pod = list(csv.DictReader(fh))
    sharing = [p for p in every_pod if p["num_gpu"] == "1" and int(p["gpu_milli"]) < 1000]
    assert len(sharing) == 3_078  # README: fractional GPU-sharing pods, Pending ones included
    pods = [p for p in every_pod if p["scheduled_time"] and int(p["num_gpu"]) > 0]
    assert len(pods) == len(by_id)
    fractional = 0
    for p in pods:
        a = by_id[p["name"]]
        n, milli = int(p["num_gpu"]), int(p["gpu_milli"])
        fractional += n == 1 and milli < 1000
        assert a["gpu_count"] == (milli / 1000 if n == 1 else n)
        assert a["start"] == START_MS + int(p["scheduled_time"]) * 1000
        assert a["end"] == START_MS + int(p["deletion_time"]) * 1000
        assert a["event_ts"] == a["end"]
        assert (a["state"], a["tenant_id"], a["job_id"]) == (
            p["pod_phase"],
            f"qos:{p['qos']}",
            p["name"],
        )
        assert coerce(ALLOCATION, a) == a
    assert fractional == len([p for p in sharing if p["scheduled_time"]]) == 2_573
    assert sum(1 for a in by_id.values() if a["gpu_count"] < 1) == fractional


def test_pod_0001_times_and_share(replay: tuple[OpenbReplay, list]) -> None:
    _, emitted = replay
    pod = next(x for k, x in emitted if k is ALLOCATION and x["allocation_id"] == "openb-pod-0001")
    assert pod["gpu_count"] == 0.46
    assert pod["start"] == int((START + timedelta(seconds=427_061)).timestamp() * 1000)
    assert pod["end"] == int((START + timedelta(seconds=12_902_960)).timestamp() * 1000)


def test_allocations_in_event_order_spanning_the_trace(replay: tuple[OpenbReplay, list]) -> None:
    _, emitted = replay
    events = [x["event_ts"] for k, x in emitted if k is ALLOCATION]
    assert events == sorted(events)
    assert events[-1] == START_MS + 12_902_960 * 1000  # last deletion, ~149.3 days in


def test_naive_start_is_refused() -> None:
    with pytest.raises(RecordError, match="no UTC offset"):
        OpenbReplay(OPENB, start=datetime(2023, 1, 1))
