"""Replay of the machine table of Alibaba's PAI GPU trace v2020 (Weng et al., NSDI '22).

``pai_machine_spec.csv`` (``machine,gpu_type,cap_cpu,cap_mem,cap_gpu``; the upstream file has
no header row, so a copy with the header of ``pai_machine_spec.header`` prepended is read)
becomes ``inventory``: one record per GPU machine, ``node`` = ``machine``, ``gpu_model`` =
``gpu_type`` (``MISC`` stands for the older K40m / K80 / M60 machines), ``gpu_count`` =
``cap_gpu``, valid from ``start``. CPU machines (``gpu_type`` ``CPU`` or ``cap_gpu`` 0) are
counted, not emitted. The table is CC BY 4.0 (Alibaba Group).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from collectors.replay.nodes import Node, NodeTable
from collectors.replay.table import Row, read_rows

MACHINE_FILE = "pai_machine_spec.csv"
SOURCE = "replay:pai"


def read_machines(path: Path) -> Iterator[tuple[Row, Node | None]]:
    for row in read_rows(path, ("machine", "gpu_type", "cap_gpu")):
        count = row.count("cap_gpu")
        model = row.text("gpu_type")
        gpu = count > 0 and model != "CPU"
        yield row, Node(row.text("machine"), model or None, count) if gpu else None


PAI = NodeTable(MACHINE_FILE, read_machines, SOURCE, datacentre="alibaba-pai", cluster="pai")
pai_replay = PAI.replay
"""``pai_replay(data_dir, *, start, datacentre=None, cluster=None)``: ``NodeTable.replay``."""
