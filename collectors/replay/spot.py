"""Replay of the node table of Alibaba's spot-GPU trace v2026 (Duan et al., ASPLOS '26).

``node_info_df.csv`` (``gpu_model,gpu_capacity_num,cpu_num,node_name``, read by header name:
the column order differs from the upstream description) becomes ``inventory``: one record per
node, ``node`` = ``node_name``, ``gpu_model`` as written (``GPU-series-1`` and
``GPU-series-2`` are undisclosed models), ``gpu_count`` = ``gpu_capacity_num``, valid from
``start``. A node with no GPU is counted, not emitted. The trace is research/study use only:
it is read from a path, never copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from collectors.replay.nodes import Node, NodeTable
from collectors.replay.table import Row, read_rows

NODE_FILE = "node_info_df.csv"
SOURCE = "replay:spot"


def read_nodes(path: Path) -> Iterator[tuple[Row, Node | None]]:
    for row in read_rows(path, ("gpu_model", "gpu_capacity_num", "node_name")):
        count = row.count("gpu_capacity_num")
        node = Node(row.text("node_name"), row.text("gpu_model") or None, count)
        yield row, node if count > 0 else None


SPOT = NodeTable(NODE_FILE, read_nodes, SOURCE, datacentre="alibaba-spot", cluster="spot")
spot_replay = SPOT.replay
"""``spot_replay(data_dir, *, start, datacentre=None, cluster=None)``: ``NodeTable.replay``."""
