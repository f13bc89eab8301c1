"""Hostile names (spreadsheet formulas, markup) come out inert in every report and the audit,
in every format: CSV cells neutralised (OWASP), HTML escaped, JSON exact."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pipeline.records import GPU_SAMPLE, OCCUPANCY, coerce
from pipeline.write import write_records
from tests.test_audit import build, claim
from tests.test_lineage import ok

FORMULA = '=HYPERLINK("http://evil.example","x")'
NAMES = {
    "datacentre": FORMULA,
    "cluster": "+1+1",
    "scope": "@SUM(1)",
    "other_scope": "<script>alert(1)</script>",
    "gpu_dc": "-2+3",
    "gpu_cluster": "\tcmd",
}
T0 = 1_588_262_400_000  # 2020-05-01T00:00+08:00
MIN = 60_000


def assert_inert_csv(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    rows = list(csv.reader(io.StringIO("".join(lines))))
    for row in rows:
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start like a formula
    return rows


@pytest.fixture(scope="module")
def hostile_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("hostile") / "lake"
    occ = [
        coerce(
            OCCUPANCY,
            {
                "ts": T0 + i * MIN,
                "interval_s": 60.0,
                "datacentre": NAMES["datacentre"],
                "cluster": NAMES["cluster"],
                "scope": scope,
                "gpus_total": 8.0,
                "gpus_allocated": 3.0,
                "source": "=evil()",
            },
        )
        for i in range(60)
        for scope in (NAMES["scope"], NAMES["other_scope"])
    ]
    smp = [
        coerce(
            GPU_SAMPLE,
            {
                "ts": T0 + i * MIN,
                "interval_s": 60.0,
                "datacentre": NAMES["gpu_dc"],
                "cluster": NAMES["gpu_cluster"],
                "node": "@node",
                "gpu_uuid": "=cmd|' /C calc'!A0",
                "util": 0.5,
                "source": "test",
            },
        )
        for i in range(60)
    ]
    write_records(lake, OCCUPANCY, occ, "occ")
    write_records(lake, GPU_SAMPLE, smp, "smp")
    return lake


@pytest.mark.parametrize("by", ["datacentre", "cluster", "scope"])
def test_utilisation_report_in_every_format(hostile_lake: Path, tmp_path: Path, by: str) -> None:
    base = ("report", "utilisation", "--lake", str(hostile_lake), "--by", by, "--period", "day")
    rows = assert_inert_csv(ok(*base, "--format", "csv"))
    assert any(f"'{FORMULA}" in row for row in rows)
    data = json.loads(ok(*base, "--format", "json"))
    assert FORMULA in {r["datacentre"] for r in data}  # JSON stays exact
    if by == "scope":
        assert {NAMES["scope"], NAMES["other_scope"]} <= {r["scope"] for r in data}
    assert FORMULA in ok(*base, "--format", "table")
    page = tmp_path / "u.html"
    ok(*base, "--format", "html", "--output", str(page))
    html = page.read_text()
    assert "<script>alert(1)</script>" not in html
    if by == "scope":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_sql_csv_is_inert(hostile_lake: Path) -> None:
    out = ok("sql", "--lake", str(hostile_lake), "--format", "csv", "SELECT * FROM gpu_samples")
    rows = assert_inert_csv(out)
    assert rows[1][rows[0].index("gpu_uuid")] == "'=cmd|' /C calc'!A0"


def test_audit_in_every_format(lake: Path, tmp_path: Path) -> None:
    hostile = "=1+1"
    build(lake, tmp_path, [claim(hostile, claimed_gpu_hours=99.0), claim("@c2", voucher_id="v2")])
    base = ("audit", "--lake", str(lake), "--month", "2026-05")
    rows = assert_inert_csv(ok(*base, "--format", "csv"))
    assert any("'=1+1" in row for row in rows)
    report = json.loads(ok(*base, "--format", "json"))
    assert hostile in json.dumps(report)
    assert hostile in ok(*base, "--format", "table")
    page = tmp_path / "a.html"
    ok(*base, "--format", "html", "--output", str(page))
    assert "=1+1" in page.read_text()  # as text inside escaped markup; no script can run


def test_effectiveness_csv_is_inert(lake: Path, tmp_path: Path) -> None:
    build(lake, tmp_path, [claim("=1+1")])
    out = ok("report", "effectiveness", "--lake", str(lake), "--programme", "P1", "--format", "csv")
    assert_inert_csv(out)
