"""The Spark catalogue reads the same rows as the DuckDB catalogue: every view it registers, on
lakes with hostile partition names, conflicting duplicates across and within commits, the
scenario's vouchers, a compacted Helios replay and a live operator lake; and ``--as-of``."""

from __future__ import annotations

import math
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from collectors.replay.helios import HeliosReplay
from pipeline.backfill import LakeSink
from pipeline.maintain import compact
from pipeline.records import ALLOCATION, GPU_SAMPLE, INVENTORY, OCCUPANCY, coerce
from pipeline.write import write_records
from tests.ops_lake import mixed_lake
from tests.spark_fixtures import spark_fixture  # noqa: F401 (the session-wide ``spark``)
from tests.test_warehouse import allocation, sample
from warehouse.catalog import connect
from warehouse.spark.catalog import register_lake
from warehouse.spark.sql import spark_sql
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec
from warehouse.vouchers.scenario.write import write_scenario

HOSTILE = ["北京", "上海", "dc/1", "dc 1", "dc_1", "a=b", "null", "NULL", "%41", "a+b", "'q'"]
HOSTILE += ["__HIVE_DEFAULT_PARTITION__", "x#y?z", "tab\there", "🚀", " lead", ".."]
SMALL = {"months": 3, "programme_month": 1, "nodes_per_dc": 1, "sample_interval_s": 3600}
T0, T1, T2 = "2020-05-01T00:00:00+08:00", "2020-05-01T00:01:00+08:00", "2020-05-01T02:00:00+08:00"
CLOCK_MS = 15 * 60_000
"""Values within this of now() may differ by the time between the two engines' queries."""


def build_hostile(lake: Path) -> None:
    """Every kind, hostile data-centre names, duplicates within and across commits."""
    first = [sample(datacentre=dc, gpu_uuid=f"G{i}", util=0.05 * i) for i, dc in enumerate(HOSTILE)]
    write_records(lake, GPU_SAMPLE, first, "s1")
    changed = [sample(datacentre=dc, gpu_uuid=f"G{i}", util=0.99) for i, dc in enumerate(HOSTILE)]
    later = [sample(datacentre=dc, gpu_uuid="G0", ts=T1) for dc in HOSTILE]
    # the same keys again (identical), changed (a conflict with commit 1 and within this file)
    write_records(lake, GPU_SAMPLE, first + changed[:6] + later + first[:3], "s2")
    occ = dict(ts=T0, interval_s=60, cluster="c1", source="t", gpus_total=8)
    snaps = [
        coerce(OCCUPANCY, {**occ, "datacentre": dc, "scope": s, "gpus_allocated": a})
        for dc in HOSTILE[:8]
        for s, a in ((None, 2), ("vc1", 3), (None, 5))
    ]
    write_records(lake, OCCUPANCY, snaps, "o1")
    write_records(lake, OCCUPANCY, snaps[:4], "o2")
    events = [
        allocation(datacentre=dc, event_ts=ts, state=state, gpu_uuids=["G0", "G1"], gpu_count=2)
        for dc in HOSTILE[:8]
        for ts, state in ((T0, "RUNNING"), (T2, "COMPLETED"))
    ]
    for e in events[1::2]:
        e["end"] = e["event_ts"]
    write_records(lake, ALLOCATION, events, "a1")
    inv = dict(cluster="c1", gpu_model="A100", gpu_count=8, valid_from=T0, source="t")
    nodes = [coerce(INVENTORY, {**inv, "datacentre": dc, "node": "n1"}) for dc in HOSTILE[:8]]
    write_records(lake, INVENTORY, nodes, "i1")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spark-lakes")
    out = {name: root / name / "lake" for name in ("hostile", "scenario", "helios", "ops")}
    build_hostile(out["hostile"])
    spec = ScenarioSpec(seed=3, anomalies=True, **SMALL)  # type: ignore[arg-type]
    write_scenario(build_scenario(spec), out["scenario"].parent)
    sink = LakeSink(out["helios"], "helios-test", origin="test", chunk_records=20_000)
    for _ in range(2):  # identical copies in two commits, then compacted into new files
        for kind, record in HeliosReplay(vcs=["vcJLV"]).collect():
            sink.add(kind, record)
        sink.flush()
    compact(out["helios"], before=date(2100, 1, 1))
    mixed_lake(out["ops"], int(time.time() * 1000))
    return out


def _select(dtypes: list[tuple[str, str]], engine: str) -> str:
    to_ms = "unix_millis" if engine == "spark" else "epoch_ms"
    return ", ".join(
        f"{to_ms}(`{c}`) AS `{c}`" if t == "timestamp" else f"`{c}`" for c, t in dtypes
    ).replace("`", "`" if engine == "spark" else '"')


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        (0, "") if v is None else (1, round(v, 6) if isinstance(v, float) else repr(v)) for v in row
    )


def _same(a: Any, b: Any, now_ms: int) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, int) and isinstance(b, int) and min(a, b) > now_ms - CLOCK_MS:
        return abs(a - b) <= CLOCK_MS  # derived from now(): each engine has its own
    return a == b


