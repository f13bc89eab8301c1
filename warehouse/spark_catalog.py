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

Versions are always resolved in Python (``pipeline.lake.open_table``, as DuckDB does) and handed
to Spark as ``versionAsOf``: an instant is never passed to Spark, whose ``timestampAsOf`` may
date commits differently. docs/spark.md has the details and the portability rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipeline import lake as lakes
from pipeline.records import KINDS, Kind
from warehouse import catalog

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
SPARK_TYPES = {
    "TIMESTAMPTZ": "TIMESTAMP",
    "VARCHAR": "STRING",
    "DOUBLE": "DOUBLE",
    "BIGINT": "BIGINT",
    "VARCHAR[]": "ARRAY<STRING>",
}
"""Spark SQL type of each DuckDB type the contract uses (``Kind.duckdb_columns``)."""

_session: SparkSession | None = None


def spark_session() -> SparkSession:
    """The one shared local[2] SparkSession with Delta configured (first start: Ivy fetches
    ``DELTA_PACKAGE`` from Maven Central into ``~/.ivy2*``)."""
    global _session
    active = SparkSession.getActiveSession()
    if _session is not None and active is _session:
        return _session
    from delta import configure_spark_with_delta_pip

    builder: Any = SparkSession.builder.master("local[2]").appName("gpuledger")
    for key, value in {**DELTA_CONFS, **LOCAL_CONFS}.items():
        builder = builder.config(key, value)
    _session = configure_spark_with_delta_pip(builder).getOrCreate()
    _session.sparkContext.setLogLevel("ERROR")
    return _session


