"""Replay of Alibaba's GPU-disaggregated DLRM serving trace v2025 (Yang et al., NSDI '25).

``disaggregated_DLRM_trace.csv`` has one row per inference instance. ``HN`` instances run on
GPU nodes and hold ``gpu_request`` whole GPUs from ``scheduled_time`` to ``deletion_time``;
they become ``allocation`` records. Times are seconds from the trace start, which maps to
``start``. The trace is research/study use only: it is read from a path, never copied.

The trace window runs from second 0 to the largest time in the file (any row, any time
column). An empty time means the event lies outside it:

- empty ``scheduled_time`` (and ``creation_time``): running before the trace began, so
  ``start`` = second 0;
- empty ``deletion_time``: still running when the trace ended, so ``end`` is null, ``state``
  ``Running`` and ``event_ts`` the end of the window, the last instant it was seen running.
  Reports count such an allocation up to the cluster's newest allocation instant, which is
  then the end of the window (not today);
- otherwise ``end`` = ``deletion_time``, ``state`` ``Deleted``, ``event_ts`` = ``end``.

Mapping decisions (the trace has no tenant, no placement and no utilisation):
``tenant_id`` is ``"app:<app_name>"`` (the service the instance serves: a grouping, *not* a
customer), ``job_id`` = ``app_name``, ``allocation_id`` = ``instance_sn``, ``gpu_count`` =
``gpu_request``; ``nodes`` and ``gpu_uuids`` are null. Instances that are not GPU allocations
are skipped and *counted* in ``skipped``: ``cpu_only`` (``CN`` instances or ``gpu_request``
0) and ``unscheduled`` (created inside the window but never scheduled in it).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from collectors.base import Emitted
from collectors.pace import paced
from collectors.replay.table import Row, read_rows
from collectors.replay.trace import AnchoredReplay
from pipeline.records import ALLOCATION, Record

log = logging.getLogger(__name__)

TRACE_FILE = "disaggregated_DLRM_trace.csv"
SOURCE = "replay:dlrm"
TIMES = ("creation_time", "scheduled_time", "deletion_time")
COLUMNS = ("instance_sn", "role", "app_name", "gpu_request", *TIMES)


class DlrmReplay(AnchoredReplay):
    """``collect()`` yields the HN instances' allocations in ``event_ts`` order; ``skipped``
    counts the instances not emitted, by reason (``cpu_only``, ``unscheduled``)."""

    DATACENTRE = "alibaba-dlrm"
    CLUSTER = "dlrm"
    end_s: float | None = None
    """The trace's largest time, seconds from its start; set by ``collect()``."""

    def collect(self) -> Iterable[Emitted]:
        rows = list(read_rows(self.data_dir / TRACE_FILE, COLUMNS))
        end_s = max(
            (t for row in rows for c in TIMES if (t := row.optional(c)) is not None), default=0.0
        )
        self.end_s = end_s
        skipped: Counter[str] = Counter()
        allocations: list[Record] = []
        for row in rows:
            record = self._allocation(row, end_s, skipped)
            if record is not None:
                allocations.append(record)
        self.skipped = dict(skipped)
        allocations.sort(key=lambda r: (r["event_ts"], r["allocation_id"]))
        log.info(
            "dlrm replay: %d allocation records over %.0f s; skipped instances %s",
            len(allocations),
            end_s,
            self.skipped,
        )
        yield from paced(((r["event_ts"], (ALLOCATION, r)) for r in allocations), self.speed)

    def _allocation(self, row: Row, end_s: float, skipped: Counter[str]) -> Record | None:
        gpus = row.number("gpu_request")
        if row.text("role") != "HN" or gpus == 0:
            skipped["cpu_only"] += 1
            return None
        scheduled = row.optional("scheduled_time")
        if scheduled is None and row.optional("creation_time") is not None:
            skipped["unscheduled"] += 1
            return None
        deleted = row.optional("deletion_time")
        start = self._at(scheduled or 0.0)
        end = None if deleted is None else self._at(deleted)
        return {
            "allocation_id": row.text("instance_sn"),
            "datacentre": self.datacentre,
            "cluster": self.cluster,
            "tenant_id": f"app:{row.text('app_name')}",
            "event_ts": self._at(end_s) if end is None else end,
            "job_id": row.text("app_name"),
            "gpu_count": gpus,
            "gpu_uuids": None,
            "nodes": None,
            "start": start,
            "end": end,
            "state": "Running" if end is None else "Deleted",
            "source": SOURCE,
        }

    def _at(self, seconds: float) -> int:
        """Trace seconds as epoch ms, second 0 = ``start``."""
        return self.start_ms + round(seconds * 1000)
