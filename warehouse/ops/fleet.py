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
  clipping
  and source precedence (occupancy and samples read from ``MAX_INTERVAL_S`` before the window).
- ``telemetry_newest``: the newest record instant per (datacentre, cluster, kind).
- ``lake_loads``: rows landed / rejected and the newest write per kind, from ``_loads``.

The SQL is in ``warehouse/ops/sql/ops_*.sql`` (the window's coverage is the catalogue's
template ``coverage.sql``); ``now`` is a parameter, so replays and tests pick it.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from warehouse.catalog import load_sql

MAX_INTERVAL_S = 3600.0
"""Longest sampling interval expected (DCGM 30 s-5 min, occupancy 1 min): the windowed query
reads records from this long before the window on, so the scrape cost follows the window, not
the size of the lake. A record with a longer interval that starts earlier is not counted."""


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


def fleet_window(con: duckdb.DuckDBPyConnection, now_ms: int, window_s: float) -> list[FleetWindow]:
    w0 = now_ms - int(window_s * 1000)
    params = {"w0_ms": w0, "w1_ms": now_ms, "lo_ms": w0 - int(MAX_INTERVAL_S * 1000)}
    rows = con.execute(load_sql("ops_fleet_window"), params).fetchall()
    return [FleetWindow(*r) for r in rows]


def telemetry_newest(con: duckdb.DuckDBPyConnection, now_ms: int) -> list[Newest]:
    rows = con.execute(load_sql("ops_telemetry"), {"now_ms": now_ms}).fetchall()
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
