"""Replay of the Microsoft Philly machine list (Jeon et al., ATC '19) as ``inventory``, from
either of two capacity sources of the one Philly cluster, which disagree:

- ``machine-list`` (default): ``cluster_machine_list``, the original Philly file
  (``machineId, number of GPUs, single GPU mem``, header and values with a leading space):
  552 machines, 2,490 GPUs. ``source`` = ``replay:philly``.
- ``telemetry``: ``revised_machine_list.csv`` (``,machineId,number of GPUs``, the first column a
  pandas index), per machine the number of GPUs that report a value in Philly's per-minute
  GPU telemetry: 3,205 GPUs, and 0 on 13 machines (a machine that reports no GPU is a
  statement too, so it is emitted with ``gpu_count`` 0). ``source`` =
  ``replay:philly:telemetry``.

Both describe the same nodes at the same instant, so they share the inventory key: within
one load the later record of a key replaces the earlier, and across loads the later load's
statement is the one the lake keeps. Load the source the reports should use last; the
utilisation report then names it and says that the other one disagrees (``capacity_note``).
The machine list carries no GPU model: ``gpu_model`` is null. Philly data: CC BY 4.0
(Microsoft); the telemetry counts: MIT (Qinghao-Hu/Philly-Trace-Scripts).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from collectors.replay.nodes import Node, NodeTable, NodeTableReplay
from collectors.replay.table import Row, read_rows

Counts = Literal["machine-list", "telemetry"]
COUNTS: tuple[Counts, ...] = ("machine-list", "telemetry")
MACHINE_FILE = "cluster_machine_list"
TELEMETRY_FILE = "revised_machine_list.csv"


def read_machine_list(path: Path) -> Iterator[tuple[Row, Node | None]]:
    for row in read_rows(path, ("machineId", "number of GPUs")):
        count = row.count("number of GPUs")
        yield row, Node(row.text("machineId"), None, count) if count > 0 else None


def read_telemetry_counts(path: Path) -> Iterator[tuple[Row, Node | None]]:
    for row in read_rows(path, ("machineId", "number of GPUs")):
        yield row, Node(row.text("machineId"), None, row.count("number of GPUs"))


TABLES: dict[Counts, NodeTable] = {
    "machine-list": NodeTable(
        MACHINE_FILE, read_machine_list, "replay:philly", "microsoft-philly", "philly"
    ),
    "telemetry": NodeTable(
        TELEMETRY_FILE,
        read_telemetry_counts,
        "replay:philly:telemetry",
        "microsoft-philly",
        "philly",
    ),
}
SOURCES: dict[Counts, str] = {counts: table.source for counts, table in TABLES.items()}


def philly_replay(
    data_dir: Path,
    *,
    start: datetime,
    counts: Counts = "machine-list",
    datacentre: str | None = None,
    cluster: str | None = None,
) -> NodeTableReplay:
    """The replay of the ``counts`` table (``TABLES``); its site unless told another."""
    if counts not in TABLES:
        raise ValueError(f"counts must be one of {', '.join(COUNTS)}, not {counts!r}")
    return TABLES[counts].replay(data_dir, start=start, datacentre=datacentre, cluster=cluster)
