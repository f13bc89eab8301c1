"""Backfill: the same validation, dedup and writing as ``ingest``, straight into the lake.

``LakeSink`` is the no-broker sink for collectors (history, public traces, a laptop). Records
are validated and deduplicated in chunks and staged, in bounded memory, as the table's own data
files under ``<lake>/_staging/`` (``pipeline.lake_files``); ``flush`` then lands each kind's
rows in one Delta commit that also removes the rows an earlier run of the same load wrote
(wherever their corrected values put them). The load id derives from the content
(``backfill_load_id``), so a re-run replaces its own rows instead of adding to them. Rejected
records go to ``<lake>/_quarantine/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import lake as lakes
from pipeline.columnar import Part, land, validate
from pipeline.dead_letter import DeadLetter, QuarantineWriter
from pipeline.lake_files import StagedFiles, commit_staged
from pipeline.records import Kind, Record
from pipeline.validate import Reject
from pipeline.wire import encode_record
from pipeline.write import load_metadata, row_schema, safe_part, table_of

log = logging.getLogger(__name__)
STAGING_DIR = "_staging"
TABLE_CHUNK_ROWS = 1_000_000
"""Validated Arrow rows (``add_table``) deduplicated and staged together."""
IGNORED_OPTIONS = frozenset({"build", "func", "lake", "verbose", "speed", "command"})
"""CLI options that do not change the records a backfill loads."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode() + b"\0" + _digest(p).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def backfill_load_id(source: str, params: dict[str, Any]) -> str:
    """A load id that depends on what is loaded: the source, the content of every input file
    or folder, and the options that change records (not on paths' spelling or ``-v``)."""
    content: dict[str, Any] = {}
    for name, value in sorted(params.items()):
        if name in IGNORED_OPTIONS or value is None:
            continue
        path = Path(value) if isinstance(value, Path) else None
        content[name] = _digest(path) if path is not None and path.exists() else value
    digest = hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return f"{safe_part(source)}-{digest[:16]}"


@dataclass
class SinkStats:
    written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0
    conflicts: int = 0
    commits: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    """Table -> version of the commit this load made."""
    quarantine: list[Path] = field(default_factory=list)


@dataclass
class _Stage:
    files: StagedFiles
    rows: int = 0
    rejected: int = 0


class LakeSink:
    def __init__(self, lake: Path, load_id: str, origin: str, chunk_records: int = 50_000) -> None:
        self.lake = Path(lake)
        self.load_id = load_id
        self.origin = origin
        self.chunk_records = chunk_records
        self.stats = SinkStats()
        self._buffers: dict[str, list[Record]] = defaultdict(list)
        self._tables: dict[str, list[pa.Table]] = defaultdict(list)
        self._kinds: dict[str, Kind] = {}
        self._chunks: dict[str, int] = defaultdict(int)
        self._stages: dict[str, _Stage] = {}
        self._quarantine: dict[str, QuarantineWriter] = {}
        self._committed: set[str] = set()
        self._staging = self.lake / STAGING_DIR / safe_part(load_id)

    def add(self, k: Kind, record: Record) -> None:
        buf = self._buffers[k.name]
        self._kinds[k.name] = k
        buf.append(record)
        if len(buf) >= self.chunk_records:
            self._stage_chunk(k)

    def add_table(self, k: Kind, table: pa.Table) -> None:
        """Add validated rows (the contract's Arrow schema, from ``collect_tables``)."""
        self._kinds[k.name] = k
        tables = self._tables[k.name]
        tables.append(table)
        if sum(t.num_rows for t in tables) >= TABLE_CHUNK_ROWS:
            self._stage_tables(k)

    def _stage_tables(self, k: Kind) -> None:
        tables = self._tables.pop(k.name, [])
        if tables:
            self._stage_parts(k, tables, [])

    def flush(self) -> None:
        """Land what was added: one commit per kind (the first replaces an earlier run)."""
        for name in list(self._buffers):
            self._stage_chunk(self._kinds[name])
        for name in list(self._tables):
            self._stage_tables(self._kinds[name])
        for name in list(self._stages):
            self._commit(self._kinds[name], self._stages.pop(name))
        shutil.rmtree(self._staging, ignore_errors=True)

    def _stage_chunk(self, k: Kind) -> None:
        raws = self._buffers.pop(k.name, [])
        if not raws:
            return
        parts, bad = validate(k, raws)  # column-wise when it can be (``pipeline.columnar``)
        self._stage_parts(k, parts, bad)

    def _stage_parts(self, k: Kind, parts: Sequence[Part], bad: Sequence[Reject]) -> None:
        chunk = self._chunks[k.name]
        self._chunks[k.name] += 1
        rows, duplicates, conflicts, refused = land(k, parts)
        letters = [
            DeadLetter(
                encode_record(r.raw),
                r.error.reason,
                r.error.error_class,
                k.name,
                self.origin,
                offset=chunk,
                index=r.index,
            )
            for r in bad
        ] + [
            DeadLetter(
                encode_record(record),
                f"not writable: {error!r}",
                "unwritable",
                k.name,
                self.origin,
                offset=chunk,
            )
            for record, error in refused
        ]
        stage = self._stages.get(k.name)
        if stage is None:
            if not self._stages:  # a failed run's leftovers
                shutil.rmtree(self._staging, ignore_errors=True)
            files = StagedFiles(
                table_of(self.lake, k), self._staging / k.table, row_schema(k), load_id=self.load_id
            )
            stage = self._stages[k.name] = _Stage(files)
        stage.files.write(rows)
        stage.rows += rows.num_rows
        stage.rejected += len(letters)
        if letters:
            if k.name not in self._quarantine:
                self._quarantine[k.name] = QuarantineWriter(self.lake, f"{self.load_id}-{k.name}")
            self._quarantine[k.name].write(letters)
        self.stats.written[k.name] += rows.num_rows
        self.stats.rejected[k.name] += len(letters)
        self.stats.duplicates += duplicates
        self.stats.conflicts += conflicts

    def _commit(self, k: Kind, stage: _Stage) -> None:
        stage.files.close()
        quarantine = self._quarantine.pop(k.name, None)
        if quarantine is not None:  # durable before the commit that counts its records
            path = quarantine.close()
            self.stats.quarantine.append(path)
            log.warning("%d %s records rejected; see %s", stage.rejected, k.name, path)
        first = k.name not in self._committed
        metadata = load_metadata(k, self.origin, stage.rows, stage.rejected)
        version = commit_staged(stage.files, metadata=metadata, replace_load=first)
        if version is None:  # another writer committed meanwhile: land the files restamped
            version = lakes.commit(
                table_of(self.lake, k),
                stage.files,
                load_id=self.load_id,
                metadata=metadata,
                replace_load=first,
            )
        self._committed.add(k.name)
        self.stats.commits += 1
        self.stats.versions[k.table] = version
        shutil.rmtree(stage.files.staging, ignore_errors=True)
