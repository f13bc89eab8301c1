"""Tenant statements: on the voucher scenario with one planted finding of every type, every
claim of a tenant's statement carries the audit's and the attribution's figures and findings,
its allocations add up to the claim, totals add up, CSV and JSON read back, the page renders
in headless Chromium, and an unknown tenant is refused with the known ones listed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from gpuledger.cli import main
from tests.test_audit import P0, H, build, claim, iso
from tests.test_html_report import render
from warehouse.html import write_statement_html
from warehouse.vouchers.attribution import attribution_rows, open_audit
from warehouse.vouchers.audit import audit
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec
from warehouse.vouchers.scenario.write import write_scenario
from warehouse.vouchers.statement import CLAIM_FIGURES, TOTALS, UnknownTenant, statement

# t-tianfu holds two vouchers (city and province) and rents at two sites, its April city claim
# is out of validity; t-panda's provincial April claim doubles its city one; t-aurora's May
# claim has no telemetry
CASES = (
    ("t-tianfu", "2026-04"),
    ("t-tianfu", "2026-05"),
    ("t-panda", "2026-04"),
    ("t-aurora", "2026-05"),
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("statement")
    spec = ScenarioSpec(
        seed=7, anomalies=True, months=3, programme_month=1, nodes_per_dc=1, sample_interval_s=3600
    )
    write_scenario(build_scenario(spec), out)
    return out / "lake", json.loads((out / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def audits(scenario: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """The reference: each month's audit and attribution rows on a connection of their own."""
    lake, truth = scenario
    con = open_audit(lake)
    out = {
        m: (audit(con, month=m, tz=truth["tz"]), attribution_rows(con, m)) for m in truth["months"]
    }
    con.close()
    return out


def claims_of(st: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for v in st["vouchers"] for c in v["claims"]]


