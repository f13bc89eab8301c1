"""Compute-voucher records (DESIGN §5): one definition, strict import, versioned history.

The four entities (``PROGRAMME``, ``TENANT``, ``VOUCHER``, ``CLAIM``), and the data-centre
registry (``warehouse.datacentres.DATACENTRE``) beside them, are ``pipeline.records.Kind``
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

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from collectors.records_file import READERS
from pipeline import lake as lakes
from pipeline.records import (
    Field,
    FieldType,
    Kind,
    Record,
    RecordError,
    coerce_fields,
)
from warehouse import voucher_ledger as ledger
from warehouse.catalog import LEDGER_SNAPSHOT, delta_source, ident
from warehouse.datacentres import DATACENTRE, check_datacentre

VOUCHERS_DIR = "vouchers"
T, S, F, L = FieldType.TIMESTAMP, FieldType.STRING, FieldType.FLOAT, FieldType.STRING_LIST


def _kind(name: str, table: str, fields: tuple[Field, ...], time_field: str) -> Kind:
    key = (fields[0].name,)
    return Kind(name, "", table, fields, key, key, time_field)


PROGRAMME = _kind(
    "programme",
    "programmes",
    (
        Field("programme_id", S),
        Field("issuer", S, doc="city / province"),
        Field("region", S),
        Field("budget_cny", F, min=0.0),
        Field("max_coverage", F, doc="subsidy / invoice cap, e.g. 0.80", min=0.0, max=1.0),
        Field("valid_from", T),
        Field("valid_to", T),
        Field("eligible_tenant_types", L, doc="e.g. sme;research"),
        Field("eligible_datacentres", L, nullable=True, doc="empty = any"),
        Field("price_cap_cny_per_gpu_hour", F, nullable=True, min=0.0),
    ),
    "valid_from",
)
TENANT = _kind(
    "tenant",
    "tenants",
    (
        Field("tenant_id", S),
        Field("name", S),
        Field("tenant_type", S, doc="sme / research / large"),
        Field("region", S),
    ),
    "tenant_id",
)
VOUCHER = _kind(
    "voucher",
    "vouchers",
    (
        Field("voucher_id", S),
        Field("programme_id", S),
        Field("tenant_id", S),
        Field("face_value_cny", F, min=0.0),
        Field("issued_at", T),
        Field("expires_at", T),
    ),
    "issued_at",
)
CLAIM = _kind(
    "claim",
    "claims",
    (
        Field("claim_id", S),
        Field("voucher_id", S),
        Field("tenant_id", S),
        Field("datacentre", S),
        Field("period_start", T),
        Field("period_end", T),
        Field("allocation_ids", L, nullable=True, doc="null = all the tenant's allocations"),
        Field("claimed_gpu_hours", F, min=0.0),
        Field("unit_price_cny", F, min=0.0),
        Field("invoice_cny", F, min=0.0),
        Field("subsidy_cny", F, min=0.0),
        Field("submitted_at", T),
    ),
    "submitted_at",
)
ENTITIES: dict[str, Kind] = {k.name: k for k in (PROGRAMME, TENANT, VOUCHER, CLAIM, DATACENTRE)}
"""In reference order: an entity only refers to the ones before it."""
TENANT_TYPES = ("sme", "research", "large")
_INTERVALS = {"programme": ("valid_from", "valid_to"), "voucher": ("issued_at", "expires_at")}
_INTERVALS["claim"] = ("period_start", "period_end")
_REFS: dict[str, tuple[tuple[str, str], ...]] = {
    "voucher": (("programme_id", "programme"), ("tenant_id", "tenant")),
    "claim": (("voucher_id", "voucher"), ("tenant_id", "tenant")),
}
_META = [
    pa.field("_import_id", pa.string(), nullable=False),
    pa.field("_imported_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("_source", pa.string(), nullable=False),
]


class VoucherImportError(ValueError):
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


def coerce_entity(k: Kind, raw: Mapping[str, Any]) -> Record:
    """One mapping as a canonical voucher-entity record (the contract's per-field coercion)."""
    out = coerce_fields(k, raw)
    _check_relations(k, out)
    return out


def _check_relations(k: Kind, r: Record) -> None:
    if k.name in _INTERVALS:
        lo, hi = _INTERVALS[k.name]
        if r[hi] <= r[lo]:
            raise RecordError(f"{hi} is not after {lo}", "bad_interval")
    if k is TENANT and r["tenant_type"] not in TENANT_TYPES:
        raise RecordError(
            f"tenant_type {r['tenant_type']!r} is not one of {', '.join(TENANT_TYPES)}", "bad_value"
        )
    if k is DATACENTRE:
        check_datacentre(r)
    if k is PROGRAMME:
        bad = [t for t in r["eligible_tenant_types"] if t not in TENANT_TYPES]
        if bad:
            raise RecordError(f"unknown eligible_tenant_types {', '.join(bad)}", "bad_value")


def entity_table(lake: Path, k: Kind) -> Path:
    return Path(lake) / VOUCHERS_DIR / k.table


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
    for name, refs in _REFS.items():
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
        schema = pa.schema(list(k.arrow_schema()) + _META)
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


def voucher_views(
    con: duckdb.DuckDBPyConnection, snapshots: Mapping[str, DeltaTable | None]
) -> None:
    """Create ``<table>`` (current) and ``<table>_history`` views for every voucher entity,
    over the given snapshots (by table name; ``warehouse.catalog.refresh`` passes them)."""
    visible = ledger.ledgered_sql(snapshots.get(LEDGER_SNAPSHOT))
    for k in ENTITIES.values():
        con.execute(_history_sql(k, snapshots.get(k.table), visible))
        key = ident(k.key[0])
        cols = ", ".join(ident(n) for n in k.names)
        con.execute(
            f"CREATE OR REPLACE VIEW {ident(k.table)} AS SELECT {cols} "
            f"FROM {ident(k.table + '_history')} "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _import_id DESC) = 1"
        )


def _history_sql(k: Kind, dt: DeltaTable | None, visible: str) -> str:
    cols = [(n, t) for n, t in k.duckdb_columns()]
    cols += [("_import_id", "VARCHAR"), ("_imported_at", "TIMESTAMPTZ"), ("_source", "VARCHAR")]
    view = ident(k.table + "_history")
    source = delta_source(dt)
    if source is None:
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {ident(n)}" for n, t in cols)
        return f"CREATE OR REPLACE VIEW {view} AS SELECT {nulls} WHERE false"
    select = ", ".join(f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in cols)
    return (
        f"CREATE OR REPLACE VIEW {view} AS SELECT {select} FROM {source} "
        f"WHERE _import_id IN {visible}"
    )


def entity_files(pairs: Iterable[tuple[str, Path | None]]) -> dict[str, list[Path]]:
    """``{entity: [path]}`` from (entity, path-or-None) pairs, dropping the Nones."""
    return {name: [Path(p)] for name, p in pairs if p is not None}
