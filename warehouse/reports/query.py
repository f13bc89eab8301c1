"""Read-only SQL over the warehouse views, for users' own questions (``gpuledger sql``).

``run_query(lake, sql, as_of)`` opens an in-memory DuckDB with the views over the lake's
snapshot (``warehouse.catalog.connect``: latest, or ``as_of``), then locks it down before the
user's text runs:

- file access is limited to the lake folder (``allowed_directories``) and every other external
  access is off (``enable_external_access = false``): the views still read the snapshot's
  Parquet files and Delta log, but reading, globbing or writing any other path or URL fails,
  and no extension can be installed or loaded;
- the configuration is locked (``lock_configuration``), so nothing can undo that;
- the text must be exactly one statement, a query (``SELECT``, ``FROM ...``, ``WITH ...``,
  ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``); anything else (``COPY``, ``DROP``,
  ``CREATE``, ``SET``, ``ATTACH``, ``EXPLAIN``, ``CALL``, ...) is refused with
  ``QueryRefused`` before anything runs.

The session time zone is UTC, so instants come back (and are printed) in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import TerminalError
from pipeline.lake import AsOf
from warehouse.catalog import connect, sql_literal
from warehouse.reports.render import Lineage
from warehouse.reports.utilisation import lineage


class QueryRefused(TerminalError, ValueError):
    """The text is not exactly one read-only query; nothing was run."""


class QueryFailed(TerminalError, RuntimeError):
    """DuckDB could not run the query (syntax, unknown name, a path outside the lake, ...)."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[dict[str, Any]]
    lineage: Lineage


def check_query(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    """The one query statement of ``sql``; ``QueryRefused`` otherwise."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryFailed(str(exc)) from None
    if not statements:
        raise QueryRefused("no statement given: write one query, e.g. 'FROM _snapshot'")
    if len(statements) > 1:
        raise QueryRefused(f"{len(statements)} statements given; write exactly one query")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        kind = statement.type.name.replace("_", " ")
        raise QueryRefused(
            f"only queries are allowed (SELECT, FROM, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE); "
            f"this is a {kind} statement"
        )
    return statement


def lock_down(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """Limit ``con`` to reading files under ``lake``, with no other external access, and lock
    its configuration."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET allowed_directories = [{sql_literal(str(Path(lake).resolve()))}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def open_readonly(lake: Path, as_of: AsOf = None) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse over ``lake`` (at ``as_of``), locked down (``lock_down``)."""
    con = connect(lake, ":memory:", as_of=as_of)
    try:
        lock_down(con, lake)
    except BaseException:
        con.close()
        raise
    return con


def run_query(lake: Path, sql: str, as_of: AsOf = None) -> QueryResult:
    """Run one read-only query over the views of ``lake`` (at ``as_of``)."""
    if not Path(lake).is_dir():
        raise FileNotFoundError(f"no lake folder at {lake}")
    con = open_readonly(lake, as_of)
    try:
        statement = check_query(con, sql)
        read = lineage(con)
        try:
            cursor = con.execute(statement)
            columns = [d[0] for d in cursor.description or []]
            data = cursor.fetchall()
        except duckdb.Error as exc:
            raise QueryFailed(str(exc)) from None
    finally:
        con.close()
    columns = unique_names(columns)
    return QueryResult(columns, [dict(zip(columns, row, strict=True)) for row in data], read)


def unique_names(names: list[str]) -> list[str]:
    """Result column names made unique (``SELECT *`` over a join repeats them): a repeated
    ``x`` becomes ``x_1``, ``x_2``, ... (skipping names already taken)."""
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            n = 1
            while f"{name}_{n}" in taken:
                n += 1
            name = f"{name}_{n}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out
