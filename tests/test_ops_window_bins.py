"""The operator surfaces' windows read the rollup bins of fresh partitions for their whole
15-minute bins and raw samples elsewhere, and the newest sample instant comes from the bins
before the bin holding now: the same figures as the raw path, on and off bin edges, across
midnight, with stale partitions next to fresh ones."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.records import GPU_SAMPLE, coerce
from pipeline.write import write_records
from warehouse.catalog import connect, load_sql
from warehouse.catalog.rollup_build import build_rollups
from warehouse.ops import fleet

D1 = 1_779_926_400_000  # 2026-05-28T00:00Z
H, M = 3_600_000, 60_000
START, END = D1 - 4 * H, D1 + 26 * H  # samples from 05-27 20:00 to 05-29 02:00 UTC


def smp(ts: int, gpu: str, util: float | None, dc: str, cluster: str, iv: float) -> dict:
    return coerce(
        GPU_SAMPLE,
        {
            "ts": ts,
            "interval_s": iv,
            "datacentre": dc,
            "cluster": cluster,
            "node": "n1",
            "gpu_uuid": gpu,
            "util": util,
            "source": "test",
        },
    )


def samples() -> list[dict]:
    """dc2/k1: g0 every 2 min (an hour's gap at 05-28 05:00), g1 jittered by 7 s with a
    longer interval than its spacing, g2 util unknown one sample in three; dc2/k2: util never
    known (busy is NULL); dc3/k1: every 5 minutes."""
    out = []
    for i, ts in enumerate(range(START, END, 2 * M)):
        if not D1 + 5 * H <= ts < D1 + 6 * H:
            out.append(smp(ts, "g0", (i % 10) / 10, "dc2", "k1", 120.0))
        out.append(smp(ts + 7_000, "g1", 0.25 + (i % 3) / 4, "dc2", "k1", 150.0))
        out.append(smp(ts, "g2", None if i % 3 == 0 else 0.6, "dc2", "k1", 120.0))
        out.append(smp(ts, "g9", None, "dc2", "k2", 120.0))
    out += [smp(ts, "g5", 0.9, "dc3", "k1", 300.0) for ts in range(START, END, 5 * M)]
    return out


WINDOWS = [  # (now, window_s)
    (D1 + 2 * H, 3 * 3600.0),  # on bin edges, across midnight
    (D1 + 2 * H + 7 * M + 13_005, 3 * 3600.0 + 11.5),  # off both edges
    (D1 + H + 20 * M, 3600.0),  # off both edges, three whole bins
    (D1 + 26 * H, 30 * 3600.0),  # the whole trace
    (D1 + 27 * H + 3 * M, 2 * 3600.0),  # past the end of the data
    (D1 + 5 * M, 600.0),  # no whole bin: the raw query
    (D1 + 14 * M, 1200.0),  # no whole bin either (both edges in one bin)
    (D1 + 60 * H, 3600.0),  # a day with no partition (a live hour of today's): the raw query
]


@pytest.fixture(scope="module")
def rolled_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("ops-bins") / "lake"
    write_records(lake, GPU_SAMPLE, samples(), "smp", origin="test")
    assert build_rollups(lake).partitions == 6  # dc2 and dc3: 05-27, 05-28, 05-29
    return lake


def figures(con: Any, now: int, window_s: float) -> dict[tuple[str, str, str], tuple]:
    rows = fleet.fleet_window(con, now, window_s)
    return {
        (r.datacentre, r.cluster, r.scope): (r.capacity_s, r.allocated_s, r.busy_s) for r in rows
    }


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and got
    for key, values in want.items():
        for a, b in zip(got[key], values, strict=True):
            if b is None:
                assert a is None, (key, got[key], values)
            else:
                assert a is not None and math.isclose(a, b, rel_tol=1e-9), (key, got[key], values)


def check_windows(lake: Path) -> list[fleet.WindowQuery]:
    bins, raw = fleet.connect_ops(lake), connect(lake, ":memory:", rollups=False)
    try:
        queries = [fleet.window_query(bins, now, w) for now, w in WINDOWS]
        for now, w in WINDOWS:
            assert_same(figures(bins, now, w), figures(raw, now, w))
        # the old raw query on the rolled-up connection gives the same figures too
        q = fleet.window_query(bins, *WINDOWS[1])
        params = {k: q.params[k] for k in ("w0_ms", "w1_ms", "lo_ms")}
        old = bins.execute(load_sql("ops_fleet_window"), params).fetchall()
        assert_same(figures(bins, *WINDOWS[1]), {r[:3]: r[3:] for r in old})
        assert figures(bins, *WINDOWS[0])[("dc2", "k2", "")][2] is None  # util never known
        assert not fleet.window_query(raw, *WINDOWS[0]).from_bins  # a plain catalogue
        # the newest sample instant, from the bins before the bin holding now (at :15 and :45
        # no sample has come in that bin yet)
        instants = (START - M, START + 7_000, D1 - 45 * M + 3_000, D1 + 7 * M, D1 + 315 * M + 5)
        for now in (*instants, END + H):
            assert fleet.telemetry_newest(bins, now) == fleet.telemetry_newest(raw, now), now
    finally:
        bins.close()
        raw.close()
    return queries


def test_windows_from_fresh_bins_equal_the_raw_path(rolled_lake: Path) -> None:
    queries = check_windows(rolled_lake)
    assert [q.from_bins for q in queries] == [True] * 5 + [False] * 3
    for q in queries[:5]:  # every partition fresh: no raw sample read inside the whole bins
        assert q.params["m0_ms"] == q.params["m1_ms"]
    # without rollups the raw query runs
    con = fleet.connect_ops(rolled_lake, rollups=False)
    try:
        assert not fleet.window_query(con, *WINDOWS[0]).from_bins
    finally:
        con.close()


def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node["extra_info"]] if node.get("name") == "READ_PARQUET" else []
    return found + [s for child in node.get("children", []) for s in scans(child)]


def test_the_bins_query_reads_the_stored_bins_and_filters_the_raw_scans(
    rolled_lake: Path,
) -> None:
    con = fleet.connect_ops(rolled_lake)
    try:
        q = fleet.window_query(con, *WINDOWS[0])
        plan = con.execute("EXPLAIN (FORMAT json) " + load_sql(q.sql), q.params).fetchall()
    finally:
        con.close()
    read = [s for node in json.loads(plan[0][1]) for s in scans(node)]
    stored = [s for s in read if "cov_ms" in s["Projections"]]
    assert len(stored) == 1 and "bin_ms>=" in filters(stored[0]), stored
    # raw samples near the two edges only: every partition is fresh, the middle scan is empty
    raw = [s for s in read if "util" in s["Projections"]]
    assert len(raw) == 2 and all("ts>=" in filters(s) and "ts<" in filters(s) for s in raw), raw


def filters(scan: dict[str, Any]) -> str:
    found = scan.get("Filters", "")
    return found if isinstance(found, str) else " ".join(found)


def test_stale_partitions_next_to_fresh_ones_read_their_raw_samples(
    rolled_lake: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(rolled_lake, lake)
    # a corrected copy in dc2 on 05-28: dc2's 05-27 and 05-28 go stale, dc3's stay fresh
    write_records(lake, GPU_SAMPLE, [smp(D1 + 2 * M, "g0", 0.05, "dc2", "k1", 120.0)], "fix")
    queries = check_windows(lake)
    assert [q.from_bins for q in queries] == [True] * 5 + [False] * 3
    q = queries[0]
    assert q.params["m0_ms"] == q.params["lo_ms"] and q.params["m1_ms"] == q.params["b1_ms"]
