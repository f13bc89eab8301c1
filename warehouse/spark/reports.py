"""The reports on Apache Spark: the same SQL files, the same Python, rendered for Spark SQL.

``open_spark(lake, as_of=...)`` pins the lake's snapshot once (an in-memory DuckDB catalogue
resolves ``as_of`` and decides which partitions the GPU-sample rollup serves, exactly as
``warehouse.catalog.connect`` does), registers the catalogue on the shared Spark session at
those versions with those decisions (``spark_catalog.register_lake``) and returns a
``SparkConnection``: a stand-in for the DuckDB connection that ``warehouse.reports.utilisation``,
``warehouse.vouchers.attribution``, ``warehouse.vouchers.audit`` and
``warehouse.vouchers.effectiveness`` take. Their
functions run unchanged on it; each statement they execute is rendered for Spark by
``render_statement``:

- ``$name`` parameters become literals (``spark_catalog.render_sql``: strings escaped for
  Spark, dates as ``DATE '...'``, floats as ``CAST('<repr>' AS DOUBLE)``, None as NULL);
- a CTE DuckDB materialises (``name AS MATERIALIZED (...)``) is computed once, as DuckDB
  does: a lazily checkpointed temp view ``name`` for the statement (``materialized_ctes``);
- ``CREATE OR REPLACE TEMP TABLE t AS <query>`` runs the query, keeps its rows
  (``localCheckpoint``: a temp table is a snapshot, as in DuckDB) and registers them as the
  temp view ``t``;
- ``SET threads = n`` and ``current_setting(...)`` (``reports.single_threaded``) do nothing on
  Spark: its sums of doubles may differ in the last digits from run to run;
- every other statement is one query: ``spark.sql`` of the rendering, rows as tuples through
  Arrow (instants as aware UTC datetimes, lists as lists), ``description`` as DuckDB's cursor.

The session time zone is UTC (``spark_catalog.LOCAL_CONFS``); docs/spark.md lists the
renderings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipeline import lake as lakes
from warehouse import catalog
from warehouse.reports.render import Engine
from warehouse.spark.catalog import Registered, register_lake, spark_session
from warehouse.spark.sql import materialized_ctes, render_sql

_TEMP_TABLE = re.compile(r"CREATE OR REPLACE TEMP TABLE (\w+) AS\s+(.+)", re.DOTALL)
_SETTING = re.compile(r"\s*(?:SET \w+ = [^;]+|SELECT current_setting\('\w+'\))\s*;?\s*")


def spark_engine() -> Engine:
    import pyspark

    return Engine("spark", pyspark.__version__)


def render_statement(sql: str, params: Mapping[str, Any] | None = None) -> str:
    """A DuckDB statement of the reports rendered for Spark SQL (``spark_catalog.render_sql``);
    a temp table's statement stays ``CREATE OR REPLACE TEMP TABLE t AS <Spark query>``."""
    return render_sql(sql, params=params)


class SparkCursor:
    """The result of ``SparkConnection.execute``: what the reports read of a DuckDB cursor."""

    def __init__(self, names: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(n, None, None, None, None, None, None) for n in names]
        self.rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class SparkConnection:
    """A DuckDB-connection stand-in over a Spark session with a lake's catalogue registered."""

    def __init__(self, spark: SparkSession, registered: Registered) -> None:
        self.spark = spark
        self.registered = registered
        self.engine = spark_engine()
        self.statements: list[str] = []
        """Every Spark statement run, in order (for a look at what was rendered)."""
        self._tables: list[Any] = []

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> SparkCursor:
        if _SETTING.fullmatch(sql):
            return SparkCursor([], [])
        split = materialized_ctes(sql)
        if split is None:
            return self._run(sql, params)
        ctes, rest = split
        made: list[str] = []
        try:
            for name, query in ctes:
                if self.spark.catalog.tableExists(name):
                    raise ValueError(f"the CTE {name} would hide the view {name}")
                rendered = render_statement(query, params)
                self.statements.append(rendered)
                self.spark.sql(rendered).localCheckpoint(eager=False).createOrReplaceTempView(name)
                made.append(name)
            return self._run(rest, params)
        finally:
            for name in made:
                self.spark.catalog.dropTempView(name)

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> SparkCursor:
        rendered = render_statement(sql, params)
        self.statements.append(rendered)
        table = _TEMP_TABLE.fullmatch(rendered)
        if table is not None:
            df = self.spark.sql(table[2]).localCheckpoint(eager=True)
            df.createOrReplaceTempView(table[1])
            self._tables.append(df)
            return SparkCursor([], [])
        df = self.spark.sql(rendered)
        rows = df.toArrow().to_pylist()
        names = df.columns
        return SparkCursor(names, [tuple(r.values()) for r in rows])

    def close(self) -> None:
        """Drop the cached scans and temp tables of this connection (the session stays)."""
        for df in self._tables:
            df.unpersist()
        self._tables.clear()
        self.registered.release()


def open_spark(
    lake: Path,
    as_of: lakes.AsOf = None,
    *,
    spark: SparkSession | None = None,
    rollups: bool = True,
    cache: bool = True,
) -> SparkConnection:
    """The lake's snapshot at ``as_of`` (latest when None) on Spark, as ``catalog.connect``
    would open it on DuckDB: the same table versions, the same rollup decisions."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        versions, state = catalog.refresh_with_state(con, Path(lake), as_of, rollups)
    finally:
        con.close()
    session = spark or spark_session()
    registered = register_lake(session, Path(lake), versions, cache=cache, rollups=state)
    return SparkConnection(session, registered)
