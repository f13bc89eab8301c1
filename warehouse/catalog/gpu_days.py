"""Whole UTC days of the GPU-sample rollup (docs/rollups.md#days).

A month of 15-minute bins is 2,880 rows per GPU; a monthly report of a 10,000-GPU fleet would
sum 28.8M of them. ``<lake>/_rollup/gpu_days`` holds the same sums per GPU and UTC day
(``gpu_days_build.sql``, summed from the bins of whole GPUs), stamped with the bins commit they
were summed from (``bins_version``). A partition's day rows are *valid* while that stamp is the
bins commit its manifest names, so they are fresh exactly when its bins are, and a crash
between the bins and the days commit leaves stale day rows that nothing reads.

Readers (DuckDB catalogue):

- ``gpu_extent_stored``: first / last sample per GPU from the day rows of unchanged partitions
  with valid days, from their bins for the others (``gpu_extent.sql``);
- ``gpu_days_report``: the valid day rows of fresh partitions; ``gpu_bins_report``: every bin
  of ``gpu_bins`` with ``has_days`` (its partition has valid day rows). A report sums a day row
  for a UTC day wholly inside one of its periods and skips that day's bins of that partition
  (``utilisation_gpu_bins.sql``); ``narrow_report_bins`` reads only the bins files of
  partitions with valid days that a period cuts (``_gpu_days_bins_files``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

import warehouse.catalog.rollups as rv
from pipeline import lake as lakes
from warehouse.catalog.rollup_commit import as_stored, predicate
from warehouse.catalog.rollup_parts import Part
from warehouse.catalog.rollup_parts import lit as _lit

DAY_MS = 86_400_000

_DAY_KEYS = ("datacentre", "date", "cluster", "gpu_uuid")
DAY_COLUMNS: dict[str, str] = {
    **{n: rv.BIN_COLUMNS[n] for n in _DAY_KEYS},
    "day_ms": "BIGINT",
    **{
        n: t
        for n, t in rv.BIN_COLUMNS.items()
        if n not in _DAY_KEYS and n not in ("allocation_id", "bin_ms")
    },
    "bins_version": "BIGINT",
}
"""The columns of a day row (``gpu_days_build.sql``), in order, with their DuckDB types: a
whole-GPU bin's, the day instead of the allocation and the bin, and the bins commit read."""

_EXTENT = "datacentre, cluster, gpu_uuid, first_ms, last_ms, last_e_ms"


def day_rows(con: duckdb.DuckDBPyConnection, source: str) -> pa.Table:
    """``gpu_days_build.sql`` over ``source`` (a SELECT of bins rows with ``bins_version``)."""
    from warehouse.catalog.sources import load_sql

    con.execute(f"CREATE OR REPLACE TEMP VIEW _day_bins AS {source}")
    rows = con.execute(load_sql("gpu_days_build")).arrow()
    if isinstance(rows, pa.RecordBatchReader):
        rows = rows.read_all()
    return rows


def commit_days(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    chunk: list[Part],
    source: str,
    source_version: int,
) -> int:
    """The day rows of ``source``'s bins, committed to the days table at ``path`` replacing the
    chunk's partitions; returns the number of rows."""
    rows = day_rows(con, source)
    lakes.commit(
        path,
        as_stored(path, rows),
        load_id="rollup",
        replace_where=predicate(chunk),
        metadata={"gpuledger.rollup_source_version": source_version},
    )
    return int(rows.num_rows)


def valid_days(
    con: duckdb.DuckDBPyConnection, days: DeltaTable | None, expected: Mapping[Part, int]
) -> dict[Part, int]:
    """The partitions of ``expected`` (bins commit by partition) whose day rows were all summed
    from that commit."""
    if days is None or not expected:
        return {}
    files = sorted(
        (p, (v.get("datacentre"), str(v["date"])))
        for p, v in lakes.active_files(days)
        if (v.get("datacentre"), str(v["date"])) in expected
    )
    if not files:
        return {}
    paths = ", ".join(_lit(p) for p, _ in files)
    seen: dict[Part, set[int]] = {}
    for f, low, high in con.execute(
        "SELECT CAST(file_index AS BIGINT), min(bins_version), max(bins_version) "
        f"FROM read_parquet([{paths}], hive_partitioning = false) GROUP BY ALL"
    ).fetchall():
        seen.setdefault(files[int(f)][1], set()).update({int(low), int(high)})
    return {p: v for p, v in expected.items() if seen.get(p) == {v}}


