"""The warehouse catalogue: views derived from the contract over real Parquet written by the lake
writer, read by real DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.records import (
    ALLOCATION,
    GPU_SAMPLE,
    INVENTORY,
    KINDS,
    OCCUPANCY,
    Kind,
    coerce,
    parse_ts,
)
from pipeline.write import write_records
from warehouse.catalog import DEFAULT_DB_NAME, connect, refresh, sql_literal


def ms(text: str) -> int:
    return parse_ts(text)


def sample(**kw: Any) -> dict[str, Any]:
    base = dict(
        ts="2020-05-01T00:00:00+08:00",
        interval_s=60,
        datacentre="dc1",
        cluster="c1",
        node="n1",
        gpu_uuid="GPU-0",
        util=0.5,
        source="test",
    )
    base.update(kw)
    return coerce(GPU_SAMPLE, base)


def allocation(**kw: Any) -> dict[str, Any]:
    base = dict(
        allocation_id="a1",
        datacentre="dc1",
        cluster="c1",
        tenant_id="t1",
        event_ts="2020-05-01T00:00:00+08:00",
        gpu_count=1,
        start="2020-05-01T00:00:00+08:00",
        state="RUNNING",
        source="test",
    )
    base.update(kw)
    return coerce(ALLOCATION, base)


def rows(con: Any, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def described(con: Any, view: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {view}").fetchall()]


def duck_type(t: str) -> str:
    return {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}.get(t, t)


@pytest.mark.parametrize("k", list(KINDS.values()), ids=list(KINDS))
def test_empty_lake_has_typed_views_with_no_rows(tmp_path: Path, k: Kind) -> None:
    con = connect(tmp_path / "lake", ":memory:")
    contract = [(n, duck_type(t)) for n, t in k.duckdb_columns()]
    lake_cols = [
        ("_version", "BIGINT"),
        ("_load", "VARCHAR"),
        ("_file", "VARCHAR"),
        ("_row", "BIGINT"),
    ]
    assert described(con, f"raw_{k.table}") == contract + lake_cols
    assert described(con, k.table) == contract
    assert described(con, f"{k.table}_conflicts")[: len(contract)] == contract
    for view in (f"raw_{k.table}", k.table, f"{k.table}_conflicts"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)


def test_empty_lake_other_views_exist(tmp_path: Path) -> None:
    con = connect(tmp_path, ":memory:")
    assert [n for n, _ in described(con, "_loads")] == [
        "load_id",
        "origin",
        "kind",
        "table_name",
        "version",
        "rows",
        "rejected",
        "written_at",
        "offsets",
        "operation",
    ]
    assert con.execute("SELECT count(*) FROM _snapshot WHERE version IS NOT NULL").fetchone() == (
        0,
    )
    for view in (
        "allocations_current",
        "cluster_sources",
        "cluster_horizon",
        "occupancy_coverage",
        "gpu_sample_coverage",
        "inventory_coverage",
        "allocation_spans",
        "allocation_holds",
    ):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,), view
    assert con.execute("SELECT lo, hi FROM data_span").fetchone() == (None, None)


def test_default_database_lives_in_the_lake(tmp_path: Path) -> None:
    con = connect(tmp_path)
    con.close()
    assert (tmp_path / DEFAULT_DB_NAME).is_file()
    # views are re-created on every connect, also over an existing database file
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM gpu_samples").fetchone() == (0,)
    con.close()
    # the file alone, opened by plain DuckDB, still answers every view pinned to that snapshot
    import duckdb

    plain = duckdb.connect(str(tmp_path / DEFAULT_DB_NAME))
    for view in ("gpu_extent", "cluster_horizon", "allocation_spans", "gpu_bins", "occupancy_bins"):
        assert plain.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,), view


def test_round_trip_every_column(tmp_path: Path) -> None:
    r = sample(
        gpu_index=3,
        gpu_model="H100",
        mem_used_bytes=5,
        mem_total_bytes=80,
        power_w=300.5,
        temp_c=61.0,
        sm_active=0.25,
        pod="p",
        namespace="ns",
        job_id="j",
    )
    a = allocation(
        gpu_uuids=["GPU-0", "GPU-1"], nodes=["n1"], job_id="j", end="2020-05-01T02:00:00+08:00"
    )
    write_records(tmp_path, GPU_SAMPLE, [r], "f1")
    write_records(tmp_path, ALLOCATION, [a], "f1")
    con = connect(tmp_path, ":memory:")
    got = rows(con, "SELECT *, epoch_ms(ts) AS ts_ms FROM gpu_samples")[0]
    assert got.pop("ts_ms") == r["ts"]
    assert {k: v for k, v in got.items() if k != "ts"} == {k: v for k, v in r.items() if k != "ts"}
    got = rows(
        con,
        'SELECT gpu_uuids, nodes, epoch_ms("end") AS e, epoch_ms("start") AS s FROM allocations',
    )[0]
    assert got == {"gpu_uuids": ["GPU-0", "GPU-1"], "nodes": ["n1"], "e": a["end"], "s": a["start"]}


HOSTILE_NAMES = ["北京", "上海", "dc/1", "dc 1", "dc_1", "a=b", "..", ".", "%41", "null", "NULL"]
HOSTILE_NAMES += ["__HIVE_DEFAULT_PARTITION__", "x#y?z", "tab\there", "🚀", "0012", "'q'", " lead"]


def test_partition_values_round_trip_exactly(tmp_path: Path) -> None:
    # Names that folder-name mangling used to merge (北京/上海, dc/1 / dc 1 / dc_1) or that
    # path decoding turns into NULL: Delta encodes them, the log keeps them exactly.
    records = [sample(datacentre=dc, gpu_uuid=f"GPU-{i}") for i, dc in enumerate(HOSTILE_NAMES)]
    write_records(tmp_path, GPU_SAMPLE, records, "f1")
    con = connect(tmp_path, ":memory:")
    got = con.execute("SELECT gpu_uuid, datacentre FROM gpu_samples").fetchall()
    assert sorted(got) == sorted((r["gpu_uuid"], r["datacentre"]) for r in records)
    assert (tmp_path / "gpu_samples" / "datacentre=dc%2F1").is_dir()
    assert "date" not in [n for n, _ in described(con, "raw_gpu_samples")]


def test_identical_duplicates_collapse_and_conflicts_keep_the_last_commit(tmp_path: Path) -> None:
    same = sample(ts="2020-05-01T00:00:00+08:00", util=0.3)
    old = sample(ts="2020-05-01T00:01:00+08:00", util=0.2)
    new = sample(ts="2020-05-01T00:01:00+08:00", util=0.6)
    write_records(tmp_path, GPU_SAMPLE, [same, old], "part-z")
    write_records(tmp_path, GPU_SAMPLE, [same, new], "part-a")  # committed later, named lower
    con = connect(tmp_path, ":memory:")
    assert con.execute("SELECT count(*) FROM raw_gpu_samples").fetchone() == (4,)
    assert con.execute("SELECT epoch_ms(ts), util FROM gpu_samples ORDER BY ts").fetchall() == [
        (same["ts"], 0.3),
        (new["ts"], 0.6),
    ]
    conflicts = rows(
        con, "SELECT util, _kept, _versions, _load FROM gpu_samples_conflicts ORDER BY util"
    )
    assert [(c["util"], c["_kept"], c["_versions"]) for c in conflicts] == [
        (0.2, False, 2),
        (0.6, True, 2),
    ]
    assert conflicts[1]["_load"] == "part-a"


def test_conflicts_within_one_file_keep_the_last_row(tmp_path: Path) -> None:
    write_records(tmp_path, GPU_SAMPLE, [sample(util=0.1), sample(util=0.9)], "f")
    con = connect(tmp_path, ":memory:")
    assert con.execute("SELECT util FROM gpu_samples").fetchall() == [(0.9,)]
    assert con.execute("SELECT count(*) FROM gpu_samples_conflicts").fetchone() == (2,)


def test_null_key_parts_are_one_key(tmp_path: Path) -> None:
    snap = dict(
        ts="2020-05-01T00:00:00+08:00",
        interval_s=60,
        datacentre="dc1",
        cluster="c1",
        scope=None,
        gpus_total=8,
        gpus_allocated=2,
        source="t",
    )
    write_records(tmp_path, OCCUPANCY, [coerce(OCCUPANCY, snap)], "a")
    write_records(tmp_path, OCCUPANCY, [coerce(OCCUPANCY, snap)], "b")
    con = connect(tmp_path, ":memory:")
    assert con.execute("SELECT count(*) FROM occupancy").fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM occupancy_conflicts").fetchone() == (0,)


def test_allocations_current_is_the_latest_event(tmp_path: Path) -> None:
    events = [
        allocation(event_ts="2020-05-01T00:00:00+08:00", start=None, state="PENDING"),
        allocation(event_ts="2020-05-01T01:00:00+08:00", start="2020-05-01T01:00:00+08:00"),
        allocation(
            event_ts="2020-05-01T03:00:00+08:00",
            start="2020-05-01T01:00:00+08:00",
            end="2020-05-01T03:00:00+08:00",
            state="COMPLETED",
        ),
        allocation(allocation_id="a1", cluster="c2", event_ts="2020-05-01T00:30:00+08:00"),
    ]
    write_records(tmp_path, ALLOCATION, events, "f")
    con = connect(tmp_path, ":memory:")
    got = con.execute(
        'SELECT cluster, state, epoch_ms("end") FROM allocations_current ORDER BY cluster'
    ).fetchall()
    assert got == [("c1", "COMPLETED", ms("2020-05-01T03:00:00+08:00")), ("c2", "RUNNING", None)]


def test_coverage_is_cut_at_the_next_record(tmp_path: Path) -> None:
    # interval 300 s but the next sample comes 60 s later: the first covers 60 s, the last 300 s
    t0 = ms("2020-05-01T00:00:00+08:00")
    write_records(
        tmp_path,
        GPU_SAMPLE,
        [sample(ts=t0, interval_s=300), sample(ts=t0 + 60_000, interval_s=300)],
        "f",
    )
    con = connect(tmp_path, ":memory:")
    assert con.execute(
        "SELECT s_ms - $t, e_ms - $t FROM gpu_sample_coverage ORDER BY s_ms", {"t": t0}
    ).fetchall() == [(0, 60_000), (60_000, 360_000)]


def test_inventory_record_ends_at_the_next_one_of_the_node(tmp_path: Path) -> None:
    def inv(valid_from: str, count: int) -> dict[str, Any]:
        return coerce(
            INVENTORY,
            dict(
                datacentre="dc1",
                cluster="c1",
                node="n1",
                valid_from=valid_from,
                gpu_count=count,
                source="t",
            ),
        )

    write_records(
        tmp_path,
        INVENTORY,
        [inv("2020-05-01T00:00:00+08:00", 8), inv("2020-05-02T00:00:00+08:00", 4)],
        "f",
    )
    con = connect(tmp_path, ":memory:")
    got = con.execute(
        "SELECT gpu_count, e_ms - s_ms FROM inventory_coverage ORDER BY s_ms"
    ).fetchall()
    assert got[0] == (8, 24 * 3_600_000)
    assert got[1][0] == 4 and got[1][1] > 0  # open: valid until now()


def test_loads_view_reads_the_load_log(tmp_path: Path) -> None:
    write_records(tmp_path, GPU_SAMPLE, [sample()], "load-1", origin="backfill:test", rejected=2)
    con = connect(tmp_path, ":memory:")
    got = rows(con, "SELECT load_id, origin, kind, table_name, version, rows, rejected FROM _loads")
    assert got == [
        {
            "load_id": "load-1",
            "origin": "backfill:test",
            "kind": "gpu_sample",
            "table_name": "gpu_samples",
            "version": 1,
            "rows": 1,
            "rejected": 2,
        }
    ]
    assert rows(con, "SELECT * FROM _snapshot WHERE table_name = 'gpu_samples'") == [
        {"table_name": "gpu_samples", "version": 1}
    ]


def test_views_are_pinned_to_their_snapshot_until_refresh(tmp_path: Path) -> None:
    write_records(tmp_path, GPU_SAMPLE, [sample()], "f1")
    con = connect(tmp_path, ":memory:")
    write_records(tmp_path, GPU_SAMPLE, [sample(gpu_uuid="GPU-1")], "f2")
    write_records(tmp_path, ALLOCATION, [allocation()], "f1")
    assert con.execute("SELECT count(*) FROM gpu_samples").fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM allocations").fetchone() == (0,)
    assert refresh(con, tmp_path)["gpu_samples"] == 2
    assert con.execute("SELECT count(*) FROM gpu_samples").fetchone() == (2,)
    assert con.execute("SELECT count(*) FROM allocations").fetchone() == (1,)


def test_files_outside_the_log_are_never_read(tmp_path: Path) -> None:
    # a stray Parquet file in a partition folder (or one a compaction replaced) is not data
    write_records(tmp_path, GPU_SAMPLE, [sample()], "f1")
    [folder] = (tmp_path / "gpu_samples").glob("datacentre=*/date=*")
    stray = pa.Table.from_pylist([sample(gpu_uuid="GPU-stray")], schema=GPU_SAMPLE.arrow_schema())
    pq.write_table(stray, folder / "stray.parquet")
    con = connect(tmp_path, ":memory:")
    assert con.execute("SELECT gpu_uuid FROM raw_gpu_samples").fetchall() == [("GPU-0",)]


def test_as_of_reads_an_earlier_snapshot(tmp_path: Path) -> None:
    write_records(tmp_path, GPU_SAMPLE, [sample(util=0.1)], "f1")
    write_records(tmp_path, GPU_SAMPLE, [sample(util=0.7)], "f2")
    assert connect(tmp_path, ":memory:").execute("SELECT util FROM gpu_samples").fetchall() == [
        (0.7,)
    ]
    con = connect(tmp_path, ":memory:", as_of={"gpu_samples": 1})
    assert con.execute("SELECT util FROM gpu_samples").fetchall() == [(0.1,)]
    assert con.execute("SELECT count(*) FROM _loads").fetchone() == (1,)


def test_lake_path_is_quoted(tmp_path: Path) -> None:
    lake = tmp_path / "it's a lake"
    write_records(lake, GPU_SAMPLE, [sample()], "f1")
    con = connect(lake, ":memory:")
    assert con.execute("SELECT count(*) FROM gpu_samples").fetchone() == (1,)
    assert sql_literal("a'b") == "'a''b'"
    with pytest.raises(ValueError, match="glob"):
        connect(tmp_path / "lake[1]", ":memory:")
