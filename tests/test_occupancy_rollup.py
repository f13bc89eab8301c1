"""The occupancy rollup: 15-minute bins per cluster scope. The report's capacity and allocated
hours read from it equal the raw path (every snapshot clipped to every period) by scope, in
time zones whose day boundaries cut UTC hours; stored bins are read only while the raw rows
they came from are unchanged, and late data re-rolls exactly the partitions it touched."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.records import OCCUPANCY
from pipeline.write import write_records
from tests.test_rollup import raw_report, same
from warehouse.catalog import connect, refresh_with_state
from warehouse.catalog.rollup_build import build_rollups
from warehouse.reports.utilisation import utilisation_report

DAY_MS = 86_400_000
T0 = int(dt.datetime(2026, 3, 29, tzinfo=dt.UTC).timestamp() * 1000)
CASES = [
    (period, by, tz)
    for period in ("day", "month")
    for by in ("scope", "cluster")
    for tz in ("Asia/Shanghai", "Australia/Adelaide", "UTC")
]


def snapshot(ts: int, scope: str | None, total: float, allocated: float, **kw: Any) -> dict:
    record: dict[str, Any] = {
        "ts": ts,
        "interval_s": 300.0,
        "datacentre": "dc1",
        "cluster": "c1",
        "scope": scope,
        "gpus_total": total,
        "gpus_allocated": allocated,
        "gpus_down": None,
        "source": "test",
    }
    record.update(kw)
    return record


def fleet(days: int, seed: int = 7) -> list[dict]:
    """Snapshots of two scopes and the whole cluster every 5 minutes at irregular offsets, with
    gaps (coverage must not bridge them), intervals longer than the spacing, a few duplicate
    and corrected copies, and some gpus_down stated."""
    rng = random.Random(seed)
    out = []
    for scope, total in (("gpu-a", 64.0), ("gpu-b", 24.0), (None, 88.0)):
        ts = T0 + rng.randrange(0, 300_000)
        while ts < T0 + days * DAY_MS:
            if rng.random() > 0.03:
                kw: dict[str, Any] = {"interval_s": rng.choice([300.0, 300.0, 420.0, 61.5])}
                if rng.random() < 0.3:
                    kw["gpus_down"] = float(rng.randrange(0, 4))
                out.append(snapshot(ts, scope, total, float(rng.randrange(0, int(total))), **kw))
            ts += rng.choice([300_000, 300_000, 299_000, 1_800_000])
    return out


@pytest.fixture()
def occ_lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    rows = fleet(5)
    write_records(lake, OCCUPANCY, rows, "occ-1")
    # a second load re-sends some snapshots: identical copies and corrected ones
    again = [
        dict(r, gpus_allocated=r["gpus_allocated"] + (i % 2)) for i, r in enumerate(rows[::97])
    ]
    write_records(lake, OCCUPANCY, again, "occ-2")
    return lake


def occupancy_fresh(lake: Path) -> tuple[int, int]:
    _, state = refresh_with_state(duckdb.connect(), lake)
    assert state.occupancy is not None
    return len(state.occupancy.fresh), len(state.occupancy.stats)


def assert_agree(lake: Path, cases: list[tuple[str, str, str]] = CASES) -> None:
    con = connect(lake, ":memory:")
    for period, by, tz in cases:
        kw: dict[str, Any] = {"period": period, "by": by, "tz": tz}
        rolled = utilisation_report(con, **kw)
        same(rolled, raw_report(lake, **kw))
        assert any(r["capacity_gpu_h"] for r in rolled)


def test_occupancy_bins_equal_raw_path_and_are_read_stored(occ_lake: Path) -> None:
    result = build_rollups(occ_lake, today=dt.date(2026, 4, 10))
    assert result.occupancy_partitions == 5 and result.occupancy_bins > 0
    assert occupancy_fresh(occ_lake) == (5, 5)
    con = connect(occ_lake, ":memory:")
    # every partition is served by stored bins: nothing is computed live
    assert con.execute("SELECT count(*) FROM occupancy_bins_live").fetchone() == (0,)
    stored = con.execute("SELECT count(*) FROM occupancy_bins_fresh").fetchone()
    assert stored == (result.occupancy_bins,)
    # the stored bins are what the live view computes from the raw rows
    live = connect(occ_lake, ":memory:", rollups=False)
    query = "SELECT * FROM occupancy_bins ORDER BY datacentre, date, cluster, scope, bin_ms"
    assert con.execute(query).fetchall() == live.execute(query).fetchall()
    assert_agree(occ_lake)
    again = build_rollups(occ_lake, today=dt.date(2026, 4, 10))
    assert again.occupancy_partitions == 0  # nothing changed: nothing re-rolled


def test_late_occupancy_re_rolls_exactly_what_it_touched(occ_lake: Path) -> None:
    build_rollups(occ_lake, today=dt.date(2026, 4, 10))
    # a snapshot early on 03-31 ends the coverage of 03-30's last one: both are stale
    late = snapshot(T0 + 2 * DAY_MS + 1_000, "gpu-a", 64.0, 63.0)
    write_records(occ_lake, OCCUPANCY, [late], "occ-late")
    assert occupancy_fresh(occ_lake) == (3, 5)
    assert_agree(occ_lake, [("day", "scope", "Australia/Adelaide"), ("month", "scope", "UTC")])
    assert build_rollups(occ_lake, today=dt.date(2026, 4, 10)).occupancy_partitions == 2
    assert occupancy_fresh(occ_lake) == (5, 5)
    assert_agree(occ_lake, [("day", "scope", "Asia/Shanghai")])


def test_open_occupancy_partitions_are_read_raw(occ_lake: Path) -> None:
    # 03-31 is "today": it and later days stay open
    result = build_rollups(occ_lake, today=dt.date(2026, 3, 31))
    assert result.occupancy_partitions == 2
    assert occupancy_fresh(occ_lake) == (2, 5)
    assert_agree(occ_lake, [("day", "scope", "Asia/Shanghai"), ("month", "cluster", "UTC")])
