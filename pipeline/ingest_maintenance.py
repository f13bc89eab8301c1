"""Background maintenance of an ingest worker: the closed partitions of the lake compacted every
``IngestSettings.compact_every_s``, then ``IngestSettings.maintain`` (the rollups)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline.ingest_settings import IngestSettings

log = logging.getLogger(__name__)


def start_compactor(settings: IngestSettings, halt: threading.Event) -> threading.Thread | None:
    """The background thread that runs ``compact_closed`` until ``halt``; None when
    ``compact_every_s`` is 0."""
    if settings.compact_every_s <= 0:
        return None
    compactor = threading.Thread(
        target=compact_closed,
        args=(settings.lake, settings.compact_every_s, halt, settings.maintain),
        name="compact",
        daemon=True,
    )
    compactor.start()
    return compactor


def compact_closed(
    lake: Path,
    every_s: float,
    stop: threading.Event,
    maintain: Callable[[Path], object] | None = None,
) -> None:
    """Compact the lake's closed partitions every ``every_s`` until ``stop``, then run
    ``maintain`` (a failure is logged and tried again next time: it never holds up ingest)."""
    from pipeline.maintain import compact

    while not stop.wait(every_s):
        try:
            done = compact(lake)
            if done:
                log.info("compacted %d closed partition(s)", len(done))
            if maintain is not None:
                maintain(lake)
        except Exception:
            log.exception("background maintenance failed; retrying in %.0fs", every_s)
