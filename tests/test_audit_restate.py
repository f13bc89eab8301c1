"""Restatements on the anomalies scenario lake: a month is signed and registered, then late GPU
samples (``backfill records``) and a corrected claim (``vouchers import``) land through the
project's own write paths. ``audit --since`` names the changed findings, figures and the late
records' load ids and versions; the old pack still verifies (time travel); the exporter's gauge
counts the restated findings per programme."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpuledger.cli import main
from tests.audit_packs import MONTH, cli, scenario_lake
from warehouse.ops.exporter import ExporterSettings, WarehouseCollector, build_registry

H = 3_600_000
NO_TEL, OVER = "NO_TELEMETRY", "OVER_CLAIM"


@dataclass
class Story:
    root: Path
    lake: Path
    pack: Path
    findings: dict[str, dict[str, Any]]
    """The signed findings by type."""
    late_samples: int
    sample_load: str
    claim_load: str
    gauge_before: dict[tuple[str, str, str], float]
    collector: WarehouseCollector


def gauge(collector: WarehouseCollector) -> dict[tuple[str, str, str], float]:
    """One scrape of the exporter: the restated-findings gauge by (month, pack, programme)."""
    registry = CollectorRegistry()
    registry.register(collector)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name == "gpuledger_audit_restated_findings":
            for s in family.samples:
                out[(s.labels["month"], s.labels["pack"], s.labels["programme"])] = s.value
    return out


def _late_samples(pack: Path, claim: str, out: Path) -> int:
    """A records file of hourly samples (util 0.5) over every claimed span of ``claim``."""
    spans = pq.read_table(pack / "evidence/allocations.parquet").to_pylist()
    rows = []
    for s in (s for s in spans if s["claim_id"] == claim):
        for gpu in s["gpu_uuids"]:
            for ts in range(s["s_ms"], s["e_ms"], H):
                rows.append(
                    {
                        "ts": ts,
                        "interval_s": 3600.0,
                        "datacentre": s["datacentre"],
                        "cluster": s["cluster"],
                        "node": f"{s['datacentre']}-n00",
                        "gpu_uuid": gpu,
                        "gpu_index": int(gpu.rsplit("-", 1)[1]),
                        "gpu_model": "H800",
                        "util": 0.5,
                        "source": "late-export",
                    }
                )
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def _corrected_claim(root: Path, claim: str, metered: float, out: Path) -> None:
    """The scenario's claim row with claimed_gpu_hours corrected to the metered GPU-hours."""
    with (root / "vouchers" / "claims.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r["claim_id"] == claim)
    row["claimed_gpu_hours"] = repr(metered)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)


def _loads_at(table: Path, version: int) -> set[str]:
    t = DeltaTable(str(table)).to_pyarrow_table(columns=["_load", "_version"])
    return {r["_load"] for r in t.to_pylist() if r["_version"] == version}


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    root = tmp_path_factory.mktemp("restate")
    lake = scenario_lake(root)
    pack = root / "pack-may"
    argv = ["audit", "--lake", str(lake), "--month", MONTH, "--sign", "--out", str(pack)]
    assert main([*argv, "--register"]) == 0
    report = json.loads((pack / "findings.json").read_text())
    findings = {f["finding"]: f for f in report["findings"]}
    collector = build_registry(ExporterSettings(lake=lake))[1]
    before = gauge(collector)
    n = _late_samples(pack, findings[NO_TEL]["claim_id"], root / "late.jsonl")
    assert main(["backfill", "--lake", str(lake), "records", "--kind", "gpu_sample",
                 "--file", str(root / "late.jsonl")]) == 0  # fmt: skip
    claims = pq.read_table(pack / "evidence/claims.parquet").to_pylist()
    over = next(c for c in claims if c["claim_id"] == findings[OVER]["claim_id"])
    _corrected_claim(root, over["claim_id"], over["metered_gpu_h"], root / "fix.csv")
    assert main(["vouchers", "import", "--lake", str(lake), "--claims", str(root / "fix.csv")]) == 0
    (sample_load,) = _loads_at(lake / "gpu_samples", 2)
    (claim_load,) = _loads_at(lake / "vouchers" / "claims", 2)
    return Story(root, lake, pack, findings, n, sample_load, claim_load, before, collector)


