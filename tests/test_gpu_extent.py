"""``gpu_extent``: the DuckDB catalogue's table (``gpu_extent_rest_top2.sql``, and
``gpu_extent_rest_ties.sql`` where the last instant is held by copies) holds the rows of the
definition both engines register (``gpu_extent_rest.sql``), and the end of the last sample's
coverage is the dedup winner's among copies (greatest commit, then file, then row)."""

from __future__ import annotations

from pathlib import Path

from pipeline.records import GPU_SAMPLE
from pipeline.write import write_records
from tests.test_warehouse import ms, sample
from warehouse.catalog import connect

T0, T1 = "2020-05-01T00:00:00+08:00", "2020-05-01T00:05:00+08:00"


def extent(con: object, view: str) -> set[tuple[object, ...]]:
    q = f"SELECT datacentre, cluster, gpu_uuid, first_ms, last_ms, last_e_ms FROM {view}"
    return set(con.execute(q).fetchall())  # type: ignore[attr-defined]


def test_the_last_sample_of_copies_is_the_dedup_winner_and_both_definitions_agree(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    first = [sample(gpu_uuid=g, ts=T0) for g in ("A", "B", "C", "D")]
    first += [sample(gpu_uuid="A", ts=T1, interval_s=60), sample(gpu_uuid="C", ts=T0)]
    write_records(lake, GPU_SAMPLE, first, "s1")
    second = [
        sample(gpu_uuid="A", ts=T1, interval_s=30),  # a later commit's copy wins
        sample(gpu_uuid="B", ts=T1, interval_s=40),  # copies within one file: the last row
        sample(gpu_uuid="B", ts=T1, interval_s=20),
        sample(gpu_uuid="C", ts=T1, interval_s=90),  # one last sample after copies at T0
        sample(gpu_uuid="E", datacentre="dc2", ts=T1, interval_s=15),
    ]
    write_records(lake, GPU_SAMPLE, second, "s2")
    con = connect(lake, ":memory:")
    got = extent(con, "gpu_extent")
    t0, t1 = ms(T0), ms(T1)
    assert got == {
        ("dc1", "c1", "A", t0, t1, t1 + 30_000),
        ("dc1", "c1", "B", t0, t1, t1 + 20_000),
        ("dc1", "c1", "C", t0, t1, t1 + 90_000),
        ("dc1", "c1", "D", t0, t0, t0 + 60_000),
        ("dc2", "c1", "E", t1, t1, t1 + 15_000),
    }
    assert extent(con, "gpu_extent_rest") == got  # the reference: one struct per raw row