def extent_stored(
    con: duckdb.DuckDBPyConnection,
    bins: DeltaTable | None,
    days: DeltaTable | None,
    unchanged: Mapping[Part, int],
    valid: Mapping[Part, int],
) -> None:
    """``gpu_extent_stored``: the first / last sample of each GPU's stored rows, from the day
    rows of the partitions in ``valid``, from the bins of the other ``unchanged`` ones."""
    rest = {p: v for p, v in unchanged.items() if p not in valid}
    con.execute(rv.stored_view("_extent_bins", bins, rest))
    con.execute(rv.stored_view("_extent_days", days, valid, DAY_COLUMNS, "bins_version"))
    con.execute(
        f"CREATE OR REPLACE VIEW gpu_extent_stored AS SELECT {_EXTENT} FROM _extent_bins "
        f"WHERE first_ms IS NOT NULL UNION ALL SELECT {_EXTENT} FROM _extent_days "
        "WHERE first_ms IS NOT NULL"
    )


def report_views(
    con: duckdb.DuckDBPyConnection,
    bins: DeltaTable | None,
    days: DeltaTable | None,
    fresh: Mapping[Part, int],
    valid: Mapping[Part, int],
) -> None:
    """``gpu_days_report``, ``gpu_bins_report`` and ``_gpu_days_bins_files`` (after
    ``gpu_bins_live``) for the fresh partitions, those in ``valid`` with their day rows."""
    with_days = {p: v for p, v in fresh.items() if p in valid}
    without = {p: v for p, v in fresh.items() if p not in valid}
    con.execute(rv.stored_view("gpu_days_report", days, with_days, DAY_COLUMNS, "bins_version"))
    con.execute(rv.stored_view("_gpu_bins_no_days", bins, without))
    con.execute(rv.stored_view("_gpu_bins_days", bins, with_days))
    con.execute(
        "CREATE OR REPLACE VIEW gpu_bins_report AS "
        "SELECT *, false AS has_days FROM _gpu_bins_no_days "
        "UNION ALL SELECT *, true AS has_days FROM _gpu_bins_days "
        "UNION ALL SELECT *, false AS has_days FROM gpu_bins_live"
    )
    files = rv.stored_files(bins, with_days)
    values = ", ".join(
        f"({_lit(f)}, {_lit(v.get('datacentre'))}, DATE {_lit(str(v['date']))}, "
        f"{int(with_days[(v.get('datacentre'), str(v['date']))])})"
        for f, v in files
    )
    con.execute(
        "CREATE OR REPLACE TABLE _gpu_days_bins_files "
        "(path VARCHAR, datacentre VARCHAR, date DATE, version BIGINT)"
    )
    if values:
        con.execute(f"INSERT INTO _gpu_days_bins_files VALUES {values}")


def narrow_report_bins(con: duckdb.DuckDBPyConnection) -> str:
    """A temp view of ``gpu_bins_report`` without the bins files that no period of
    ``report_periods`` needs (the partition has valid day rows and each UTC day its bins lie in,
    its own and the next, is outside every period or wholly inside one); its name."""
    needed = con.execute(
        "SELECT path, datacentre, CAST(date AS VARCHAR), version FROM _gpu_days_bins_files AS f "
        "WHERE EXISTS (SELECT 1 FROM report_periods AS p, (VALUES (0), (1)) AS n(k) "
        "WHERE (epoch_ms(f.date) + n.k * $day) < p.p1 AND (epoch_ms(f.date) + (n.k + 1) * $day) "
        "> p.p0 AND NOT ((epoch_ms(f.date) + n.k * $day) >= p.p0 AND (epoch_ms(f.date) + "
        "(n.k + 1) * $day) <= p.p1)) ORDER BY path",
        {"day": DAY_MS},
    ).fetchall()
    files = [(str(p), {"datacentre": dc, "date": d}) for p, dc, d, _ in needed]
    keep = {(dc, d): int(v) for _, dc, d, v in needed}
    view = rv.files_view("_report_gpu_bins_days", files, keep)
    con.execute(view.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1))
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _report_gpu_bins AS "
        "SELECT *, false AS has_days FROM _gpu_bins_no_days "
        "UNION ALL SELECT *, true AS has_days FROM _report_gpu_bins_days "
        "UNION ALL SELECT *, false AS has_days FROM gpu_bins_live"
    )
    return "_report_gpu_bins"


PLAIN_EXTENT = (
    f"CREATE OR REPLACE VIEW gpu_extent_stored AS SELECT {_EXTENT} FROM gpu_bins_stored "
    "WHERE first_ms IS NOT NULL"
)
"""``gpu_extent_stored`` of an engine that reads no day rows (Spark): from the bins alone."""
PLAIN_REPORT = (
    "CREATE OR REPLACE VIEW gpu_bins_report AS SELECT *, false AS has_days FROM gpu_bins",
    f"CREATE OR REPLACE VIEW gpu_days_report AS {rv.empty_bins(DAY_COLUMNS)}",
)
"""``gpu_bins_report`` and ``gpu_days_report`` of an engine that reads no day rows (Spark):
the same figures, from the bins alone."""
