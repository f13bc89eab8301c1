"""Lake maintenance: compaction of closed partitions, vacuum, and the commit history.

``compact`` rewrites each *closed* partition (``datacentre``, ``date`` before ``before``, by
default yesterday UTC: today and yesterday still take late data) of a contract table that has
several files, or one not compacted yet, as ONE file in ONE commit: its active rows (from the
snapshot's log), sorted by ``SORT_KEYS`` (``gpu_uuid, ts``; other kinds: ``Kind.key``), written
with ``compact_writer``. Rows keep ``_version`` and ``_load``, and rows of one key and version
keep their order (file, then row: the catalogue's tie-break), so every view reads the same rows;
``--as-of`` an older version reads the old files until ``vacuum`` removes them.

- Compacted files are known by their footer (``is_compacted``): a second run reads no rows.
- Row groups hold at least ``MIN_GROUP_ROWS`` (122,880) rows whenever the partition does.
- The overwrite is conditional on the partition: delta-rs fails it (``CommitFailedError``)
  when a commit since the read added or removed files there; the partition is then skipped
  and reported (``conflict``), never retried blindly, so nothing is lost and the next run
  compacts it. Commits to other partitions are merged as usual.

``vacuum`` deletes the files that no version within the retention reads (those a compaction
replaced). ``history`` lists every commit of every table, with the load log entries.
"""

from __future__ import annotations

import datetime as dt_
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError

from pipeline import lake as lakes
from pipeline.records import BY_TABLE, GPU_SAMPLE, KINDS, Kind
from pipeline.sqltext import sql_literal

log = logging.getLogger(__name__)

MIN_GROUP_ROWS = 122_880
COMPACT_ZSTD_LEVEL = 19
"""Compaction rewrites cold data once; zstd's decompression speed does not depend on it. Lower
levels (``compact(zstd_level=...)``, ``lake compact --zstd-level``) trade bytes for CPU."""
ZSTD_LEVELS = range(1, 23)
COMPACT_FILE_BYTES = 1 << 40
"""``target_file_size`` of a compaction: never split a partition into several files."""
SORT_KEYS: dict[str, tuple[str, ...]] = {GPU_SAMPLE.table: ("gpu_uuid", "ts")}
PLAIN_COLUMNS: dict[str, tuple[str, ...]] = {
    GPU_SAMPLE.table: ("util", "power_w", "sm_active", "mem_used_bytes")
}
"""Measurements PLAIN + zstd beats a dictionary for: high-cardinality ones, and memory, whose
long runs of one value zstd takes better than dictionary indices do (docs/lake.md#compact)."""
UNSTATED_COLUMNS: dict[str, tuple[str, ...]] = {
    GPU_SAMPLE.table: (
        "util",
        "power_w",
        "temp_c",
        "sm_active",
        "mem_used_bytes",
        "mem_total_bytes",
    )
}
"""Measurements: no min/max statistics in the footer (nor in the add action's stats, which
delta-rs takes from them); a filter on them reads the same rows, skipping no files, and the
footer is smaller (docs/lake.md#compact)."""
OPERATION_KEY = "gpuledger.operation"

Partition = tuple[str, str]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CompactResult:
    table: str
    datacentre: str
    date: str
    rows: int
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    version: int | None
    """The compaction's commit; None when skipped (``status`` conflict)."""
    status: str
    """``compacted`` or ``conflict`` (a concurrent commit touched the partition; skipped)."""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sort_keys(k: Kind) -> list[str]:
    return list(SORT_KEYS.get(k.table) or [c for c in k.key if c not in lakes.PARTITION_BY])


