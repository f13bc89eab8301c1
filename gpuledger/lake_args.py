"""Arguments every command that reads a lake snapshot shares: the lake, ``--as-of``, ``--engine``,
and opening the snapshot on the chosen engine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.lake import AsOf
    from warehouse.reports.render import Engine

DEFAULT_LAKE = Path("lake")
AS_OF_HELP = (
    "read the lake as it was: the table versions a report printed "
    "(table=version[,table=version...]) or an ISO-8601 instant with a UTC offset; "
    "reads that snapshot only (in memory)"
)


def as_of_arg(text: str) -> AsOf:
    """``--as-of``: ``pipeline.lake.parse_as_of``, with the table names checked."""
    from pipeline.lake import parse_as_of
    from warehouse.catalog import table_paths

    try:
        as_of = parse_as_of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if isinstance(as_of, dict):
        known = set(table_paths(Path(".")))
        unknown = sorted(set(as_of) - known)
        if unknown:
            raise argparse.ArgumentTypeError(
                f"--as-of {text!r}: no lake table {', '.join(unknown)} "
                f"(tables: {', '.join(sorted(known))})"
            )
    return as_of


def add_as_of(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-of", type=as_of_arg, metavar="VERSIONS|ISO-TIME", help=AS_OF_HELP)


def add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        choices=["duckdb", "spark"],
        default="duckdb",
        help="SQL engine: duckdb (default, in process) or spark (a local Spark session over "
        "the same Delta snapshot, same rows; needs the spark extra and Java 17)",
    )


def open_engine(lake: Path, as_of: AsOf, engine: str = "duckdb") -> tuple[Any, Engine]:
    """A connection to the lake's snapshot on ``engine`` (session time zone UTC) and the
    ``Engine`` to name in the report."""
    if engine == "spark":
        try:
            from warehouse.spark.reports import open_spark
        except ImportError as exc:
            raise SystemExit(
                f"--engine spark needs the spark extra (pip install -e '.[spark]'): {exc}"
            ) from None
        spark_con = open_spark(lake, as_of)
        return spark_con, spark_con.engine
    from warehouse.reports.render import duckdb_engine
    from warehouse.vouchers.audit_format import open_snapshot

    return open_snapshot(lake, as_of), duckdb_engine()
