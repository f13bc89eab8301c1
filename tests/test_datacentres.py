"""The data-centre registry: strict, versioned import; utilisation by region and ownership adding
up to the fleet's totals on rollups and raw samples alike; programme effectiveness by region
against the scenario's own rows; the same groups on Spark."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpuledger.cli import main
from pipeline.entity_import import VoucherImportError, import_datacentres
from pipeline.records import GPU_SAMPLE, INVENTORY, coerce
from pipeline.write import write_records
from tests.spark_fixtures import spark_fixture  # noqa: F401 (the session-wide ``spark``)
from warehouse.catalog import connect
from warehouse.catalog.rollup_build import build_rollups
from warehouse.reports.utilisation import lineage, utilisation_report
from warehouse.vouchers.effectiveness import effectiveness
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import (
    DATACENTRES,
    H,
    Scenario,
    ScenarioSpec,
    claim_allocations,
    overlap,
    registry,
    util_quantiles,
)
from warehouse.vouchers.scenario.write import _samples, write_scenario

HEADER = "datacentre,name,region,operator,ownership,hub\n"
ROWS = (
    "dc-sh,Lingang,Shanghai,Lingang Co.,private,yangtze-river-delta\n"
    "dc-ga,Gui'an,Guizhou,Guizhou group,public,guizhou\n"
    "dc-x,Edge site,Hebei,Hebei Co.,private,\n"
)
SPEC = ScenarioSpec(seed=5, months=3, programme_month=1, nodes_per_dc=1, sample_interval_s=3600)
FIGURES = (
    "capacity_gpu_h",
    "allocated_gpu_h",
    "busy_gpu_h",
    "busy_allocated_gpu_h",
    "idle_capacity_gpu_h",
    "idle_held_gpu_h",
)
NEW_DC = "dc-new"  # telemetry the scenario's registry does not list


def csv_file(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text(HEADER + body)
    return path


def registered(lake: Path, as_of: Any = None) -> list[tuple[Any, ...]]:
    con = connect(lake, ":memory:", as_of=as_of)
    try:
        return con.execute("SELECT * FROM datacentres ORDER BY datacentre").fetchall()
    finally:
        con.close()


def test_import_versions_and_as_of(
    lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = csv_file(tmp_path, "dcs.csv", ROWS)
    assert main(["datacentres", "import", "--lake", str(lake), str(first)]) == 0
    assert "datacentre: 3 new or changed, 0 unchanged" in capsys.readouterr().out
    assert registered(lake)[2] == ("dc-x", "Edge site", "Hebei", "Hebei Co.", "private", None)
    con = connect(lake, ":memory:")
    before = lineage(con).versions
    con.close()
    # the same file again: nothing written, no new version
    assert main(["datacentres", "import", "--lake", str(lake), str(first)]) == 0
    assert "nothing changed" in capsys.readouterr().out
    # a correction (dc-ga becomes private) as JSON lines: a new version, the old one in history
    fixed = tmp_path / "fix.jsonl"
    row = {"datacentre": "dc-ga", "name": "Gui'an", "region": "Guizhou"}
    row |= {"operator": "Guizhou group", "ownership": "private", "hub": "guizhou"}
    fixed.write_text(json.dumps(row) + "\n")
    import_datacentres(lake, [fixed])
    assert [r[4] for r in registered(lake)] == ["private", "private", "private"]
    assert [r[4] for r in registered(lake, before)] == ["public", "private", "private"]
    con = connect(lake, ":memory:")
    history = con.execute(
        "SELECT ownership, _source FROM datacentres_history WHERE datacentre = 'dc-ga' "
        "ORDER BY _import_id"
    ).fetchall()
    versions = lineage(con).versions
    con.close()
    assert [h[0] for h in history] == ["public", "private"]
    assert history[0][1] == f"{first}:3" and history[1][1] == f"{fixed}:1"
    assert versions["datacentres"] == 2 and before["datacentres"] == 1
    # Parquet works the same; the registry refers to nothing, so it imports alone
    parquet = tmp_path / "more.parquet"
    pq.write_table(pa.Table.from_pylist([{**row, "datacentre": "dc-y", "hub": None}]), parquet)
    assert import_datacentres(lake, [parquet]).written == {"datacentre": 1}


def test_any_bad_row_refuses_the_whole_import(
    lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = csv_file(tmp_path, "good.csv", ROWS)
    import_datacentres(lake, [good])
    before = registered(lake)
    bad = csv_file(
        tmp_path,
        "bad.csv",
        "dc-a,A,Gansu,Op,state-owned,gansu\n"  # line 2: ownership
        "dc-b,B,Gansu,Op,public,gobi\n"  # line 3: no such hub
        "dc-c,C,,Op,public,\n"  # line 4: region missing
        "dc-d,D,Gansu,Op,public,gansu\n"  # line 5: fine, but not written either
        "dc-d,D,Gansu,Op,public,gansu\n"  # line 6: the same id twice
        "dc-e,E,unregistered,Op,public,\n",  # line 7: the reports' group name
    )
    assert main(["datacentres", "import", "--lake", str(lake), str(bad)]) == 1
    err = capsys.readouterr().err
    assert "5 problem(s), nothing written" in err
    assert f"{bad}:2: ownership 'state-owned' is not one of public, private" in err
    assert f"{bad}:3: hub 'gobi' is not a national computing hub" in err
    assert f"{bad}:4: datacentre.region is required" in err
    assert f"{bad}:6: datacentre 'dc-d' already at {bad}:5" in err
    assert f"{bad}:7: region 'unregistered' names the reports' group" in err
    assert registered(lake) == before
    with pytest.raises(VoucherImportError, match="unknown column.*tier"):
        import_datacentres(lake, [_extra_column(tmp_path)])


def _extra_column(tmp: Path) -> Path:
    path = tmp / "extra.csv"
    path.write_text("datacentre,name,region,operator,ownership,hub,tier\nd,D,R,O,public,,3\n")
    return path


# ----------------------------------------------------------------- utilisation by group
@pytest.fixture(scope="module")
def scenario_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, Path]:
    """The clean scenario (registry included) plus one data centre the registry lacks;
    rollups built for every closed partition."""
    out = tmp_path_factory.mktemp("dc-scenario")
    scenario = build_scenario(SPEC)
    write_scenario(scenario, out)
    lake = out / "lake"
    t0 = scenario.month_bounds[0][1]
    inv = {"datacentre": NEW_DC, "cluster": "c9", "node": "n9", "valid_from": t0}
    inv |= {"valid_to": t0 + 40 * 24 * H, "gpu_count": 2, "source": "t"}
    write_records(lake, INVENTORY, [coerce(INVENTORY, inv)], "new-inv")
    samples = [
        coerce(
            GPU_SAMPLE,
            {
                "ts": t0 + h * H,
                "interval_s": 3600.0,
                "datacentre": NEW_DC,
                "cluster": "c9",
                "node": "n9",
                "gpu_uuid": f"GPU-new-{g}",
                "util": (h % 7) / 7,
                "source": "t",
            },
        )
        for g in range(2)
        for h in range(0, 40 * 24, 3)
    ]
    write_records(lake, GPU_SAMPLE, samples, "new-samples")
    build_rollups(lake)
    return scenario, lake


def _close(a: float | None, b: float | None, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


@pytest.mark.parametrize("period", ["month", "day"])
def test_groups_add_up_to_the_fleet_on_both_paths(
    scenario_lake: tuple[Scenario, Path], period: str
) -> None:
    _, lake = scenario_lake
    rolled = connect(lake, ":memory:")
    raw = connect(lake, ":memory:", rollups=False)
    fleet: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in utilisation_report(rolled, period=period, by="datacentre"):  # type: ignore[arg-type]
        for f in FIGURES:
            fleet[r["period"]][f] += r[f] or 0.0
    for by in ("region", "ownership"):
        rows = utilisation_report(rolled, period=period, by=by)  # type: ignore[arg-type]
        samples = utilisation_report(raw, period=period, by=by, source="samples")  # type: ignore[arg-type]
        assert [list(r) for r in rows[:1]] == [["period", by, "datacentres", *list(rows[0])[3:]]]
        assert len(rows) == len(samples)
        for got, want in zip(rows, samples, strict=True):  # rollups = raw samples, to 1e-9
            assert all(_close(got[k], want[k], 1e-9) for k in got if isinstance(got[k], float))
            assert {k: v for k, v in got.items() if not isinstance(v, float)} == {
                k: v for k, v in want.items() if not isinstance(v, float)
            }
        groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for r in rows:
            for f in FIGURES:
                groups[r["period"]][f] += r[f] or 0.0
            if r["capacity_gpu_h"] and r["busy_gpu_h"] is not None:  # rates from summed hours
                assert _close(r["utilisation"], r["busy_gpu_h"] / r["capacity_gpu_h"], 1e-12)
            if r["capacity_gpu_h"] and r["allocated_gpu_h"] is not None:
                rate = r["allocated_gpu_h"] / r["capacity_gpu_h"]
                assert _close(r["allocation_rate"], rate, 1e-12)
        assert groups.keys() == fleet.keys()
        for p in fleet:
            for f in FIGURES:
                assert _close(groups[p][f], fleet[p][f], 1e-12), (by, p, f)
        unregistered = [r for r in rows if r[by] == "unregistered"]
        assert unregistered and {r["datacentres"] for r in unregistered} == {NEW_DC}
        assert any(r["capacity_gpu_h"] for r in unregistered)
    rolled.close()
    raw.close()


def test_cli_by_region_json(
    scenario_lake: tuple[Scenario, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, lake = scenario_lake
    argv = ["report", "utilisation", "--lake", str(lake), "--by", "ownership", "--format", "json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    owners = {r["ownership"]: r["datacentres"] for r in rows}
    assert owners == {"private": "dc-sh", "public": "dc-cd+dc-ga", "unregistered": NEW_DC}
    assert all("datacentres=" in r["lake_versions"] for r in rows)


# ----------------------------------------------------------------- effectiveness by region
def _expected_by_region(scenario: Scenario, programme: str) -> dict[tuple[str, str], list[float]]:
    """(month, region) -> [capacity, allocated, busy, subsidised GPU-hours] from the scenario's
    own allocations, samples and claims (no SQL)."""
    region_of = {r["datacentre"]: r["region"] for r in registry()}
    spec = scenario.spec
    months = scenario.month_bounds[:2]  # the window of months=1 around the start (month 1)
    out: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for label, p0, p1 in months:
        for dc, _, _ in DATACENTRES:
            out[(label, region_of[dc])][0] += spec.nodes_per_dc * spec.gpus_per_node * (p1 - p0) / H
        for a in scenario.allocations:
            out[(label, region_of[a.datacentre])][1] += (
                len(a.gpus) * overlap(a.s_ms, a.e_ms, p0, p1) / H
            )
    iv = spec.sample_interval_s * 1000
    for s in _samples(scenario, random.Random(spec.seed + 1), util_quantiles()):
        for label, p0, p1 in months:
            out[(label, region_of[s["datacentre"]])][2] += (
                s["util"] * overlap(s["ts"], s["ts"] + iv, p0, p1) / H
            )
    vouchers = {v["voucher_id"]: v["programme_id"] for v in scenario.entities["voucher"]}
    for c in scenario.entities["claim"]:
        if vouchers[c["voucher_id"]] == programme and c["_month"] in {m[0] for m in months}:
            hours = sum(
                len(a.gpus) * overlap(a.s_ms, a.e_ms, c["_p0"], c["_p1"]) / H
                for a in claim_allocations(scenario, c)
            )
            out[(c["_month"], region_of[c["datacentre"]])][3] += hours
    return out


def test_effectiveness_by_region_matches_the_scenario(
    scenario_lake: tuple[Scenario, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, lake = scenario_lake
    con = connect(lake, ":memory:")
    report = effectiveness(con, "SH-CV", months=1)
    con.close()
    want = _expected_by_region(scenario, "SH-CV")
    got = {
        (r["period"], r["region"]): r for r in report["by_region"] if r["region"] != "unregistered"
    }
    assert got.keys() == want.keys()
    for key, (cap, alloc, busy, subsidised) in want.items():
        r = got[key]
        assert _close(r["capacity_gpu_h"], cap, 1e-9), key
        assert _close(r["allocated_gpu_h"], alloc, 1e-9), key
        assert _close(r["busy_gpu_h"], busy, 1e-9), key
        assert _close(r["subsidised_gpu_h"], subsidised, 1e-9), key
        assert _close(r["utilisation"], busy / cap, 1e-9) and _close(
            r["subsidised_share"], subsidised / cap, 1e-9
        )
    # SH-CV pays for Shanghai and Gui'an, nothing in Sichuan; the unregistered site gets none
    start = report["start"][:7]
    assert got[(start, "Sichuan")]["subsidised_gpu_h"] == 0.0
    assert got[(start, "Guizhou")]["subsidised_gpu_h"] > 0
    assert [
        r["subsidised_gpu_h"] for r in report["by_region"] if r["region"] == "unregistered"
    ] == [0.0, 0.0]
    owners = {(r["period"], r["ownership"]): r for r in report["by_ownership"]}
    public = [got[(start, "Sichuan")], got[(start, "Guizhou")]]
    assert _close(
        owners[(start, "public")]["capacity_gpu_h"], sum(r["capacity_gpu_h"] for r in public), 1e-12
    )
    lake_arg = ["--lake", str(lake), "--programme", "SH-CV", "--months", "1"]
    assert (
        main(["report", "effectiveness", *lake_arg, "--format", "csv", "--table", "by_region"]) == 0
    )
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[0].startswith("# lake versions") and csv_lines[1].startswith(
        "period,region,datacentres,"
    )
    assert main(["report", "effectiveness", *lake_arg]) == 0
    assert "subsidised GPU-hours and capacity by region" in capsys.readouterr().out


# ----------------------------------------------------------------- the Spark engine
def test_spark_gives_the_same_groups(scenario_lake: tuple[Scenario, Path], spark: Any) -> None:
    pytest.importorskip("pyspark")
    from warehouse.spark.reports import open_spark

    _, lake = scenario_lake
    duck = connect(lake, ":memory:")
    duck.execute("SET TimeZone = 'UTC'")
    on_spark: Any = open_spark(lake, spark=spark)
    try:
        assert "datacentres" in on_spark.registered.views
        for by in ("region", "ownership"):
            want = utilisation_report(duck, period="month", by=by)
            got = utilisation_report(on_spark, period="month", by=by)
            assert [(r["period"], r[by], r["datacentres"]) for r in got] == [
                (r["period"], r[by], r["datacentres"]) for r in want
            ]
            for g, w in zip(got, want, strict=True):
                assert all(_close(g[k], w[k], 1e-9) for k in g if isinstance(w[k], float))
        want_e = effectiveness(duck, "SH-CV", months=1)
        got_e = effectiveness(on_spark, "SH-CV", months=1)
        for key in ("by_region", "by_ownership"):
            assert [list(r.values())[:3] for r in got_e[key]] == [
                list(r.values())[:3] for r in want_e[key]
            ]
            for g, w in zip(got_e[key], want_e[key], strict=True):
                assert all(_close(g[k], w[k], 1e-9) for k in g if isinstance(w[k], float))
    finally:
        on_spark.close()
        duck.close()
