"""The GPU-sample rollup: reports read from it equal the raw path (every sample clipped to every
period, over raw rows only) on every test lake, in time zones whose day boundaries cut UTC hours,
and late or corrected data re-rolls exactly the partitions it touched."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from collectors.replay.genai import GenaiReplay
from collectors.replay.helios import HeliosReplay
from collectors.replay.openb import OpenbReplay
from collectors.run import run_collector
from pipeline.backfill import LakeSink
from pipeline.records import ALLOCATION, GPU_SAMPLE
from pipeline.write import write_records
from tests.conftest import gpu_sample, shared_data
from warehouse.catalog import connect, refresh_with_state
from warehouse.catalog.rollup_build import build_rollups
from warehouse.reports.utilisation import utilisation_report
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec
from warehouse.vouchers.scenario.write import write_scenario

ZONES = ("Asia/Shanghai", "Australia/Adelaide", "UTC")
CASES = [("day", "cluster", tz) for tz in ZONES] + [("month", "datacentre", tz) for tz in ZONES]


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b) and a, (len(a), len(b))
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k, va in ra.items():
            vb = rb[k]
            if isinstance(va, float) and isinstance(vb, float):
                assert math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-9), (k, va, vb, ra)
            else:
                assert va == vb, (k, va, vb, ra)


def raw_report(lake: Path, **kw: Any) -> list[dict[str, Any]]:
    return utilisation_report(connect(lake, ":memory:", rollups=False), source="samples", **kw)


def assert_paths_agree(lake: Path, cases: list[tuple[str, str, str]] = CASES) -> None:
    con = connect(lake, ":memory:")
    for period, by, tz in cases:
        kw: dict[str, Any] = {"period": period, "by": by, "tz": tz}
        same(utilisation_report(con, **kw), raw_report(lake, **kw))


def fresh_share(lake: Path) -> tuple[int, int]:
    import duckdb

    _, state = refresh_with_state(duckdb.connect(), lake)
    return len(state.fresh), len(state.stats)


@pytest.fixture(scope="module")
def scenario_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenario")
    spec = ScenarioSpec(months=3, programme_month=1, nodes_per_dc=1, sample_interval_s=1800)
    write_scenario(build_scenario(spec), out)
    return out / "lake"


def test_scenario_rollup_equals_raw_path(scenario_lake: Path) -> None:
    result = build_rollups(scenario_lake)
    fresh, total = fresh_share(scenario_lake)
    assert result.partitions == total and fresh == total > 0
    assert build_rollups(scenario_lake).partitions == 0  # nothing changed: nothing re-rolled
    assert_paths_agree(scenario_lake)
    # a custom window cutting months, in a half-hour zone
    kw: dict[str, Any] = {"period": "month", "by": "cluster", "tz": "Australia/Adelaide"}
    kw |= {"date_from": dt.date(2026, 3, 10), "date_to": dt.date(2026, 4, 20)}
    same(
        utilisation_report(connect(scenario_lake, ":memory:"), **kw),
        raw_report(scenario_lake, **kw),
    )


def test_late_and_corrected_data_re_roll_exactly_what_they_touch(
    scenario_lake: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(scenario_lake, lake)
    build_rollups(lake)
    con = connect(lake, ":memory:")
    [(dc, cluster, gpu, node)] = con.execute(
        "SELECT datacentre, cluster, gpu_uuid, node FROM gpu_samples ORDER BY ALL LIMIT 1"
    ).fetchall()
    day = dt.datetime(2026, 4, 3, tzinfo=dt.UTC)
    ms = int(day.timestamp() * 1000)
    common = {"datacentre": dc, "cluster": cluster, "node": node, "interval_s": 1800.0}
    late = [
        # a new sample early on 04-03 ends the coverage of 04-02's last sample: both re-roll
        gpu_sample(ms + 60_000, gpu, 0.9, **common),
        # a corrected copy (same key, other payload) on 04-05
        gpu_sample(ms + 2 * 86_400_000, gpu, 0.01, **common),
    ]
    write_records(lake, GPU_SAMPLE, late, "late-1")
    fresh, total = fresh_share(lake)
    assert total - fresh == 3  # 04-02, 04-03, 04-05
    assert_paths_agree(lake, [("day", "cluster", "Asia/Shanghai"), ("month", "datacentre", "UTC")])
    assert build_rollups(lake).partitions == 3
    assert fresh_share(lake)[0] == total

    # an allocation that holds the GPU on 04-10 only changes the held share of that day
    s0 = int(dt.datetime(2026, 4, 10, 2, tzinfo=dt.UTC).timestamp() * 1000)
    alloc = {
        "allocation_id": "late-alloc",
        "datacentre": dc,
        "cluster": cluster,
        "tenant_id": "t-late",
        "event_ts": s0 + 3_600_000,
        "job_id": None,
        "gpu_count": 1.0,
        "gpu_uuids": [gpu],
        "nodes": [node],
        "start": s0,
        "end": s0 + 3_600_000,
        "state": "COMPLETED",
        "source": "test",
    }
    write_records(lake, ALLOCATION, [alloc], "late-2")
    assert fresh_share(lake) == (total - 1, total)
    assert_paths_agree(lake, [("day", "cluster", "Australia/Adelaide")])
    assert build_rollups(lake).partitions == 1
    assert_paths_agree(
        lake, [("day", "cluster", "Australia/Adelaide"), ("month", "cluster", "UTC")]
    )


def test_compaction_keeps_rollups_fresh_and_figures_equal(
    scenario_lake: Path, tmp_path: Path
) -> None:
    from pipeline.maintain import compact

    lake = tmp_path / "lake"
    shutil.copytree(scenario_lake, lake)
    build_rollups(lake)
    before = utilisation_report(connect(lake, ":memory:"), period="month", by="cluster")
    assert compact(lake)
    assert fresh_share(lake)[0] == fresh_share(lake)[1]
    same(utilisation_report(connect(lake, ":memory:"), period="month", by="cluster"), before)


def test_open_partitions_are_read_raw(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ms = int((now - dt.timedelta(hours=30)).timestamp() * 1000)
    write_records(
        lake, GPU_SAMPLE, [gpu_sample(ms + i * 3_600_000, util=i / 40) for i in range(29)], "l"
    )
    result = build_rollups(lake)
    assert result.open >= 1 and result.partitions >= 1
    fresh, total = fresh_share(lake)
    assert fresh == result.partitions < total
    assert_paths_agree(lake, [("day", "cluster", "UTC"), ("day", "cluster", "Australia/Adelaide")])


def test_genai_rollup_equals_raw_path(tmp_path: Path) -> None:
    data = shared_data() / "alibaba-genai-2026"
    if not (data / "pod_gpu_duty_cycle_anon.csv.gz").is_file():
        pytest.skip(f"GenAI trace not found at {data} (set GPULEDGER_SHARED_DATA)")
    lake = tmp_path / "lake"
    sink = LakeSink(lake, "genai-test", origin="test")
    run_collector(GenaiReplay(data), sink)
    sink.flush()
    assert build_rollups(lake).partitions > 0
    assert_paths_agree(lake)


def test_helios_and_openb_rollup_equals_raw_path(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    sink = LakeSink(lake, "helios-test", origin="test")
    run_collector(HeliosReplay(), sink)
    sink.flush()
    openb = shared_data() / "alibaba-openb-gpu-2023"
    if (openb / "openb_pod_list_default.csv").exists():
        sink = LakeSink(lake, "openb-test", origin="test")
        start = dt.datetime.fromisoformat("2020-04-01T00:00:00+08:00")
        run_collector(OpenbReplay(openb, start=start), sink)
        sink.flush()
    result = build_rollups(lake)
    assert result.occupancy_partitions > 0  # Helios' virtual-cluster occupancy, per scope
    scoped = [("day", "scope", "Australia/Adelaide"), ("month", "scope", "Asia/Shanghai")]
    assert_paths_agree(lake, [c for c in CASES if c[0] == "month"] + scoped)


def attribution(lake: Path, rollups: bool, source: str) -> list[dict[str, Any]]:
    from warehouse.vouchers.attribution import attribute, attribution_rows

    con = connect(lake, ":memory:", rollups=rollups)
    attribute(con, "Asia/Shanghai", source)
    return attribution_rows(con)


def test_audit_attribution_from_rollups_equals_raw_path(scenario_lake: Path) -> None:
    from warehouse.vouchers.audit import audit

    build_rollups(scenario_lake)
    rolled = attribution(scenario_lake, True, "bins")
    assert any(r["busy_gpu_h"] > 0 for r in rolled)
    same(rolled, attribution(scenario_lake, False, "samples"))
    for month in ("2026-04", "2026-05"):
        tz = "Asia/Shanghai"
        a = audit(connect(scenario_lake, ":memory:"), month=month, tz=tz)
        b = audit(connect(scenario_lake, ":memory:", rollups=False), month=month, tz=tz)
        assert a["findings"] == b["findings"]
