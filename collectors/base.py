"""The collector and sink protocols (one method each, no base-class zoo).

A collector yields ``(Kind, record)`` pairs: contract records with timestamps as epoch ms.
A sink receives them: ``collectors.publish.KafkaSink`` (to the broker) or
``pipeline.backfill.LakeSink`` (straight into the lake). Both validate with the same code,
``pipeline.validate``, on the way into the lake.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pipeline.records import Kind, Record

Emitted = tuple[Kind, Record]


class Collector(Protocol):
    def collect(self) -> Iterable[Emitted]:
        """One pass over the source: one scrape, or a whole replay."""
        ...


class Sink(Protocol):
    def add(self, k: Kind, record: Record) -> None: ...

    def flush(self) -> None:
        """Make everything added so far durable; raise on a transient failure."""
        ...
