"""Attribution of compute-voucher claims to metered evidence (docs/audit.md#attribution).

``attribute(con, tz)`` needs a connection from ``warehouse.catalog.connect`` (which applies
``warehouse.catalog.entities.voucher_views``; ``open_audit`` is one in memory). It fills two
temporary
tables on the connection:

- ``claim_allocations`` (``vouchers/sql/attribution_allocations.sql``): one row per (claim,
  allocation):
  the claimant's allocation spans at the claim's data centre (``allocation_spans``: running ones
  up to the cluster's horizon), clipped to the claim period, only the listed ids when the claim
  names ``allocation_ids``. An inequality (range) join: DuckDB plans it as an IEJoin.
- ``claim_attribution`` (``vouchers/sql/attribution.sql``): one row per claim with metered GPU-hours
  (gpu_count x clipped span), telemetry-covered and busy GPU-hours (GPU samples on the held
  GPUs, or of the allocation's job / pod when it lists no GPUs, clipped to the clipped span),
  subsidy per metered and per busy GPU-hour (samples summed from the allocations' 15-minute
  bins, ``warehouse.catalog.rollups``, when claim periods fall on bin edges), coverage = subsidy /
  invoice, the claim's programme, voucher and tenant, and ``month``: the local month (``tz``)
  of ``period_start``, which is the audit month the claim belongs to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipeline.defaults import DEFAULT_TZ
from pipeline.lake import AsOf
from warehouse.catalog import connect, load_sql
from warehouse.catalog.rollups import GRAIN_MS


def open_audit(lake: Path, as_of: AsOf = None) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse over ``lake`` (at ``as_of``), voucher views included."""
    return connect(lake, db_path=":memory:", as_of=as_of)


def attribute(con: duckdb.DuckDBPyConnection, tz: str = DEFAULT_TZ, source: str = "bins") -> None:
    """(Re)build ``claim_allocations`` and ``claim_attribution`` on ``con``.

    Covered and busy GPU-hours come from the allocations' 15-minute bins (rollups where
    fresh) when every claim period starts and ends on a bin edge, else (or with
    ``source="samples"``) from every sample clipped to the claimed span."""
    if source not in ("bins", "samples"):
        raise ValueError(f"source must be bins or samples, not {source!r}")
    con.execute(load_sql("attribution_allocations"))
    if source == "bins":
        row = con.execute(
            "SELECT coalesce(bool_and(epoch_ms(period_start) % $g = 0 "
            "AND epoch_ms(period_end) % $g = 0), true) FROM claims",
            {"g": GRAIN_MS},
        ).fetchone()
        if row is None or not row[0]:
            source = "samples"
    part = load_sql(f"attribution_{source}").strip().removesuffix(";")
    con.execute(load_sql("attribution").replace("/*claim_samples*/", part, 1), {"tz": tz})


def attribution_rows(
    con: duckdb.DuckDBPyConnection, month: str | None = None
) -> list[dict[str, Any]]:
    """``claim_attribution`` rows (of one local month, or all) as dicts, by claim id."""
    cursor = con.execute(
        "SELECT * FROM claim_attribution WHERE $month IS NULL OR month = $month ORDER BY claim_id",
        {"month": month},
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
