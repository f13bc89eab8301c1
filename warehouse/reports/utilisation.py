"""Reports over the warehouse views; the SQL lives in ``warehouse/sql/<report>.sql``.

``utilisation_report`` implements docs/semantics.md (the exact semantics, because audits depend on
them):

- **Periods** are local days or months in ``tz``: their bounds are local midnights turned into
  UTC instants, so a period is ``[p0, p1)``. Without ``date_from``/``date_to`` the report covers
  the whole periods that the data touches, from the first record to the last (``data_span``
  view: occupancy and sample ``ts``, allocation ``event_ts``/``start``/``end``; inventory only
  if there is nothing else); every period in between is a row, silent ones included. With
  them, the window is exactly those local dates (inclusive) and the first / last period is
  clipped to it (``--period month --from 2020-05-15`` gives a "2020-05" row for May 15-31).
- **Coverage**: a snapshot / sample at ``ts`` covers ``[ts, ts + min(interval_s, next_ts - ts))``
  (next record of the same scope / GPU, after dedup). Every interval is clipped to each period.
- **Source precedence per (datacentre, cluster)**, decided over the whole lake so that day rows
  add up to month rows: capacity from occupancy (Σ gpus_total × coverage) if the cluster has any
  occupancy record, else inventory (Σ gpu_count × validity overlap; a node's record ends at its
  ``valid_to``, at the node's next record, or at now()), else GPU samples (each GPU counts 1 ×
  coverage), else none (NULL). Allocated from allocation records (``allocations_current``:
  gpu_count × overlap(start..end)) if the cluster has any, else Σ gpus_allocated × coverage.
- **Running allocations** (end NULL) count up to the cluster's horizon: the end of the newest
  snapshot's or sample's coverage, or the newest allocation instant, whichever is later, and
  never after now() (``cluster_horizon`` view). Nothing is counted past what was observed.
- **Busy** = Σ util × covered hours over GPU samples. A sample with ``util`` NULL (a blank
  reading) counts as covered time but adds nothing to busy; busy is NULL when no sample in the
  period has a util value (or the cluster has no samples). **Busy-allocated** = the busy part of
  samples that an allocation of the same cluster holds at the sample's ``ts``: the GPU's uuid is
  in ``gpu_uuids``, or ``job_id`` matches, or ``pod`` equals the allocation id or job id. It is
  NULL when allocated comes from occupancy (which does not say which GPUs are held).
- **no_telemetry_share** = Σ over units u of (uncovered time of u in the period) / (number of
  units × period length), the units being those of the capacity source that have a record in
  the report window: occupancy scopes, inventory nodes, or GPUs. 0 = every unit reported over
  the whole period; 1 = nothing. A cluster with no capacity source counts as one silent unit.
  Datacentre rows pool the units of their clusters.
- ``by="scope"``: clusters whose occupancy names scopes get one row per scope (capacity and
  allocated from that scope's occupancy; allocation records and samples carry no scope, so busy
  is NULL and ``sources`` says ``busy=none``); other clusters get their cluster row with scope
  NULL. ``by="datacentre"`` sums cluster rows (each cluster with its own sources; ``sources``
  joins them with ``+``).
- ``by="region"`` / ``by="ownership"``: the cluster rows summed per local period and the
  region / ownership the data-centre registry (``datacentres`` view, ``pipeline.entities``)
  gives their data centre; data centres it does not list form the group ``unregistered``.
  Rows carry ``period``, ``region`` (or ``ownership``), ``datacentres`` (the group's data
  centres, ``+``-joined) and the figures; rates and the no-telemetry share are computed from
  the group's summed hours and units, as for a data centre, so the groups of a period add up
  to the sum of its datacentre rows.
- **capacity_note** is NULL unless the cluster's capacity sources disagree on how many GPUs it
  has now (``cluster_sources`` view): occupancy (the newest whole-cluster snapshot's
  ``gpus_total``, else the sum of its scopes' newest) and each inventory ``source`` (the sum of
  its newest statement per node) are compared, rounded to whole GPUs; then it lists each with
  its count, the one the figures come from marked ``(used)``. Inventory statements of two
  sources about one node and ``valid_from`` share a key, so the one the lake keeps (the later
  load) is used. GPU samples are not compared: a MIG instance or a replaced GPU is a new
  ``gpu_uuid``, so the GPUs seen are no count of the GPUs there. Each note names its cluster;
  datacentre rows join their clusters' notes with `` | ``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb

from pipeline.defaults import DEFAULT_TZ
from warehouse.catalog import load_sql
from warehouse.catalog.gpu_days import narrow_report_bins
from warehouse.catalog.rollups import GRAIN_MS
from warehouse.reports.render import Lineage, render

__all__ = [
    "UTILISATION_COLUMNS",
    "Lineage",
    "lineage",
    "render",
    "single_threaded",
    "utilisation_report",
]

Period = Literal["day", "month"]
Source = Literal["bins", "samples"]
By = Literal["datacentre", "cluster", "scope", "region", "ownership"]

UTILISATION_COLUMNS = (
    "period",
    "datacentre",
    "cluster",
    "scope",
    "capacity_gpu_h",
    "allocated_gpu_h",
    "busy_gpu_h",
    "busy_allocated_gpu_h",
    "idle_capacity_gpu_h",
    "idle_held_gpu_h",
    "allocation_rate",
    "utilisation",
    "efficiency",
    "no_telemetry_share",
    "sources",
    "capacity_note",
)
_LABEL = {"day": "%Y-%m-%d", "month": "%Y-%m"}
_BY = ("datacentre", "cluster", "scope", "region", "ownership")
GROUPS = ("region", "ownership")
"""``by`` values that group data centres by the registry (``grouped_columns``)."""


def grouped_columns(by: str) -> tuple[str, ...]:
    """The columns of a ``by="region"`` / ``"ownership"`` report."""
    return ("period", by, "datacentres", *UTILISATION_COLUMNS[4:])


def lineage(con: duckdb.DuckDBPyConnection) -> Lineage:
    """The lake table versions the views of ``con`` read (its ``_snapshot`` view, by name)."""
    rows = con.execute("SELECT table_name, version FROM _snapshot ORDER BY table_name").fetchall()
    return Lineage({str(t): None if v is None else int(v) for t, v in rows})


@contextmanager
def single_threaded(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the statements inside on one DuckDB thread, then restore the thread count.

    Reports must come out byte for byte the same when ``--as-of`` reads their snapshot again,
    but DuckDB's parallel aggregation adds the partial sums of a double in whatever order its
    threads finish, so the last digits of a figure change from run to run. On one thread the
    rows are added in one order (the snapshot's files, as listed by its log)."""
    row = con.execute("SELECT current_setting('threads')").fetchone()
    before = int(row[0]) if row else None
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        if before is not None:
            con.execute(f"SET threads = {before}")


