"""How reports write numbers (``warehouse.reports.render``): tables for reading by column name, CSV
and
JSON exact to 12 significant digits without the binary noise of float sums."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from warehouse.reports.render import column_kind, render, tidy, to_json

NOISY = 23999.999999999076  # a sum of hourly GPU-hours as DuckDB adds it


def test_tidy_drops_float_noise_and_keeps_numbers() -> None:
    assert tidy(NOISY) == 24000.0 and repr(tidy(NOISY)) == "24000.0"
    assert tidy(0.1 + 0.2) == 0.3
    assert tidy(0.583318302671234) == 0.583318302671
    assert tidy(1e-20 / 3) == pytest.approx(1e-20 / 3, rel=1e-12)  # tiny values keep digits
    assert tidy(-0.0) == 0.0 and tidy(float("inf")) == float("inf")
    assert tidy({"a": [NOISY, 1, "x", None, True]}) == {"a": [24000.0, 1, "x", None, True]}
    for x in (NOISY, 1 / 3, 2.5e17 / 7, 123456.789012345678):
        assert tidy(x) == pytest.approx(x, rel=5e-12)
        assert tidy(tidy(x)) == tidy(x)


def test_column_kinds() -> None:
    rates = ["allocation_rate", "utilisation", "efficiency", "no_telemetry_share", "coverage"]
    assert {column_kind(c) for c in rates + ["telemetry_share", "top10_share"]} == {"rate"}
    hours = ["capacity_gpu_h", "busy_allocated_gpu_h", "idle_held_gpu_h", "claimed_gpu_hours"]
    assert {column_kind(c) for c in hours} == {"gpu_h"}
    money = ["subsidy_cny", "cny_at_stake", "subsidy_per_busy_gpu_h", "unit_price_cny"]
    assert {column_kind(c) for c in money} == {"cny"}
    assert {column_kind(c) for c in ("gpu_count", "claims", "rows", "util")} == {"number"}


ROWS = [
    {
        "group": "dc1",
        "capacity_gpu_h": NOISY * 10,
        "busy_gpu_h": 0.049,
        "utilisation": 0.7340000000000001,
        "no_telemetry_share": 0.0,
        "subsidy_cny": 1006.4,
        "gpu_count": 0.5,
        "claims": 3,
        "efficiency": None,
    }
]


def test_table_is_for_reading() -> None:
    table = render(ROWS, "table").splitlines()
    cells = table[2].split()
    assert cells == ["dc1", "240,000.0", "0.0", "73.4%", "0.0%", "1,006.40", "0.5", "3"]
    assert table[0].split()[-1] == "efficiency"  # NULL is an empty cell


def test_csv_and_json_are_exact_numbers_without_noise() -> None:
    out = render(ROWS, "csv")
    assert "239999.99999999" not in out and "0.7340000000000001" not in out
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["capacity_gpu_h"] == "240000.0" and row["utilisation"] == "0.734"
    assert float(row["busy_gpu_h"]) == 0.049 and row["efficiency"] == ""
    (obj,) = json.loads(render(ROWS, "json"))
    assert obj["capacity_gpu_h"] == 240000.0 and obj["utilisation"] == 0.734
    assert obj["claims"] == 3 and obj["efficiency"] is None
    nested = json.loads(to_json({"x": [{"v": NOISY}], "d": Decimal("0.30000000000000004")}))
    assert nested == {"x": [{"v": 24000.0}], "d": 0.3}
    assert render([{"l": [NOISY]}], "csv") == "l\n[24000.0]\n"
