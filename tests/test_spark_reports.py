"""The reports on Spark give DuckDB's rows: the utilisation report (day / month by cluster,
data centre and scope, in Asia/Shanghai and Australia/Adelaide), the audit findings and the
programme effectiveness report, over small Helios, openb, GenAI and voucher-scenario lakes,
with rollups built and without (the snapshot before ``build_rollups``, read with --as-of).

Each lake is built once per module and registered once per snapshot. By default each lake
runs a few utilisation cases and the scenario all twelve; ``GPULEDGER_SPARK_FULL=1`` runs all
twelve everywhere."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.replay.genai import GenaiReplay
from collectors.replay.helios import HeliosReplay
from collectors.replay.openb import OpenbReplay
from pipeline.backfill import LakeSink
from tests.conftest import shared_data
from tests.spark_fixtures import spark_fixture  # noqa: F401 (the session-wide ``spark``)
from warehouse.catalog import connect
from warehouse.catalog.rollup_build import build_rollups
from warehouse.reports.utilisation import utilisation_report
from warehouse.spark.sql import render_sql, spark_sql
from warehouse.vouchers.audit import audit
from warehouse.vouchers.effectiveness import effectiveness
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec
from warehouse.vouchers.scenario.write import write_scenario

ZONES = ("Asia/Shanghai", "Australia/Adelaide")
ALL_CASES = [
    (p, by, tz)
    for p in ("day", "month")
    for by in ("cluster", "datacentre", "scope")
    for tz in ZONES
]
FEW_CASES = [
    ("day", "cluster", "Asia/Shanghai"),
    ("day", "scope", "Australia/Adelaide"),
    ("month", "datacentre", "Australia/Adelaide"),
    ("month", "cluster", "Asia/Shanghai"),
]
FULL = os.environ.get("GPULEDGER_SPARK_FULL") == "1"
OPENB = shared_data() / "alibaba-openb-gpu-2023"
GENAI = shared_data() / "alibaba-genai-2026"


def same(got: Any, want: Any, where: str = "") -> None:
    """Equal, floats to 1e-9 relative (sums of doubles are added in another order)."""
    if isinstance(got, float) and isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (where, got, want)
    elif isinstance(got, dict) and isinstance(want, dict):
        assert list(got) == list(want), (where, list(got), list(want))
        for k in got:
            same(got[k], want[k], f"{where}.{k}")
    elif isinstance(got, list | tuple) and isinstance(want, list | tuple):
        assert len(got) == len(want), (where, len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{where}[{i}]")
    else:
        assert got == want, (where, got, want)


def helios(lake: Path) -> None:
    sink = LakeSink(lake, "helios-test", origin="test", chunk_records=20_000)
    first = None
    for kind, record in HeliosReplay(vcs=["vcJLV"]).collect():
        first = first or record["ts"]
        if record["ts"] < first + 12 * 86_400_000:  # twelve days of one VC
            sink.add(kind, record)
    sink.flush()


def openb(lake: Path) -> None:
    sink = LakeSink(lake, "openb-test", origin="test")
    start = dt.datetime.fromisoformat("2020-04-01T00:00:00+08:00")
    for kind, record in OpenbReplay(OPENB, start=start).collect():
        sink.add(kind, record)
    sink.flush()


def genai(lake: Path) -> None:
    sink = LakeSink(lake, "genai-test", origin="test")
    pods: set[str] = set()
    for kind, record in GenaiReplay(GENAI).collect():
        if record["pod"] in pods or len(pods) < 8:  # eight pods over the whole trace
            pods.add(record["pod"])
            sink.add(kind, record)
    sink.flush()


def scenario(lake: Path) -> None:
    spec = ScenarioSpec(
        seed=3, anomalies=True, months=3, programme_month=1, nodes_per_dc=1, sample_interval_s=7200
    )
    write_scenario(build_scenario(spec), lake.parent)


BUILDERS = {"helios": helios, "openb": openb, "genai": genai, "scenario": scenario}


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, int]]]:
    """Every lake (whose trace is here), rollups built, with the versions before the build."""
    root = tmp_path_factory.mktemp("spark-report-lakes")
    out = {}
    for name, build in BUILDERS.items():
        if name == "openb" and not (OPENB / "openb_pod_list_default.csv").exists():
            continue
        if name == "genai" and not (GENAI / "pod_gpu_duty_cycle_anon.csv.gz").is_file():
            continue
        lake = root / name / "lake"
        build(lake)
        before = connect(lake, ":memory:")
        versions = dict(before.execute("SELECT table_name, version FROM _snapshot").fetchall())
        before.close()
        build_rollups(lake)
        out[name] = (lake, {t: 0 if v is None else int(v) for t, v in versions.items()})
    return out


SNAPSHOTS = [("helios", True), ("openb", True)]  # no GPU samples: nothing to roll up
SNAPSHOTS += [(name, rolled) for name in ("genai", "scenario") for rolled in (True, False)]


@pytest.fixture(
    scope="module", params=SNAPSHOTS, ids=[f"{n}-{'rollups' if r else 'raw'}" for n, r in SNAPSHOTS]
)
def engines(
    request: pytest.FixtureRequest, spark: Any, lakes: dict[str, tuple[Path, dict[str, int]]]
) -> Iterator[tuple[str, bool, Any, Any, Path]]:
    """(lake name, rollups built, DuckDB connection, Spark connection, lake) of one snapshot."""
    from warehouse.spark.reports import open_spark

    name, rolled = request.param
    if name not in lakes:
        pytest.skip(f"the {name} trace is not under {shared_data()} (set GPULEDGER_SHARED_DATA)")
    lake, before = lakes[name]
    as_of = None if rolled else before
    duck = connect(lake, ":memory:", as_of=as_of)
    duck.execute("SET TimeZone = 'UTC'")
    spark_con = open_spark(lake, as_of, spark=spark)
    state = spark_con.registered.rollups
    assert state is not None
    if rolled and name in ("genai", "scenario"):
        assert state.fresh and len(state.fresh) == len(state.stats)  # served from stored bins
    if not rolled:
        assert not state.fresh
    yield name, rolled, duck, spark_con, lake
    spark_con.close()
    duck.close()


def test_utilisation_reports_are_equal(engines: tuple[str, bool, Any, Any, Path]) -> None:
    name, rolled, duck, spark_con, _ = engines
    cases = ALL_CASES if FULL or (name == "scenario" and rolled) else FEW_CASES
    for period, by, tz in cases:
        kw: dict[str, Any] = {"period": period, "by": by, "tz": tz}
        want = utilisation_report(duck, **kw)
        assert want, kw
        same(utilisation_report(spark_con, **kw), want, f"{name} {kw}")
    lineage = duck.execute("SELECT table_name, version FROM _snapshot").fetchall()
    assert dict(spark_con.execute("SELECT table_name, version FROM _snapshot").fetchall()) == dict(
        lineage
    )


def test_a_window_cutting_bins_reads_samples_alike(
    engines: tuple[str, bool, Any, Any, Path],
) -> None:
    name, _, duck, spark_con, _ = engines
    if name != "scenario":
        pytest.skip("one lake is enough for the raw sample path")
    # Asia/Kathmandu (+5:45) periods fall on bin edges; explicit dates clip the months
    kw: dict[str, Any] = {"period": "month", "by": "cluster", "tz": "Asia/Kathmandu"}
    kw |= {"date_from": dt.date(2026, 3, 10), "date_to": dt.date(2026, 4, 20)}
    same(
        utilisation_report(spark_con, **kw, source="samples"),
        utilisation_report(duck, **kw, source="samples"),
    )


def test_audit_and_effectiveness_are_equal(engines: tuple[str, bool, Any, Any, Path]) -> None:
    name, _, duck, spark_con, lake = engines
    if name != "scenario":
        pytest.skip("only the scenario lake has vouchers")
    months = json.loads((lake.parent / "ground_truth.json").read_text())["months"]
    found = 0
    for month in months:
        want = audit(duck, month=month)
        got = audit(spark_con, month=month)
        same(got, want, month)
        found += len(want["findings"])
    assert found >= 9  # every planted finding
    for programme in ("SH-CV", "CD-CV"):
        same(effectiveness(spark_con, programme), effectiveness(duck, programme), programme)


def test_the_rendering_is_exact() -> None:
    got = render_sql(
        "SELECT strftime(timezone($tz, ts), '%Y-%m') AS m, epoch_ms(s_ms) AS t, "
        "list(DISTINCT a ORDER BY a) AS l, string_agg(DISTINCT s, '+' ORDER BY s) AS j, "
        "len(l) AS n, list_contains(l, $x) AS c, x // 2 AS d, 1.5 AS f, [] AS e "
        "FROM t SEMI JOIN u USING (k) ORDER BY m, t DESC",
        params={"tz": "Asia/Shanghai", "x": "it's"},
    )
    assert got == (
        "SELECT date_format(from_utc_timestamp(ts, 'Asia/Shanghai'), 'yyyy-MM') AS m, "
        "timestamp_millis(s_ms) AS t, array_sort(collect_set(a)) AS l, CASE WHEN count(s) = 0 "
        "THEN NULL ELSE array_join(array_sort(collect_set(s)), '+') END AS j, array_size(l) AS n, "
        "(array_position(l, 'it\\'s') > 0) AS c, x div 2 AS d, 1.5D AS f, array() AS e "
        "FROM t LEFT SEMI JOIN u ON t.k = u.k ORDER BY m NULLS LAST, t DESC NULLS LAST"
    )
    series = render_sql(
        "SELECT unnest(generate_series(a, b, i)) AS x, unnest(range(p, q)) * 9 AS y, "
        "epoch_ms(timezone('UTC', CAST(d AS TIMESTAMP))) AS z FROM t"
    )
    assert series == (
        "SELECT explode(CASE WHEN a <= b THEN sequence(a, b, i) END) AS x, explode(transform("
        "CASE WHEN (p) < (q) THEN sequence(p, (q) - 1) ELSE CAST(array() AS ARRAY<BIGINT>) END, "
        "_u -> _u * 9)) AS y, unix_millis(to_utc_timestamp(CAST(d AS TIMESTAMP), 'UTC')) AS z "
        "FROM t"
    )
    lists = render_sql("SELECT [a // 2] AS l, [1, b] AS m, l[1] AS i, f(x)[2] AS j FROM t")
    assert lists == "SELECT array(a div 2) AS l, array(1, b) AS m, l[1] AS i, f(x)[2] AS j FROM t"
    with pytest.raises(ValueError, match="timezone"):
        render_sql("SELECT timezone('UTC', a + b) FROM t")
    with pytest.raises(ValueError, match="string_agg"):
        render_sql("SELECT string_agg(x, ',') FROM t")
    with pytest.raises(ValueError, match="no value"):
        render_sql("SELECT $nope")


def test_rendered_sql_runs_on_spark(spark: Any) -> None:
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW t AS SELECT * FROM VALUES "
        "(TIMESTAMP'2020-01-31 20:00:00', 'b', 'x'), (TIMESTAMP'2020-02-01 00:00:00', NULL, 'x') "
        "AS t(ts, a, k)"
    )
    rows = spark.sql(
        render_sql(
            "SELECT strftime(timezone($tz, ts), '%Y-%m-%d') AS d, to_json(struct_pack(ts, a, "
            "n := 1)) AS j FROM t ORDER BY a",
            params={"tz": "Asia/Shanghai"},
        )
    ).collect()
    assert [tuple(r) for r in rows] == [
        ("2020-02-01", '{"ts":"2020-01-31 20:00:00+00","a":"b","n":1}'),
        ("2020-02-01", '{"ts":"2020-02-01 00:00:00+00","a":null,"n":1}'),
    ]
    view = spark_sql(
        "CREATE OR REPLACE VIEW w AS SELECT * FROM (SELECT a, k FROM t UNION ALL BY NAME "
        "SELECT k, a FROM t)",
        describe=lambda q: spark.sql(q).columns,
    )
    assert "UNION ALL SELECT `a`, `k` FROM (SELECT k, a FROM t)" in view
    spark.sql(view)
    assert spark.table("w").columns == ["a", "k"] and spark.table("w").count() == 4