def _parts_source(con: duckdb.DuckDBPyConnection, source: Source) -> Source:
    """Bins when ``source`` is bins and every bound of ``report_periods`` is on a bin edge,
    else samples."""
    if source not in ("bins", "samples"):
        raise ValueError(f"source must be bins or samples, not {source!r}")
    if source == "bins":
        row = con.execute(
            "SELECT coalesce(bool_and(p0 % $g = 0 AND p1 % $g = 0), true) FROM report_periods",
            {"g": GRAIN_MS},
        ).fetchone()
        if row is None or not row[0]:
            source = "samples"
    return source


def _report_sql(con: duckdb.DuckDBPyConnection, source: Source) -> str:
    """``utilisation.sql`` with its per-(period, GPU) sample part and its per-(period, scope)
    occupancy part from bins or from samples (``_parts_source``)."""
    chosen = _parts_source(con, source)
    gpu_parts = _fragment(f"utilisation_gpu_{chosen}")
    if chosen == "bins" and isinstance(con, duckdb.DuckDBPyConnection):
        # only the bins files a period cuts, where day rows serve the whole days
        gpu_parts = gpu_parts.replace("FROM gpu_bins_report", f"FROM {narrow_report_bins(con)}")
    sql = load_sql("utilisation").replace("/*gpu_parts*/", gpu_parts, 1)
    return sql.replace("/*occ_parts*/", _fragment(f"utilisation_occ_{chosen}"), 1)


def _fragment(name: str) -> str:
    """A SELECT from ``warehouse/sql/<name>.sql`` to nest in a report's CTE: the header
    comment lines kept as SQL comments, no trailing semicolon."""
    return load_sql(name).strip().removesuffix(";")


def check_tz(tz: str) -> None:
    """Raise ValueError with advice unless ``tz`` is an IANA time zone."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz!r} (use an IANA name like Asia/Shanghai)"
        ) from None


def utilisation_report(
    con: duckdb.DuckDBPyConnection,
    *,
    period: Period,
    by: By,
    date_from: date | None = None,
    date_to: date | None = None,
    tz: str = DEFAULT_TZ,
    source: Source = "bins",
) -> list[dict[str, Any]]:
    """Capacity, allocated and busy GPU-hours per period and grouping (see the module docstring).

    ``source="bins"`` sums GPU samples and occupancy from their 15-minute bins (rollups where
    fresh), unless a period bound is off a bin edge; ``"samples"`` clips every sample and
    snapshot (the raw path).

    Returns rows with exactly ``UTILISATION_COLUMNS`` as keys, sorted by period, datacentre,
    cluster, scope; by region or ownership ``grouped_columns(by)``, sorted by period, group.
    """
    if period not in _LABEL:
        raise ValueError(f"period must be one of {', '.join(_LABEL)}, not {period!r}")
    if by not in _BY:
        raise ValueError(f"by must be one of {', '.join(_BY)}, not {by!r}")
    check_tz(tz)
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ValueError(f"date_from {date_from} is after date_to {date_to}")
    params = {
        "tz": tz,
        "unit": period,
        "label": _LABEL[period],
        "date_from": date_from,
        "date_to": date_to,
    }
    with single_threaded(con):
        con.execute(load_sql("report_periods"), params)
        sql = _report_sql(con, source)
        cursor = con.execute(sql, {"by": by})
        names = [d[0] for d in cursor.description]
        assert tuple(names) == UTILISATION_COLUMNS, names
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if by not in GROUPS:
        return rows
    # the SQL puts the group in the datacentre column and its data centres in the cluster column
    return [_grouped_row(r, by) for r in rows]


def _grouped_row(r: dict[str, Any], by: str) -> dict[str, Any]:
    values = [r["period"], r["datacentre"], r["cluster"], *(r[c] for c in UTILISATION_COLUMNS[4:])]
    return dict(zip(grouped_columns(by), values, strict=True))
