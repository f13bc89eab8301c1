"""GenAI serving trace (Alibaba v2026) replay against the real metric tables and their README facts.

The trace is research/study use only, so it is read from ``$GPULEDGER_SHARED_DATA`` (default
``<repo>/../shared/data``), never copied; the real-data tests skip when it is absent.
"""

from __future__ import annotations

import csv
import gzip
import os
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.replay.genai import GenaiReplay, detect_step_s
from pipeline.records import GPU_SAMPLE, RecordError, coerce

SHARED = Path(
    os.environ.get("GPULEDGER_SHARED_DATA", Path(__file__).resolve().parents[1] / "../shared/data")
)
GENAI = SHARED / "alibaba-genai-2026"
MEMORY_ONLY_POD = "ad921d60486366258809553a3db49a4a"

needs_trace = pytest.mark.skipif(
    not (GENAI / "pod_gpu_duty_cycle_anon.csv.gz").is_file(),
    reason=f"GenAI trace not found at {GENAI} (set GPULEDGER_SHARED_DATA)",
)


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    emitted = list(GenaiReplay(GENAI).collect())
    assert {k for k, _ in emitted} == {GPU_SAMPLE}
    return [r for _, r in emitted]


def raw(name: str) -> list[dict[str, str]]:
    with gzip.open(GENAI / name, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


@needs_trace
def test_duty_cycle_facts(samples: list[dict]) -> None:
    utils = [r["util"] for r in samples if r["util"] is not None]
    assert len(utils) == 157_417
    assert len({r["pod"] for r in samples if r["util"] is not None}) == 143
    assert round(100 * statistics.fmean(utils), 2) == 7.03
    assert round(100 * sum(u == 0 for u in utils) / len(utils), 1) == 66.8
    assert round(100 * max(utils), 2) == 99.67
    per_pod = Counter(r["pod"] for r in samples if r["util"] is not None)
    assert sum(n == 1_441 for n in per_pod.values()) == 72
    assert sum(n == 1_440 for n in per_pod.values()) == 13


@needs_trace
def test_memory_only_pod_is_emitted_with_null_util(samples: list[dict]) -> None:
    assert len({r["pod"] for r in samples}) == 144
    only = [r for r in samples if r["pod"] == MEMORY_ONLY_POD]
    assert only and all(r["util"] is None and r["mem_used_bytes"] is not None for r in only)
    assert sum(r["mem_used_bytes"] is not None for r in samples) == 161_413


@needs_trace
def test_outer_join_matches_an_independent_join(samples: list[dict]) -> None:
    duty = {
        (r["container_ip"], float(r["timestamp_anon"])): float(r["value"])
        for r in raw("pod_gpu_duty_cycle_anon.csv.gz")
    }
    memory = {
        (r["container_ip"], float(r["timestamp_anon"])): float(r["value"])
        for r in raw("pod_gpu_memory_used_bytes_anon.csv.gz")
    }
    assert len(samples) == len(duty.keys() | memory.keys()) == 161_415
    for r in samples:
        key = (r["pod"], r["ts"] / 1000)
        assert r["util"] == (duty[key] / 100 if key in duty else None)
        assert r["mem_used_bytes"] == (round(memory[key]) if key in memory else None)
        assert r["gpu_uuid"] == r["node"] == f"pod-{r['pod']}"
    # averaged memory values are rounded to whole bytes
    fractional = next(r for r in samples if r["pod"] == "63beb1b84354963cd40aa5fbdac96110")
    assert fractional["ts"] == 1_662_858_720_000
    assert fractional["mem_used_bytes"] == 19_612_757_743  # raw 19612757742.933334


@needs_trace
def test_step_time_order_and_contract(samples: list[dict]) -> None:
    assert {r["interval_s"] for r in samples} == {57.0}
    ts = [r["ts"] for r in samples]
    assert ts == sorted(ts)
    assert (ts[0], ts[-1]) == (1_662_858_720_000, 1_662_940_800_000)  # start=None keeps the epoch
    assert len(set(ts)) == 1_441
    for r in samples[::97]:
        assert coerce(GPU_SAMPLE, r) == r
    assert {(r["datacentre"], r["cluster"], r["source"]) for r in samples} == {
        ("alibaba-genai", "genai", "replay:genai")
    }


def write_gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write(text)


def test_start_shifts_time_and_columns_are_read_by_name(tmp_path: Path) -> None:
    write_gz(
        tmp_path / "pod_gpu_duty_cycle_anon.csv.gz",
        "value,timestamp_anon,container_ip\n50.0,1000.0,a\n25.0,1057.0,a\n",
    )
    write_gz(
        tmp_path / "pod_gpu_memory_used_bytes_anon.csv.gz",
        "timestamp_anon,value,container_ip\n1000.0,2048.0,a\n1114.0,4096.4,b\n",
    )
    start = datetime(2024, 3, 1, tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    got = [
        (r["ts"] - start_ms, r["pod"], r["util"], r["mem_used_bytes"], r["interval_s"])
        for _, r in GenaiReplay(tmp_path, start=start, datacentre="dc", cluster="c").collect()
    ]
    assert got == [
        (0, "a", 0.5, 2048, 57.0),
        (57_000, "a", 0.25, None, 57.0),
        (114_000, "b", None, 4096, 57.0),
    ]
    with pytest.raises(RecordError, match="no UTC offset"):
        GenaiReplay(tmp_path, start=datetime(2024, 3, 1))


def test_detect_step_is_the_median_gap() -> None:
    # a pod-churn gap (600 s) and a jitter (58 s) do not move the median step
    assert detect_step_s([0, 57_000, 114_000, 171_000, 771_000, 829_000, 57_000]) == 57.0
    with pytest.raises(ValueError):
        detect_step_s([5_000])
