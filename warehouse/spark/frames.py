"""The Spark DataFrames the catalogue reads from the lake's Delta tables at pinned versions:
``raw_<table>`` (``raw_frame``, with the lake columns DuckDB's scan gives), the stored
GPU-sample bins (``bins_frame``) and the voucher ``<entity>_history`` (``history_frame``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipeline.records import Kind
from warehouse.catalog import rollups as rv
from warehouse.catalog.occupancy_rollup import OCC_BIN_COLUMNS
from warehouse.spark.sql_code import bq

SPARK_TYPES = {
    "TIMESTAMPTZ": "TIMESTAMP",
    "VARCHAR": "STRING",
    "DOUBLE": "DOUBLE",
    "BIGINT": "BIGINT",
    "VARCHAR[]": "ARRAY<STRING>",
}
"""Spark SQL type of each DuckDB type the contract uses (``Kind.duckdb_columns``)."""


def _file_column() -> Column:
    """``_file``: the scan's file URI without ``file:`` and with percent-encoding undone once
    (``url_decode`` also turns ``+`` into a space, so ``+`` is protected first)."""
    path = F.regexp_replace(F.col("_metadata.file_path"), "^file:", "")
    return F.url_decode(F.replace(path, F.lit("+"), F.lit("%2B")))


def _empty(spark: SparkSession, columns: Sequence[tuple[str, str]]) -> DataFrame:
    return spark.createDataFrame([], ", ".join(f"{bq(n)} {t}" for n, t in columns))


def _typed(df: DataFrame, columns: Sequence[tuple[str, str]]) -> list[Column]:
    return [F.col(bq(n)).cast(t).alias(n) for n, t in columns]


def _spark_columns(k: Kind) -> list[tuple[str, str]]:
    return [(n, SPARK_TYPES[t]) for n, t in k.duckdb_columns()]


def raw_frame(
    spark: SparkSession, k: Kind, path: Path, version: int | None, where: Column | None = None
) -> DataFrame:
    """``raw_<table>``: the kind's Delta table at ``version`` (None: no table, zero typed rows)
    with ``_version``, ``_load``, ``_file`` and ``_row``; ``where``: only the rows of the
    partitions it selects (a condition on the partition columns, so whole files)."""
    columns = _spark_columns(k)
    lake_cols = [("_version", "BIGINT"), ("_load", "STRING"), ("_file", "STRING")]
    if version is None:
        return _empty(spark, [*columns, *lake_cols, ("_row", "BIGINT")])
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    if where is not None:
        df = df.where(where)
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


def parts_filter(parts: Iterable[rv.Part]) -> Column:
    """True for the rows of the lake partitions ``parts`` ((datacentre, UTC date)), on the
    partition columns Spark's Delta reader exposes; a NULL datacentre matches NULL."""
    by_dc: dict[str | None, list[str]] = defaultdict(list)
    for dc, day in parts:
        by_dc[dc].append(day)
    cond = F.lit(False)
    for dc, days in sorted(by_dc.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        in_dc = F.col("datacentre").eqNullSafe(F.lit(dc))
        cond = cond | (in_dc & F.col("date").cast("STRING").isin(sorted(days)))
    return cond


BIN_SPARK_COLUMNS = [(name, {"VARCHAR": "STRING"}.get(t, t)) for name, t in rv.BIN_COLUMNS.items()]
"""The columns of a bins row with their Spark types."""
OCC_BIN_SPARK_COLUMNS = [
    (name, {"VARCHAR": "STRING"}.get(t, t)) for name, t in OCC_BIN_COLUMNS.items()
]
"""The columns of an occupancy bins row with their Spark types."""


def bins_frame(
    spark: SparkSession,
    path: Path,
    version: int | None,
    keep: Mapping[rv.Part, int],
    columns: list[tuple[str, str]] = BIN_SPARK_COLUMNS,
) -> DataFrame:
    """The stored bins (``columns``) of the partitions in ``keep``, only the rows written by
    the bins commit ``keep`` names for each (``rollups._stored_view``)."""
    if version is None or not keep:
        return _empty(spark, columns)
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    by_commit: dict[tuple[str | None, int], list[str]] = defaultdict(list)
    for (dc, day), v in keep.items():
        by_commit[(dc, int(v))].append(day)
    cond = F.lit(False)
    for (dc, v), days in sorted(by_commit.items(), key=str):
        cond = cond | (
            F.col("datacentre").eqNullSafe(F.lit(dc))
            & F.col("date").cast("STRING").isin(sorted(days))
            & (F.col("_version") == F.lit(v))
        )
    return df.where(cond).select(*_typed(df, columns))


def history_frame(
    spark: SparkSession,
    k: Kind,
    path: Path,
    version: int | None,
    ledger: Path,
    ledger_version: int | None,
) -> DataFrame:
    """``<entity>_history``: every version of the entity's records whose import the ledger
    snapshot lists (``pipeline.entity_import`` / ``voucher_ledger``)."""
    columns = _spark_columns(k)
    columns += [("_import_id", "STRING"), ("_imported_at", "TIMESTAMP"), ("_source", "STRING")]
    if version is None or ledger_version is None:
        return _empty(spark, columns)
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    ids = spark.read.format("delta").option("versionAsOf", ledger_version).load(str(ledger))
    visible = ids.select(F.col("import_id").alias("_import_id")).distinct()
    rows = df.select(*_typed(df, columns)).join(visible, "_import_id", "left_semi")
    return rows.select(*(n for n, _ in columns))
