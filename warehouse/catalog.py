"""The warehouse catalogue: DuckDB views over the Parquet lake, all derived from the contract.

``connect(lake)`` opens (or creates) a DuckDB database and re-creates, in dependency order:

- ``raw_<table>`` for every kind in ``pipeline.records.KINDS``: every row of every Parquet file
  under ``<lake>/<table>/``, exactly the contract's columns and DuckDB types, plus ``_file``
  and ``_row`` (file name and row number: the write order). The ``datacentre=``/``date=`` path
  segments are not read: the files carry ``datacentre`` themselves.
- ``<table>``: one row per ``Kind.key`` (DESIGN §4 duplicates): identical copies collapse;
  of differing payloads the last written (greatest file name, then row) is kept.
- ``<table>_conflicts``: every raw row whose key has more than one distinct payload, with
  ``_versions`` (distinct payloads of that key) and ``_kept`` (the row the table kept).
- ``_loads``: the lake's load log (``pipeline.write.LOADS_SCHEMA``).
- the views in ``warehouse/sql/*.sql`` listed in ``SQL_VIEWS`` (coverage, allocation spans).

A table with no file yet still has its views: typed, zero rows. Globs see files written after
the views were made, but a table that had no file at ``connect`` keeps its empty view until
``refresh(con, lake)`` (or the next ``connect``) re-creates it.

DuckDB cannot bind parameters inside ``CREATE VIEW``; the only value that goes into the view
text is the lake path, written as an escaped SQL string literal (``sql_literal``). Identifiers
come from the contract and are quoted (``end`` is a keyword).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.records import KINDS, Kind
from pipeline.write import LOADS_DIR, LOADS_SCHEMA

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
)
"""Views from ``warehouse/sql/<name>.sql``, in dependency order."""

_GLOB_CHARS = set("*?[]{}")


def sql_literal(value: str) -> str:
    """``value`` as a SQL string literal (single quotes doubled); for trusted paths only."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot appear in a SQL literal")
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def load_sql(name: str) -> str:
    """The text of ``warehouse/sql/<name>.sql``."""
    return resources.files("warehouse").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def _duckdb_type(t: pa.DataType) -> str:
    if pa.types.is_string(t):
        return "VARCHAR"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    raise TypeError(f"no DuckDB type for {t}")


def _has_parquet(folder: Path, recursive: bool) -> bool:
    if not folder.is_dir():
        return False
    pattern = folder.rglob("*.parquet") if recursive else folder.glob("*.parquet")
    # writers leave ".<name>.parquet.tmp" while writing; those do not end in .parquet
    return any(p.is_file() for p in pattern)


def _select_typed(columns: list[tuple[str, str]], source: str | None, provenance: bool) -> str:
    """SELECT of exactly ``columns`` (and ``_file``, ``_row`` with ``provenance``) from
    ``source``; zero typed rows when there is no source."""
    if source is None:
        cols = [f"CAST(NULL AS {t}) AS {ident(n)}" for n, t in columns]
        if provenance:
            cols += ["CAST(NULL AS VARCHAR) AS _file", "CAST(NULL AS BIGINT) AS _row"]
        return f"SELECT {', '.join(cols)} WHERE false"
    cols = [f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in columns]
    if provenance:
        cols += ["filename AS _file", "file_row_number AS _row"]
    return f"SELECT {', '.join(cols)} FROM {source}"


def _read_parquet(glob: str) -> str:
    return (
        f"read_parquet({sql_literal(glob)}, union_by_name = true, filename = true, "
        "file_row_number = true, hive_partitioning = false)"
    )


def kind_views(k: Kind, lake: Path) -> list[str]:
    """``CREATE OR REPLACE VIEW`` statements for raw_<table>, <table>, <table>_conflicts."""
    folder = lake / k.table
    source = _read_parquet(f"{folder}/**/*.parquet") if _has_parquet(folder, True) else None
    columns = k.duckdb_columns()
    names = ", ".join(ident(n) for n, _ in columns)
    key = ", ".join(ident(n) for n in k.key)
    raw, table = ident(f"raw_{k.table}"), ident(k.table)
    latest = f"row_number() OVER (PARTITION BY {key} ORDER BY _file DESC, _row DESC)"
    return [
        f"CREATE OR REPLACE VIEW {raw} AS {_select_typed(columns, source, True)}",
        f"CREATE OR REPLACE VIEW {table} AS SELECT {names} FROM {raw} QUALIFY {latest} = 1",
        f"CREATE OR REPLACE VIEW {ident(f'{k.table}_conflicts')} AS "
        f"SELECT * FROM (SELECT *, count(DISTINCT struct_pack({names})) "
        f"OVER (PARTITION BY {key}) AS _versions, {latest} = 1 AS _kept FROM {raw}) "
        "WHERE _versions > 1",
    ]


def loads_view(lake: Path) -> str:
    folder = lake / LOADS_DIR
    columns = [(f.name, _duckdb_type(f.type)) for f in LOADS_SCHEMA]
    source = _read_parquet(f"{folder}/*.parquet") if _has_parquet(folder, False) else None
    return f"CREATE OR REPLACE VIEW _loads AS {_select_typed(columns, source, False)}"


def refresh(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """(Re)create every view over ``lake`` on ``con``."""
    lake = Path(lake).resolve()
    if _GLOB_CHARS & set(str(lake)):
        raise ValueError(
            f"lake path {lake} contains glob characters ({''.join(sorted(_GLOB_CHARS))})"
        )
    statements = [s for k in KINDS.values() for s in kind_views(k, lake)]
    statements.append(loads_view(lake))
    statements += [load_sql(name) for name in SQL_VIEWS]
    for statement in statements:
        con.execute(statement)
    log.debug("warehouse views over %s refreshed (%d statements)", lake, len(statements))


def connect(lake: Path, db_path: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the warehouse database (default ``<lake>/_warehouse.duckdb``; ``":memory:"`` works)
    and re-create the views over ``lake``."""
    lake = Path(lake)
    if db_path is None:
        lake.mkdir(parents=True, exist_ok=True)
        db_path = lake / DEFAULT_DB_NAME
    con = duckdb.connect(str(db_path))
    try:
        refresh(con, lake)
    except BaseException:
        con.close()
        raise
    return con
