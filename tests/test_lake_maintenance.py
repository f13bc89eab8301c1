"""Lake maintenance: compaction, vacuum, history, migration from the old layout, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from gpuledger.cli import main
from pipeline import lake as lakes
from pipeline import maintain
from pipeline.maintain import compact, group_rows, history, is_compacted, vacuum
from pipeline.migrate import PRE_DELTA, migrate
from pipeline.records import GPU_SAMPLE
from pipeline.write import row_schema
from warehouse.catalog import connect

DAY = 86_400_000
D1 = int(datetime(2020, 5, 1, tzinfo=UTC).timestamp() * 1000)
BEFORE = date(2020, 6, 1)
COLS = "datacentre, cluster, gpu_uuid, epoch_ms(ts) AS ts, util, power_w, _version, _load"


def samples(
    ts: np.ndarray, gpus: np.ndarray, dc: str = "dc1", util: np.ndarray | None = None
) -> pa.Table:
    """gpu_sample rows (contract columns and ``date``) straight from arrays."""
    n = len(ts)
    util = np.round(np.random.default_rng(n).random(n), 4) if util is None else util
    data: dict[str, Any] = {
        "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
        "interval_s": np.full(n, 60.0),
        "datacentre": [dc] * n,
        "cluster": ["c1"] * n,
        "node": [f"n{g // 8}" for g in gpus],
        "gpu_uuid": [f"GPU-{g:04d}" for g in gpus],
        "gpu_index": gpus % 8,
        "gpu_model": ["A100"] * n,
        "util": util,
        "mem_used_bytes": np.full(n, 1 << 30),
        "mem_total_bytes": np.full(n, 80 << 30),
        "power_w": 100 + util * 200,
        "temp_c": np.full(n, 50.0),
        "sm_active": [None] * n,
        "pod": [None] * n,
        "namespace": [None] * n,
        "job_id": [None] * n,
        "source": ["test"] * n,
        "date": [datetime.fromtimestamp(t / 1000, UTC).date().isoformat() for t in ts],
    }
    return pa.Table.from_pydict(data, schema=row_schema(GPU_SAMPLE))


def put(lake: Path, rows: pa.Table, load_id: str, table: str = "gpu_samples") -> int:
    return lakes.commit(lake / table, rows, load_id=load_id)


def many_small_commits(lake: Path) -> None:
    """40 commits of 1,000 samples over two closed dates, each re-sending 50 rows of the
    previous commit (25 identical, 25 changed), one with a conflict inside the commit."""
    rng = np.random.default_rng(7)
    prev: pa.Table | None = None
    for i in range(40):
        seq = np.arange(i * 950, i * 950 + 950)
        ts = D1 + (seq // 20) * 2_000 + (i % 2) * DAY  # odd commits on the second date
        rows = samples(ts, seq % 20)
        if prev is not None:
            same = prev.slice(0, 25)
            changed = prev.slice(25, 25)
            changed = changed.set_column(
                changed.schema.get_field_index("util"),
                "util",
                pa.array(np.round(rng.random(25), 4)),
            )
            rows = pa.concat_tables([same, rows, changed])
        if i == 5:  # a conflict inside one commit: the later row wins
            twin = rows.slice(0, 1)
            twin = twin.set_column(twin.schema.get_field_index("util"), "util", pa.array([0.0]))
            rows = pa.concat_tables([rows, twin])
        put(lake, rows, f"load-{i:02d}")
        prev = rows.slice(25, 950)


def state(lake: Path, as_of: lakes.AsOf = None) -> dict[str, Any]:
    con = connect(lake, ":memory:", as_of=as_of)
    order = "ORDER BY datacentre, gpu_uuid, ts, _version, util"
    return {
        "raw": con.execute("SELECT count(*) FROM raw_gpu_samples").fetchone(),
        "dedup": con.execute("SELECT * FROM gpu_samples ORDER BY ALL").fetchall(),
        "kept": con.execute(
            f"SELECT {COLS} FROM gpu_samples_conflicts WHERE _kept {order}"
        ).fetchall(),
        "conflicts": con.execute("SELECT count(*) FROM gpu_samples_conflicts").fetchone(),
        "raw_rows": con.execute(f"SELECT {COLS} FROM raw_gpu_samples {order}").fetchall(),
    }


def partition_files(lake: Path, table: str = "gpu_samples") -> dict[tuple[str, str], list[str]]:
    dt = DeltaTable(str(lake / table))
    return maintain._listing(dt)


def test_compaction_keeps_every_view_and_makes_one_sorted_file(lake: Path) -> None:
    many_small_commits(lake)
    today = datetime.now(UTC).date()
    now_ms = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp() * 1000)
    for j in range(2):  # an open partition (today): two files, left alone
        put(lake, samples(np.full(10, now_ms + j * 60_000), np.arange(10)), f"open-{j}")
    before_files = partition_files(lake)
    before = state(lake)
    version = DeltaTable(str(lake / "gpu_samples")).version()
    assert before["conflicts"][0] > 0 and len(before_files) == 3

    lines: list[str] = []
    results = compact(lake, progress=lines.append)  # default: dates before yesterday

    assert [(r.date, r.status, r.files_after) for r in results] == [
        ("2020-05-01", "compacted", 1),
        ("2020-05-02", "compacted", 1),
    ]
    closed = [("dc1", "2020-05-01"), ("dc1", "2020-05-02")]
    assert [r.files_before for r in results] == [len(before_files[p]) for p in closed]
    assert min(r.files_before for r in results) > 1 and len(lines) == 2
    assert sum(r.rows for r in results) == before["raw"][0] - 20
    after_files = partition_files(lake)
    open_part = ("dc1", today.isoformat())
    assert after_files[open_part] == before_files[open_part]
    assert state(lake) == before
    for part in closed:
        (path,) = after_files[part]
        assert is_compacted(path, GPU_SAMPLE)
        t = pq.read_table(path, columns=["gpu_uuid", "ts"])
        keys = list(zip(t.column("gpu_uuid").to_pylist(), t.column("ts").to_pylist(), strict=True))
        assert keys == sorted(keys)
    # the version before the compaction still reads its own files, the same rows
    assert state(lake, as_of={"gpu_samples": version}) == before
    assert compact(lake) == []  # idempotent


def test_row_groups_hold_at_least_122880_rows(lake: Path) -> None:
    n = 130_000
    seq = np.arange(n)
    for part in np.array_split(seq, 3):  # three commits: three files
        put(lake, samples(D1 + (part // 100) * 500, part % 100), f"big-{part[0]}")
    (result,) = compact(lake, before=BEFORE)
    assert (result.rows, result.files_before, result.files_after) == (n, 3, 1)
    ((path,),) = partition_files(lake).values()
    meta = pq.read_metadata(path)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [n]
    assert group_rows(1000) == 1000 and group_rows(200_000) == 200_000
    for rows in (263_144, 1_000_000, 5_000_001):
        assert group_rows(rows) >= 122_880 and group_rows(rows) <= 2 * 131_072


def test_the_zstd_level_trades_bytes_and_keeps_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = {}
    for level in (1, 19):
        lake = tmp_path / f"zstd-{level}"
        lake.mkdir()
        many_small_commits(lake)
        before = state(lake)
        results = compact(lake, before=BEFORE, zstd_level=level)
        assert [r.status for r in results] == ["compacted", "compacted"]
        assert state(lake) == before
        sizes[level] = sum(r.bytes_after for r in results)
    assert sizes[1] > sizes[19]
    with pytest.raises(ValueError, match="zstd level 0 is not one of 1 to 22"):
        compact(tmp_path / "zstd-1", before=BEFORE, zstd_level=0)
    with pytest.raises(SystemExit) as exit_:
        main(["lake", "compact", "--lake", str(tmp_path / "zstd-1"), "--zstd-level", "23"])
    assert exit_.value.code == 2
    assert "'23' is not a zstd level: give 1 to 22" in capsys.readouterr().err


HOSTILE = ["北京", "dc/1", "a'b", "b\\c", "x%20y", "'", "dc 1"]


def test_hostile_datacentre_names_compact(lake: Path) -> None:
    for i, dc in enumerate(HOSTILE):
        for j in range(2):
            put(lake, samples(D1 + np.arange(5) * 60_000 + j, np.arange(5), dc=dc), f"h{i}{j}")
    before = state(lake)
    results = compact(lake, before=BEFORE)
    assert sorted(r.datacentre for r in results) == sorted(HOSTILE)
    assert all(r.status == "compacted" and r.files_after == 1 for r in results)
    assert state(lake) == before
    con = connect(lake, ":memory:")
    got = con.execute("SELECT DISTINCT datacentre FROM gpu_samples").fetchall()
    assert sorted(g for (g,) in got) == sorted(HOSTILE)


def test_a_concurrent_append_to_the_partition_is_not_lost(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for j in range(2):
        put(lake, samples(D1 + np.arange(5) * 60_000 + j, np.arange(5)), f"a{j}")
        put(lake, samples(D1 + DAY + np.arange(5) * 60_000 + j, np.arange(5)), f"b{j}")
    late = samples(np.full(3, D1 + 7), np.arange(3))
    real = maintain.read_partition
    calls: list[tuple[str, str]] = []

    def racing(dt: DeltaTable, files: list[str], part: tuple[str, str]) -> pa.Table:
        rows = real(dt, files, part)
        if not calls:  # a late write lands on the first partition while it is compacted
            put(lake, late, "late")
        calls.append(part)
        return rows

    monkeypatch.setattr(maintain, "read_partition", racing)
    results = compact(lake, before=BEFORE)
    assert [(r.date, r.status) for r in results] == [
        ("2020-05-01", "conflict"),
        ("2020-05-02", "compacted"),
    ]
    assert "concurrent" in results[0].error
    raw = connect(lake, ":memory:").execute("SELECT count(*) FROM raw_gpu_samples").fetchone()
    assert raw == (23,)
    monkeypatch.setattr(maintain, "read_partition", real)
    (again,) = compact(lake, before=BEFORE)  # the next run compacts it, late rows included
    assert (again.date, again.rows, again.files_before) == ("2020-05-01", 13, 3)


def test_vacuum_removes_replaced_files_only(lake: Path) -> None:
    many_small_commits(lake)
    small = sum(len(files) for files in partition_files(lake).values())
    before = state(lake)
    compact(lake, before=BEFORE)
    planned = vacuum(lake, retain_days=0, dry_run=True)
    assert len(planned["gpu_samples"]) == small  # the small files, nothing deleted yet
    assert all(Path(lake / "gpu_samples" / f).exists() for f in planned["gpu_samples"])
    assert vacuum(lake)["gpu_samples"] == []  # default retention: a year and more
    removed = vacuum(lake, retain_days=0)
    assert removed["gpu_samples"] == planned["gpu_samples"]
    assert not any(Path(lake / "gpu_samples" / f).exists() for f in removed["gpu_samples"])
    assert state(lake) == before


def test_history_lists_loads_and_compactions(lake: Path) -> None:
    for j in range(3):
        put(lake, samples(D1 + np.arange(4) * 60_000 + j, np.arange(4)), f"load-{j}")
    compact(lake, before=BEFORE)
    entries = history(lake, "gpu_samples")
    assert [e["version"] for e in entries] == [0, 1, 2, 3, 4]
    assert [e["load_id"] for e in entries[1:4]] == ["load-0", "load-1", "load-2"]
    assert entries[1]["rows"] is None  # lake.commit alone records no row count
    last = entries[-1]
    assert (last["operation"], last["files_added"], last["files_removed"]) == ("compact", 1, 3)
    assert last["timestamp"].endswith("Z")
    assert history(lake) == entries  # the only table


# ------------------------------------------------------------------------ migrate


def old_table(lake: Path, folder: str, name: str, rows: pa.Table) -> Path:
    path = lake / "gpu_samples" / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.drop_columns(["date"]), path)
    return path


def old_rule(lake: Path) -> list[tuple[Any, ...]]:
    """The deduplicated rows by the old rule: greatest file name, then greatest row."""
    files = sorted((lake / "gpu_samples").rglob("*.parquet"), key=lambda p: p.name)
    best: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for f in files:
        for r in pq.read_table(f).to_pylist():
            key = (r["datacentre"], r["cluster"], r["gpu_uuid"], r["ts"])
            best[key] = (r["datacentre"], r["gpu_uuid"], r["ts"], r["util"])
    return sorted(best.values())


def test_migrate_old_layout_keeps_rows_winners_and_datacentres(lake: Path) -> None:
    ts = D1 + np.arange(6) * 60_000
    # 北京 and 上海 both mangled to datacentre=__ (different files); a key of 北京 in two
    # files (the greater file name wins, written first here), and twice in one file
    a = samples(ts, np.arange(6), dc="北京", util=np.full(6, 0.1))
    b = samples(ts[:3], np.arange(3), dc="北京", util=np.full(3, 0.9))
    c = samples(ts, np.arange(6), dc="上海", util=np.full(6, 0.5))
    twice = pa.concat_tables([c.slice(0, 1), c.slice(0, 1)])
    twice = twice.set_column(twice.schema.get_field_index("util"), "util", pa.array([0.2, 0.7]))
    old_table(lake, "datacentre=__/date=2020-05-01", "part-2.parquet", b)
    old_table(lake, "datacentre=__/date=2020-05-01", "part-1.parquet", a)
    old_table(lake, "datacentre=__/date=2020-05-01", "part-3.parquet", twice)
    old_table(lake, "datacentre=dc1/date=2020-05-02", "part-0.parquet", c)
    (lake / "_loads").mkdir()
    pq.write_table(pa.table({"load_id": ["x"]}), lake / "_loads" / "x.parquet")
    tenants = lake / "vouchers" / "tenants"
    tenants.mkdir(parents=True)
    tenant_rows = pa.table(
        {
            "tenant_id": ["t1"],
            "name": ["T"],
            "tenant_type": ["sme"],
            "region": ["r"],
            "_import_id": ["0001-a"],
            "_imported_at": pa.array([D1], pa.timestamp("ms", tz="UTC")),
            "_source": ["t.csv:2"],
        }
    )
    pq.write_table(tenant_rows, tenants / "import=0001-a.parquet")
    expected = old_rule(lake)

    result = migrate(lake)

    by = {t.table: t for t in result.tables}
    assert (by["gpu_samples"].status, by["gpu_samples"].rows, by["gpu_samples"].files) == (
        "migrated",
        17,
        4,
    )
    assert by["vouchers/tenants"].rows == 1 and by["occupancy"].status == "absent"
    assert result.loads_moved == 1 and (lake / PRE_DELTA / "_loads" / "x.parquet").exists()
    assert (lake / PRE_DELTA / "gpu_samples" / "datacentre=__").is_dir()
    con = connect(lake, ":memory:")
    assert con.execute("SELECT count(*) FROM raw_gpu_samples").fetchone() == (17,)
    got = con.execute(
        "SELECT datacentre, gpu_uuid, ts, util FROM gpu_samples ORDER BY ALL"
    ).fetchall()
    assert [(d, g, t.astimezone(UTC), u) for d, g, t, u in got] == expected
    versions = con.execute("SELECT DISTINCT _version, _load FROM raw_gpu_samples ORDER BY 1")
    assert versions.fetchall() == [
        (-4, "migrated:part-0"),
        (-3, "migrated:part-1"),
        (-2, "migrated:part-2"),
        (-1, "migrated:part-3"),
    ]
    assert con.execute("SELECT tenant_id, _source FROM tenants_history").fetchall() == [
        ("t1", "t.csv:2")
    ]
    # a later commit wins over every migrated row
    put(lake, samples(ts[:1], np.arange(1), dc="北京", util=np.array([0.33])), "new")
    con = connect(lake, ":memory:")
    row = "SELECT util FROM gpu_samples WHERE datacentre = '北京' AND gpu_uuid = 'GPU-0000'"
    assert con.execute(row).fetchall() == [(0.33,)]
    again = migrate(lake, remove_old=True)
    assert {t.status for t in again.tables} <= {"already delta", "absent"}
    assert sorted(again.removed) == [
        f"{PRE_DELTA}/_loads",
        f"{PRE_DELTA}/gpu_samples",
        f"{PRE_DELTA}/vouchers/tenants",
    ]
    assert not (lake / PRE_DELTA).exists()


def test_migrate_refuses_unknown_columns(lake: Path) -> None:
    path = lake / "occupancy" / "datacentre=dc1" / "date=2020-05-01" / "a.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"ts": [1], "surprise": [1]}), path)
    with pytest.raises(ValueError, match="surprise"):
        migrate(lake)
    assert path.exists() and not (lake / "occupancy" / "_delta_log").exists()
    assert not (lake / "_migrating").exists() and not (lake / PRE_DELTA).exists()


# ---------------------------------------------------------------------------- CLI


def test_cli_commands(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for j in range(2):
        put(lake, samples(D1 + np.arange(4) * 60_000 + j, np.arange(4)), f"cli-{j}")
    assert main(["lake", "compact", "--lake", str(lake), "--before", "2020-06-01"]) == 0
    out = capsys.readouterr().out
    assert "files 2 -> 1" in out and "total: 1 partition(s) compacted, 8 rows" in out
    assert main(["lake", "compact", "--lake", str(lake), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["partitions"] == 0
    assert main(["lake", "vacuum", "--lake", str(lake), "--retain-days", "0", "--dry-run"]) == 0
    assert "gpu_samples: would delete 2 file(s)" in capsys.readouterr().out
    assert main(["lake", "vacuum", "--lake", str(lake), "--retain-days", "0"]) == 0
    assert "gpu_samples: deleted 2 file(s)" in capsys.readouterr().out
    assert main(["lake", "history", "--lake", str(lake)]) == 0
    table = capsys.readouterr().out
    assert "cli-1" in table and "compact" in table and "VACUUM END" in table
    assert main(["lake", "history", "--lake", str(lake), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("table,version,timestamp,operation")
    assert main(["lake", "history", "--lake", str(lake), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[1]["load_id"] == "cli-0"
    assert main(["lake", "migrate", "--lake", str(lake)]) == 0
    assert "gpu_samples: already delta" in capsys.readouterr().out
    missing = str(lake / "nope")
    assert main(["lake", "compact", "--lake", missing]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["lake", "history", "--lake", str(lake), "--table", "nope"]) == 1


def test_open_partitions_default_to_yesterday(lake: Path) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    ms = int(datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC).timestamp())
    for j in range(2):
        put(lake, samples(np.full(2, ms * 1000 + j), np.arange(2)), f"y{j}")
    assert compact(lake) == []
    assert len(compact(lake, before=yesterday + timedelta(days=1))) == 1


def dcgm_day(gpus: int = 16, scrapes: int = 288) -> pa.Table:
    """One demo-sized day (16 GPUs, 5-minute scrapes: 4,608 rows), values quantised as DCGM
    reports them: util in 1/10,000, power in mW (a noisy walk), whole degrees, memory runs."""
    rng = np.random.default_rng(11)
    n = gpus * scrapes
    gpu = np.repeat(np.arange(gpus), scrapes)
    ts = D1 + np.tile(np.arange(scrapes), gpus) * 300_000
    busy = rng.random(n) < 0.8
    rows = samples(ts, gpu, util=np.where(busy, np.round(rng.uniform(0.7, 1.0, n), 4), 0.0))
    power = np.round(np.where(busy, 250 + rng.normal(0, 20, n), 40 + rng.normal(0, 2, n)), 3)
    temp = np.where(busy, 60.0, 32.0) + rng.integers(0, 4, n)
    mem = np.where(busy, 13 << 30, 1 << 28) + (rng.integers(0, 3, n) << 20)
    rows = rows.set_column(rows.schema.get_field_index("power_w"), "power_w", pa.array(power))
    rows = rows.set_column(rows.schema.get_field_index("temp_c"), "temp_c", pa.array(temp))
    return rows.set_column(
        rows.schema.get_field_index("mem_used_bytes"), "mem_used_bytes", pa.array(mem)
    )


def test_compacted_demo_day_is_small_and_reads_back_bit_identical(lake: Path) -> None:
    rows = dcgm_day()
    for i in range(4):
        put(lake, rows.slice(i * 1152, 1152), f"load-{i}")
    before = DeltaTable(str(lake / "gpu_samples")).to_pyarrow_table()
    (result,) = compact(lake, before=BEFORE)
    after = DeltaTable(str(lake / "gpu_samples")).to_pyarrow_table()
    key = [(c, "ascending") for c in ("gpu_uuid", "ts", "_version")]
    before, after = before.sort_by(key), after.select(before.column_names).sort_by(key)
    assert after.equals(before)
    for c in ("util", "power_w", "temp_c"):  # bit-identical, not merely equal
        bits = [t[c].to_numpy(zero_copy_only=False).view(np.int64) for t in (before, after)]
        assert np.array_equal(*bits)
    assert result.rows == 4608 and result.bytes_after <= 8.0 * result.rows  # 7.88 measured
    ((path,),) = partition_files(lake).values()
    meta = pq.read_metadata(path)
    chunks = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i)
        for i in range(meta.num_columns)
    }
    for c in ("util", "power_w", "mem_used_bytes"):
        assert not chunks[c].has_dictionary_page and not chunks[c].is_stats_set, c
    assert chunks["temp_c"].has_dictionary_page and not chunks["temp_c"].is_stats_set
    assert chunks["gpu_uuid"].is_stats_set and chunks["ts"].is_stats_set
    assert compact(lake, before=BEFORE) == []
