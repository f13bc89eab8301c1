"""Migration of a lake of the old layout (plain Hive-partitioned Parquet) to Delta tables.

The old layout, written by earlier versions::

    <lake>/<table>/datacentre=<mangled>/date=<d>/*.parquet   contract columns, datacentre too
    <lake>/vouchers/<table>/import=<id>.parquet              entity fields, _import_id, ...
    <lake>/_loads/*.parquet                                  the load log

Folder names were made file-safe (lossy: two data centres may share a folder), so the
``datacentre`` column inside each file is what counts; ``date`` is recomputed from the kind's
time field (the UTC date, as ``pipeline.write`` does). Old rule for duplicates: among rows of
one ``Kind.key``, the row of the greatest file name won, then the greatest row in the file.

``migrate`` turns every old table into a Delta table in ONE commit holding every old row, and
keeps that rule: with the ``n`` files sorted by name (then path), the file of rank ``r``
(0-based) gets ``_version = r - n``, negative, i.e. "before any Delta commit", so any later
commit wins over them, and the rows of a file keep their order (the catalogue breaks a tie of
``_version`` by file and row). ``_load`` is ``migrated:<file stem>``. The row count of the new
table is checked against the old files (``RuntimeError`` when they differ, and the old files
stay where they were).

Steps per table (stop the writers first): the Delta table is built in
``<lake>/_migrating/<table>`` from the old files, checked, then the old folder is moved to
``<lake>/_pre_delta/<table>`` and the new table renamed into place (``os.rename``: same
filesystem). A table that already has a ``_delta_log`` is skipped; a run interrupted after the
move resumes from ``_pre_delta``. ``<lake>/_loads`` moves to ``_pre_delta/_loads`` (the Delta
history replaces it). ``remove_old`` deletes ``_pre_delta`` entries whose table is Delta now.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake

from pipeline import lake as lakes
from pipeline.entities import ENTITIES, VOUCHERS_DIR
from pipeline.records import KINDS, Kind
from pipeline.write import row_schema, with_dates

PRE_DELTA = "_pre_delta"
MIGRATING = "_migrating"
LOADS_DIR = "_loads"
MIGRATED_LOAD = "migrated"
VOUCHER_META = [
    pa.field("_import_id", pa.string(), nullable=False),
    pa.field("_imported_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("_source", pa.string(), nullable=False),
]
"""The import columns of a voucher row (as ``pipeline.entity_import`` writes them)."""


@dataclass(frozen=True)
class TableMigration:
    table: str
    """``<table>`` or ``vouchers/<table>``."""
    status: str
    """``migrated``, ``already delta`` or ``absent`` (no old files)."""
    files: int = 0
    rows: int = 0
    version: int | None = None


@dataclass
class MigrateResult:
    tables: list[TableMigration] = field(default_factory=list)
    loads_moved: int = 0
    """Files of the old ``_loads`` log moved to ``_pre_delta/_loads``."""
    removed: list[str] = field(default_factory=list)
    """``_pre_delta`` entries deleted (``remove_old``)."""


def _targets(lake: Path) -> list[tuple[str, Kind, bool]]:
    """(name relative to the lake, kind, partitioned) of every table."""
    out = [(k.table, k, True) for k in KINDS.values()]
    return out + [(f"{VOUCHERS_DIR}/{k.table}", k, False) for k in ENTITIES.values()]


def _schema(k: Kind, partitioned: bool) -> pa.Schema:
    base = row_schema(k) if partitioned else pa.schema(list(k.arrow_schema()) + VOUCHER_META)
    return pa.schema(list(base) + lakes.LAKE_FIELDS)


def old_files(folder: Path) -> list[Path]:
    """The old layout's Parquet files under ``folder``, in rank order (name, then path)."""
    files = [
        p
        for p in folder.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parent.parts)
    ]
    return sorted(files, key=lambda p: (p.name, str(p.relative_to(folder))))


def _columns(k: Kind, partitioned: bool) -> pa.Schema:
    return k.arrow_schema() if partitioned else pa.schema(list(k.arrow_schema()) + VOUCHER_META)


def check_columns(k: Kind, partitioned: bool, path: Path) -> None:
    """Refuse an old file with columns the contract lacks, or without a required one."""
    names = set(pq.read_schema(path).names)
    target = _columns(k, partitioned)
    extra = names - set(target.names) - {lakes.DATE_COL}
    if extra:
        raise ValueError(f"{path}: columns not in the contract: {', '.join(sorted(extra))}")
    missing = [f.name for f in target if not f.nullable and f.name not in names]
    if missing:
        raise ValueError(f"{path}: required column(s) missing: {', '.join(missing)}")


def _conform(k: Kind, partitioned: bool, data: pa.Table) -> pa.Table:
    """An old file's rows with exactly the new table's contract columns (nullable columns an
    old file lacks are null), ``date`` recomputed."""
    target = _columns(k, partitioned)
    columns = [
        data.column(f.name).cast(f.type)
        if f.name in data.column_names
        else pa.nulls(data.num_rows, f.type)
        for f in target
    ]
    rows = pa.Table.from_arrays(columns, schema=target)
    return with_dates(k, rows) if partitioned else rows