def _since(story: Story, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    return cli(capsys, "audit", "--lake", str(story.lake), "--month", MONTH, *extra)


def test_since_pack_names_the_changed_findings_and_their_late_records(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _since(story, capsys, "--since", str(story.pack), "--format", "json")
    assert rc == 0
    r = json.loads(out)
    assert r["restated"] is True
    no_tel, over = story.findings[NO_TEL], story.findings[OVER]
    vanished = {(f["finding"], f["claim_id"]): f for f in r["findings"]["vanished"]}
    assert set(vanished) == {(NO_TEL, no_tel["claim_id"]), (OVER, over["claim_id"])}
    assert r["findings"]["new"] == [] and r["findings"]["changed"] == []
    samples = [{"table": "gpu_samples", "_load": story.sample_load, "_version": 2}]
    claims = [{"table": "claims", "_load": story.claim_load, "_version": 2}]
    got = vanished[(NO_TEL, no_tel["claim_id"])]["late_records"]
    assert [{k: x[k] for k in ("table", "_load", "_version")} for x in got] == samples
    assert got[0]["rows"] == story.late_samples
    got = vanished[(OVER, over["claim_id"])]["late_records"]
    assert [{k: x[k] for k in ("table", "_load", "_version", "rows")} for x in got] == [
        {**claims[0], "rows": 1}
    ]
    by_claim = {c["claim_id"]: c for c in r["claims"]}
    assert set(by_claim) == {no_tel["claim_id"], over["claim_id"]}
    tel = by_claim[no_tel["claim_id"]]
    assert tel["busy_gpu_h"]["delta"] == pytest.approx(0.5 * story.late_samples, abs=1e-9)
    assert tel["cny_at_stake"] == {
        "before": no_tel["cny_at_stake"],
        "after": 0.0,
        "delta": -no_tel["cny_at_stake"],
    }
    assert "metered_gpu_h" not in tel and "metered_gpu_h" not in by_claim[over["claim_id"]]
    assert r["since"]["tables"] == json.loads((story.pack / "manifest.json").read_text())["tables"]
    programmes = {p["programme_id"]: p for p in r["programmes"]}
    assert set(programmes) == {no_tel["programme_id"], over["programme_id"]}
    for f in (no_tel, over):
        p = programmes[f["programme_id"]]
        assert p["restated_findings"] == 1
        assert p["cny_at_stake"]["delta"] == pytest.approx(-f["cny_at_stake"], abs=0.011)
    assert programmes[no_tel["programme_id"]]["busy_gpu_h"]["delta"] == pytest.approx(
        0.5 * story.late_samples, abs=1e-6
    )


def test_old_pack_still_verifies_after_late_data(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = cli(capsys, "audit", "verify", str(story.pack))
    assert rc == 0, out
    rc, out = _since(story, capsys, "--format", "json")
    assert rc == 0
    now = {(f["finding"], f["claim_id"]) for f in json.loads(out)["findings"]}
    assert (NO_TEL, story.findings[NO_TEL]["claim_id"]) not in now


def test_since_version_agrees_with_the_pack(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, by_pack = _since(story, capsys, "--since", str(story.pack), "--format", "json")
    assert rc == 0
    rc, by_version = _since(story, capsys, "--since-version", "1", "--format", "json")
    assert rc == 0
    a, b = json.loads(by_pack), json.loads(by_version)
    assert a["findings"] == b["findings"] and a["claims"] == b["claims"]
    assert b["since"]["tables"]["gpu_samples"] == 1 and b["since"]["tables"]["claims"] == 1


def test_csv_table_and_html_outputs(story: Story, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _since(story, capsys, "--since", str(story.pack), "--format", "csv")
    assert rc == 0 and out.startswith("# lake versions: ")
    rows = list(csv.DictReader(io.StringIO(out.split("\n", 1)[1])))
    vanished = [r for r in rows if r["change"] == "finding_vanished"]
    assert sorted(r["finding"] for r in vanished) == [NO_TEL, OVER]
    assert any(story.sample_load in r["late_records"] for r in vanished)
    rc, out = _since(story, capsys, "--since", str(story.pack))
    assert rc == 0 and "0 new, 2 vanished, 0 changed finding(s)" in out
    rc, html = _since(story, capsys, "--since", str(story.pack), "--format", "html")
    assert rc == 0 and "<h2 id='restatement'>Restatement</h2>" in html
    assert story.sample_load in html and story.claim_load in html
    rc, plain = _since(story, capsys, "--format", "html")
    assert rc == 0 and "id='restatement'" not in plain


def test_since_a_pack_of_another_month_is_refused(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["audit", "--lake", str(story.lake), "--month", "2026-04", "--since", str(story.pack)]
    )
    assert rc == 2
    assert "is the pack of 2026-05" in capsys.readouterr().err


def test_exporter_gauge_counts_restated_findings_per_programme(story: Story) -> None:
    programmes = {story.findings[NO_TEL]["programme_id"], story.findings[OVER]["programme_id"]}
    assert story.gauge_before and set(story.gauge_before.values()) == {0.0}
    computed = story.collector.restated.computations
    after = gauge(story.collector)
    assert story.collector.restated.computations == computed + 1
    assert {k[2]: v for k, v in after.items() if v} == {p: 1.0 for p in programmes}
    assert {k[:2] for k in after} == {(MONTH, "all")}
    gauge(story.collector)  # same lake versions, same packs: served from the cache
    assert story.collector.restated.computations == computed + 1


def test_rollups_built_after_signing_restate_nothing(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rollups change how figures are summed (bins, not samples), never what they are: the old
    pack verifies and the restatement names the same changes and nothing else."""
    rc, before = _since(story, capsys, "--since", str(story.pack), "--format", "json")
    assert rc == 0
    assert cli(capsys, "lake", "rollup", "--lake", str(story.lake))[0] == 0
    assert DeltaTable(str(story.lake / "_rollup" / "gpu_bins")).version() >= 1
    rc, out = cli(capsys, "audit", "verify", str(story.pack))
    assert rc == 0, out
    rc, after = _since(story, capsys, "--since", str(story.pack), "--format", "json")
    assert rc == 0
    a, b = json.loads(before), json.loads(after)
    assert a["findings"] == b["findings"]
    assert [c["claim_id"] for c in a["claims"]] == [c["claim_id"] for c in b["claims"]]
