"""The rollup builder's own reading of the raw rows: files numbered in path order, and a next
day read only up to where it can still end a closed day's coverage; the bins stay exactly
what ``gpu_bins_live`` gives over every raw row."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import pytest

from pipeline.records import GPU_SAMPLE
from pipeline.write import write_records
from tests.conftest import gpu_sample
from warehouse.catalog import connect, refresh_with_state, rollup_commit
from warehouse.catalog import rollup_build as rb
from warehouse.catalog import rollups as rv
from warehouse.catalog.sources import load_sql

D0 = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)
DAY, H = 86_400_000, 3_600_000
BINS = "SELECT * FROM gpu_bins_live WHERE date < DATE '2026-03-04' ORDER BY ALL"


def fleet(lake: Path) -> None:
    """Four days, two GPUs, in two loads (two files a partition): GPU-0's last sample of a
    day is ended by the next day's first (45 s after it, at 00:00:30), GPU-1's reports two hours and
    is ended by a sample at 01:00; the rest of each next day cannot end anything."""
    rows = []
    for d in range(4):
        t0 = D0 + d * DAY
        rows += [gpu_sample(t0 + 30_000 + i * H, "GPU-0", (i % 7) / 7) for i in range(24)]
        rows += [gpu_sample(t0 - 15_000 + DAY, "GPU-0", 0.25)]
        rows += [gpu_sample(t0 + H + i * 6 * H, "GPU-1", 0.5, interval_s=7200.0) for i in range(4)]
        rows += [gpu_sample(t0 + DAY - 30 * 60_000, "GPU-1", 0.75, interval_s=7200.0)]
    write_records(lake, GPU_SAMPLE, rows[::2], "a")
    write_records(lake, GPU_SAMPLE, rows[1::2], "b")


def stored_bins(lake: Path) -> list[tuple]:
    con = connect(lake, ":memory:")
    return con.execute(BINS.replace("gpu_bins_live", "gpu_bins_fresh")).fetchall()


def assert_rows_equal(got: list[tuple], want: list[tuple], more_than: int) -> None:
    """Row for row equal, floats to 1e-12 relative; more rows than ``more_than``."""
    assert len(got) == len(want) > more_than
    for a, b in zip(got, want, strict=True):
        assert all(
            math.isclose(x, y, rel_tol=1e-12) if isinstance(x, float) else x == y
            for x, y in zip(a, b, strict=True)
        ), (a, b)


@pytest.mark.parametrize("chunk_rows", [1, rollup_commit.CHUNK_ROWS])
def test_bins_equal_the_live_view_over_every_raw_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    lake = tmp_path / "lake"
    fleet(lake)
    want = connect(lake, ":memory:", rollups=False).execute(BINS).fetchall()
    monkeypatch.setattr(rollup_commit, "CHUNK_ROWS", chunk_rows)  # 1: every partition its own chunk
    result = rb.build_rollups(lake, today=dt.date(2026, 3, 4))
    assert result.partitions == 3 and result.commits == (
        9 if chunk_rows == 1 else 3
    )  # bins, days, manifest
    got = stored_bins(lake)
    assert_rows_equal(got, want, more_than=50)


def test_a_next_day_is_read_up_to_midnight_plus_the_longest_interval(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    fleet(lake)
    con = duckdb.connect()
    _, state = refresh_with_state(con, lake)
    day1, day2 = ("dc1", "2026-03-02"), ("dc1", "2026-03-03")
    until = rv._next_day_until(state.stats, {day1})
    assert set(until) == set(state.stats[day2].files) and len(until) == 2
    assert set(until.values()) == {D0 + 2 * DAY + 7_201_000}
    rv.open_views(con, state, {day1}, numbered=True)
    # day 2's rows before 02:00:01 (and all of day 1); files numbered in path order
    got = con.execute(
        "SELECT count(*) FILTER (WHERE ts >= TIMESTAMPTZ '2026-03-03 00:00:00+00'), "
        "max(ts), list(DISTINCT _file ORDER BY _file) FROM raw_gpu_samples_open"
    ).fetchone()
    assert got is not None and got[0] == 3 and got[2] == [0, 1, 2, 3]
    assert got[1] == dt.datetime(2026, 3, 3, 1, 0, 30, tzinfo=dt.UTC)
    paths = sorted(state.stats[day1].files + state.stats[day2].files)
    numbered = con.execute("SELECT _file, _row, ts FROM raw_gpu_samples_open").fetchall()
    named = (
        connect(lake, ":memory:", rollups=False)
        .execute("SELECT _file, _row, ts FROM raw_gpu_samples")
        .fetchall()
    )
    by_path = {(f, r): ts for f, r, ts in named}
    assert all(by_path[(paths[f], r)] == ts for f, r, ts in numbered)
    # without the files' interval statistics the next day is read whole
    state.stats[day1].iv_known = False
    assert rv._next_day_until(state.stats, {day1}) == {}


def test_sums_are_stored_as_bigint_and_an_older_decimal_table_keeps_its_types(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable

    from pipeline import lake as lakes

    lake = tmp_path / "lake"
    day = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp() * 1000)
    write_records(lake, GPU_SAMPLE, [gpu_sample(day + i * 60_000) for i in range(30)], "l1")
    rb.build_rollups(lake, today=dt.date(2026, 3, 10))
    path = rv.rollup_paths(lake)[rv.BINS]
    stored = pa.schema(DeltaTable(str(path)).schema())
    assert all(stored.field(c).type == pa.int64() for c in ("cov_ms", "unknown_ms", "held_ms"))
    # a bins table written when the sums were DECIMAL(38, 0): re-rolls write that type
    old = pa.table(DeltaTable(str(path)).to_pyarrow_table()).drop_columns(["_version", "_load"])
    old = old.set_column(
        old.schema.get_field_index("cov_ms"), "cov_ms", old["cov_ms"].cast(pa.decimal128(38, 0))
    )
    legacy = tmp_path / "legacy"
    lakes.commit(legacy, old, load_id="rollup")
    rows = old.set_column(
        old.schema.get_field_index("cov_ms"), "cov_ms", old["cov_ms"].cast(pa.int64())
    )
    kept = rollup_commit.as_stored(legacy, rows)
    assert kept.schema.field("cov_ms").type == pa.decimal128(38, 0)
    assert kept["cov_ms"].to_pylist() == rows["cov_ms"].to_pylist()
    assert rollup_commit.as_stored(tmp_path / "none", rows) is rows


def test_a_memory_limit_reaches_duckdb_and_changes_no_bin(tmp_path: Path) -> None:
    free, capped, starved = tmp_path / "free", tmp_path / "capped", tmp_path / "starved"
    for lake in (free, capped, starved):
        fleet(lake)
    rb.build_rollups(free, today=dt.date(2026, 3, 4))
    rb.build_rollups(capped, today=dt.date(2026, 3, 4), memory_limit="64MB")
    assert stored_bins(capped) == stored_bins(free)
    with pytest.raises(duckdb.OutOfMemoryException):
        rb.build_rollups(starved, today=dt.date(2026, 3, 4), memory_limit="1KB")
    assert stored_bins(starved) == []  # nothing committed
    with pytest.raises(ValueError, match="'lots' is not a memory size such as 500MB or 2GB"):
        rb.build_rollups(starved, memory_limit="lots")


def test_lake_rollup_refuses_a_memory_limit_without_a_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpuledger.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["lake", "rollup", "--lake", str(tmp_path), "--memory-limit", "2048"])
    assert exit_.value.code == 2
    assert "'2048' is not a memory size such as 500MB or 2GB" in capsys.readouterr().err


def test_copies_of_a_sample_rerun_their_chunk_by_the_reports_view(tmp_path: Path) -> None:
    """The builder's own bins view (GPUs as hashes, the window ordered by ts alone) cannot
    tell copies of a sample apart: a partition that loses a copy to the dedup is computed
    again by ``gpu_bins_live``, and its bins are that view's over every raw row."""
    lake, plain = tmp_path / "lake", tmp_path / "plain"
    fleet(lake)
    fleet(plain)
    corrected = gpu_sample(D0 + DAY + H, "GPU-1", 0.9, interval_s=3600.0)  # GPU-1, 2 March 01:00
    write_records(lake, GPU_SAMPLE, [corrected], "c")
    assert rb.build_rollups(plain, today=dt.date(2026, 3, 4)).exact_reruns == 0
    want = connect(lake, ":memory:", rollups=False).execute(BINS).fetchall()
    result = rb.build_rollups(lake, today=dt.date(2026, 3, 4))
    assert result.exact_reruns == 1 and "1 exact rerun(s)" in result.line()
    got = stored_bins(lake)
    assert_rows_equal(got, want, more_than=50)
    at = [r for r in got if r[3] == "GPU-1" and r[4] is None and r[5] == D0 + DAY + H]
    assert [(r[12], r[13]) for r in at] == [(0.9, 0.9)]  # util min, max: the later copy's
    # what the check sees: the builder's view dropped a copy of 2 March, one sample too few
    con = duckdb.connect()
    _, state = refresh_with_state(con, lake)
    assert rb._build_units(con) and rb._build_refs(con)
    assert rb._chunk_bins(con, state, sorted(state.stats)[:3], True)[1] == 1  # computed twice
    counted = rb._samples_per_part(rollup_commit.bins_table(con, "gpu_bins_build", "gpu_uuid"))
    day = ("dc1", "2026-03-02")
    assert counted[day] == state.stats[day].rows - 1


