"""Replay of the Helios Earth per-minute VC allocation series (SC '21) as ``occupancy`` records.

Each ``<vc>_cluster_sequence_vc.csv.gz`` holds one row per minute for one virtual cluster (VC):
``total_gpu_num`` GPUs in the VC and ``running_gpu_num`` GPUs held by running jobs. The ``time``
column is naive local time of the cluster, Asia/Shanghai. Helios has no device telemetry, so the
replay yields occupancy only. The VCs are merged into one stream in time order.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from collectors.base import Emitted
from collectors.pace import paced
from pipeline.defaults import DEFAULT_TZ
from pipeline.records import OCCUPANCY

log = logging.getLogger(__name__)

DEFAULT_HELIOS_DIR = Path(str(resources.files("gpuledger").joinpath("data", "helios")))
"""The packaged copy of the Earth May-2020 VC sequences (MIT / CC BY 4.0, Hu et al. SC '21)."""

SUFFIX = "_cluster_sequence_vc.csv.gz"
LOCAL_TZ = ZoneInfo(DEFAULT_TZ)
SOURCE = "replay:helios"
INTERVAL_S = 60.0


class HeliosReplay:
    """``collect()`` yields the occupancy of every selected VC, minute by minute, in time order."""

    def __init__(
        self,
        data_dir: Path = DEFAULT_HELIOS_DIR,
        *,
        speed: float | None = None,
        vcs: Sequence[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.speed = speed
        self.vcs = tuple(vcs) if vcs is not None else None

    def files(self) -> dict[str, Path]:
        """VC name -> its sequence file, restricted to ``vcs`` when given."""
        found = {p.name[: -len(SUFFIX)]: p for p in sorted(self.data_dir.glob(f"*{SUFFIX}"))}
        if not found:
            raise FileNotFoundError(f"no *{SUFFIX} files in {self.data_dir}")
        if self.vcs is None:
            return found
        missing = [vc for vc in self.vcs if vc not in found]
        if missing:
            raise ValueError(
                f"unknown Helios VC(s) {', '.join(missing)}; {self.data_dir} has {', '.join(found)}"
            )
        return {vc: found[vc] for vc in self.vcs}

    def collect(self) -> Iterable[Emitted]:
        streams = [_read_vc(vc, path) for vc, path in self.files().items()]
        merged = heapq.merge(*streams, key=lambda item: item[0])
        count, started = 0, time.monotonic()
        for record in paced(merged, self.speed):
            count += 1
            yield OCCUPANCY, record
        elapsed = time.monotonic() - started
        log.info("helios replay: %d occupancy records in %.1f s", count, elapsed)


def _read_vc(vc: str, path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """One VC file as ``(ts_ms, record)`` in time order; raises if the file is not in order."""
    with gzip.open(path, "rt", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows)
        try:
            i_time = header.index("time")
            i_total = header.index("total_gpu_num")
            i_running = header.index("running_gpu_num")
        except ValueError as exc:
            raise ValueError(f"{path}: missing column ({exc})") from None
        last = -1
        for line, row in enumerate(rows, start=2):
            stamp = row[i_time]
            local = datetime.fromisoformat(stamp).replace(tzinfo=LOCAL_TZ)
            ts = round(local.timestamp() * 1000)
            if ts <= last:
                raise ValueError(f"{path}:{line}: time {stamp} is not after the previous row")
            last = ts
            yield (
                ts,
                {
                    "ts": ts,
                    "interval_s": INTERVAL_S,
                    "datacentre": "helios",
                    "cluster": "earth",
                    "scope": vc,
                    "gpus_total": float(row[i_total]),
                    "gpus_allocated": float(row[i_running]),
                    "gpus_down": None,
                    "source": SOURCE,
                },
            )
