"""The utilisation report (docs/semantics.md) over real Parquet in a tmp lake, read by real DuckDB.

Every expected number is worked out by hand in the comments. Times are local Asia/Shanghai
(+08:00) unless written otherwise; "GPU-h" = GPU-hours.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.records import ALLOCATION, GPU_SAMPLE, INVENTORY, OCCUPANCY, Kind, coerce, parse_ts
from pipeline.write import write_records
from warehouse.catalog import connect
from warehouse.reports.utilisation import UTILISATION_COLUMNS, render, utilisation_report

H = 3_600_000  # ms per hour
DAY1 = date(2020, 5, 1)


def ms(local: str) -> int:
    """'2020-05-01T10:00' (Asia/Shanghai) as epoch ms."""
    return parse_ts(local + ":00+08:00" if len(local) == 16 else local)


def occ(
    ts: int | str,
    total: float,
    allocated: float,
    *,
    interval: float = 60,
    dc: str = "dc1",
    cluster: str = "c1",
    scope: str | None = "vcA",
) -> dict[str, Any]:
    return coerce(
        OCCUPANCY,
        dict(
            ts=ts if isinstance(ts, int) else ms(ts),
            interval_s=interval,
            datacentre=dc,
            cluster=cluster,
            scope=scope,
            gpus_total=total,
            gpus_allocated=allocated,
            source="test",
        ),
    )


def smp(
    ts: int | str,
    gpu: str,
    util: float | None,
    *,
    interval: float = 3600,
    dc: str = "dc1",
    cluster: str = "c1",
    **kw: Any,
) -> dict[str, Any]:
    return coerce(
        GPU_SAMPLE,
        dict(
            ts=ts if isinstance(ts, int) else ms(ts),
            interval_s=interval,
            datacentre=dc,
            cluster=cluster,
            node="n1",
            gpu_uuid=gpu,
            util=util,
            source="test",
            **kw,
        ),
    )


def alloc(
    aid: str,
    start: str | None,
    end: str | None,
    gpus: float,
    *,
    event: str | None = None,
    dc: str = "dc1",
    cluster: str = "c1",
    state: str = "RUNNING",
    **kw: Any,
) -> dict[str, Any]:
    event_ts = event or end or start
    return coerce(
        ALLOCATION,
        dict(
            allocation_id=aid,
            datacentre=dc,
            cluster=cluster,
            tenant_id="t1",
            event_ts=ms(event_ts),
            gpu_count=gpus,
            start=start and ms(start),
            end=end and ms(end),
            state=state,
            source="test",
            **kw,
        ),
    )


def inv(
    node: str,
    valid_from: str,
    valid_to: str | None,
    gpus: int,
    *,
    dc: str = "dc1",
    cluster: str = "c1",
) -> dict[str, Any]:
    return coerce(
        INVENTORY,
        dict(
            datacentre=dc,
            cluster=cluster,
            node=node,
            valid_from=ms(valid_from),
            valid_to=valid_to and ms(valid_to),
            gpu_count=gpus,
            source="test",
        ),
    )


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def write(self, k: Kind, records: list[dict[str, Any]], name: str | None = None) -> None:
        self.n += 1
        write_records(self.root, k, records, name or f"part-{self.n:04d}")

    def report(self, **kw: Any) -> list[dict[str, Any]]:
        con = connect(self.root, ":memory:")
        try:
            return utilisation_report(con, **kw)
        finally:
            con.close()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


def one(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


approx = pytest.approx


# ------------------------------------------------------------------------------- coverage


def test_one_missing_minute_is_a_coverage_gap(lake: Lake) -> None:
    # snapshots every 60 s from 00:00 to 00:59 with 00:10 missing: 59 snapshots.
    # 00:09 covers [00:09, 00:10) (min(60 s, 120 s)); [00:10, 00:11) is no telemetry.
    # capacity = 8 GPUs x 59 min = 472/60 = 7.8667 GPU-h, allocated = 4 x 59/60 = 3.9333
    # no telemetry: the day (1440 min) minus 59 covered min -> 1381/1440
    t0 = ms("2020-05-01T00:00")
    lake.write(OCCUPANCY, [occ(t0 + i * 60_000, 8, 4) for i in range(60) if i != 10])
    r = one(lake.report(period="day", by="scope"))
    assert r["period"] == "2020-05-01" and r["scope"] == "vcA"
    assert r["capacity_gpu_h"] == approx(8 * 59 / 60)
    assert r["allocated_gpu_h"] == approx(4 * 59 / 60)
    assert r["allocation_rate"] == approx(0.5)
    assert r["idle_capacity_gpu_h"] == approx(4 * 59 / 60)
    assert r["no_telemetry_share"] == approx(1381 / 1440)
    assert r["busy_gpu_h"] is None and r["utilisation"] is None and r["efficiency"] is None
    assert r["sources"] == "capacity=occupancy;allocated=occupancy;busy=none"


def test_no_telemetry_share_of_a_gap_in_a_full_day(lake: Lake) -> None:
    # 1-minute snapshots over the whole local day except a 240-minute gap (10:00-14:00):
    # uncovered 240/1440 = 1/6 (the same ratio as a 10-minute gap in one hour)
    t0 = ms("2020-05-01T00:00")
    lake.write(OCCUPANCY, [occ(t0 + i * 60_000, 2, 1) for i in range(1440) if not 600 <= i < 840])
    r = one(lake.report(period="day", by="cluster"))
    assert r["no_telemetry_share"] == approx(1 / 6)
    assert r["capacity_gpu_h"] == approx(2 * 20)


def test_sample_interval_longer_than_the_gap_to_the_next(lake: Lake) -> None:
    # 00:00 util 0.5 interval 300 s, but the next sample is at 00:01 -> covers 60 s only;
    # 00:01 util 1.0 interval 60 s -> covers 60 s. Samples only, so capacity = coverage:
    # capacity = 120 s = 1/30 GPU-h; busy = (0.5 x 60 + 1.0 x 60) / 3600 = 0.025 GPU-h
    lake.write(
        GPU_SAMPLE,
        [
            smp("2020-05-01T00:00", "g0", 0.5, interval=300),
            smp("2020-05-01T00:01", "g0", 1.0, interval=60),
        ],
    )
    r = one(lake.report(period="day", by="cluster"))
    assert r["capacity_gpu_h"] == approx(1 / 30)
    assert r["busy_gpu_h"] == approx(0.025)
    assert r["utilisation"] == approx(0.75)
    assert r["allocated_gpu_h"] is None and r["allocation_rate"] is None
    assert r["sources"] == "capacity=gpu_samples;allocated=none;busy=gpu_samples"


# ------------------------------------------------------------------------------- periods


def _may_june(lake: Lake) -> None:
    # 2 GPUs from 2020-05-31 20:00 to 2020-06-01 04:00 (+08): 4 h in May, 4 h in June local.
    # In UTC it is 2020-05-31 12:00-20:00: all 8 h in May.
    lake.write(ALLOCATION, [alloc("a1", "2020-05-31T20:00", "2020-06-01T04:00", 2)])
    # capacity: one node of 4 GPUs for the whole of May and June (local)
    lake.write(INVENTORY, [inv("n1", "2020-05-01T00:00", "2020-07-01T00:00", 4)])


def test_allocation_crossing_may_june_is_clipped_per_local_month(lake: Lake) -> None:
    _may_june(lake)
    got = lake.report(period="month", by="cluster")
    # May: 2 GPUs x 4 h = 8 GPU-h of 4 x 744 h = 2976; June: 8 of 4 x 720 h = 2880
    assert [(r["period"], r["allocated_gpu_h"], r["capacity_gpu_h"]) for r in got] == [
        ("2020-05", approx(8.0), approx(2976.0)),
        ("2020-06", approx(8.0), approx(2880.0)),
    ]
    assert got[0]["allocation_rate"] == approx(8 / 2976)
    assert got[0]["no_telemetry_share"] == approx(0.0)  # the node is in inventory all month
    assert got[0]["sources"] == "capacity=inventory;allocated=allocation;busy=none"
    assert got[0]["busy_gpu_h"] is None and got[0]["busy_allocated_gpu_h"] is None


def test_day_periods_clip_the_same_allocation(lake: Lake) -> None:
    _may_june(lake)
    got = lake.report(period="day", by="cluster")
    # the window is the local dates the data touches: May 31 and June 1
    assert [(r["period"], r["allocated_gpu_h"], r["capacity_gpu_h"]) for r in got] == [
        ("2020-05-31", approx(8.0), approx(96.0)),
        ("2020-06-01", approx(8.0), approx(96.0)),
    ]


def test_utc_puts_the_whole_allocation_in_may(lake: Lake) -> None:
    _may_june(lake)
    got = lake.report(period="month", by="cluster", tz="UTC")
    # the data (allocation events) lie in May UTC only, so only May; capacity: the node is
    # valid from 2020-04-30 16:00Z, i.e. all of May UTC = 4 x 744 h
    assert [(r["period"], r["allocated_gpu_h"], r["capacity_gpu_h"]) for r in got] == [
        ("2020-05", approx(16.0), approx(2976.0)),
    ]


def test_explicit_dates_clip_the_month(lake: Lake) -> None:
    _may_june(lake)
    got = lake.report(
        period="month", by="cluster", date_from=date(2020, 5, 31), date_to=date(2020, 6, 30)
    )
    # "2020-05" is May 31 only: 4 GPUs x 24 h = 96 capacity, 8 allocated
    assert [(r["period"], r["capacity_gpu_h"]) for r in got] == [
        ("2020-05", approx(96.0)),
        ("2020-06", approx(2880.0)),
    ]


def test_timezone_moves_a_sample_across_the_day_boundary(lake: Lake) -> None:
    # 2020-05-02 01:00 +08 = 2020-05-01 17:00 UTC; 30 min of util 1.0 = 0.5 busy GPU-h
    lake.write(GPU_SAMPLE, [smp("2020-05-02T01:00", "g0", 1.0, interval=1800)])
    shanghai = lake.report(period="day", by="cluster")
    utc = lake.report(period="day", by="cluster", tz="UTC")
    assert [(r["period"], r["busy_gpu_h"]) for r in shanghai] == [("2020-05-02", approx(0.5))]
    assert [(r["period"], r["busy_gpu_h"]) for r in utc] == [("2020-05-01", approx(0.5))]


def test_day_rows_add_up_to_the_month(lake: Lake) -> None:
    t0 = ms("2020-05-01T00:00")
    # hourly snapshots for 3 days with gpus_allocated cycling 0..5 of 6; a 2-hour gap on day 2
    lake.write(
        OCCUPANCY,
        [occ(t0 + i * H, 6, i % 6, interval=3600) for i in range(72) if i not in (30, 31)],
    )
    assert [r["period"] for r in lake.report(period="day", by="cluster")] == [
        "2020-05-01",
        "2020-05-02",
        "2020-05-03",
    ]  # the days the data touches
    days = lake.report(period="day", by="cluster", date_from=DAY1, date_to=date(2020, 5, 31))
    month = one(lake.report(period="month", by="cluster"))  # the whole month the data touches
    assert len(days) == 31  # silent days are rows too
    assert sum(r["capacity_gpu_h"] for r in days) == approx(month["capacity_gpu_h"])
    assert sum(r["allocated_gpu_h"] for r in days) == approx(month["allocated_gpu_h"])
    assert month["capacity_gpu_h"] == approx(6 * 70)
    silent = one(days, period="2020-05-04")
    assert silent["capacity_gpu_h"] == 0 and silent["no_telemetry_share"] == approx(1.0)
    assert silent["allocation_rate"] is None
    assert one(days, period="2020-05-02")["no_telemetry_share"] == approx(2 / 24)
    # month: 70 covered hours of 744
    assert month["no_telemetry_share"] == approx(1 - 70 / 744)


# ------------------------------------------------------------------------------- precedence


def test_source_precedence_per_cluster(lake: Lake) -> None:
    d = "2020-05-01T"
    # cA: occupancy (10 total / 6 allocated, 24 hourly snapshots) + inventory + samples +
    #     allocations -> capacity 10 x 24 = 240 from occupancy (not inventory's 8 x 24 = 192),
    #     allocated from the allocation: 2 GPUs x 6 h = 12 (not occupancy's 6 x 24 = 144)
    lake.write(
        OCCUPANCY,
        [occ(f"{d}{h:02d}:00", 10, 6, interval=3600, cluster="cA", scope=None) for h in range(24)],
    )
    lake.write(INVENTORY, [inv("a1", "2020-04-01T00:00", None, 8, cluster="cA")])
    lake.write(GPU_SAMPLE, [smp(f"{d}00:00", "a-g0", 1.0, cluster="cA")])
    lake.write(ALLOCATION, [alloc("A1", f"{d}00:00", f"{d}06:00", 2, cluster="cA")])
    # cB: inventory + samples -> capacity from inventory: b1 8 GPUs all day (open validity)
    #     = 192, b2 4 GPUs from 12:00 = 48 -> 240. No telemetry: b1 0, b2 12/24 -> mean 0.25.
    #     busy: 2 h at util 0.5 = 1.0
    lake.write(
        INVENTORY,
        [
            inv("b1", "2020-04-01T00:00", None, 8, cluster="cB"),
            inv("b2", f"{d}12:00", None, 4, cluster="cB"),
        ],
    )
    lake.write(
        GPU_SAMPLE,
        [smp(f"{d}00:00", "b-g0", 0.5, cluster="cB"), smp(f"{d}01:00", "b-g0", 0.5, cluster="cB")],
    )
    # cC: samples only -> capacity = GPU coverage: c-g0 2 h + c-g1 1 h = 3 GPU-h;
    #     busy = 0.25 x 2 h = 0.5 (c-g1's util is NULL: covered, but adds no busy);
    #     no telemetry = 1 - 3 / (2 GPUs x 24 h) = 0.9375
    lake.write(
        GPU_SAMPLE,
        [
            smp(f"{d}00:00", "c-g0", 0.25, cluster="cC"),
            smp(f"{d}01:00", "c-g0", 0.25, cluster="cC"),
            smp(f"{d}00:00", "c-g1", None, cluster="cC"),
        ],
    )
    # cD: occupancy only, one snapshot of 1 h: capacity 4, allocated 1, no telemetry 23/24
    lake.write(OCCUPANCY, [occ(f"{d}00:00", 4, 1, interval=3600, cluster="cD", scope=None)])

    got = lake.report(period="day", by="cluster", date_from=DAY1, date_to=DAY1)
    a, b, c, dd = (one(got, cluster=x) for x in ("cA", "cB", "cC", "cD"))
    assert (a["capacity_gpu_h"], a["allocated_gpu_h"], a["busy_gpu_h"]) == (
        approx(240),
        approx(12),
        approx(1.0),
    )
    assert a["sources"] == "capacity=occupancy;allocated=allocation;busy=gpu_samples"
    assert a["no_telemetry_share"] == approx(0.0)
    assert (b["capacity_gpu_h"], b["allocated_gpu_h"], b["busy_gpu_h"]) == (
        approx(240),
        None,
        approx(1.0),
    )
    assert b["sources"] == "capacity=inventory;allocated=none;busy=gpu_samples"
    assert b["no_telemetry_share"] == approx(0.25)
    assert b["utilisation"] == approx(1 / 240)
    assert (c["capacity_gpu_h"], c["busy_gpu_h"], c["utilisation"]) == (
        approx(3),
        approx(0.5),
        approx(0.5 / 3),
    )
    assert c["sources"] == "capacity=gpu_samples;allocated=none;busy=gpu_samples"
    assert c["no_telemetry_share"] == approx(0.9375)
    assert (dd["capacity_gpu_h"], dd["allocated_gpu_h"], dd["allocation_rate"]) == (
        approx(4),
        approx(1),
        approx(0.25),
    )
    assert dd["sources"] == "capacity=occupancy;allocated=occupancy;busy=none"
    assert dd["no_telemetry_share"] == approx(23 / 24)

    # by datacentre: sums of the cluster rows, sources joined; units pooled:
    # cA 1 scope (0 h missing), cB 2 nodes (12 h), cC 2 GPUs (45 h), cD 1 scope (23 h)
    dc = one(lake.report(period="day", by="datacentre", date_from=DAY1, date_to=DAY1))
    assert dc["cluster"] is None and dc["scope"] is None
    assert dc["capacity_gpu_h"] == approx(240 + 240 + 3 + 4)
    assert dc["allocated_gpu_h"] == approx(12 + 1)
    assert dc["busy_gpu_h"] == approx(1.0 + 1.0 + 0.5)
    assert dc["no_telemetry_share"] == approx((0 + 12 + 45 + 23) / (6 * 24))
    assert dc["sources"] == (
        "capacity=gpu_samples+inventory+occupancy;"
        "allocated=allocation+none+occupancy;busy=gpu_samples+none"
    )

    # by scope: these clusters name no scopes, so their cluster rows come back with scope NULL
    assert [
        (r["cluster"], r["scope"], r["capacity_gpu_h"])
        for r in lake.report(period="day", by="scope", date_from=DAY1, date_to=DAY1)
    ] == [(r["cluster"], None, r["capacity_gpu_h"]) for r in got]


def test_by_scope_and_by_cluster(lake: Lake) -> None:
    # two scopes of one cluster, one hourly snapshot each at 00:00 and 01:00:
    # vcA 8 total / 8 allocated, vcB 4 total / 1 allocated
    lake.write(
        OCCUPANCY,
        [occ(f"2020-05-01T{h:02d}:00", 8, 8, interval=3600, scope="vcA") for h in (0, 1)]
        + [occ(f"2020-05-01T{h:02d}:00", 4, 1, interval=3600, scope="vcB") for h in (0, 1)],
    )
    scopes = lake.report(period="month", by="scope")
    assert [(r["scope"], r["capacity_gpu_h"], r["allocation_rate"]) for r in scopes] == [
        ("vcA", approx(16), approx(1.0)),
        ("vcB", approx(8), approx(0.25)),
    ]
    cluster = one(lake.report(period="month", by="cluster"))
    # 24 capacity, 18 allocated; no telemetry = mean over the 2 scopes of 1 - 2/744
    assert (cluster["capacity_gpu_h"], cluster["allocated_gpu_h"]) == (approx(24), approx(18))
    assert cluster["scope"] is None and cluster["cluster"] == "c1"
    assert cluster["no_telemetry_share"] == approx(1 - 2 / 744)


# ------------------------------------------------------------------------------- busy


def test_busy_allocated_only_on_held_gpus_jobs_and_pods(lake: Lake) -> None:
    d = "2020-05-01T"
    lake.write(
        GPU_SAMPLE,
        [
            # e0 (held by E1 via gpu_uuids) util 0.8 and e1 (not held) util 0.4, 2 h each
            smp(f"{d}00:00", "e0", 0.8),
            smp(f"{d}01:00", "e0", 0.8),
            smp(f"{d}00:00", "e1", 0.4),
            smp(f"{d}01:00", "e1", 0.4),
            # e2: pod named like E2's job id -> held; 1 h at 0.5
            smp(f"{d}00:00", "e2", 0.5, pod="job-7"),
            # e3: job-9 is E3's job, but E3 only starts at 05:00 -> not held at 00:00; 1 h at 1.0
            smp(f"{d}00:00", "e3", 1.0, job_id="job-9"),
            # e4: job_id of E4, active 00:00-01:00 -> held; 1 h at 0.2
            smp(f"{d}00:00", "e4", 0.2, job_id="job-8"),
        ],
    )
    lake.write(
        ALLOCATION,
        [
            alloc("E1", f"{d}00:00", f"{d}02:00", 1, gpu_uuids=["e0"]),  # 2 GPU-h
            alloc("E2", f"{d}00:00", f"{d}01:00", 1, job_id="job-7"),  # 1
            alloc("E3", f"{d}05:00", f"{d}06:00", 1, job_id="job-9"),  # 1
            alloc("E4", f"{d}00:00", f"{d}01:00", 1, job_id="job-8"),  # 1
            # another cluster holds e1 at the same time: does not count here
            alloc("X1", f"{d}00:00", f"{d}02:00", 1, gpu_uuids=["e1"], cluster="other"),
        ],
    )
    r = one(lake.report(period="day", by="cluster", date_from=DAY1, date_to=DAY1), cluster="c1")
    # busy = 0.8x2 + 0.4x2 + 0.5 + 1.0 + 0.2 = 4.1; held: 1.6 + 0.5 + 0.2 = 2.3
    # allocated = 2 + 1 + 1 + 1 = 5; capacity (samples) = 2 + 2 + 1 + 1 + 1 = 7 GPU-h
    assert r["busy_gpu_h"] == approx(4.1)
    assert r["busy_allocated_gpu_h"] == approx(2.3)
    assert r["allocated_gpu_h"] == approx(5)
    assert r["capacity_gpu_h"] == approx(7)
    assert r["efficiency"] == approx(2.3 / 5)
    assert r["idle_held_gpu_h"] == approx(5 - 2.3)
    assert r["idle_capacity_gpu_h"] == approx(2)
    assert r["utilisation"] == approx(4.1 / 7)
    assert r["allocation_rate"] == approx(5 / 7)
    assert r["sources"] == "capacity=gpu_samples;allocated=allocation;busy=gpu_samples"


def test_two_gpus_one_allocated(lake: Lake) -> None:
    # 1 h each: g0 held by the allocation (util 0.9), g1 not held (util 0.3)
    lake.write(GPU_SAMPLE, [smp("2020-05-01T00:00", "g0", 0.9), smp("2020-05-01T00:00", "g1", 0.3)])
    lake.write(
        ALLOCATION, [alloc("a", "2020-05-01T00:00", "2020-05-01T01:00", 1, gpu_uuids=["g0"])]
    )
    r = one(lake.report(period="day", by="cluster"))
    # busy 1.2, busy-allocated 0.9, allocated 1 -> efficiency 0.9, idle-held 0.1
    assert (r["busy_gpu_h"], r["busy_allocated_gpu_h"], r["efficiency"], r["idle_held_gpu_h"]) == (
        approx(1.2),
        approx(0.9),
        approx(0.9),
        approx(0.1),
    )


def test_overlapping_holds_count_a_sample_once(lake: Lake) -> None:
    d = "2020-05-01T"
    # g0 sampled hourly 00:00 ... 04:00 at util 1.0: busy 5 GPU-h
    lake.write(GPU_SAMPLE, [smp(f"{d}{h:02d}:00", "g0", 1.0, job_id="j1") for h in range(5)])
    lake.write(
        ALLOCATION,
        [
            # A holds g0 (and is job j1) 00:00-04:00; B holds g0 01:00-02:00 inside A
            alloc("A", f"{d}00:00", f"{d}04:00", 1, gpu_uuids=["g0"], job_id="j1"),
            alloc("B", f"{d}01:00", f"{d}02:00", 1, gpu_uuids=["g0"]),
        ],
    )
    r = one(lake.report(period="day", by="cluster"))
    # held at 00, 01 (by A via gpu and job, and by B), 02, 03: 4 GPU-h, each counted once;
    # 04:00 is not held (A ends at 04:00). Allocated: A 4 + B 1 = 5
    assert r["busy_gpu_h"] == approx(5.0)
    assert r["busy_allocated_gpu_h"] == approx(4.0)
    assert r["allocated_gpu_h"] == approx(5.0)
    assert r["efficiency"] == approx(0.8)


def test_coverage_views_keep_the_same_copy_as_the_dedup_views(lake: Lake) -> None:
    lake.write(
        GPU_SAMPLE,
        [
            smp("2020-05-01T00:00", "g0", 0.1),
            smp("2020-05-01T00:00", "g0", 0.2),
            smp("2020-05-01T01:00", "g0", 0.3),
        ],
        "part-b",
    )
    lake.write(
        GPU_SAMPLE,
        [smp("2020-05-01T00:00", "g0", 0.4), smp("2020-05-01T01:00", "g0", 0.3)],
        "part-a",
    )
    lake.write(OCCUPANCY, [occ("2020-05-01T00:00", 4, 1), occ("2020-05-01T00:00", 4, 3)], "x")
    lake.write(INVENTORY, [inv("n1", "2020-05-01T00:00", None, 2)], "part-b")
    lake.write(INVENTORY, [inv("n1", "2020-05-01T00:00", None, 8)], "part-a")
    con = connect(lake.root, ":memory:")
    pairs = [
        (
            "SELECT epoch_ms(ts), util FROM gpu_samples",
            "SELECT s_ms, util FROM gpu_sample_coverage",
        ),
        (
            "SELECT epoch_ms(ts), gpus_allocated FROM occupancy",
            "SELECT s_ms, gpus_allocated FROM occupancy_coverage",
        ),
        (
            "SELECT epoch_ms(valid_from), gpu_count FROM inventory",
            "SELECT s_ms, gpu_count FROM inventory_coverage",
        ),
    ]
    for dedup, coverage in pairs:
        assert sorted(con.execute(dedup).fetchall()) == sorted(con.execute(coverage).fetchall())
    # part-a was committed after part-b: its 00:00 copy (0.4) wins whatever the names say;
    # within one commit the last row wins (occupancy)
    assert sorted(con.execute(pairs[0][1]).fetchall())[0][1] == 0.4
    assert con.execute(pairs[1][1]).fetchall()[0][1] == 3
    assert con.execute(pairs[2][1]).fetchall()[0][1] == 8


def test_duplicates_are_counted_once(lake: Lake) -> None:
    same = smp("2020-05-01T00:00", "g0", 0.3)
    lake.write(GPU_SAMPLE, [same, smp("2020-05-01T01:00", "g0", 0.2)], "part-a")
    lake.write(GPU_SAMPLE, [same, smp("2020-05-01T01:00", "g0", 0.6)], "part-b")  # later file
    lake.write(OCCUPANCY, [occ("2020-05-01T00:00", 4, 2, interval=3600)] * 2, "part-c")
    r = one(lake.report(period="day", by="cluster"))
    # capacity (occupancy, once) = 4; busy = 0.3 + 0.6 (the last written) = 0.9, not 1.4 or 1.1
    assert r["capacity_gpu_h"] == approx(4.0)
    assert r["allocated_gpu_h"] == approx(2.0)
    assert r["busy_gpu_h"] == approx(0.9)


def test_running_allocation_counts_up_to_the_newest_evidence(lake: Lake) -> None:
    d = "2020-05-01T"
    # hourly snapshots 00:00 ... 09:00 -> the newest covers up to 10:00 (the horizon)
    lake.write(OCCUPANCY, [occ(f"{d}{h:02d}:00", 8, 3, interval=3600) for h in range(10)])
    lake.write(
        ALLOCATION,
        [
            # R: pending at 01:00, running from 02:00, no end: 3 GPUs x (10:00 - 02:00) = 24
            alloc("R", None, None, 3, event=f"{d}01:00", state="PENDING"),
            alloc("R", f"{d}02:00", None, 3, event=f"{d}02:00"),
            # S: running at 03:00, completed at 05:00: 1 GPU x 2 h = 2
            alloc("S", f"{d}03:00", None, 1, event=f"{d}03:00"),
            alloc("S", f"{d}03:00", f"{d}05:00", 1, event=f"{d}05:00", state="COMPLETED"),
        ],
    )
    r = one(lake.report(period="day", by="cluster", date_from=DAY1, date_to=DAY1))
    assert r["allocated_gpu_h"] == approx(26.0)
    assert r["capacity_gpu_h"] == approx(80.0)
    assert r["sources"] == "capacity=occupancy;allocated=allocation;busy=none"


def test_empty_lake_and_argument_checks(tmp_path: Path) -> None:
    con = connect(tmp_path, ":memory:")
    assert utilisation_report(con, period="month", by="cluster") == []
    with pytest.raises(ValueError):
        utilisation_report(con, period="week", by="cluster")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time zone"):
        utilisation_report(con, period="day", by="cluster", tz="Mars/Base")
    with pytest.raises(ValueError):
        utilisation_report(
            con, period="day", by="cluster", date_from=date(2020, 5, 2), date_to=date(2020, 5, 1)
        )


# ------------------------------------------------------------------------------- output


def test_json_csv_and_table_output(lake: Lake) -> None:
    lake.write(OCCUPANCY, [occ("2020-05-01T00:00", 8, 2, interval=3600)])
    got = lake.report(period="month", by="scope")
    assert tuple(got[0]) == UTILISATION_COLUMNS
    as_json = json.loads(render(got, "json"))
    assert as_json[0]["period"] == "2020-05" and as_json[0]["busy_gpu_h"] is None
    assert as_json[0]["allocation_rate"] == approx(0.25)
    assert tuple(as_json[0]) == UTILISATION_COLUMNS
    parsed = list(csv.DictReader(io.StringIO(render(got, "csv"))))
    assert tuple(parsed[0]) == UTILISATION_COLUMNS
    assert parsed[0]["busy_gpu_h"] == "" and float(parsed[0]["capacity_gpu_h"]) == 8.0
    assert parsed[0]["sources"] == "capacity=occupancy;allocated=occupancy;busy=none"
    table = render(got, "table").splitlines()
    assert table[0].split()[:4] == ["period", "datacentre", "cluster", "scope"]
    assert table[2].split()[:3] == ["2020-05", "dc1", "c1"]
    with pytest.raises(ValueError):
        render(got, "xml")


# ------------------------------------------------------------------------------- real data


def helios_dir() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "helios"


HELIOS_VCS = ("vcvlY", "vchbv")


def _helios_rows(vc: str) -> list[dict[str, str]]:
    path = helios_dir() / "earth_vc_sequences_2020-05" / f"{vc}_cluster_sequence_vc.csv.gz"
    if not path.is_file():
        pytest.skip(f"Helios data not found at {path}")
    with gzip.open(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def test_helios_earth_may_2020_allocation_rate_per_vc(tmp_path: Path) -> None:
    """Per VC, the month's allocation rate is Σ running / Σ total over the minute rows: every
    row covers exactly 60 s, so the GPU-hour ratio equals the plain ratio of sums."""
    shanghai = ZoneInfo("Asia/Shanghai")
    expected: dict[str, tuple[float, float]] = {}
    for vc in HELIOS_VCS:
        rows = _helios_rows(vc)
        assert len(rows) == 31 * 1440
        records = [
            coerce(
                OCCUPANCY,
                dict(
                    ts=int(
                        datetime.fromisoformat(r["time"]).replace(tzinfo=shanghai).timestamp()
                        * 1000
                    ),
                    interval_s=60,
                    datacentre="helios",
                    cluster="earth",
                    scope=vc,
                    gpus_total=float(r["total_gpu_num"]),
                    gpus_allocated=float(r["running_gpu_num"]),
                    source="replay:helios",
                ),
            )
            for r in rows
        ]
        write_records(tmp_path, OCCUPANCY, records, f"helios-{vc}")
        running = sum(int(r["running_gpu_num"]) for r in rows)
        total = sum(int(r["total_gpu_num"]) for r in rows)
        expected[vc] = (running / total, total / 60)
    con = connect(tmp_path, ":memory:")
    got = utilisation_report(con, period="month", by="scope")
    assert [(r["period"], r["scope"]) for r in got] == [
        ("2020-05", vc) for vc in sorted(HELIOS_VCS)
    ]
    for r in got:
        rate, capacity = expected[r["scope"]]
        assert abs(r["allocation_rate"] - rate) < 1e-9
        assert r["capacity_gpu_h"] == approx(capacity, rel=1e-12)
        assert r["no_telemetry_share"] == approx(0.0, abs=1e-12)
    # The SC '21 Figure 4 means (May 10 excluded; data README): vcvlY 69.6 %, vchbv 42.5 %.
    # Both VCs keep a constant size all month, so the mean of the minute rates is the ratio of
    # the day rows' sums.
    days = utilisation_report(con, period="day", by="scope")
    assert len(days) == 31 * len(HELIOS_VCS)
    for vc, published in (("vcvlY", 69.6), ("vchbv", 42.5)):
        kept = [r for r in days if r["scope"] == vc and r["period"] != "2020-05-10"]
        share = sum(r["allocated_gpu_h"] for r in kept) / sum(r["capacity_gpu_h"] for r in kept)
        assert round(100 * share, 1) == published
    # whole cluster = Σ over the two VCs
    cluster = one(utilisation_report(con, period="month", by="cluster"))
    assert cluster["capacity_gpu_h"] == approx(sum(c for _, c in expected.values()), rel=1e-12)
