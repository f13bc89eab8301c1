"""Compaction leaves every report unchanged; DuckDB and pandas (via deltalake) read the same
tables."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable

from collectors.replay.helios import HeliosReplay
from pipeline.backfill import LakeSink
from pipeline.maintain import compact
from pipeline.records import KINDS
from tests.test_lineage import REPORTS, SMALL, ok
from warehouse.catalog import connect
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec
from warehouse.vouchers.scenario.write import write_scenario

VERSIONS = re.compile(r"^.*lake versions: .*$", re.MULTILINE)


def _without_versions(text: str) -> str:
    """A report's text without the line or key naming the table versions (compaction makes a
    new version; the figures must not change)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return VERSIONS.sub("", text)
    if isinstance(data, dict):
        data.pop("lineage")
    else:
        for row in data:
            row.pop("lake_versions")
    return json.dumps(data, indent=2)


@pytest.fixture(scope="module")
def scenario_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenario")
    write_scenario(build_scenario(ScenarioSpec(seed=3, anomalies=True, **SMALL)), out)  # type: ignore[arg-type]
    return out / "lake"


@pytest.fixture(scope="module")
def helios_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("helios") / "lake"
    sink = LakeSink(lake, "helios-test", origin="test", chunk_records=20_000)
    for _ in range(2):  # two small commits per partition, so compaction has work to do
        for kind, record in HeliosReplay(vcs=["vc6YE", "vcJLV"]).collect():
            sink.add(kind, record)
        sink.flush()
    return lake


def _reports(lake: Path) -> dict[str, str]:
    return {
        name: _without_versions(ok(*argv, "--lake", str(lake))) for name, argv in REPORTS.items()
    }


def test_compaction_leaves_every_report_of_the_scenario_unchanged(scenario_lake: Path) -> None:
    before = _reports(scenario_lake)
    done = compact(scenario_lake, before=date(2100, 1, 1))
    assert any(r.status == "compacted" for r in done)
    assert _reports(scenario_lake) == before


def test_compaction_leaves_the_helios_reports_unchanged(helios_lake: Path) -> None:
    argv = [
        ("report", "utilisation", "--period", "day", "--by", "scope", "--format", "csv"),
        ("report", "utilisation", "--period", "month", "--by", "cluster", "--format", "json"),
    ]
    before = [_without_versions(ok(*a, "--lake", str(helios_lake))) for a in argv]
    done = compact(helios_lake, before=date(2100, 1, 1))
    assert sum(r.files_before for r in done) > sum(r.files_after for r in done)
    assert [_without_versions(ok(*a, "--lake", str(helios_lake))) for a in argv] == before


@pytest.mark.parametrize("table", ["occupancy", "gpu_samples", "allocations", "inventory"])
def test_duckdb_and_pandas_read_the_same_rows(
    scenario_lake: Path, helios_lake: Path, table: str
) -> None:
    k = next(k for k in KINDS.values() if k.table == table)
    for lake in (scenario_lake, helios_lake):
        if not (lake / table).exists():
            continue
        con = connect(lake, ":memory:")
        duck = con.execute(
            f"SELECT count(*), count(DISTINCT ({', '.join(k.key)})) FROM raw_{table}"
        ).fetchone()
        frame = DeltaTable(str(lake / table)).to_pandas()
        assert duck == (len(frame), len(frame.drop_duplicates(list(k.key))))
        assert sorted(frame["datacentre"].unique()) == [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT datacentre FROM raw_{table} ORDER BY 1"
            ).fetchall()
        ]
