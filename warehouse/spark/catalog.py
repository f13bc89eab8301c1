"""The warehouse catalogue on Apache Spark: the DuckDB catalogue's views over the same Delta tables.

``register_lake(spark, lake, versions=...)`` registers, as Spark temp views and in the same
dependency order as ``warehouse.catalog.refresh``:

- ``raw_<table>`` for every record kind: the Delta table read with
  ``spark.read.format("delta").option("versionAsOf", v)`` at the version the DuckDB catalogue
  pinned, the contract's columns cast to the Spark types of its DuckDB types, ``_version``,
  ``_load`` and the two columns DuckDB takes from its Parquet scan: ``_file`` (the file's path
  with its percent-encoding undone once: for a local lake exactly DuckDB's ``filename``) and
  ``_row`` (the row's index in its file, DuckDB's ``file_row_number``). Partition values
  (``datacentre``) come from the Delta log, as in DuckDB.
- ``<table>``, ``<table>_conflicts``, ``_snapshot``, the ``warehouse/sql`` views of
  ``catalog.SQL_VIEWS`` whose inputs are registered (not yet ``_loads``: ``_commits`` is DuckDB's
  JSON read of the log) and the voucher views: the DuckDB catalogue's own
  statements rendered for Spark SQL by ``spark_sql`` (a few exact substitutions, listed there),
  so the view SQL has one source. The voucher ``<entity>_history`` views are read here from the
  entity tables and the import ledger at their pinned versions.
- the GPU-sample rollup views (``warehouse.catalog.rollups``: ``gpu_bins_stored``,
  ``raw_gpu_samples_rest``, ``gpu_extent``, ``gpu_bins_fresh``, ``raw_gpu_samples_open``,
  ``gpu_sample_coverage_open``, ``gpu_bins_live``, ``gpu_bins``) with the DuckDB catalogue's
  decisions (``RollupState``: which partitions are fresh, at which bins commit): stored bins of
  those partitions, raw rows of the others selected on the partition columns.

``warehouse.spark.sql.render_sql`` renders any DuckDB statement of the project (the reports'
too, with their ``$name`` parameters), ``spark_sql`` a view statement; the DataFrames read from
the Delta tables are made by ``warehouse.spark.frames``.

Versions are always resolved in Python (``pipeline.lake.open_table``, as DuckDB does) and handed
to Spark as ``versionAsOf``: an instant is never passed to Spark, whose ``timestampAsOf`` may
date commits differently. docs/spark.md has the details and the portability rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from pipeline import lake as lakes
from pipeline.records import KINDS
from warehouse import catalog
from warehouse.catalog import gpu_days
from warehouse.catalog import rollups as rv
from warehouse.catalog.rollup_parts import with_next_days
from warehouse.spark.frames import (
    OCC_BIN_SPARK_COLUMNS,
    bins_frame,
    history_frame,
    parts_filter,
    raw_frame,
)
from warehouse.spark.sql import spark_sql
from warehouse.spark.sql_code import bq

DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.0"
"""The Delta jar the ``delta-spark`` 4.0.0 wheel pairs with (pyspark 4.0.1, Scala 2.13)."""
DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
LOCAL_CONFS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
SESSION_CONFS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.constraintPropagation.enabled": "false",
}
"""Set by ``register_lake`` on its session: the views read instants in UTC, and Spark 4.0.1's
constraint propagation fails (``NoSuchElementException: key not found``) on a union of
checkpointed views; without it the optimizer only infers fewer filters."""
_session: SparkSession | None = None


def spark_session() -> SparkSession:
    """The active SparkSession (a cluster driver's), else one shared local[2] session with
    Delta configured (first start: Ivy fetches ``DELTA_PACKAGE`` from Maven Central into
    ``~/.ivy2*``)."""
    global _session
    active = SparkSession.getActiveSession()
    if active is not None and (_session is None or active is _session):
        _session = active  # a spark-submit driver's session (its confs), or ours
        return _session
    from delta import configure_spark_with_delta_pip

    builder: Any = SparkSession.builder.master("local[2]").appName("gpuledger")
    for key, value in {**DELTA_CONFS, **LOCAL_CONFS}.items():
        builder = builder.config(key, value)
    _session = configure_spark_with_delta_pip(builder).getOrCreate()
    _session.sparkContext.setLogLevel("ERROR")
    return _session


def rollup_state(
    lake: Path, versions: Mapping[str, int | None], rollups: bool = True
) -> rv.RollupState:
    """Which partitions the DuckDB catalogue serves from stored bins at ``versions``: its
    ``refresh_with_state`` on an in-memory connection (``rollups=False``: none)."""
    import duckdb

    pin = {t: 0 if v is None else int(v) for t, v in versions.items()}
    con = duckdb.connect(":memory:")
    try:
        got, state = catalog.refresh_with_state(con, lake, pin, rollups)
    finally:
        con.close()
    differ = [
        t for t, v in versions.items() if got.get(t) != v and not (v is None and not got.get(t))
    ]
    if differ:
        raise ValueError(f"the DuckDB catalogue read other versions of {differ}")
    return state


def pinned_versions(lake: Path, as_of: lakes.AsOf = None) -> dict[str, int | None]:
    """The version of every lake table (``catalog.table_paths``) at ``as_of``, resolved as
    ``catalog.refresh`` resolves it (None: no such table at that point)."""
    out: dict[str, int | None] = {}
    for name, path in catalog.table_paths(Path(lake).resolve()).items():
        dt = lakes.open_table(path, lakes.version_for(as_of, name))
        out[name] = None if dt is None else int(dt.version())
    return out


class _Recorder:
    """Stands in for a DuckDB connection to collect the statements a catalogue function runs."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, statement: str) -> None:
        self.statements.append(statement)


def _view_name(statement: str) -> str:
    m = re.match(r'\s*CREATE OR REPLACE VIEW "?([^" ]+)"? AS', statement)
    if m is None:
        raise ValueError(f"not a view statement: {statement[:60]!r}")
    return m[1]


@dataclass
class Registered:
    """What ``register_lake`` registered."""

    versions: dict[str, int | None]
    """The version of every lake table read (None: no such table at that point)."""
    views: list[str] = field(default_factory=list)
    """The views registered, in dependency order."""
    skipped: dict[str, str] = field(default_factory=dict)
    """``warehouse/sql`` views not registered, with the reason (an input Spark lacks)."""
    rollups: rv.RollupState | None = None
    """Which partitions the GPU-sample views serve from stored bins (the DuckDB decisions)."""
    cached: list[DataFrame] = field(default_factory=list)
    """The checkpointed views of ``register_lake(cache=True)``."""

    def release(self) -> None:
        """Let the checkpointed rows go (Spark drops them once nothing refers to them)."""
        for df in self.cached:
            df.unpersist()
        self.cached.clear()


def sql_inputs(sql: str) -> list[str]:
    """The views a ``warehouse/sql`` file names on its first line (``...; inputs: a, b``)."""
    m = re.search(r"inputs: ([^;\n]+)", sql.split("\n", 1)[0])
    return [] if m is None else [name.strip() for name in m[1].split(",")]


def register_lake(
    spark: SparkSession,
    lake: Path,
    versions: Mapping[str, int | None] | None = None,
    as_of: lakes.AsOf = None,
    cache: bool = False,
    rollups: rv.RollupState | bool = True,
) -> Registered:
    """Register the catalogue's views over ``lake`` on ``spark``.

    ``versions``: the version of every table (as DuckDB's ``_snapshot`` lists them; None = no
    table), else the snapshot at ``as_of`` (latest when None), resolved as DuckDB resolves it.
    A ``warehouse/sql`` view whose inputs are not all registered is skipped, with the reason.
    ``rollups``: which partitions are served from the stored GPU-sample bins, as the DuckDB
    catalogue decided them (``catalog.refresh_with_state``'s ``RollupState``); True: ask an
    in-memory DuckDB catalogue at ``versions`` (``rollup_state``); False: none (every figure
    from raw rows, as ``connect(..., rollups=False)``).
    ``cache`` keeps every view's rows once computed (``localCheckpoint``, lazily: on first
    use): a pinned snapshot never changes, and a view over checkpointed views plans as one
    over tables (values cut at now() are those of the view's planning, at registration);
    ``Registered.release()`` lets them go."""
    lake = Path(lake).resolve()
    paths = catalog.table_paths(lake)
    for key, value in SESSION_CONFS.items():
        spark.conf.set(key, value)
    if versions is None:
        versions = pinned_versions(lake, as_of)
    missing = sorted(set(paths) - set(versions))
    if missing:
        raise ValueError(f"versions names no version for {missing}")
    done = Registered({name: versions[name] for name in paths})
    state = rollups if isinstance(rollups, rv.RollupState) else None
    if state is None:
        state = rollup_state(lake, done.versions, bool(rollups))
    done.rollups = state
    r = _Registrar(spark, paths, done, cache)
    for k in KINDS.values():
        raw, *views = catalog.kind_views(k, None)
        r.frame(_view_name(raw), raw_frame(spark, k, paths[k.table], done.versions[k.table]))
        for statement in views:
            r.run(statement)
    r.run(catalog.snapshot_view(done.versions))
    _register_rollups(r, state)
    _register_vouchers(r)
    return done


@dataclass
class _Registrar:
    """Registers views on ``spark`` into ``done``: DataFrames (``frame``) and DuckDB view
    statements rendered for Spark (``run``), checkpointed with ``cache``."""

    spark: SparkSession
    paths: dict[str, Path]
    done: Registered
    cache: bool

    @property
    def pinned(self) -> dict[str, int | None]:
        return self.done.versions

    def columns(self, view: str) -> list[str]:
        return self.spark.table(bq(view)).columns

    def describe(self, query: str) -> list[str]:
        return self.spark.sql(query).columns

    def frame(self, name: str, df: DataFrame) -> None:
        if self.cache:
            # computed on first use, then kept; later views see a leaf, not its whole plan
            df = df.localCheckpoint(eager=False)
            self.done.cached.append(df)
        df.createOrReplaceTempView(name)
        self.done.views.append(name)

    def run(self, statement: str) -> None:
        rendered = spark_sql(statement, self.columns, self.describe)
        self.spark.sql(rendered)
        name = rendered.split()[5].strip("`")
        if self.cache:
            self.frame(name, self.spark.table(bq(name)))
        else:
            self.done.views.append(name)


def _register_rollups(r: _Registrar, state: rv.RollupState) -> None:
    """The rollup views, where the DuckDB catalogue has them (``rollup_views``), with the
    ``warehouse/sql`` views between the stored and the open partitions' views."""
    spark, pinned = r.spark, r.pinned
    samples, bins = r.paths[rv.SAMPLES.table], r.paths[rv.BINS]
    r.frame("gpu_bins_stored", bins_frame(spark, bins, pinned[rv.BINS], state.unchanged))
    rest = ~parts_filter(state.unchanged) if state.unchanged else None
    sample_version = pinned[rv.SAMPLES.table]
    r.frame("raw_gpu_samples_rest", raw_frame(spark, rv.SAMPLES, samples, sample_version, rest))
    r.run(gpu_days.PLAIN_EXTENT)  # Spark reads no day rows: the same rows from the bins
    r.run(catalog.load_sql("gpu_extent_rest"))
    r.run(catalog.load_sql("gpu_extent"))
    _register_sql_views(r)
    r.frame("gpu_bins_fresh", bins_frame(spark, bins, pinned[rv.BINS], state.fresh))
    open_parts = set(state.stats) - set(state.fresh)
    needed = with_next_days(open_parts)
    raw_open = raw_frame(spark, rv.SAMPLES, samples, sample_version, parts_filter(needed))
    r.frame("raw_gpu_samples_open", raw_open)
    recorder = _Recorder()
    rv.open_views(recorder, state, open_parts)  # type: ignore[arg-type]
    raw_statement, *open_statements = recorder.statements
    assert _view_name(raw_statement) == "raw_gpu_samples_open"
    for statement in [*open_statements, catalog.load_sql("gpu_bins"), *gpu_days.PLAIN_REPORT]:
        r.run(statement)
    _register_occupancy(r, state)


def _register_occupancy(r: _Registrar, state: rv.RollupState) -> None:
    """The occupancy rollup views (``occupancy_rollup.occupancy_views``): stored bins of the
    partitions the DuckDB catalogue found fresh, live bins of the others (the statements of
    ``occupancy_rollup.open_views`` but its raw view, which is a Spark frame here)."""
    from warehouse.catalog import occupancy_rollup as orv

    occ = state.occupancy
    fresh = occ.fresh if occ is not None else {}
    stats = occ.stats if occ is not None else {}
    bins = bins_frame(
        r.spark, r.paths[rv.OCC_BINS], r.pinned[rv.OCC_BINS], fresh, OCC_BIN_SPARK_COLUMNS
    )
    r.frame("occupancy_bins_fresh", bins)
    open_parts = set(stats) - set(fresh)
    needed = with_next_days(open_parts)
    path, version = r.paths[orv.OCCUPANCY.table], r.pinned[orv.OCCUPANCY.table]
    raw = raw_frame(r.spark, orv.OCCUPANCY, path, version, parts_filter(needed))
    r.frame("raw_occupancy_open", raw)
    recorder = _Recorder()
    orv.open_views(recorder, stats, open_parts)  # type: ignore[arg-type]
    raw_statement, *open_statements = recorder.statements
    assert _view_name(raw_statement) == "raw_occupancy_open"
    for statement in [*open_statements, catalog.load_sql("occupancy_bins")]:
        r.run(statement)


def _register_sql_views(r: _Registrar) -> None:
    """The ``catalog.SQL_VIEWS`` whose inputs are registered; the others in ``skipped``."""
    for name in catalog.SQL_VIEWS:
        sql = catalog.load_sql(name)
        absent = [v for v in sql_inputs(sql) if v not in r.done.views]
        if absent:
            r.done.skipped[name] = f"needs {', '.join(absent)}"
        else:
            r.run(sql)


def _register_vouchers(r: _Registrar) -> None:
    """The ``<entity>_history`` frames at their pinned versions, then the other voucher views."""
    from pipeline.entities import ENTITIES
    from warehouse.catalog.entities import voucher_views

    ledger = catalog.LEDGER_SNAPSHOT
    for k in ENTITIES.values():
        history = history_frame(
            r.spark, k, r.paths[k.table], r.pinned[k.table], r.paths[ledger], r.pinned[ledger]
        )
        r.frame(f"{k.table}_history", history)
    recorder = _Recorder()
    voucher_views(recorder, {})  # type: ignore[arg-type]
    for statement in recorder.statements:
        if not _view_name(statement).endswith("_history"):
            r.run(statement)
