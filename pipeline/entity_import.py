"""Compute-voucher records (docs/audit.md): one definition, strict import, versioned history.

The four entities (``PROGRAMME``, ``TENANT``, ``VOUCHER``, ``CLAIM``), and the data-centre
registry (``pipeline.entities.DATACENTRE``) beside them, are ``pipeline.records.Kind``
values, so their Arrow schema, DuckDB columns and row coercion come from the same machinery as
the telemetry contract. They are imported from files, never streamed: ``topic`` is empty.

Import (``import_files``): every file (CSV, Parquet, JSON lines; ``collectors.records_file``
readers) is read and checked whole before anything is written:

- each row through ``coerce_entity`` (the contract's per-field coercion: types, required
  fields, money >= 0, ``max_coverage`` in [0, 1], tenant types);
- relations: an end not after its start (programme validity, voucher validity, claim period);
- a key twice in the same import;
- references: a voucher's programme and tenant, a claim's voucher and tenant (in this import or
  already in the lake), and a claim's tenant equal to its voucher's tenant.

Any problem anywhere refuses the whole import with every problem as ``<file>:<line>: <reason>``
(``VoucherImportError``) and nothing is written. Otherwise each entity's new or changed records
(compared with the current version in the lake) go to one commit of the entity's Delta table
``<lake>/vouchers/<table>``; ``import_id`` sorts by import time, so re-importing the same file
writes nothing, and a corrected record becomes a new version while the old one stays in
``<table>_history``. ``voucher_views`` creates, for each entity, the view ``<table>`` (latest
version per key) and ``<table>_history`` (every version, with ``_import_id``,
``_imported_at``, ``_source``: the file and line it came from).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import lake as lakes
from pipeline import ledger
from pipeline.entities import (
    ENTITIES,
    META,
    REFS,
    VOUCHERS_DIR,
    coerce_entity,
    entity_table,
)
from pipeline.errors import TerminalError
from pipeline.readers import READERS
from pipeline.records import (
    Field,
    FieldType,
    Kind,
    Record,
    RecordError,
)


class VoucherImportError(TerminalError, ValueError):
    """An import refused whole; ``problems`` holds one ``<file>:<line>: <reason>`` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = sorted(problems, key=_where_key)
        super().__init__(
            f"import refused, {len(problems)} problem(s), nothing written:\n" + "\n".join(problems)
        )


def _where_key(problem: str) -> tuple[str, int]:
    """Sort key of a ``<file>:<line>: <reason>`` problem: file, then line (stable otherwise)."""
    where = problem.split(": ", 1)[0]
    path, _, line = where.rpartition(":")
    return (path, int(line)) if line.isdigit() else (where, 0)


@dataclass
class ImportResult:
    import_id: str
    written: dict[str, int] = field(default_factory=dict)
    """New or changed records per entity (0 = the file changed nothing)."""
    unchanged: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    """Entity table -> the version this import committed."""


@dataclass(frozen=True)
class _Row:
    where: str
    record: Record


def _read(k: Kind, path: Path, problems: list[str]) -> list[_Row]:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        problems.append(f"{path}: unsupported file type; use {', '.join(sorted(READERS))}")
        return []
    if not path.is_file():
        problems.append(f"{path}: no such file")
        return []
    rows: list[_Row] = []
    try:
        for n, raw in reader(k, path):
            where = f"{path}:{n}" if n is not None else str(path)
            try:
                if isinstance(raw, RecordError):
                    raise raw
                record = coerce_entity(k, raw)
                rows.append(_Row(where, record))
            except RecordError as exc:
                problems.append(f"{where}: {exc.reason}")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    return rows


def current_records(lake: Path, k: Kind) -> dict[str, Record]:
    """The latest version of every ``k`` record in the lake, by key (contract fields only)."""
    dt = lakes.open_table(entity_table(lake, k))
    out: dict[str, Record] = {}
    if dt is None:
        return out
    visible = ledger.read_state(ledger.ledger_path(lake, VOUCHERS_DIR)).import_ids
    rows = dt.to_pyarrow_table(columns=[*k.names, "_import_id"]).sort_by("_import_id")
    for row in rows.to_pylist():  # import ids sort by time: later ones replace earlier versions
        if row["_import_id"] in visible:  # rows of an import that never completed do not exist
            out[row[k.key[0]]] = {n: _canonical(k.field(n), row[n]) for n in k.names}
    return out


def _canonical(f: Field, value: Any) -> Any:
    if value is None:
        return None
    if f.type is FieldType.TIMESTAMP:
        return int(value.timestamp() * 1000) if not isinstance(value, int) else value
    if f.type is FieldType.STRING_LIST:
        return list(value)
    return value