def test_the_builders_view_needs_every_gpu_hash_apart() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE gpu_extent AS SELECT * FROM (VALUES ('dc1', 'c1', 'GPU-0'), "
        "('dc1', 'c1', 'GPU-1'), ('dc1', 'c2', 'GPU-0')) AS g(datacentre, cluster, gpu_uuid)"
    )
    assert rb._build_units(con)
    con.execute("INSERT INTO gpu_extent VALUES ('dc1', 'c1', 'GPU-1')")  # two rows, one hash
    assert not rb._build_units(con)


def allocation(aid: str, s_ms: int, e_ms: int, **kw: object) -> dict:
    record: dict = {
        "allocation_id": aid,
        "datacentre": "dc1",
        "cluster": "c1",
        "tenant_id": "t-1",
        "event_ts": e_ms,
        "job_id": None,
        "gpu_count": 1.0,
        "gpu_uuids": None,
        "nodes": ["n1"],
        "start": s_ms,
        "end": e_ms,
        "state": "COMPLETED",
        "source": "test",
    }
    record.update(kw)
    return record


def test_the_builders_view_equals_the_reports_view_for_every_kind_of_hold(tmp_path: Path) -> None:
    """GPUs held by an allocation that lists them, by one matched on its job and by one
    matched on the pod, in two clusters that share a job id: the builder's hashed view
    (``gpu_bins_build.sql``) gives the rows ``gpu_bins_live`` gives."""
    from pipeline.records import ALLOCATION
    from warehouse.catalog.rollup_parts import parts_values

    lake = tmp_path / "lake"
    d1 = D0 + DAY
    rows = []
    for i in range(48):
        t = d1 + i * 1_800_000 + 7_000
        rows.append(gpu_sample(t, "GPU-0", (i % 5) / 4, interval_s=1800.0))
        rows.append(gpu_sample(t, "GPU-1", 0.5, interval_s=1800.0, job_id="job-7"))
        rows.append(gpu_sample(t, "GPU-2", None if i % 9 == 0 else 0.25, pod="pod-3"))
        rows.append(gpu_sample(t, "GPU-1", 0.75, cluster="c2", job_id="job-7"))
        rows.append(gpu_sample(t, "GPU-3", 0.125, pod="job-9"))  # a pod named as a job
    write_records(lake, GPU_SAMPLE, rows, "s")
    allocations = [
        allocation("a-gpu", d1 + 2 * H + 123_000, d1 + 9 * H + 5, gpu_uuids=["GPU-0"]),
        allocation("a-job", d1 + 5 * H, d1 + 11 * H + 450_000, job_id="job-7"),
        allocation("pod-3", d1 + 13 * H + 1, d1 + 20 * H),
        allocation("a-c2", d1 + 30 * 60_000, d1 + 3 * H, cluster="c2", job_id="job-7"),
        allocation("a-pj", d1 + 15 * H, d1 + 17 * H, job_id="job-9"),
    ]
    write_records(lake, ALLOCATION, allocations, "a")
    con = duckdb.connect()
    _, state = refresh_with_state(con, lake)
    assert rb._build_units(con) and rb._build_refs(con)
    parts = sorted(state.stats)
    rv.open_views(con, state, set(parts), numbered=True)
    con.execute(
        "CREATE TEMP VIEW _build_open AS SELECT u.h, o.date FROM _build_units AS u JOIN "
        f"(VALUES {parts_values(parts)}) AS o(dc, date) ON u.datacentre IS NOT DISTINCT FROM o.dc"
    )
    con.execute(load_sql("gpu_bins_build"))
    want = con.execute("SELECT * FROM gpu_bins_live ORDER BY ALL").fetchall()
    got = con.execute("SELECT * FROM gpu_bins_build ORDER BY ALL").fetchall()
    assert_rows_equal(got, want, more_than=100)
    held = con.execute(
        "SELECT cluster, gpu_uuid, sum(held_ms) FROM gpu_bins_build WHERE allocation_id IS NULL "
        "GROUP BY ALL HAVING sum(held_ms) > 0 ORDER BY ALL"
    ).fetchall()
    assert [r[:2] for r in held] == [
        ("c1", "GPU-0"),
        ("c1", "GPU-1"),
        ("c1", "GPU-2"),
        ("c1", "GPU-3"),
        ("c2", "GPU-1"),
    ]
    attributed = con.execute(
        "SELECT allocation_id, list(DISTINCT cluster || '/' || gpu_uuid) FROM gpu_bins_build "
        "WHERE allocation_id IS NOT NULL GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert attributed == [
        ("a-c2", ["c2/GPU-1"]),
        ("a-gpu", ["c1/GPU-0"]),
        ("a-job", ["c1/GPU-1"]),
        ("a-pj", ["c1/GPU-3"]),
        ("pod-3", ["c1/GPU-2"]),
    ]