def compare(spark: Any, con: Any, view: str) -> int:
    """Assert the view's rows are equal on both engines; return the row count."""
    dtypes = spark.table(f"`{view}`").dtypes
    duck_names = [r[0] for r in con.execute(f'DESCRIBE "{view}"').fetchall()]
    assert [c for c, _ in dtypes] == duck_names, view
    now_ms = int(time.time() * 1000)
    got = [
        tuple(tuple(v) if isinstance(v, list) else v for v in r.values())
        for r in spark.sql(f"SELECT {_select(dtypes, 'spark')} FROM `{view}`").toArrow().to_pylist()
    ]
    want = [
        tuple(tuple(v) if isinstance(v, list) else v for v in r)
        for r in con.execute(f'SELECT {_select(dtypes, "duckdb")} FROM "{view}"').fetchall()
    ]
    assert len(got) == len(want), view
    for g, w in zip(sorted(got, key=_sort_key), sorted(want, key=_sort_key), strict=True):
        assert all(_same(a, b, now_ms) for a, b in zip(g, w, strict=True)), (view, g, w)
    return len(got)


@pytest.mark.parametrize("name", ["hostile", "scenario", "helios", "ops"])
def test_every_view_reads_the_same_rows_as_duckdb(
    spark: Any, lakes: dict[str, Path], name: str
) -> None:
    con = connect(lakes[name], ":memory:")
    versions = dict(con.execute("SELECT table_name, version FROM _snapshot").fetchall())
    registered = register_lake(spark, lakes[name], versions, cache=True)
    assert registered.versions == versions
    for kind in ("gpu_samples", "occupancy", "allocations", "inventory"):
        for view in (f"raw_{kind}", kind, f"{kind}_conflicts"):
            assert view in registered.views
    for entity in ("programmes", "tenants", "vouchers", "claims"):
        assert {entity, f"{entity}_history"} <= set(registered.views)
    counts = {view: compare(spark, con, view) for view in registered.views}
    print(name, len(counts), "views", sum(counts.values()), "rows", registered.skipped)
    if name == "hostile":
        assert counts["gpu_samples_conflicts"] > 0 and counts["occupancy"] > 0
        dcs = {r[0] for r in spark.sql("SELECT DISTINCT datacentre FROM gpu_samples").collect()}
        assert dcs == set(HOSTILE)
    if name == "scenario":
        assert counts["claims"] > 0 and counts["allocations_current"] > 0


def test_dedup_picks_the_same_winner_within_one_file(spark: Any, lakes: dict[str, Path]) -> None:
    register_lake(spark, lakes["hostile"])
    # commit 2 holds G1 of 上海 as 0.05, 0.99, 0.05 (in that order) and G4 of dc_1 as 0.2, 0.99
    winners = spark.sql(
        "SELECT datacentre, util FROM gpu_samples WHERE ts = TIMESTAMP'2020-04-30 16:00:00' "
        "AND gpu_uuid IN ('G1', 'G4') ORDER BY gpu_uuid"
    ).collect()
    assert [(r.datacentre, r.util) for r in winners] == [("上海", 0.05), ("dc_1", 0.99)]
    kept = spark.sql(
        "SELECT _row, _kept FROM gpu_samples_conflicts WHERE datacentre = '上海' AND _kept"
    ).collect()
    assert len(kept) == 1 and kept[0]._row > 0


def test_as_of_reads_the_same_earlier_snapshot(spark: Any, lakes: dict[str, Path]) -> None:
    lake = lakes["hostile"]
    for as_of in ({"gpu_samples": 1, "occupancy": 1}, 1):
        con = connect(lake, ":memory:", as_of=as_of)
        versions = dict(con.execute("SELECT table_name, version FROM _snapshot").fetchall())
        registered = register_lake(spark, lake, as_of=as_of, cache=True)
        assert registered.versions == versions
        for view in ("raw_gpu_samples", "gpu_samples", "gpu_samples_conflicts", "occupancy"):
            compare(spark, con, view)
    assert spark.sql("SELECT count(*) FROM gpu_samples_conflicts").first()[0] == 0
    assert spark.sql("SELECT count(DISTINCT _version) FROM raw_gpu_samples").first()[0] == 1


def test_rendering_is_exact(spark: Any) -> None:
    duck = (
        "-- v: a view; inputs: t\n"
        "CREATE OR REPLACE VIEW \"v\" AS SELECT \"end\", epoch_ms(ts) AS ms, 'it''s \\d' AS s,\n"
        "arg_max(x, (ts, x)) OVER () AS m FROM t QUALIFY row_number() OVER (ORDER BY x DESC) = 1;"
    )
    rendered = spark_sql(duck, lambda rel: ["end", "ts", "x"])
    assert rendered == (
        "CREATE OR REPLACE TEMP VIEW `v` AS SELECT `end`, unix_millis(ts) AS ms, "
        "'it\\'s \\\\d' AS s,\nmax_by(x, (ts, x)) OVER () AS m FROM (SELECT *, row_number() "
        "OVER (ORDER BY x DESC NULLS LAST) AS _qualify FROM t) WHERE _qualify = 1"
    )
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW t AS SELECT * FROM VALUES "
        "(TIMESTAMP'2020-01-01 00:00:00', 1, 5), (TIMESTAMP'2020-01-01 00:00:01', 2, 6) "
        "AS t(ts, x, `end`)"
    )
    spark.sql(rendered)
    assert [tuple(r) for r in spark.table("v").collect()] == [(6, 1577836801000, "it's \\d", 2)]
    counted = spark_sql(
        "CREATE OR REPLACE VIEW c AS SELECT count(DISTINCT struct_pack(x)) OVER (PARTITION BY 1) "
        "AS n FROM t"
    )
    assert "CAST(size(collect_set(struct(x)) OVER (PARTITION BY 1)) AS BIGINT) AS n" in counted
    spark.sql(counted)
    assert [r.n for r in spark.table("c").collect()] == [2, 2]
    with pytest.raises(ValueError, match="QUALIFY"):
        spark_sql("CREATE OR REPLACE VIEW q AS SELECT * FROM a JOIN b QUALIFY x = 1")