def check_against_audit(
    st: dict[str, Any], report: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    tenant = st["tenant"]["tenant_id"]
    mine = {r["claim_id"]: r for r in rows if r["tenant_id"] == tenant}
    claims = claims_of(st)
    assert sorted(c["claim_id"] for c in claims) == sorted(mine)
    for c in claims:
        ref = mine[c["claim_id"]]
        assert {k: c[k] for k in CLAIM_FIGURES} == {k: ref[k] for k in CLAIM_FIGURES}
        assert c["voucher_id"] == ref["voucher_id"] and c["programme_id"] == ref["programme_id"]
        found = sorted(
            (f["finding"], f["severity"], f["cny_at_stake"])
            for f in report["findings"]
            if f["claim_id"] == c["claim_id"]
        )
        assert (
            sorted((f["finding"], f["severity"], f["cny_at_stake"]) for f in c["findings"]) == found
        )
        assert (c["status"] == "clean") == (c["claim_id"] in report["clean"])
        assert c["cny_at_stake"] == pytest.approx(sum(x[2] for x in found), abs=0.005)
        # the allocations metered are the attribution's, and add up to the claim
        allocs = c["allocations"]
        assert sorted({a["allocation_id"] for a in allocs}) == ref["attributed_allocation_ids"]
        for key in ("metered_gpu_h", "covered_gpu_h", "busy_gpu_h"):
            assert sum(a[key] for a in allocs) == pytest.approx(c[key], rel=1e-9, abs=1e-9)
        for a in allocs:
            assert c["period_start"] <= a["start"] < a["end"] <= c["period_end"]
            assert a["busy_gpu_h"] <= a["covered_gpu_h"] + 1e-9 <= a["metered_gpu_h"] + 2e-9
    assert st["lineage"] == report["lineage"]


def check_totals(st: dict[str, Any]) -> None:
    claims = claims_of(st)
    for scope, items in [(st["totals"], claims)] + [
        (v["totals"], v["claims"]) for v in st["vouchers"]
    ]:
        assert scope["claims"] == len(items)
        assert scope["claims_clean"] == sum(c["status"] == "clean" for c in items)
        for key in TOTALS:
            assert scope[key] == pytest.approx(sum(c[key] or 0 for c in items), abs=0.005)
        count = sum(len(c["findings"]) for c in items)
        assert sum(f["count"] for f in scope["findings"].values()) == count
    for key in TOTALS:  # vouchers partition the claims
        total = sum(v["totals"][key] for v in st["vouchers"])
        assert st["totals"][key] == pytest.approx(total, abs=0.005)
    for v in st["vouchers"]:
        assert v["subsidy_claimed_cny"] == pytest.approx(v["totals"]["subsidy_cny"], abs=0.005)
        assert v["subsidy_to_date_cny"] >= v["subsidy_claimed_cny"] - 0.005
        assert v["remaining_cny"] == pytest.approx(v["face_value_cny"] - v["subsidy_to_date_cny"])


@pytest.mark.parametrize("tenant, month", CASES)
def test_statement_figures_are_the_audits(
    scenario: tuple[Path, dict[str, Any]], audits: dict[str, Any], tenant: str, month: str
) -> None:
    lake, truth = scenario
    con = open_audit(lake)
    st = statement(con, tenant=tenant, month=month, tz=truth["tz"])
    con.close()
    assert st["tenant"]["tenant_id"] == tenant and st["month"] == month
    assert claims_of(st), "every case has claims"
    check_against_audit(st, *audits[month])
    check_totals(st)


def test_claim_period_off_the_bin_edges_reads_samples(lake: Path, tmp_path: Path) -> None:
    """A claim period that does not start on a 15-minute edge: the attribution reads every
    sample, and the statement's per-allocation figures come from samples too."""
    off = P0 + 24 * H + 7 * 60_000
    build(
        lake,
        tmp_path,
        [claim(period_start=iso(off), allocation_ids=[]), claim("c2", voucher_id="v2")],
    )
    con = open_audit(lake)
    report = audit(con, month="2026-05")
    rows = attribution_rows(con, "2026-05")
    st = statement(con, tenant="t1", month="2026-05")
    check_against_audit(st, report, rows)
    check_totals(st)
    c1 = next(c for c in claims_of(st) if c["claim_id"] == "c1")
    first = next(a for a in c1["allocations"] if a["allocation_id"] == "a1")
    assert first["start"] == "2026-05-02T00:07:00+08:00"  # clipped to the claim, in local time
    assert first["metered_gpu_h"] == pytest.approx(2 * (10 - 7 / 60))
    assert first["busy_gpu_h"] == pytest.approx(0.5 * first["metered_gpu_h"])
    con.close()


def test_unknown_tenant_lists_the_known(
    scenario: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    lake, _ = scenario
    con = open_audit(lake)
    with pytest.raises(UnknownTenant) as err:
        statement(con, tenant="t-nobody", month="2026-05")
    con.close()
    assert "t-aurora" in err.value.known and "t-tianfu" in err.value.known
    args = ["statement", "--lake", str(lake), "--tenant", "t-nobody", "--month", "2026-05"]
    assert main(args) == 2
    message = capsys.readouterr().err
    assert "unknown tenant 't-nobody'" in message and "t-aurora, t-bund" in message


def test_cli_json_csv_table_html(
    scenario: tuple[Path, dict[str, Any]],
    audits: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lake, truth = scenario
    month = truth["months"][0]
    base = ["statement", "--lake", str(lake), "--tenant", "t-tianfu", "--month", month]
    assert main([*base, "--format", "json"]) == 0
    text = capsys.readouterr().out
    st = json.loads(text)
    check_against_audit_approx(st, *audits[month])
    # the same snapshot again, pinned by the versions it names: the same bytes
    assert main([*base, "--format", "json", "--as-of", st["lineage"]["as_of"]]) == 0
    assert capsys.readouterr().out == text

    assert main([*base, "--format", "csv"]) == 0
    out = capsys.readouterr().out
    first, rest = out.split("\n", 1)
    as_of = st["lineage"]["as_of"]
    assert first == f"# lake versions: {as_of}; reproduce with --as-of {as_of}"
    rows = list(csv.DictReader(io.StringIO(rest)))
    assert sorted(r["claim_id"] for r in rows) == sorted(c["claim_id"] for c in claims_of(st))
    for r in rows:
        c = next(c for c in claims_of(st) if c["claim_id"] == r["claim_id"])
        assert float(r["metered_gpu_h"]) == c["metered_gpu_h"]
        assert float(r["subsidy_cny"]) == c["subsidy_cny"]
        assert [a["allocation_id"] for a in json.loads(r["allocations"])] == [
            a["allocation_id"] for a in c["allocations"]
        ]
        assert r["status"] in ("clean", "findings")

    assert main([*base]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"statement t-tianfu (Tianfu, sme, Sichuan) {month}")
    assert "OUT_OF_VALIDITY" in table and table.endswith(
        f"lake versions: {st['lineage']['as_of']}\n"
    )
    assert "%" in table  # efficiency as a percentage

    page = tmp_path / "statement.html"
    assert main([*base, "--format", "html", "--output", str(page)]) == 0
    dom, console = render(page, tmp_path)
    assert console == []
    assert 'data-charts-drawn="1"' in dom
    for c in claims_of(st):
        assert c["claim_id"] in dom
        for a in c["allocations"]:
            assert a["allocation_id"] in dom
    assert st["lineage"]["as_of"] in dom


def check_against_audit_approx(
    st: dict[str, Any], report: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """JSON keeps 12 significant digits (``warehouse.reports.render.tidy``): the figures within
    1e-11."""
    mine = {r["claim_id"]: r for r in rows if r["tenant_id"] == st["tenant"]["tenant_id"]}
    for c in claims_of(st):
        for k in CLAIM_FIGURES:
            ref = mine[c["claim_id"]][k]
            assert c[k] == (None if ref is None else pytest.approx(ref, rel=1e-11))
    flagged = {f["claim_id"] for f in report["findings"] if f["claim_id"] in mine}
    assert {c["claim_id"] for c in claims_of(st) if c["findings"]} == flagged


def test_page_escapes_and_shows_a_tenant_without_claims(
    scenario: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    lake, truth = scenario
    con = open_audit(lake)
    st = statement(con, tenant="t-hyper", month=truth["months"][-1])  # a large firm: no voucher
    con.close()
    assert st["vouchers"] == [] and st["totals"]["claims"] == 0
    st["tenant"]["name"] = "<script>alert(1)</script>"
    page = write_statement_html(st, tmp_path / "empty.html")
    assert "<script>alert(1)</script>" not in page.read_text()
    dom, console = render(page, tmp_path)
    assert console == [] and "No voucher this month." in dom
