"""The demo's HTML pages (``gpuledger.demo.write_pages``): the utilisation report over a
Helios lake, the audit of each scenario month and one tenant's statement are written into
``_reports/`` and render in headless Chromium with their charts drawn. The demo run itself
(through Kafka) is ``tests/test_wheel.py``."""

from __future__ import annotations

from pathlib import Path

from gpuledger.demo import AUDIT_MONTHS, statement_tenant, voucher_audit, write_pages
from tests.test_html_report import helios_lake, render
from warehouse.catalog import connect
from warehouse.reports.utilisation import lineage, utilisation_report


def test_demo_pages_are_written_and_render(lake: Path, tmp_path: Path) -> None:
    helios_lake(lake)
    con = connect(lake, ":memory:")
    rows = utilisation_report(con, period="day", by="scope")
    read = lineage(con)
    con.close()
    vouchers = voucher_audit(lake / "_voucher_scenario")
    st = vouchers.statement
    assert list(vouchers.audits) == list(AUDIT_MONTHS)
    assert st["tenant"]["tenant_id"] == statement_tenant(vouchers.audits[AUDIT_MONTHS[-1]])
    assert st["month"] == AUDIT_MONTHS[-1] and st["totals"]["claims"] > 0

    pages = dict(write_pages(lake / "_reports", rows, read, vouchers))
    tenant = st["tenant"]["tenant_id"]
    assert {p.name for p in pages.values()} == {
        "utilisation_day_by_scope.html",
        *(f"audit_{m}.html" for m in AUDIT_MONTHS),
        f"statement_{tenant}_{AUDIT_MONTHS[-1]}.html",
    }
    assert all(p.parent == lake / "_reports" and p.is_file() for p in pages.values())

    dom, console = render(pages["utilisation report"], tmp_path)
    assert console == [] and 'data-charts-drawn="3"' in dom
    assert read.as_of in dom
    for month in AUDIT_MONTHS:
        dom, console = render(pages[f"audit {month}"], tmp_path)
        assert console == [] and 'data-charts-drawn="2"' in dom
        for f in vouchers.audits[month]["findings"]:
            assert f["claim_id"] in dom
    dom, console = render(pages[f"statement {tenant} {AUDIT_MONTHS[-1]}"], tmp_path)
    assert console == [] and 'data-charts-drawn="1"' in dom
    for voucher in st["vouchers"]:
        for c in voucher["claims"]:
            assert c["claim_id"] in dom
            for f in c["findings"]:
                assert f["finding"] in dom