def _same(k: Kind, a: Record, b: Record) -> bool:
    for f in k.fields:
        x, y = a[f.name], b[f.name]
        if f.type is FieldType.FLOAT and x is not None and y is not None:
            if not math.isclose(x, y, rel_tol=0, abs_tol=1e-9):
                return False
        elif f.type is FieldType.STRING_LIST and not x and not y:
            continue
        elif x != y:
            return False
    return True


def import_files(
    lake: Path, files: Mapping[str, Sequence[Path]], *, now_ms: int | None = None
) -> ImportResult:
    """Import voucher files (``{"programme": [paths], "claim": [...], ...}``) into ``lake``.

    Raises ``VoucherImportError`` listing every problem (nothing written) or returns what was
    written. See the module docstring for the checks and the layout.
    """
    lake = Path(lake)
    unknown = set(files) - set(ENTITIES)
    if unknown:
        raise ValueError(f"unknown voucher entities {sorted(unknown)}; use {list(ENTITIES)}")
    problems: list[str] = []
    incoming: dict[str, list[_Row]] = {}
    for name, k in ENTITIES.items():
        rows = [row for path in files.get(name, ()) for row in _read(k, Path(path), problems)]
        seen: dict[str, str] = {}
        for row in rows:
            key = row.record[k.key[0]]
            if key in seen:
                problems.append(f"{row.where}: {k.key[0]} {key!r} already at {seen[key]}")
            seen[key] = row.where
        incoming[name] = rows
    state = ledger.read_state(ledger.ledger_path(lake, VOUCHERS_DIR))  # checked against this
    current = {name: current_records(lake, k) for name, k in ENTITIES.items()}
    merged = {
        name: {**current[name], **{r.record[k.key[0]]: r.record for r in incoming[name]}}
        for name, k in ENTITIES.items()
    }
    for name, refs in REFS.items():
        for row in incoming[name]:
            for fname, target in refs:
                if row.record[fname] not in merged[target]:
                    problems.append(
                        f"{row.where}: {fname} {row.record[fname]!r} refers to no {target}"
                    )
    for row in incoming["claim"]:
        voucher = merged["voucher"].get(row.record["voucher_id"])
        if voucher is not None and voucher["tenant_id"] != row.record["tenant_id"]:
            problems.append(
                f"{row.where}: tenant_id {row.record['tenant_id']!r} is not the voucher's "
                f"tenant {voucher['tenant_id']!r}"
            )
    if problems:
        raise VoucherImportError(problems)
    return _write(lake, incoming, current, state, now_ms, set(files))


def _write(
    lake: Path,
    incoming: dict[str, list[_Row]],
    current: dict[str, dict[str, Record]],
    state: ledger.LedgerState,
    now_ms: int | None,
    given: set[str],
) -> ImportResult:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    # import ids order the versions: never at or before an import already in the lake
    now = max(now, state.last_ms + 1)
    changed: dict[str, list[_Row]] = {}
    result = ImportResult(import_id="")
    for name, k in ENTITIES.items():
        if name not in given:  # the result names the entities given files only
            changed[name] = []
            continue
        new = [
            r
            for r in incoming[name]
            if (old := current[name].get(r.record[k.key[0]])) is None or not _same(k, old, r.record)
        ]
        changed[name] = new
        result.written[name] = len(new)
        result.unchanged[name] = len(incoming[name]) - len(new)
    digest = hashlib.sha1(
        json.dumps(
            {n: [r.record for r in rows] for n, rows in changed.items() if n in given},
            default=str,
        ).encode()
    ).hexdigest()[:10]
    result.import_id = f"{now:013d}-{digest}"
    for name, k in ENTITIES.items():
        if not changed[name]:
            continue
        schema = pa.schema(list(k.arrow_schema()) + META)
        rows = [
            {**r.record, "_import_id": result.import_id, "_imported_at": now, "_source": r.where}
            for r in changed[name]
        ]
        result.versions[k.table] = lakes.commit(
            entity_table(lake, k),
            pa.Table.from_pylist(rows, schema=schema),
            load_id=f"import-{result.import_id}",
            partition_by=None,
            metadata={"gpuledger.import_id": result.import_id, "gpuledger.entity": k.name},
        )
    if any(changed.values()):  # the one commit that makes all of the import visible
        ledger.record(
            ledger.ledger_path(lake, VOUCHERS_DIR), state, result.import_id, now, result.written
        )
    return result


def entity_files(pairs: Iterable[tuple[str, Path | None]]) -> dict[str, list[Path]]:
    """``{entity: [path]}`` from (entity, path-or-None) pairs, dropping the Nones."""
    return {name: [Path(p)] for name, p in pairs if p is not None}


def import_datacentres(
    lake: Path, files: Sequence[Path], *, now_ms: int | None = None
) -> ImportResult:
    """Import registry files (CSV, Parquet, JSON lines) into ``lake``: ``VoucherImportError``
    listing every problem (nothing written), else what was written."""
    return import_files(lake, {"datacentre": list(files)}, now_ms=now_ms)
