"""Voucher import: whole-import refusal with file:line, idempotence, corrections in history."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.entities import CLAIM, ENTITIES
from pipeline.entity_import import VoucherImportError, import_files
from warehouse.vouchers.attribution import open_audit

FIX = Path(__file__).resolve().parent / "fixtures" / "vouchers"
GOOD = {
    "programme": [FIX / "programmes.csv"],
    "tenant": [FIX / "tenants.csv"],
    "voucher": [FIX / "vouchers.csv"],
    "claim": [FIX / "claims.csv"],
}


def snapshot(lake: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lake)): p.read_bytes() for p in lake.rglob("*") if p.is_file()}


def test_import_csv_and_views(lake: Path) -> None:
    result = import_files(lake, GOOD, now_ms=1_000)
    assert result.written == {"programme": 2, "tenant": 2, "voucher": 2, "claim": 2}
    con = open_audit(lake)
    rows = con.execute(
        "SELECT claim_id, allocation_ids, subsidy_cny, epoch_ms(period_start) FROM claims "
        "ORDER BY claim_id"
    ).fetchall()
    # 2026-05-01T00:00+08:00 = 2026-04-30T16:00Z
    assert rows == [
        ("c-1", ["a-1", "a-2"], 1000.0, 1777564800000),
        ("c-2", None, 240.0, 1777564800000),
    ]
    progs = con.execute(
        "SELECT programme_id, eligible_tenant_types, eligible_datacentres, "
        "price_cap_cny_per_gpu_hour FROM programmes ORDER BY 1"
    ).fetchall()
    assert progs == [
        ("CD-2026", ["research"], ["dc-cd", "dc-gz"], None),
        ("SH-2026", ["sme", "research"], None, 20.0),
    ]


def test_reimport_changes_nothing(lake: Path) -> None:
    import_files(lake, GOOD, now_ms=1_000)
    before = snapshot(lake)
    again = import_files(lake, GOOD, now_ms=2_000)
    assert sum(again.written.values()) == 0
    assert again.unchanged == {"programme": 2, "tenant": 2, "voucher": 2, "claim": 2}
    assert snapshot(lake) == before


def test_correction_replaces_and_keeps_history(lake: Path) -> None:
    first = import_files(lake, GOOD, now_ms=1_000)
    # a clock that went backwards still orders the correction after the first import
    second = import_files(lake, {"claim": [FIX / "claims_corrected.csv"]}, now_ms=500)
    assert second.import_id > first.import_id
    assert second.written["claim"] == 1 and second.unchanged["claim"] == 1
    con = open_audit(lake)
    assert con.execute(
        "SELECT claimed_gpu_hours, subsidy_cny FROM claims WHERE claim_id='c-1'"
    ).fetchall() == [(90.0, 900.0)]
    history = con.execute(
        "SELECT _import_id, claimed_gpu_hours, _source FROM claims_history WHERE claim_id='c-1' "
        "ORDER BY _import_id"
    ).fetchall()
    assert [(h[0], h[1]) for h in history] == [(first.import_id, 100.0), (second.import_id, 90.0)]
    assert history[1][2] == f"{FIX / 'claims_corrected.csv'}:2"
    assert con.execute("SELECT count(*) FROM claims").fetchone() == (2,)


def test_bad_file_refused_whole_with_every_line(lake: Path) -> None:
    import_files(lake, GOOD, now_ms=1_000)
    before = snapshot(lake)
    bad = FIX / "claims_bad.csv"
    with pytest.raises(VoucherImportError) as info:
        # the good programme file in the same import is not written either
        import_files(lake, {"programme": [FIX / "programmes.csv"], "claim": [bad]}, now_ms=2_000)
    problems = info.value.problems
    assert all(p.startswith(f"{bad}:") for p in problems), problems
    by_line = {int(p.split(":")[1]) for p in problems}
    assert by_line == {2, 3, 4, 5, 6, 7}
    text = "\n".join(problems)
    assert "subsidy_cny=-5.0 is below 0.0" in text
    assert "voucher_id 'v-404' refers to no voucher" in text
    assert "period_end is not after period_start" in text
    assert "'lots' is not a number" in text
    assert "is not the voucher's tenant 't-aurora'" in text
    assert f"claim_id 'c-6' already at {bad}:6" in text
    assert snapshot(lake) == before


def test_bad_jsonl_programmes(lake: Path) -> None:
    path = FIX / "programmes_bad.jsonl"
    with pytest.raises(VoucherImportError) as info:
        import_files(lake, {"programme": [path]})
    assert [p.split(": ", 1)[0] for p in info.value.problems] == [f"{path}:1", f"{path}:3"]
    assert "max_coverage=1.2 is above 1.0" in info.value.problems[0]
    assert "has no UTC offset" in info.value.problems[1]
    assert not any(lake.rglob("*.parquet"))


def test_unknown_reference_to_lake_records_is_resolved(lake: Path, tmp_path: Path) -> None:
    """A claims-only import may refer to vouchers imported earlier; JSON lines and Parquet read
    the same records as CSV."""
    import_files(lake, {k: v for k, v in GOOD.items() if k != "claim"}, now_ms=1_000)
    jsonl = tmp_path / "claims.jsonl"
    lines = [
        {
            "claim_id": "c-9",
            "voucher_id": "v-1",
            "tenant_id": "t-aurora",
            "datacentre": "dc-sh",
            "period_start": "2026-05-01T00:00:00+08:00",
            "period_end": "2026-06-01T00:00:00+08:00",
            "allocation_ids": ["a-1"],
            "claimed_gpu_hours": 10,
            "unit_price_cny": 12,
            "invoice_cny": 120,
            "subsidy_cny": 96,
            "submitted_at": "2026-06-05T00:00:00+08:00",
        }
    ]
    jsonl.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    parquet = tmp_path / "claims.parquet"
    table = pa.Table.from_pylist([{**lines[0], "claim_id": "c-10"}])
    pq.write_table(table, parquet)
    result = import_files(lake, {"claim": [jsonl, parquet]}, now_ms=2_000)
    assert result.written["claim"] == 2
    con = open_audit(lake)
    got = con.execute(
        "SELECT claim_id, allocation_ids, subsidy_cny FROM claims ORDER BY claim_id"
    ).fetchall()
    assert got == [("c-10", ["a-1"], 96.0), ("c-9", ["a-1"], 96.0)]


def test_entities_derive_from_one_definition() -> None:
    for k in ENTITIES.values():
        assert k.arrow_schema().names == list(k.names)
        assert [n for n, _ in k.duckdb_columns()] == list(k.names)
    assert CLAIM.field("allocation_ids").nullable
