"""The whole-UTC-day rows of the GPU-sample rollup: the sums of their bins, read by the
utilisation report for the UTC days wholly inside a period (with the bins of the days a period
cuts), by ``gpu_extent``, valid only while they name the partition's bins commit, and added by
``lake rollup`` to partitions rolled up before they existed."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import lake as lakes
from pipeline.records import ALLOCATION, GPU_SAMPLE
from pipeline.write import write_records
from tests.conftest import gpu_sample
from warehouse.catalog import connect, refresh_with_state
from warehouse.catalog import rollups as rv
from warehouse.catalog.rollup_build import build_rollups
from warehouse.reports.utilisation import utilisation_report

D0 = int(dt.datetime(2026, 2, 24, tzinfo=dt.UTC).timestamp() * 1000)
DAY, H = 86_400_000, 3_600_000
TODAY = dt.date(2026, 3, 20)
ZONES = ("Asia/Shanghai", "Australia/Adelaide", "UTC")


def fleet(lake: Path) -> None:
    """Two clusters, three GPUs, 12 days across a month boundary, samples every 20 minutes with
    irregular offsets, a gap, one GPU whose interval is longer than its spacing (its coverage
    crosses midnight into the next partition), and an allocation holding one GPU across days."""
    rows = []
    for d in range(12):
        for i in range(72):
            t = D0 + d * DAY + i * 1_200_000 + (i * 7919) % 300_000
            if d == 5 and 10 <= i < 30:
                continue  # a gap: uncovered, never idle
            rows.append(gpu_sample(t, "GPU-0", (i % 11) / 10, cluster="c1"))
            rows.append(gpu_sample(t + 90_000, "GPU-1", (i % 5) / 4, interval_s=2400.0))
            rows.append(gpu_sample(t + 30_000, "GPU-2", 0.5, cluster="c2"))
    write_records(lake, GPU_SAMPLE, rows, "a")
    job = {
        "allocation_id": "job-1",
        "datacentre": rows[0]["datacentre"],
        "cluster": "c1",
        "tenant_id": "t-1",
        "event_ts": D0 + 7 * DAY,
        "gpu_count": 1.0,
        "gpu_uuids": ["GPU-0"],
        "start": D0 + 2 * DAY + 5 * H,
        "end": D0 + 7 * DAY + 3 * H,
        "state": "COMPLETED",
        "source": "test",
    }
    write_records(lake, ALLOCATION, [job], "b")


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b) and a, (len(a), len(b))
    for ra, rb in zip(a, b, strict=True):
        for k, va in ra.items():
            if isinstance(va, float):
                assert math.isclose(va, rb[k], rel_tol=1e-9, abs_tol=1e-9), (k, va, rb[k], ra)
            else:
                assert va == rb[k], (k, va, rb[k], ra)


def reports(lake: Path, **kw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ours = utilisation_report(connect(lake, ":memory:"), **kw)
    raw = utilisation_report(connect(lake, ":memory:", rollups=False), source="samples", **kw)
    return ours, raw


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("days") / "lake"
    fleet(lake)
    result = build_rollups(lake, today=TODAY)
    assert result.partitions == 12 and result.days > 0
    return lake


def test_day_rows_are_the_sums_of_their_bins(lake: Path) -> None:
    con = connect(lake, ":memory:")
    days = con.execute(
        "SELECT datacentre, date, cluster, gpu_uuid, day_ms, samples, cov_ms, unknown_ms, "
        "held_ms, first_ms, last_ms, last_e_ms, busy_ms, held_busy_ms FROM gpu_days_report "
        "ORDER BY ALL"
    ).fetchall()
    bins = con.execute(
        "SELECT datacentre, date, cluster, gpu_uuid, bin_ms // 86400000 * 86400000 AS d, "
        "sum(samples), sum(cov_ms), sum(unknown_ms), sum(held_ms), min(first_ms), "
        "max(last_ms), arg_max(last_e_ms, last_ms), sum(busy_ms), sum(held_busy_ms) "
        "FROM gpu_bins WHERE allocation_id IS NULL GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert len(days) == len(bins) > 12 * 3  # GPU-1's coverage spills into the next day
    for d, b in zip(days, bins, strict=True):
        assert d[:12] == b[:12]
        assert math.isclose(d[12], b[12], rel_tol=1e-12)
        assert (d[13] is None) == (b[13] is None)
        assert d[13] is None or math.isclose(d[13], b[13], rel_tol=1e-12)
    assert any(d[13] for d in days)  # the allocation's held share is in them


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("period", ["day", "month"])
def test_reports_from_day_rows_equal_the_raw_path(lake: Path, tz: str, period: str) -> None:
    for by in ("cluster", "datacentre"):
        same(*reports(lake, period=period, by=by, tz=tz))


def test_a_month_reads_day_rows_and_only_the_bins_of_the_days_it_cuts(lake: Path) -> None:
    con = connect(lake, ":memory:")
    utilisation_report(con, period="month", by="cluster", tz="Asia/Shanghai")
    files = con.execute("SELECT count(*) FROM _gpu_days_bins_files").fetchone()
    read = con.execute("SELECT DISTINCT date FROM _report_gpu_bins_days ORDER BY 1").fetchall()
    assert files == (12,)
    # +8:00: the months are cut at 16:00 UTC on the last day of February (and of March, past
    # the data); partition 02-28's bins, and 02-27's that spill into it, are read
    assert [str(d) for (d,) in read] == ["2026-02-27", "2026-02-28"]
    assert con.execute("SELECT count(*) FROM gpu_bins_live").fetchone() == (0,)
    utilisation_report(con, period="month", by="cluster", tz="UTC")  # on UTC days: none
    assert con.execute("SELECT count(*) FROM _report_gpu_bins_days").fetchone() == (0,)


def test_day_rows_of_another_bins_commit_are_not_read(tmp_path: Path) -> None:
    """A crash between the bins commit and the days commit: the day rows name the old bins
    commit, so the report sums the bins instead, and the next build writes them again."""
    lake = tmp_path / "lake"
    fleet(lake)
    build_rollups(lake, today=TODAY)
    days_path = rv.rollup_paths(lake)[rv.DAYS]
    before = lakes.open_table(days_path)
    assert before is not None
    _, state = refresh_with_state(duckdb.connect(), lake)
    assert len(state.days) == 12
    # the bins of one partition rebuilt (a late sample there), the days left as they were
    first = min(state.stats)
    late = gpu_sample(D0 + 3 * H + 1234, "GPU-2", 0.9, cluster="c2")
    write_records(lake, GPU_SAMPLE, [late], "late")
    saved = tmp_path / "days-before"
    shutil.copytree(days_path, saved)
    build_rollups(lake, today=TODAY)
    shutil.rmtree(days_path)
    shutil.copytree(saved, days_path)
    _, state = refresh_with_state(duckdb.connect(), lake)
    assert first in state.fresh and first not in state.days and len(state.days) == 11
    for tz in ZONES:
        same(*reports(lake, period="month", by="cluster", tz=tz))
    result = build_rollups(lake, today=TODAY)
    assert result.partitions == 0 and result.days > 0
    _, state = refresh_with_state(duckdb.connect(), lake)
    assert len(state.days) == 12


def test_a_lake_rolled_up_before_the_days_gets_them_from_its_bins(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    fleet(lake)
    build_rollups(lake, today=TODAY)
    want = utilisation_report(connect(lake, ":memory:"), period="day", by="cluster", tz="UTC")
    shutil.rmtree(rv.rollup_paths(lake)[rv.DAYS])
    _, state = refresh_with_state(duckdb.connect(), lake)
    assert len(state.fresh) == 12 and not state.days
    result = build_rollups(lake, today=TODAY)
    assert result.partitions == 0 and result.fresh == 12 and result.days > 0
    _, state = refresh_with_state(duckdb.connect(), lake)
    assert len(state.days) == 12
    same(utilisation_report(connect(lake, ":memory:"), period="day", by="cluster", tz="UTC"), want)
