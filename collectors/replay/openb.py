"""Replay of the Alibaba GPU-sharing trace v2023 ("openb", Weng et al., ATC '23).

``openb_node_list_gpu_node.csv`` becomes ``inventory`` (one record per GPU node, valid from
``start``); ``openb_pod_list_default.csv`` becomes ``allocation`` records. Trace second 0 maps
to ``start``. The trace is research/study use only: it is read from a path, never copied.

Mapping decisions (the trace has no tenant, no placement and no utilisation):

- ``tenant_id`` is ``"qos:<qos>"`` (``qos:LS``, ``qos:BE``, ...). The trace names no tenant, so
  the QoS class is the only grouping it offers; it is *not* a customer.
- ``gpu_count`` = ``num_gpu * gpu_milli / 1000`` when ``num_gpu == 1`` (GPU sharing), else
  ``num_gpu``. ``nodes`` and ``gpu_uuids`` are null.
- ``start`` = ``scheduled_time``, ``end`` = ``deletion_time`` (pods still ``Running`` at the
  end of the trace carry a deletion time too, and it is used), ``state`` = ``pod_phase``,
  ``event_ts`` = ``end`` when present, else ``start``.
- Pods that are not GPU allocations are skipped and *counted* in ``skipped``: ``pending`` (no
  ``scheduled_time``: never placed; checked first) and ``no_gpu`` (``num_gpu == 0``).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from collectors.base import Emitted
from collectors.pace import paced
from collectors.replay.trace import AnchoredReplay
from pipeline.records import ALLOCATION, INVENTORY, Record

log = logging.getLogger(__name__)

NODE_FILE = "openb_node_list_gpu_node.csv"
POD_FILE = "openb_pod_list_default.csv"
SOURCE = "replay:openb"


class OpenbReplay(AnchoredReplay):
    """``collect()`` yields the inventory (at ``start``), then allocations in ``event_ts`` order;
    ``skipped`` counts the pods not emitted, by reason (``pending``, ``no_gpu``)."""

    DATACENTRE = "alibaba-openb"
    CLUSTER = "openb"

    def collect(self) -> Iterable[Emitted]:
        items: list[tuple[int, Emitted]] = [
            (self.start_ms, (INVENTORY, r)) for r in self._inventory()
        ]
        allocations = sorted(self._allocations(), key=lambda r: r["event_ts"])
        items.extend((r["event_ts"], (ALLOCATION, r)) for r in allocations)
        log.info(
            "openb replay: %d inventory, %d allocation records; skipped pods %s",
            len(items) - len(allocations),
            len(allocations),
            self.skipped,
        )
        yield from paced(items, self.speed)

    def _inventory(self) -> list[Record]:
        return [
            {
                "datacentre": self.datacentre,
                "cluster": self.cluster,
                "node": row["sn"],
                "valid_from": self.start_ms,
                "valid_to": None,
                "gpu_model": row["model"] or None,
                "gpu_count": int(row["gpu"]),
                "source": SOURCE,
            }
            for row in _rows(self.data_dir / NODE_FILE)
        ]

    def _allocations(self) -> list[Record]:
        skipped: Counter[str] = Counter()
        out: list[Record] = []
        for row in _rows(self.data_dir / POD_FILE):
            num_gpu = int(row["num_gpu"])
            if not row["scheduled_time"]:
                skipped["pending"] += 1
                continue
            if num_gpu == 0:
                skipped["no_gpu"] += 1
                continue
            gpus = num_gpu * int(row["gpu_milli"]) / 1000 if num_gpu == 1 else float(num_gpu)
            start = self._at(row["scheduled_time"])
            end = self._at(row["deletion_time"]) if row["deletion_time"] else None
            out.append(
                {
                    "allocation_id": row["name"],
                    "datacentre": self.datacentre,
                    "cluster": self.cluster,
                    "tenant_id": f"qos:{row['qos']}",
                    "event_ts": end if end is not None else start,
                    "job_id": row["name"],
                    "gpu_count": gpus,
                    "gpu_uuids": None,
                    "nodes": None,
                    "start": start,
                    "end": end,
                    "state": row["pod_phase"],
                    "source": SOURCE,
                }
            )
        self.skipped = dict(skipped)
        return out

    def _at(self, seconds: str) -> int:
        """Trace seconds (integer text) as epoch ms, second 0 = ``start``."""
        return self.start_ms + int(seconds) * 1000


def _rows(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(newline="") as fh:
        yield from csv.DictReader(fh)
