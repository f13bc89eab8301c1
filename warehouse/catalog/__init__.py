"""The warehouse catalogue: DuckDB views over the lake's Delta snapshots, derived from the contract.

``connect(lake, as_of=...)`` opens (or creates) a DuckDB database and re-creates, in dependency
order:

- ``raw_<table>`` for every kind in ``pipeline.records.KINDS``: every row of the table's
  snapshot (its active files, listed by the Delta log: never a folder glob, which would count
  the files a compaction replaced), exactly the contract's columns and DuckDB types, plus
  ``_version`` (the commit that wrote the row), ``_load``, ``_file`` and ``_row``. Partition
  values (``datacentre``) come from the log, not from folder names.
- ``<table>``: one row per ``Kind.key`` (same key = one record): identical copies
  collapse; of differing payloads the last committed (greatest ``_version``) is kept.
- ``<table>_conflicts``: every raw row whose key has more than one distinct payload, with
  ``_versions`` (distinct payloads of that key) and ``_kept`` (the row the table kept).
- ``_snapshot``: the version of every table the views read (what reports name, and what
  ``--as-of`` reproduces); ``_commits`` and ``_loads`` (the load log, from the Delta history).
- the views in ``warehouse/sql/*.sql`` listed in ``SQL_VIEWS`` (coverage, allocation spans).

The views are pinned to the snapshot taken at ``connect``: later commits are seen after
``refresh(con, lake)`` (or the next ``connect``). A table with no commit yet still has its
views: typed, zero rows.

DuckDB cannot bind parameters inside ``CREATE VIEW``; the only values that go into the view
text are file paths and partition values from the lake's own log, written as escaped SQL
string literals (``sql_literal``). Identifiers come from the contract and are quoted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from pipeline import lake as lakes
from pipeline.records import KINDS, Kind
from pipeline.sqltext import ident, sql_literal
from warehouse.catalog.entities import voucher_views as entity_views
from warehouse.catalog.rollups import RollupState
from warehouse.catalog.sources import LEDGER_SNAPSHOT, delta_source, load_sql, select_typed

log = logging.getLogger(__name__)

DEFAULT_DB_NAME = "_warehouse.duckdb"
SQL_VIEWS = (
    "allocations_current",
    "cluster_sources",
    "cluster_horizon",
    "occupancy_coverage",
    "inventory_coverage",
    "gpu_sample_coverage",
    "allocation_spans",
    "allocation_holds",
    "allocation_hold_spans",
    "data_span",
    "loads",
)
"""Views from ``warehouse/sql/<name>.sql``, in dependency order."""

_GLOB_CHARS = set("*?[]{}")


def kind_views(k: Kind, dt: DeltaTable | None) -> list[str]:
    """``CREATE OR REPLACE VIEW`` statements for raw_<table>, <table>, <table>_conflicts."""
    source = delta_source(dt, ["datacentre"])
    columns = k.duckdb_columns()
    names = ", ".join(ident(n) for n in columns_of(columns))
    key = ", ".join(ident(n) for n in k.key)
    raw, table = ident(f"raw_{k.table}"), ident(k.table)
    latest = f"row_number() OVER (PARTITION BY {key} ORDER BY _version DESC, _file DESC, _row DESC)"
    return [
        f"CREATE OR REPLACE VIEW {raw} AS {select_typed(columns, source, True)}",
        f"CREATE OR REPLACE VIEW {table} AS SELECT {names} FROM {raw} QUALIFY {latest} = 1",
        f"CREATE OR REPLACE VIEW {ident(f'{k.table}_conflicts')} AS "
        f"SELECT * FROM (SELECT *, count(DISTINCT struct_pack({names})) "
        f"OVER (PARTITION BY {key}) AS _versions, {latest} = 1 AS _kept FROM {raw}) "
        "WHERE _versions > 1",
    ]


def columns_of(columns: Sequence[tuple[str, str]]) -> list[str]:
    return [n for n, _ in columns]


def commits_view(logs: Sequence[tuple[str, Path, int | None]]) -> str:
    """``_commits``: one row per commit of every table, up to the snapshot's version
    (table_name, version, commit_ts, operation, info: the commitInfo JSON)."""
    parts = [
        f"SELECT {sql_literal(name)} AS table_name, "
        "CAST(regexp_extract(filename, '(\\d+)\\.json$', 1) AS BIGINT) AS version, "
        "make_timestamptz(CAST(json_extract(json, '$.commitInfo.timestamp') AS BIGINT) * 1000) "
        "AS commit_ts, json_extract_string(json, '$.commitInfo.operation') AS operation, "
        "json_extract(json, '$.commitInfo') AS info "
        f"FROM read_ndjson_objects({sql_literal(str(log / '*.json'))}, filename = true) "
        "WHERE json_exists(json, '$.commitInfo') "
        f"AND CAST(regexp_extract(filename, '(\\d+)\\.json$', 1) AS BIGINT) <= {int(version)}"
        for name, log, version in logs
        if version is not None
    ]
    if not parts:
        parts = [
            "SELECT CAST(NULL AS VARCHAR) AS table_name, CAST(NULL AS BIGINT) AS version, "
            "CAST(NULL AS TIMESTAMPTZ) AS commit_ts, CAST(NULL AS VARCHAR) AS operation, "
            "CAST(NULL AS JSON) AS info WHERE false"
        ]
    return "CREATE OR REPLACE VIEW _commits AS " + " UNION ALL ".join(parts)


def snapshot_view(versions: Mapping[str, int | None]) -> str:
    rows = ", ".join(
        f"({sql_literal(t)}, {'NULL' if v is None else int(v)})" for t, v in versions.items()
    )
    return (
        "CREATE OR REPLACE VIEW _snapshot AS SELECT * FROM "
        f"(VALUES {rows}) AS s(table_name, version)"
    )


def table_paths(lake: Path) -> dict[str, Path]:
    """Every lake table a snapshot reads, by the name reports and ``--as-of`` use."""
    from pipeline.entities import ENTITIES, VOUCHERS_DIR
    from pipeline.ledger import LEDGER

    tables = {k.table: lake / k.table for k in KINDS.values()}
    tables.update({k.table: lake / VOUCHERS_DIR / k.table for k in ENTITIES.values()})
    tables[LEDGER_SNAPSHOT] = lake / VOUCHERS_DIR / LEDGER
    from warehouse.catalog.rollups import rollup_paths

    tables.update(rollup_paths(lake))
    return tables


def refresh(
    con: duckdb.DuckDBPyConnection, lake: Path, as_of: lakes.AsOf = None, rollups: bool = True
) -> dict[str, int | None]:
    """(Re)create every view over ``lake`` (at ``as_of``) on ``con``; return the version of
    every table read (None: no such table at that point). ``rollups=False`` computes every
    GPU-sample figure from raw rows (``warehouse.catalog.rollups``)."""
    return refresh_with_state(con, lake, as_of, rollups)[0]


def refresh_with_state(
    con: duckdb.DuckDBPyConnection, lake: Path, as_of: lakes.AsOf = None, rollups: bool = True
) -> tuple[dict[str, int | None], RollupState]:
    """``refresh``, also returning which partitions the rollup serves (``RollupState``)."""
    lake = Path(lake).resolve()
    if _GLOB_CHARS & set(str(lake)):
        raise ValueError(
            f"lake path {lake} contains glob characters ({''.join(sorted(_GLOB_CHARS))})"
        )
    tables = table_paths(lake)
    snapshots = {
        name: lakes.open_table(path, lakes.version_for(as_of, name))
        for name, path in tables.items()
    }
    versions = {name: None if dt is None else int(dt.version()) for name, dt in snapshots.items()}
    statements = [s for k in KINDS.values() for s in kind_views(k, snapshots[k.table])]
    statements.append(snapshot_view(versions))
    statements.append(
        commits_view([(name, path / "_delta_log", versions[name]) for name, path in tables.items()])
    )
    for statement in statements:
        con.execute(statement)
    from warehouse.catalog import gpu_days
    from warehouse.catalog import rollups as rv

    bins, days = snapshots[rv.BINS], snapshots[rv.DAYS]
    state = rv.extent_views(con, snapshots[rv.SAMPLES.table], bins, snapshots[rv.PARTS], rollups)
    state.days = gpu_days.valid_days(con, days, state.unchanged)
    gpu_days.extent_stored(con, bins, days, state.unchanged, state.days)
    rv.extent_table(con)
    for name in SQL_VIEWS:
        con.execute(load_sql(name))
    rv.bins_views(con, state, bins)
    gpu_days.report_views(con, bins, days, state.fresh, state.days)
    from warehouse.catalog.occupancy_rollup import OCCUPANCY, occupancy_views

    state.occupancy = occupancy_views(
        con,
        snapshots[OCCUPANCY.table],
        snapshots[rv.OCC_BINS],
        snapshots[rv.OCC_PARTS],
        rollups,
    )
    entity_views(con, snapshots)
    log.debug(
        "warehouse views over %s refreshed (%d statements, rollups fresh for %d of %d partitions)",
        lake,
        len(statements),
        len(state.fresh),
        len(state.stats),
    )
    return versions, state


def connect(
    lake: Path, db_path: Path | str | None = None, as_of: lakes.AsOf = None, rollups: bool = True
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse database (default ``<lake>/_warehouse.duckdb``; ``":memory:"`` works)
    and re-create the views over ``lake``'s snapshot (latest, or ``as_of``)."""
    lake = Path(lake)
    if db_path is None:
        lake.mkdir(parents=True, exist_ok=True)
        db_path = lake / DEFAULT_DB_NAME
    con = duckdb.connect(str(db_path))
    try:
        refresh(con, lake, as_of, rollups)
    except BaseException:
        con.close()
        raise
    return con