def group_rows(rows: int) -> int:
    """Rows per row group: each at least ``MIN_GROUP_ROWS`` when ``rows`` is, at most about
    ``ROW_GROUP_ROWS``; all the same size but the last."""
    groups = max(1, min(math.ceil(rows / lakes.ROW_GROUP_ROWS), rows // MIN_GROUP_ROWS))
    return max(1, math.ceil(rows / groups))


def compact_writer(k: Kind, rows: int, level: int = COMPACT_ZSTD_LEVEL) -> WriterProperties:
    """The compaction's Parquet settings: zstd at ``level``; the time column delta-encoded (it
    is also the "compacted" mark, ``is_compacted``), ``PLAIN_COLUMNS`` PLAIN, dictionaries
    elsewhere; page statistics on the sort columns, none on ``UNSTATED_COLUMNS``, chunk ones
    elsewhere."""
    chunk = ColumnProperties(statistics_enabled="CHUNK")
    columns = {c: ColumnProperties(statistics_enabled="PAGE") for c in sort_keys(k)}
    columns[k.time_field] = ColumnProperties(
        dictionary_enabled=False, encoding="DELTA_BINARY_PACKED", statistics_enabled="PAGE"
    )
    unstated = UNSTATED_COLUMNS.get(k.table, ())
    for c in unstated:
        columns[c] = ColumnProperties(statistics_enabled="NONE")
    for c in PLAIN_COLUMNS.get(k.table, ()):
        columns[c] = ColumnProperties(
            dictionary_enabled=False,
            encoding="PLAIN",
            statistics_enabled="NONE" if c in unstated else "CHUNK",
        )
    return WriterProperties(
        compression="ZSTD",
        compression_level=level,
        max_row_group_size=group_rows(rows),
        default_column_properties=chunk,
        column_properties=columns,
    )


def is_compacted(path: str, k: Kind) -> bool:
    """Whether the file was written by ``compact`` (its footer's time column encodings)."""
    meta = pq.read_metadata(path)
    names = meta.schema.names
    if k.time_field not in names or meta.num_row_groups == 0:
        return False
    i = names.index(k.time_field)
    return all(
        "DELTA_BINARY_PACKED" in (enc := meta.row_group(g).column(i).encodings)
        and "RLE_DICTIONARY" not in enc
        and "PLAIN_DICTIONARY" not in enc
        for g in range(meta.num_row_groups)
    )


def kinds_named(table: str | None) -> list[Kind]:
    """Every contract kind, or the one whose table (or kind) name is ``table``."""
    if table is None:
        return list(KINDS.values())
    k = BY_TABLE.get(table) or KINDS.get(table)
    if k is None:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(BY_TABLE)}")
    return [k]


def partition_predicate(datacentre: str, date: str) -> str:
    return f'"datacentre" = {sql_literal(datacentre)} AND "{lakes.DATE_COL}" = {sql_literal(date)}'


def _listing(dt: DeltaTable) -> dict[Partition, list[str]]:
    out: dict[Partition, list[str]] = {}
    for path, values in lakes.active_files(dt):
        dc, date = values.get("datacentre"), values.get(lakes.DATE_COL)
        if dc is not None and date is not None:
            out.setdefault((dc, date), []).append(path)
    return {p: sorted(files) for p, files in out.items()}


def read_partition(dt: DeltaTable, files: list[str], part: Partition) -> pa.Table:
    """The rows of ``files`` (in this order), with the partition columns, in table order."""
    names = [f.name for f in dt.schema().fields]
    tables = []
    for path in files:
        t = pq.ParquetFile(path).read()
        for col, value in zip(lakes.PARTITION_BY, part, strict=True):
            if col not in t.column_names:
                t = t.append_column(col, pa.array([value] * t.num_rows, pa.string()))
        tables.append(t.select(names))
    return pa.concat_tables(tables, promote_options="default")


def _commit_adds(table: Path, version: int) -> tuple[int, int]:
    """(files, bytes) the commit ``version`` added, from its log entry."""
    files = size = 0
    entry = table / "_delta_log" / f"{version:020d}.json"
    for line in entry.read_text(encoding="utf-8").splitlines():
        add = json.loads(line).get("add") if line.strip() else None
        if add:
            files += 1
            size += int(add.get("size", 0))
    return files, size


def _compact_one(
    dt: DeltaTable, path: Path, k: Kind, part: Partition, files: list[str], level: int
) -> CompactResult:
    rows = read_partition(dt, files, part)
    # stable: rows of one key and version keep their order (the catalogue's tie-break)
    order = [*sort_keys(k), lakes.VERSION_COL]
    rows = rows.sort_by([(c, "ascending") for c in order])
    before = sum(os.path.getsize(f) for f in files)
    dc, date = part
    meta = {
        OPERATION_KEY: "compact",
        "gpuledger.partition": json.dumps({"datacentre": dc, "date": date}, ensure_ascii=False),
        "gpuledger.files_before": str(len(files)),
        "gpuledger.rows_kept": str(rows.num_rows),
    }
    n = rows.num_rows
    result = CompactResult(k.table, dc, date, n, len(files), len(files), before, before, None, "")
    try:
        write_deltalake(
            dt,
            rows,
            mode="overwrite",
            predicate=partition_predicate(dc, date),
            partition_by=lakes.PARTITION_BY,
            writer_properties=compact_writer(k, n, level),
            target_file_size=COMPACT_FILE_BYTES,
            commit_properties=CommitProperties(custom_metadata=meta),
        )
    except CommitFailedError as exc:
        log.warning("%s %s/%s: not compacted, concurrent commit: %s", k.table, dc, date, exc)
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return replace(result, status="conflict", error=error)
    version = int(dt.version())
    added, size = _commit_adds(path, version)
    return replace(result, files_after=added, bytes_after=size, version=version, status="compacted")


def compact(
    lake: Path,
    table: str | None = None,
    before: dt_.date | None = None,
    progress: Progress | None = None,
    zstd_level: int = COMPACT_ZSTD_LEVEL,
) -> list[CompactResult]:
    """Compact the closed partitions (date < ``before``, default yesterday UTC) of every
    contract table (or ``table``) at ``zstd_level``; one result per partition compacted or
    skipped on a conflict (partitions already compact, at any level, are not listed)."""
    lake = Path(lake)
    if zstd_level not in ZSTD_LEVELS:
        raise ValueError(f"zstd level {zstd_level} is not one of 1 to 22")
    if not lake.is_dir():
        raise FileNotFoundError(f"lake folder {lake} does not exist")
    if before is None:
        before = dt_.datetime.now(dt_.UTC).date() - dt_.timedelta(days=1)
    cutoff = before.isoformat()
    results: list[CompactResult] = []
    for k in kinds_named(table):
        path = lakes.table_path(lake, k.table)
        dt = lakes.open_table(path)
        if dt is not None:
            results += _compact_table(dt, path, k, cutoff, progress, zstd_level)
    return results


def _compact_table(
    dt: DeltaTable, path: Path, k: Kind, cutoff: str, progress: Progress | None, level: int
) -> Iterator[CompactResult]:
    listing, listed_at = _listing(dt), dt.version()
    for part in sorted(p for p in listing if p[1] < cutoff):
        if dt.version() != listed_at:  # another writer committed in between: list again
            listing, listed_at = _listing(dt), dt.version()
        files = listing.get(part, [])
        if not files or (len(files) == 1 and is_compacted(files[0], k)):
            continue
        result = _compact_one(dt, path, k, part, files, level)
        if result.status == "compacted" and result.version == listed_at + 1:
            listed_at = result.version  # only this partition changed
        if progress is not None:
            progress(describe(result))
        yield result


def describe(r: CompactResult) -> str:
    where = f"{r.table} datacentre={r.datacentre} date={r.date}"
    if r.status != "compacted":
        return f"{where}: skipped ({r.status}: {r.error})"
    return (
        f"{where}: {r.rows:,} rows, files {r.files_before} -> {r.files_after}, "
        f"bytes {r.bytes_before:,} -> {r.bytes_after:,} (v{r.version})"
    )


def lake_tables(lake: Path) -> dict[str, Path]:
    """Every Delta table of the lake that exists: contract tables and voucher tables (named
    ``vouchers/<table>``)."""
    from pipeline.entities import ENTITIES, VOUCHERS_DIR
    from pipeline.ledger import LEDGER

    lake = Path(lake)
    paths = {k.table: lake / k.table for k in KINDS.values()}
    paths |= {f"{VOUCHERS_DIR}/{k.table}": lake / VOUCHERS_DIR / k.table for k in ENTITIES.values()}
    paths[f"{VOUCHERS_DIR}/{LEDGER}"] = lake / VOUCHERS_DIR / LEDGER
    for name in lakes.ROLLUP_TABLES:
        paths[f"{lakes.ROLLUP_DIR}/{name}"] = lake / lakes.ROLLUP_DIR / name
    return {name: p for name, p in paths.items() if DeltaTable.is_deltatable(str(p))}


def vacuum(lake: Path, retain_days: int = 400, dry_run: bool = False) -> dict[str, list[str]]:
    """Delete (or, ``dry_run``, list) every table's files that no version of the last
    ``retain_days`` days reads; by table. ``--as-of`` stays exact within the retention.
    Folders outside the tables (``_staging``, ``_pre_delta``) are not touched."""
    if retain_days < 0:
        raise ValueError("retain_days must be >= 0")
    if not Path(lake).is_dir():
        raise FileNotFoundError(f"lake folder {lake} does not exist")
    return {
        name: sorted(
            DeltaTable(str(path)).vacuum(
                retention_hours=retain_days * 24, enforce_retention_duration=False, dry_run=dry_run
            )
        )
        for name, path in lake_tables(lake).items()
    }


def history(lake: Path, table: str | None = None) -> list[dict[str, Any]]:
    """Every commit of every lake table (or ``table``), oldest first per table."""
    if not Path(lake).is_dir():
        raise FileNotFoundError(f"lake folder {lake} does not exist")
    tables = lake_tables(lake)
    if table is not None:
        if table not in tables:
            raise ValueError(f"no table {table!r} in {lake}; tables: {', '.join(tables) or '-'}")
        tables = {table: tables[table]}
    out = []
    for name, path in tables.items():
        for c in sorted(DeltaTable(str(path)).history(), key=lambda c: int(c["version"])):
            out.append(commit_entry(name, c))
    return out


def _int(*values: Any) -> int | None:
    """The first of ``values`` that is an integer (or integer text)."""
    for value in values:
        try:
            return int(value)
        except (TypeError, ValueError):
            continue
    return None


def commit_entry(table: str, c: dict[str, Any]) -> dict[str, Any]:
    metrics = c.get("operationMetrics") or {}
    ts = dt_.datetime.fromtimestamp(int(c.get("timestamp", 0)) / 1000, dt_.UTC)
    offsets = c.get("gpuledger.offsets")
    return {
        "table": table,
        "version": int(c["version"]),
        "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "operation": c.get(OPERATION_KEY) or c.get("operation"),
        "delta_operation": c.get("operation"),
        "load_id": c.get("gpuledger.load_id"),
        "rows": _int(c.get("gpuledger.rows")),
        "rejected": _int(c.get("gpuledger.rejected")),
        "origin": c.get("gpuledger.origin"),
        "offsets": json.loads(offsets) if offsets else None,
        "files_added": _int(metrics.get("num_added_files"), metrics.get("numFilesAdded")),
        "files_removed": _int(
            *(metrics.get(m) for m in ("num_removed_files", "numFilesRemoved", "numDeletedFiles"))
        ),
    }
