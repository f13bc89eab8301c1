"""Backfill: the same validation, dedup and writing as ``ingest``, straight into the lake.

``LakeSink`` is the no-broker sink for collectors (history, public traces, a laptop). Its file
names derive from a deterministic load id, so re-running the same backfill rewrites the same
files instead of adding duplicates. Rejected records go to the load's quarantine file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.dead_letter import DeadLetter, write_quarantine
from pipeline.dedup import dedup
from pipeline.records import Kind, Record
from pipeline.validate import validate_batch
from pipeline.wire import encode_record
from pipeline.write import record_load, write_records

log = logging.getLogger(__name__)


def backfill_load_id(source: str, params: dict[str, Any]) -> str:
    """A load id that is the same for the same source and inputs (so a retry overwrites)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return f"{source}-{digest[:12]}"


@dataclass
class SinkStats:
    written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0
    conflicts: int = 0
    files: int = 0
    quarantine: list[Path] = field(default_factory=list)


class LakeSink:
    def __init__(self, lake: Path, load_id: str, origin: str, chunk_records: int = 250_000) -> None:
        self.lake = lake
        self.load_id = load_id
        self.origin = origin
        self.chunk_records = chunk_records
        self.stats = SinkStats()
        self._buffers: dict[str, list[Record]] = defaultdict(list)
        self._kinds: dict[str, Kind] = {}
        self._chunks: dict[str, int] = defaultdict(int)

    def add(self, k: Kind, record: Record) -> None:
        buf = self._buffers[k.name]
        self._kinds[k.name] = k
        buf.append(record)
        if len(buf) >= self.chunk_records:
            self._flush_kind(k)

    def flush(self) -> None:
        for name in list(self._buffers):
            self._flush_kind(self._kinds[name])

    def _flush_kind(self, k: Kind) -> None:
        raws = self._buffers.pop(k.name, [])
        if not raws:
            return
        chunk = self._chunks[k.name]
        self._chunks[k.name] += 1
        load_id = f"{self.load_id}-{k.name}-{chunk:05d}"
        good, bad = validate_batch(k, raws)
        result = dedup(k, good)
        files = write_records(self.lake, k, result.records, f"b-{load_id}")
        letters = [
            DeadLetter(
                raw=encode_record(r.raw),
                reason=r.error.reason,
                error_class=r.error.error_class,
                kind=k.name,
                origin=self.origin,
                offset=chunk,
                index=r.index,
            )
            for r in bad
        ]
        quarantine = write_quarantine(self.lake, load_id, letters)
        record_load(self.lake, load_id, self.origin, k, files, rejected=len(bad))
        self.stats.written[k.name] += len(result.records)
        self.stats.rejected[k.name] += len(bad)
        self.stats.duplicates += result.duplicates
        self.stats.conflicts += result.conflicts
        self.stats.files += len(files)
        if quarantine is not None:
            self.stats.quarantine.append(quarantine)
            log.warning("%d %s records rejected; see %s", len(bad), k.name, quarantine)
