"""Writing the lake: Hive-partitioned zstd Parquet, atomically, plus the ``_loads`` audit trail.

Layout (DESIGN §6)::

    <lake>/<table>/datacentre=<id>/date=<YYYY-MM-DD>/<name>.parquet
    <lake>/_loads/<load_id>.parquet          one row per data file a load wrote

``name`` derives from the Kafka topic/partition/offset range (streaming) or from the load id
(backfill), so a retry rewrites the same file instead of adding a duplicate. Every file is
written to a temporary name, fsynced, renamed, and its directory fsynced.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.records import Kind, Record, lake_date

LOADS_DIR = "_loads"
LOADS_SCHEMA = pa.schema(
    [
        pa.field("load_id", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("rejected", pa.int64(), nullable=False),
        pa.field("written_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    rows: int


def safe_part(value: str) -> str:
    """A value made safe for a path segment (Hive partition values, file names)."""
    return _SAFE.sub("_", value) or "_"


def stream_file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"s-{topic}-p{partition}-o{first:020d}-{last:020d}"


STREAM_NAME = re.compile(
    r"^s-(?P<topic>.+)-p(?P<partition>\d+)-o(?P<first>\d{20})-(?P<last>\d{20})$"
)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def partition_dir(lake: Path, k: Kind, datacentre: str, date: str) -> Path:
    return lake / k.table / f"datacentre={safe_part(datacentre)}" / f"date={date}"


def write_records(lake: Path, k: Kind, records: Sequence[Record], name: str) -> list[WrittenFile]:
    """Write records as one file per (datacentre, date) partition, all named ``name``."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r["datacentre"], lake_date(k, r))].append(r)
    schema = k.arrow_schema()
    written = []
    for (dc, date), rows in sorted(groups.items()):
        path = partition_dir(lake, k, dc, date) / f"{name}.parquet"
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=schema), path)
        written.append(WrittenFile(path, len(rows)))
    return written


def record_load(
    lake: Path,
    load_id: str,
    origin: str,
    k: Kind,
    files: Iterable[WrittenFile],
    rejected: int = 0,
) -> Path:
    """Record a load in ``_loads`` (one file per load id, rewritten on retry)."""
    now = int(time.time() * 1000)
    rows: list[dict[str, Any]] = [
        {
            "load_id": load_id,
            "origin": origin,
            "kind": k.name,
            "path": str(f.path.relative_to(lake)),
            "rows": f.rows,
            "rejected": rejected,
            "written_at": now,
        }
        for f in files
    ]
    if not rows:  # a load that only rejected records is still on the record
        rows.append(
            {
                "load_id": load_id,
                "origin": origin,
                "kind": k.name,
                "path": "",
                "rows": 0,
                "rejected": rejected,
                "written_at": now,
            }
        )
    path = lake / LOADS_DIR / f"{safe_part(load_id)}.parquet"
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=LOADS_SCHEMA), path)
    return path


def uncommitted_stream_files(lake: Path, topic: str, partition: int, committed: int) -> list[Path]:
    """Files (data and ``_loads``) a crashed ingest wrote for offsets >= ``committed``.

    Their offsets were never committed, so the records will be consumed again; removing the
    files first keeps a restart from landing them twice when the new batch boundaries differ.
    """
    found = []
    prefix = f"s-{topic}-p{partition}-o"
    for path in lake.rglob(f"{prefix}*.parquet"):
        m = STREAM_NAME.match(path.stem)
        if (
            m
            and m["topic"] == topic
            and int(m["partition"]) == partition
            and int(m["first"]) >= committed
        ):
            found.append(path)
    return found