def _bq(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark_literal(text: str) -> str:
    """A DuckDB string literal's value as a Spark literal (Spark reads backslash escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_TOKENS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|\"(?:[^\"]|\"\")*\"|[^'\"-]+|-", re.DOTALL)
_RENAMES = [
    (re.compile(r"\bCREATE OR REPLACE VIEW\b"), "CREATE OR REPLACE TEMP VIEW"),
    (re.compile(r"\bepoch_ms\("), "unix_millis("),
    (re.compile(r"\barg_max\("), "max_by("),
    (re.compile(r"\bunnest\("), "explode("),
    (re.compile(r"\bstruct_pack\("), "struct("),
    (re.compile(r"\bmake_timestamptz\("), "timestamp_micros("),
]
_COUNT_DISTINCT = re.compile(r"\bcount\(DISTINCT ")
_QUALIFY = re.compile(
    r"^(?P<head>CREATE OR REPLACE TEMP VIEW \S+ AS\s+)SELECT\s+(?P<cols>.+?)\s+FROM\s+(?P<rel>\S+)"
    r"\s+QUALIFY\s+(?P<win>.+?)\s*=\s*1$",
    re.DOTALL,
)


def _close(text: str, i: int) -> int:
    """Index just past the parenthesis that closes the one at ``text[i]``."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j + 1
    raise ValueError(f"unbalanced parentheses in {text[i:]!r}")


def _count_distinct_over(code: str) -> str:
    """``count(DISTINCT x) OVER (w)`` -> ``CAST(size(collect_set(x) OVER (w)) AS BIGINT)``."""
    while m := _COUNT_DISTINCT.search(code):
        end = _close(code, m.start() + len("count"))
        over = re.match(r"\s*OVER\s*", code[end:])
        if over is None:
            raise ValueError("count(DISTINCT ...) is rendered only as a window function")
        w0 = end + over.end()
        w1 = _close(code, w0)
        arg = code[m.end() : end - 1]
        code = (
            f"{code[: m.start()]}CAST(size(collect_set({arg}) OVER {code[w0:w1]}) AS BIGINT)"
            f"{code[w1:]}"
        )
    return code


def spark_sql(sql: str, columns: Callable[[str], Sequence[str]] | None = None) -> str:
    """One DuckDB view statement of this project rendered for Spark SQL, by these substitutions:

    - ``--`` comments dropped, a trailing ``;`` dropped;
    - ``'...'`` literals re-escaped for Spark (``''`` -> ``\\'``, ``\\`` -> ``\\\\``);
    - ``"name"`` identifiers -> ``\\`name\\```;
    - ``CREATE OR REPLACE VIEW`` -> ``CREATE OR REPLACE TEMP VIEW``;
    - ``epoch_ms(`` -> ``unix_millis(`` (timestamp to epoch ms), ``arg_max(`` -> ``max_by(``
      (with its ``(a, b, ...)`` ordering tuple, which Spark reads as a struct),
      ``unnest(`` -> ``explode(`` (in a select list), ``struct_pack(`` -> ``struct(``,
      ``make_timestamptz(`` -> ``timestamp_micros(`` (epoch microseconds to a timestamp);
    - ``count(DISTINCT x) OVER (w)`` -> ``CAST(size(collect_set(x) OVER (w)) AS BIGINT)``;
    - ``... AS SELECT cols FROM rel QUALIFY <window> = 1`` -> ``... AS SELECT cols FROM
      (SELECT *, <window> AS _qualify FROM rel) WHERE _qualify = 1`` (Spark 4.0 has no
      QUALIFY); ``SELECT *`` is spelled out with ``columns(rel)``.

    Anything else must already be portable (docs/spark.md); a QUALIFY of another shape or a
    temp table raises ``ValueError``.
    """
    out = []
    for token in _TOKENS.findall(sql.strip().removesuffix(";")):
        if token.startswith("'"):
            out.append(_spark_literal(token[1:-1].replace("''", "'")))
        elif token.startswith('"'):
            out.append(_bq(token[1:-1].replace('""', '"')))
        elif not token.startswith("--"):
            for pattern, replacement in _RENAMES:
                token = pattern.sub(replacement, token)
            out.append(token)
    code = _count_distinct_over("".join(out)).strip()
    if not code.startswith("CREATE OR REPLACE TEMP VIEW "):
        raise ValueError(f"not a view statement: {code[:60]!r}")
    if "QUALIFY" not in code:
        return code
    m = _QUALIFY.match(code)
    if m is None:
        raise ValueError(f"QUALIFY of an unsupported shape: {code[:80]!r}")
    cols, rel = m["cols"], m["rel"]
    if cols == "*":
        if columns is None:
            raise ValueError(f"SELECT * ... QUALIFY needs the columns of {rel}")
        cols = ", ".join(_bq(c) for c in columns(rel.strip("`")))
    return (
        f"{m['head']}SELECT {cols} FROM (SELECT *, {m['win']} AS _qualify FROM {rel}) "
        "WHERE _qualify = 1"
    )


def _file_column() -> Column:
    """``_file``: the scan's file URI without ``file:`` and with percent-encoding undone once
    (``url_decode`` also turns ``+`` into a space, so ``+`` is protected first)."""
    path = F.regexp_replace(F.col("_metadata.file_path"), "^file:", "")
    return F.url_decode(F.replace(path, F.lit("+"), F.lit("%2B")))


def _empty(spark: SparkSession, columns: Sequence[tuple[str, str]]) -> DataFrame:
    return spark.createDataFrame([], ", ".join(f"{_bq(n)} {t}" for n, t in columns))


def _typed(df: DataFrame, columns: Sequence[tuple[str, str]]) -> list[Column]:
    return [F.col(_bq(n)).cast(t).alias(n) for n, t in columns]


def _spark_columns(k: Kind) -> list[tuple[str, str]]:
    return [(n, SPARK_TYPES[t]) for n, t in k.duckdb_columns()]


def raw_frame(spark: SparkSession, k: Kind, path: Path, version: int | None) -> DataFrame:
    """``raw_<table>``: the kind's Delta table at ``version`` (None: no table, zero typed rows)
    with ``_version``, ``_load``, ``_file`` and ``_row``."""
    columns = _spark_columns(k)
    lake_cols = [("_version", "BIGINT"), ("_load", "STRING"), ("_file", "STRING")]
    if version is None:
        return _empty(spark, [*columns, *lake_cols, ("_row", "BIGINT")])
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    # rows reach a task in file order, and the splits of one file reach ascending task ids, so
    # monotonically_increasing_id orders the rows of a file as they are stored
    scan = df.select(
        *_typed(df, columns),
        F.col("_version").cast("BIGINT").alias("_version"),
        F.col("_load").cast("STRING").alias("_load"),
        _file_column().alias("_file"),
        F.monotonically_increasing_id().alias("_scan_id"),
    )
    in_file = Window.partitionBy("_file").orderBy("_scan_id")
    row = (F.row_number().over(in_file) - 1).cast("BIGINT").alias("_row")
    return scan.select(*(n for n, _ in columns), "_version", "_load", "_file", row)


def history_frame(
    spark: SparkSession,
    k: Kind,
    path: Path,
    version: int | None,
    ledger: Path,
    ledger_version: int | None,
) -> DataFrame:
    """``<entity>_history``: every version of the entity's records whose import the ledger
    snapshot lists (``warehouse.vouchers`` / ``voucher_ledger``)."""
    columns = _spark_columns(k)
    columns += [("_import_id", "STRING"), ("_imported_at", "TIMESTAMP"), ("_source", "STRING")]
    if version is None or ledger_version is None:
        return _empty(spark, columns)
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    ids = spark.read.format("delta").option("versionAsOf", ledger_version).load(str(ledger))
    visible = ids.select(F.col("import_id").alias("_import_id")).distinct()
    rows = df.select(*_typed(df, columns)).join(visible, "_import_id", "left_semi")
    return rows.select(*(n for n, _ in columns))


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
) -> Registered:
    """Register the catalogue's views over ``lake`` on ``spark``.

    ``versions``: the version of every table (as DuckDB's ``_snapshot`` lists them; None = no
    table), else the snapshot at ``as_of`` (latest when None), resolved as DuckDB resolves it.
    A ``warehouse/sql`` view whose inputs are not all registered is skipped, with the reason.
    ``cache`` keeps the scanned tables in Spark's cache (a pinned snapshot never changes)."""
    from warehouse.vouchers import ENTITIES, voucher_views

    lake = Path(lake).resolve()
    paths = catalog.table_paths(lake)
    if versions is None:
        versions = pinned_versions(lake, as_of)
    missing = sorted(set(paths) - set(versions))
    if missing:
        raise ValueError(f"versions names no version for {missing}")
    done = Registered({name: versions[name] for name in paths})
    pinned = done.versions

    def columns(view: str) -> list[str]:
        return spark.table(_bq(view)).columns

    def frame(name: str, df: DataFrame) -> None:
        (df.cache() if cache else df).createOrReplaceTempView(name)
        done.views.append(name)

    def run(statement: str) -> None:
        rendered = spark_sql(statement, columns)
        spark.sql(rendered)
        done.views.append(rendered.split()[5].strip("`"))

    for k in KINDS.values():
        raw, *views = catalog.kind_views(k, None)
        frame(_view_name(raw), raw_frame(spark, k, paths[k.table], pinned[k.table]))
        for statement in views:
            run(statement)
    run(catalog.snapshot_view(pinned))
    for name in catalog.SQL_VIEWS:
        sql = catalog.load_sql(name)
        absent = [v for v in sql_inputs(sql) if v not in done.views]
        if absent:
            done.skipped[name] = f"needs {', '.join(absent)}"
        else:
            run(sql)
    ledger = catalog.LEDGER_SNAPSHOT
    for k in ENTITIES.values():
        history = history_frame(
            spark, k, paths[k.table], pinned[k.table], paths[ledger], pinned[ledger]
        )
        frame(f"{k.table}_history", history)
    recorder = _Recorder()
    voucher_views(recorder, {})  # type: ignore[arg-type]
    for statement in recorder.statements:
        if not _view_name(statement).endswith("_history"):
            run(statement)
    return done
