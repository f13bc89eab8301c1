"""Drive a collector into a sink: one pass, or a scrape loop that survives source errors."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from collectors.base import Collector, Sink
from collectors.errors import SourceError
from pipeline.records import Kind

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    records: int = 0
    passes: int = 0
    source_errors: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False
    """Stopped by ``stop`` (a signal) before the source was exhausted; what was read was flushed."""

    @property
    def rate(self) -> float:
        return self.records / max(time.monotonic() - self.started, 1e-9)


def _tables_of(collector: Collector, sink: Sink) -> Iterator[tuple[Kind, pa.Table]] | None:
    """Validated Arrow tables instead of records, when both ends can (a Parquet records file
    into the lake: ``collect_tables`` and ``add_table``)."""
    collect_tables = getattr(collector, "collect_tables", None)
    if collect_tables is None or not hasattr(sink, "add_table"):
        return None
    tables: Iterator[tuple[Kind, pa.Table]] | None = collect_tables()
    return tables


def run_collector(
    collector: Collector,
    sink: Sink,
    *,
    repeat_every_s: float | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[RunStats], None] | None = None,
    progress_every_s: float = 2.0,
) -> RunStats:
    """Feed ``collector`` into ``sink``; with ``repeat_every_s``, loop until ``stop`` is set.
    In a single pass ``stop`` ends it early: the records read so far are flushed, then it
    returns (``interrupted``); a loop finishes the pass in hand first.

    In a loop, a ``SourceError`` (source down, garbage) is logged and counted and the next
    scrape goes ahead; in a single pass it propagates. Sink errors always propagate.
    """
    stop = stop or threading.Event()
    stats = RunStats()
    single = repeat_every_s is None  # a loop's pass (one scrape) is short: it finishes first
    last_report = time.monotonic()
    while True:
        started = time.monotonic()
        tables = _tables_of(collector, sink)
        try:
            for k, table in tables or ():
                if single and stop.is_set():
                    stats.interrupted = True
                    break
                sink.add_table(k, table)  # type: ignore[attr-defined]
                stats.records += table.num_rows
                stats.by_kind[k.name] = stats.by_kind.get(k.name, 0) + table.num_rows
                if progress and time.monotonic() - last_report >= progress_every_s:
                    progress(stats)
                    last_report = time.monotonic()
            for k, record in () if tables is not None else collector.collect():
                if single and stop.is_set():  # a signal: flush what is in hand, then stop
                    stats.interrupted = True
                    break
                sink.add(k, record)
                stats.records += 1
                stats.by_kind[k.name] = stats.by_kind.get(k.name, 0) + 1
                if progress and time.monotonic() - last_report >= progress_every_s:
                    progress(stats)
                    last_report = time.monotonic()
        except SourceError as exc:
            if repeat_every_s is None:
                raise
            stats.source_errors += 1
            log.error("scrape failed (%d so far): %s", stats.source_errors, exc)
        sink.flush()
        stats.passes += 1
        if repeat_every_s is None or stop.wait(
            max(0.0, repeat_every_s - (time.monotonic() - started))
        ):
            break
    if progress:
        progress(stats)
    return stats
