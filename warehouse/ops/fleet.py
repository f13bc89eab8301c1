"""Fleet status at an instant, for the operator surfaces (exporter, built-in alerts).

Both surfaces ask the same questions of the warehouse, so both read them from here:

- ``fleet_now``: capacity / allocated / busy GPUs at ``now`` per (datacentre, cluster, scope),
  from the newest record of each unit (occupancy scope, inventory node, GPU) made within
  ``horizon_s`` before ``now``; a unit silent for longer drops out (stale telemetry shows it).
  A cluster is split by scope (``scope`` = the occupancy scope) only when occupancy gives both
  its capacity and its allocated GPUs; otherwise it is one row with ``scope`` ``""``. Summing
  the rows of a datacentre therefore never counts a GPU twice.
- ``fleet_window``: capacity / allocated / busy GPU-seconds in ``[now - window, now)`` per
  (datacentre, cluster, scope) (scopes as in ``fleet_now``), with docs/semantics.md coverage,
  clipping and source precedence (occupancy and samples read from ``MAX_INTERVAL_S`` before
  the window). On a connection from ``connect_ops``, the GPU-sample figures of the window's
  whole 15-minute bins come from the rollup bins of fresh partitions (docs/rollups.md), the
  same figures to rounding; raw samples elsewhere.
- ``telemetry_newest``: the newest record instant per (datacentre, cluster, kind) (on a
  ``connect_ops`` connection, the GPU samples' from the fresh bins before the bin holding now).
- ``lake_loads``: rows landed / rejected and the newest write per kind, from ``_loads``.

The SQL is in ``warehouse/ops/sql/ops_*.sql`` (the window's coverage is the catalogue's
template ``coverage.sql``); ``now`` is a parameter, so replays and tests pick it.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.bounds import DAY_MS
from pipeline.sqltext import sql_literal
from warehouse.catalog import load_sql, refresh_with_state
from warehouse.catalog.rollups import GRAIN_MS, Part

MAX_INTERVAL_S = 3600.0
"""Longest sampling interval expected (DCGM 30 s-5 min, occupancy 1 min): the windowed query
reads records from this long before the window (and before each of its edge bins) on, so the
scrape cost follows the window, not the size of the lake. A record with a longer interval that
starts earlier is not counted."""

MAX_INTERVAL_MS = int(MAX_INTERVAL_S * 1000)
PARTITIONS = "ops_gpu_partitions"
"""The temporary view ``connect_ops`` adds: every GPU-sample lake partition (datacentre, date)
and whether its rollup bins are fresh (read by the catalogue's ``gpu_bins_fresh``)."""


@dataclass(frozen=True)
class FleetNow:
    datacentre: str
    cluster: str
    scope: str
    capacity: float | None
    allocated: float | None
    busy: float | None
    busy_allocated: float | None

    @property
    def idle(self) -> float | None:
        """Idle capacity: GPUs not allocated."""
        if self.capacity is None or self.allocated is None:
            return None
        return max(0.0, self.capacity - self.allocated)

    @property
    def held_idle(self) -> float | None:
        """Allocated but not busy (only where allocation records say which GPUs are held)."""
        if self.allocated is None or self.busy_allocated is None:
            return None
        return max(0.0, self.allocated - self.busy_allocated)


@dataclass(frozen=True)
class FleetWindow:
    datacentre: str
    cluster: str
    scope: str
    capacity_s: float | None
    allocated_s: float | None
    busy_s: float | None

    @property
    def allocation_rate(self) -> float | None:
        if not self.capacity_s or self.allocated_s is None:
            return None
        return self.allocated_s / self.capacity_s

    @property
    def utilisation(self) -> float | None:
        if not self.capacity_s or self.busy_s is None:
            return None
        return self.busy_s / self.capacity_s


@dataclass(frozen=True)
class Newest:
    datacentre: str
    cluster: str
    kind: str
    newest_ms: int


@dataclass(frozen=True)
class LoadTotals:
    kind: str
    landed: int
    rejected: int
    last_write_ms: int | None


def fleet_now(
    con: duckdb.DuckDBPyConnection, now_ms: int, horizon_s: float = 3600.0
) -> list[FleetNow]:
    params = {"now_ms": now_ms, "horizon_ms": int(horizon_s * 1000)}
    rows = con.execute(load_sql("ops_fleet_now"), params).fetchall()
    return [FleetNow(*r) for r in rows]


def connect_ops(lake: Path, rollups: bool = True) -> duckdb.DuckDBPyConnection:
    """The catalogue over ``lake`` in an in-memory DuckDB (the operator surfaces never hold the
    warehouse file's lock), with ``PARTITIONS``: which partitions ``fleet_window`` may read
    from their bins (none with ``rollups=False``)."""
    con = duckdb.connect(":memory:")
    try:
        _, state = refresh_with_state(con, Path(lake), rollups=rollups)
        con.execute(partitions_view(state.stats, state.fresh))
    except BaseException:
        con.close()
        raise
    return con


def partitions_view(parts: Iterable[Part], fresh: Container[Part]) -> str:
    rows = ", ".join(
        f"({'NULL' if dc is None else sql_literal(dc)}, DATE {sql_literal(date)}, "
        f"{'true' if (dc, date) in fresh else 'false'})"
        for dc, date in sorted(parts, key=lambda p: (p[0] or "", p[1]))
    )
    body = (
        f"SELECT * FROM (VALUES {rows}) AS p(datacentre, date, fresh)"
        if rows
        else "SELECT NULL::VARCHAR AS datacentre, NULL::DATE AS date, NULL::BOOLEAN AS fresh "
        "WHERE false"
    )
    return f"CREATE OR REPLACE TEMP VIEW {PARTITIONS} AS {body}"


@dataclass(frozen=True)
class WindowQuery:
    """The SQL file ``fleet_window`` runs for a window, and its parameters."""

    sql: str
    params: dict[str, int]

    @property
    def from_bins(self) -> bool:
        return self.sql == "ops_fleet_window_bins"


def window_query(con: duckdb.DuckDBPyConnection, now_ms: int, window_s: float) -> WindowQuery:
    """``ops_fleet_window`` (raw samples) unless the window holds a whole 15-minute bin that
    a fresh partition may have bins in (``PARTITIONS``, on a ``connect_ops`` connection): then
    ``ops_fleet_window_bins``, reading the raw samples of the other partitions only from the
    first to the end of the last of them (and one longest interval on: their coverage)."""
    w0, w1 = now_ms - int(window_s * 1000), now_ms
    lo = w0 - MAX_INTERVAL_MS
    raw = WindowQuery("ops_fleet_window", {"w0_ms": w0, "w1_ms": w1, "lo_ms": lo})
    b0, b1 = -(-w0 // GRAIN_MS) * GRAIN_MS, w1 // GRAIN_MS * GRAIN_MS
    rows = _partition_days(con, lo // DAY_MS, (b1 - 1) // DAY_MS) if b1 > b0 else None
    if not rows:
        return raw
    # a day's bins reach at most one longest interval into the next day
    if not any(fresh and day >= (b0 - MAX_INTERVAL_MS) // DAY_MS for day, fresh in rows):
        return raw
    stale = [int(day) for day, fresh in rows if not fresh]
    m0, m1 = b0, b0
    if stale:
        m0 = max(lo, min(stale) * DAY_MS)
        m1 = min(b1, (max(stale) + 1) * DAY_MS + MAX_INTERVAL_MS)
    # the samples near the edges: one scan where the two spans overlap (an OR of two spans
    # would not prune the Parquet row groups)
    t0 = b1 - MAX_INTERVAL_MS
    e1, e2 = (w1, w1) if t0 <= b0 else (b0, t0)
    params = raw.params | {"b0_ms": b0, "b1_ms": b1, "e1_ms": e1, "e2_ms": e2}
    return WindowQuery("ops_fleet_window_bins", params | {"m0_ms": m0, "m1_ms": m1})


def _partition_days(
    con: duckdb.DuckDBPyConnection, first: int | None, last: int
) -> list[tuple[int, bool]] | None:
    """(day since the epoch, fresh) of each GPU-sample partition from day ``first`` (None:
    the first) to ``last``; None on a connection without ``PARTITIONS``."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = $name", {"name": PARTITIONS}
    ).fetchone()
    if not (found and found[0]):
        return None
    rows = con.execute(
        f"SELECT CAST(date - DATE '1970-01-01' AS BIGINT) AS day, fresh FROM {PARTITIONS} "
        "WHERE day BETWEEN coalesce($first, day) AND $last",
        {"first": first, "last": last},
    ).fetchall()
    return [(int(day), bool(fresh)) for day, fresh in rows]


def fleet_window(con: duckdb.DuckDBPyConnection, now_ms: int, window_s: float) -> list[FleetWindow]:
    q = window_query(con, now_ms, window_s)
    rows = con.execute(load_sql(q.sql), q.params).fetchall()
    return [FleetWindow(*r) for r in rows]


def telemetry_newest(con: duckdb.DuckDBPyConnection, now_ms: int) -> list[Newest]:
    """On a ``connect_ops`` connection with a fresh partition before the bin holding
    ``now_ms``, the GPU samples' newest instant before that bin comes from the stored bins
    (``ops_telemetry_bins``); else every raw row is read (``ops_telemetry``)."""
    sql, params = "ops_telemetry", {"now_ms": now_ms}
    c = now_ms // GRAIN_MS * GRAIN_MS
    days = _partition_days(con, None, (c - 1) // DAY_MS)
    if any(fresh for _, fresh in days or ()):
        stale = [day for day, fresh in days or () if not fresh]
        m0 = min(stale) * DAY_MS if stale else c
        sql, params = "ops_telemetry_bins", params | {"c_ms": c, "m0_ms": min(m0, c)}
    rows = con.execute(load_sql(sql), params).fetchall()
    return [Newest(dc, cl, kind, int(ms)) for dc, cl, kind, ms in rows]


def lake_loads(con: duckdb.DuckDBPyConnection) -> list[LoadTotals]:
    rows = con.execute(load_sql("ops_loads")).fetchall()
    return [
        LoadTotals(kind, int(landed or 0), int(rej or 0), None if last is None else int(last))
        for kind, landed, rej, last in rows
    ]


def data_now_ms(con: duckdb.DuckDBPyConnection) -> int | None:
    """The newest telemetry / allocation instant in the lake (never after the wall clock)."""
    row = con.execute("SELECT epoch_ms(hi) FROM data_span").fetchone()
    return None if row is None or row[0] is None else int(row[0])
