"""Replay of the Alibaba GenAI serving trace v2026 (Lin et al., SoCC '25) as ``gpu_sample`` records.

Two metric tables, joined on ``(container_ip, timestamp_anon)`` (a full outer join):
``pod_gpu_duty_cycle_anon.csv.gz`` (``value`` = duty cycle in percent -> ``util`` = value/100) and
``pod_gpu_memory_used_bytes_anon.csv.gz`` (``value`` = bytes, some averaged to fractions ->
rounded to whole bytes). The two files order their columns differently, so columns are read by
name. The trace is research/study use only: it is read from a path, never copied.

The trace has no placement: one pod is one GPU slot, so ``gpu_uuid`` and ``node`` are
``"pod-" + container_ip`` and ``pod`` is the container_ip. A point with memory but no duty cycle
is emitted with ``util`` null (no telemetry for busy time), never as 0. ``interval_s`` is the
data's own step, the median positive gap between distinct timestamps (57 s in this trace).
"""

from __future__ import annotations

import csv
import gzip
import logging
import statistics
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from collectors.base import Emitted
from collectors.pace import paced
from pipeline.records import GPU_SAMPLE, Record, parse_ts

log = logging.getLogger(__name__)

DUTY_FILE = "pod_gpu_duty_cycle_anon.csv.gz"
MEMORY_FILE = "pod_gpu_memory_used_bytes_anon.csv.gz"
SOURCE = "replay:genai"

Series = dict[tuple[str, int], float]
"""(container_ip, trace epoch ms) -> value."""


class GenaiReplay:
    """``collect()`` yields one sample per (pod, timestamp) in either file, in time order."""

    def __init__(
        self,
        data_dir: Path,
        *,
        start: datetime | None = None,
        speed: float | None = None,
        datacentre: str = "alibaba-genai",
        cluster: str = "genai",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.start_ms = parse_ts(start) if start is not None else None  # refuses naive datetimes
        self.speed = speed
        self.datacentre = datacentre
        self.cluster = cluster

    def collect(self) -> Iterable[Emitted]:
        duty = _read_series(self.data_dir / DUTY_FILE)
        memory = _read_series(self.data_dir / MEMORY_FILE)
        keys = sorted(duty.keys() | memory.keys(), key=lambda k: (k[1], k[0]))
        if not keys:
            return
        interval_s = detect_step_s(t for _, t in keys)
        shift = 0 if self.start_ms is None else self.start_ms - keys[0][1]
        log.info(
            "genai replay: %d duty + %d memory points -> %d samples, step %.0f s",
            len(duty),
            len(memory),
            len(keys),
            interval_s,
        )

        def timeline() -> Iterator[tuple[int, Emitted]]:
            for ip, t in keys:
                sample = self._sample(
                    ip, t + shift, interval_s, duty.get((ip, t)), memory.get((ip, t))
                )
                yield t, (GPU_SAMPLE, sample)

        yield from paced(timeline(), self.speed)

    def _sample(
        self, ip: str, ts: int, interval_s: float, duty_pct: float | None, mem: float | None
    ) -> Record:
        return {
            "ts": ts,
            "interval_s": interval_s,
            "datacentre": self.datacentre,
            "cluster": self.cluster,
            "node": f"pod-{ip}",
            "gpu_uuid": f"pod-{ip}",
            "gpu_index": None,
            "gpu_model": None,
            "util": None if duty_pct is None else duty_pct / 100.0,
            "mem_used_bytes": None if mem is None else round(mem),
            "mem_total_bytes": None,
            "power_w": None,
            "temp_c": None,
            "sm_active": None,
            "pod": ip,
            "namespace": None,
            "job_id": None,
            "source": SOURCE,
        }


def detect_step_s(timestamps_ms: Iterable[int]) -> float:
    """The sampling step in seconds: median positive gap between distinct timestamps."""
    distinct = sorted(set(timestamps_ms))
    gaps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)]
    if not gaps:
        raise ValueError("cannot detect the sampling step from a single timestamp")
    return statistics.median(gaps) / 1000.0


def _read_series(path: Path) -> Series:
    out: Series = {}
    with gzip.open(path, "rt", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            key = (row["container_ip"], round(float(row["timestamp_anon"]) * 1000))
            if key in out:
                raise ValueError(f"{path}:{line}: second value for pod {key[0]} at {key[1]} ms")
            out[key] = float(row["value"])
    return out
