"""Replay a recorded dcgm-exporter stream: exposition text whose sample lines carry timestamps.

The file (plain or ``.gz``) is consecutive scrapes one after another, each line in the standard
form ``metric{labels} value <timestamp_ms>``. A scrape is a run of lines with the same timestamp;
``# HELP`` / ``# TYPE`` lines go with the scrape that follows them, and a sample line without a
timestamp stays with the scrape it sits in. Each scrape is parsed by
``collectors.dcgm.parse_exposition`` and its records are emitted paced by ``collectors.pace``.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from collectors.base import Emitted
from collectors.dcgm import parse_exposition
from collectors.errors import SourceError
from collectors.exposition import SeriesCache, line_timestamp_ms
from collectors.pace import paced
from pipeline.records import GPU_SAMPLE

log = logging.getLogger(__name__)


class DcgmFileReplay:
    """``collect()`` replays the whole file once, scrape by scrape, at ``speed`` x real time."""

    def __init__(
        self,
        path: Path,
        *,
        datacentre: str,
        cluster: str,
        interval_s: float,
        speed: float | None,
        node: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.datacentre = datacentre
        self.cluster = cluster
        self.interval_s = interval_s
        self.speed = speed
        self.node = node
        self.skipped: Counter[str] = Counter()
        self.nulled: Counter[str] = Counter()
        self.scrapes = 0
        self._series: SeriesCache = {}

    def collect(self) -> Iterator[Emitted]:
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file (a dcgm-exporter exposition stream)")
        return paced(self._timed(), self.speed)

    def _open(self) -> IO[str]:
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rt", encoding="utf-8")
        return self.path.open("r", encoding="utf-8")

    def _timed(self) -> Iterator[tuple[int, Emitted]]:
        for scrape_ts, text in self._scrapes():
            result = parse_exposition(
                text,
                datacentre=self.datacentre,
                cluster=self.cluster,
                scrape_ts_ms=scrape_ts,
                interval_s=self.interval_s,
                node=self.node,
                series_cache=self._series,
            )
            self.scrapes += 1
            self.skipped.update(result.skipped)
            self.nulled.update(result.nulled)
            for record in result.records:
                yield record["ts"], (GPU_SAMPLE, record)

    def _scrapes(self) -> Iterator[tuple[int, str]]:
        """(timestamp, exposition text) per scrape, in file order."""
        current: list[str] = []
        pending: list[str] = []  # comment lines waiting for the next scrape's first sample
        current_ts: int | None = None
        try:
            with self._open() as lines:
                for line in lines:
                    ts = line_timestamp_ms(line)
                    if ts is None:
                        stripped = line.lstrip()
                        if stripped.startswith("#"):
                            pending.append(line)
                        elif stripped:
                            current.extend(pending)
                            pending.clear()
                            current.append(line)
                        continue
                    if ts != current_ts:
                        if current_ts is not None:
                            yield current_ts, "".join(current)
                            current = []
                        current_ts = ts
                    current.extend(pending)
                    pending.clear()
                    current.append(line)
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise SourceError(f"{self.path}: cannot read the stream ({exc})") from exc
        if current_ts is not None:
            yield current_ts, "".join(current)
        elif current:
            self.skipped["no_timestamp"] += sum(1 for ln in current if ln.strip())
            log.warning("%s: sample lines without any timestamp; nothing replayed", self.path)