def _batches(
    k: Kind, partitioned: bool, files: list[Path], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    n = len(files)
    for rank, path in enumerate(files):
        rows = _conform(k, partitioned, pq.ParquetFile(path).read())
        stamped = lakes.stamp(rows, rank - n, f"migrated:{path.stem}")
        yield from stamped.cast(schema).to_batches()


def _build(k: Kind, partitioned: bool, files: list[Path], dest: Path, origin: str) -> int:
    """Write the Delta table at ``dest`` from ``files`` in one commit; return its row count."""
    for path in files:
        check_columns(k, partitioned, path)
    schema = _schema(k, partitioned)
    expected = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    meta = {
        "gpuledger.operation": "migrate",
        "gpuledger.load_id": MIGRATED_LOAD,
        "gpuledger.kind": k.name,
        "gpuledger.origin": origin,
        "gpuledger.rows": str(expected),
        "gpuledger.rejected": "0",
        "gpuledger.offsets": "{}",
        "gpuledger.files": str(len(files)),
    }
    write_deltalake(
        str(dest),
        pa.RecordBatchReader.from_batches(schema, _batches(k, partitioned, files, schema)),
        mode="error",
        partition_by=lakes.PARTITION_BY if partitioned else None,
        configuration=lakes.TABLE_CONFIG,
        writer_properties=lakes.WRITER,
        commit_properties=CommitProperties(custom_metadata=meta),
    )
    actions = pa.table(DeltaTable(str(dest)).get_add_actions(flatten=True))
    written = sum(actions.column("num_records").to_pylist()) if actions.num_rows else 0
    if written != expected:
        raise RuntimeError(f"{dest}: migrated {written} rows, the old files hold {expected}")
    return written


def migrate_table(lake: Path, name: str, k: Kind, partitioned: bool) -> TableMigration:
    """Migrate one old table (``name`` relative to the lake); see the module docstring."""
    live, old = lake / name, lake / PRE_DELTA / name
    if (live / "_delta_log").is_dir():
        return TableMigration(name, "already delta")
    resume = not live.exists() or (live.is_dir() and not any(live.iterdir()))
    source = old if resume and old.is_dir() else live
    if source is live and old.exists():
        raise RuntimeError(f"both {live} and {old} hold old files; move one of them away")
    files = old_files(source) if source.is_dir() else []
    if not files:
        return TableMigration(name, "absent")
    building = lake / MIGRATING / name
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    try:
        rows = _build(k, partitioned, files, building, f"migrate {old}")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        _remove_empty(lake / MIGRATING, building.parent)
        raise
    if source is live:
        old.parent.mkdir(parents=True, exist_ok=True)
        os.rename(live, old)
    elif live.exists():
        live.rmdir()
    os.rename(building, live)
    _remove_empty(lake / MIGRATING, building.parent)
    return TableMigration(name, "migrated", len(files), rows, DeltaTable(str(live)).version())


def _remove_empty(top: Path, folder: Path) -> None:
    while folder != top.parent and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def migrate(lake: Path, remove_old: bool = False) -> MigrateResult:
    """Migrate every old-layout table of ``lake`` to Delta (see the module docstring)."""
    lake = Path(lake)
    if not lake.is_dir():
        raise FileNotFoundError(f"lake folder {lake} does not exist")
    result = MigrateResult()
    for name, k, partitioned in _targets(lake):
        result.tables.append(migrate_table(lake, name, k, partitioned))
    _ledger_migrated_imports(lake)
    loads, old_loads = lake / LOADS_DIR, lake / PRE_DELTA / LOADS_DIR
    if loads.is_dir():
        old_loads.mkdir(parents=True, exist_ok=True)
        for f in sorted(loads.iterdir()):
            os.rename(f, old_loads / f.name)
            result.loads_moved += 1
        loads.rmdir()
    if remove_old:
        result.removed = remove_pre_delta(lake)
    return result


def _ledger_migrated_imports(lake: Path) -> None:
    """Make the migrated voucher imports visible: one ledger commit naming every import id in
    the voucher tables that the ledger does not hold yet (``pipeline.ledger``)."""
    from pipeline import ledger

    path = ledger.ledger_path(lake, VOUCHERS_DIR)
    state = ledger.read_state(path)
    found: dict[str, dict[str, int]] = {}
    for k in ENTITIES.values():
        dt = lakes.open_table(lake / VOUCHERS_DIR / k.table)
        if dt is None:
            continue
        for import_id in dt.to_pyarrow_table(columns=["_import_id"]).column(0).to_pylist():
            if import_id not in state.import_ids:
                counts = found.setdefault(import_id, {})
                counts[k.name] = counts.get(k.name, 0) + 1
    if found:
        ledger.record_many(
            path, state, [(i, int(i.split("-", 1)[0]), found[i]) for i in sorted(found)]
        )


def remove_pre_delta(lake: Path) -> list[str]:
    """Delete the ``_pre_delta`` copies of tables that are Delta tables now, and the old load
    log; return what was deleted (relative to the lake)."""
    pre = lake / PRE_DELTA
    removed = []
    for name, _, _ in _targets(lake):
        if (pre / name).exists() and (lake / name / "_delta_log").is_dir():
            shutil.rmtree(pre / name)
            removed.append(f"{PRE_DELTA}/{name}")
    if (pre / LOADS_DIR).exists():
        shutil.rmtree(pre / LOADS_DIR)
        removed.append(f"{PRE_DELTA}/{LOADS_DIR}")
    if pre.is_dir():
        _remove_empty(pre, pre / VOUCHERS_DIR)
        _remove_empty(pre, pre)
    return removed
