"""SQL templates (``warehouse.catalog.sources.expand_sql``): a use is filled in exactly, a use
that does not fit the template fails, and the coverage rule written once in ``coverage.sql``
serves the catalogue's coverage views and the windowed fleet query, whose window filter still
reaches the Parquet scan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.ops_lake import mixed_lake
from warehouse.catalog import connect, load_sql
from warehouse.catalog.sources import expand_sql

NOW = 1_780_000_000_000

OCCUPANCY_COVERAGE = """\
CREATE OR REPLACE VIEW occupancy_coverage AS
SELECT
    datacentre, cluster, scope,
    s_ms,
    s_ms + least(iv_ms, coalesce(next_ms - s_ms, iv_ms)) AS e_ms,
    gpus_total, gpus_allocated, gpus_down, source
FROM (
    SELECT
        datacentre, cluster, scope, gpus_total, gpus_allocated, gpus_down, source, s_ms,
        CAST(round(interval_s * 1000) AS BIGINT) AS iv_ms,
        lead(s_ms) OVER (PARTITION BY datacentre, cluster, scope ORDER BY s_ms, _version, \
_file, _row)
            AS next_ms
    FROM (SELECT *, epoch_ms(ts) AS s_ms FROM raw_occupancy)
)
WHERE next_ms IS DISTINCT FROM s_ms;
"""


def without_header(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines(keepends=False) if not line.startswith("--"))


def test_the_coverage_view_is_the_template_filled_in_exactly() -> None:
    assert without_header(load_sql("occupancy_coverage")) + "\n" == OCCUPANCY_COVERAGE


def test_a_use_is_indented_as_written_and_continues_a_slot_over_lines() -> None:
    text = (
        "WITH\nc AS (\n    /*coverage\n        rows: raw_occupancy\n            WHERE ts < now()\n"
        "        keys: datacentre, cluster, scope\n        values: gpus_total\n"
        "        unit: datacentre, cluster, scope\n    */\n)\nSELECT * FROM c"
    )
    lines = expand_sql(text).splitlines()
    assert lines[:3] == ["WITH", "c AS (", "    SELECT"]
    scan = "        FROM (SELECT *, epoch_ms(ts) AS s_ms FROM raw_occupancy WHERE ts < now())"
    assert scan in lines
    assert lines[-2:] == [")", "SELECT * FROM c"]
    assert "/*" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "rows: r\nkeys: k\nvalues: v\n",
            "has slots keys, rows, unit, values, given keys, rows, values",
        ),
        ("rows: r\nkeys: k\nvalues: v\nunit: u\nextra: x\n", "given extra, keys"),
        ("rows: r\nrows: s\n", "slot rows given twice"),
        ("raw_occupancy\n", "must start with '<slot>: '"),
    ],
)
def test_a_use_that_does_not_fit_its_template_fails(body: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        expand_sql(f"SELECT * FROM (\n/*coverage\n{body}*/\n)", "t.sql")


def test_a_use_of_a_file_that_is_not_there_fails() -> None:
    with pytest.raises(KeyError, match="no warehouse SQL file nothing.sql"):
        expand_sql("/*nothing\n    rows: r\n*/")


def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node["extra_info"]] if node.get("name") == "READ_PARQUET" else []
    return found + [s for child in node.get("children", []) for s in scans(child)]


def test_the_window_query_still_filters_its_parquet_scans(lake: Path) -> None:
    """Occupancy and samples are read from $lo_ms to $w1_ms: the filter is in their scans."""
    mixed_lake(lake, NOW)
    con = connect(lake, ":memory:")
    try:
        params = {"w0_ms": NOW - 600_000, "w1_ms": NOW, "lo_ms": NOW - 4_200_000}
        sql = "EXPLAIN (FORMAT json) " + load_sql("ops_fleet_window")
        plan = json.loads(con.execute(sql, params).fetchall()[0][1])
    finally:
        con.close()
    read = [s for node in plan for s in scans(node)]
    windowed = {
        column: [s for s in read if column in s["Projections"] and "Filters" in s]
        for column in ("gpus_allocated", "util")
    }
    for column, found in windowed.items():
        assert len(found) == 1, (column, read)
        assert "ts>=" in found[0]["Filters"] and "ts<" in found[0]["Filters"], found
