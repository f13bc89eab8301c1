"""Node tables of public traces as ``inventory`` records: one record per GPU node, valid from
the instant the user anchors the table at (the tables carry no time) and still current."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collectors.base import Emitted
from collectors.replay.table import Row
from pipeline.records import INVENTORY, Record, parse_ts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Node:
    """What one row of a node table says: the node, its GPU model and its GPU count."""

    node: str
    gpu_model: str | None
    gpu_count: int


Reader = Callable[[Path], Iterable[tuple[Row, Node | None]]]
"""A node table's reader: each row with its node, or None for a row that is no GPU node."""


@dataclass(frozen=True)
class NodeTable:
    """A trace's node table: the file of the trace folder it is read from, its reader, the
    ``source`` of its records and the site (``datacentre``, ``cluster``) they name unless the
    replay is told another."""

    file: str
    reader: Reader
    source: str
    datacentre: str
    cluster: str

    def replay(
        self,
        data_dir: Path,
        *,
        start: datetime,
        datacentre: str | None = None,
        cluster: str | None = None,
    ) -> NodeTableReplay:
        """The replay of this table in ``data_dir``, its nodes valid from ``start``; the
        table's site unless ``datacentre`` / ``cluster`` are given."""
        return NodeTableReplay(
            Path(data_dir) / self.file,
            self.reader,
            start,
            self.datacentre if datacentre is None else datacentre,
            self.cluster if cluster is None else cluster,
            self.source,
        )


@dataclass
class NodeTableReplay:
    """``collect()`` yields one ``inventory`` record per GPU node of ``path``, valid from
    ``start``; rows that are no GPU node are counted in ``skipped["no_gpu"]``."""

    path: Path
    reader: Reader
    start: datetime
    datacentre: str
    cluster: str
    source: str

    def __post_init__(self) -> None:
        self.start_ms = parse_ts(self.start)  # refuses a naive datetime
        self.skipped: dict[str, int] = {}

    def collect(self) -> Iterator[Emitted]:
        skipped: Counter[str] = Counter()
        records = []
        for _row, node in self.reader(self.path):
            if node is None:
                skipped["no_gpu"] += 1
                continue
            records.append(self._record(node))
        self.skipped = dict(skipped)
        log.info(
            "%s: %d GPU nodes, %d GPUs; skipped rows %s",
            self.source,
            len(records),
            sum(r["gpu_count"] for r in records),
            self.skipped,
        )
        for record in records:
            yield INVENTORY, record

    def _record(self, node: Node) -> Record:
        return {
            "datacentre": self.datacentre,
            "cluster": self.cluster,
            "node": node.node,
            "valid_from": self.start_ms,
            "valid_to": None,
            "gpu_model": node.gpu_model,
            "gpu_count": node.gpu_count,
            "source": self.source,
        }
