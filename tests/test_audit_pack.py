"""Signed audit packs on the anomalies scenario lake (real Delta lake, real DuckDB): the pack
holds exactly what ``gpuledger audit`` prints, evidence that adds up from the raw samples, and
``audit verify`` confirms it byte for byte or names what was changed."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

import gpuledger
from gpuledger.cli import main
from tests.audit_packs import MONTH, cli, scenario_lake
from warehouse.vouchers.pack import KEY_ENV

TABLES = {"gpu_samples": "gpu_samples", "allocations": "allocations", "claims": "vouchers/claims"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenario_lake(tmp_path_factory.mktemp("scenario"))


@pytest.fixture(scope="module")
def pack(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packs") / "may"
    assert main(["audit", "--lake", str(lake), "--month", MONTH, "--sign", "--out", str(out)]) == 0
    return out


def _undated(html: str) -> str:
    return re.sub(r"generated [^<]*? by gpuledger", "generated - by gpuledger", html)


def test_pack_holds_what_the_audit_command_prints(
    lake: Path, pack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, fmt in (
        ("findings.json", "json"),
        ("findings.csv", "csv"),
        ("findings.txt", "table"),
    ):
        rc, out = cli(capsys, "audit", "--lake", str(lake), "--month", MONTH, "--format", fmt)
        assert rc == 0
        assert (pack / name).read_text(encoding="utf-8") == out, name
    rc, html = cli(capsys, "audit", "--lake", str(lake), "--month", MONTH, "--format", "html")
    assert rc == 0 and "generated" in html
    assert _undated((pack / "findings.html").read_text(encoding="utf-8")) == _undated(html)
    report = json.loads((pack / "findings.json").read_text())
    assert {f["finding"] for f in report["findings"]} >= {"NO_TELEMETRY", "PRICE_ANOMALY"}


def test_manifest_names_every_file_its_hash_and_the_versions_read(lake: Path, pack: Path) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    on_disk = sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file())
    assert sorted([*manifest["files"], "manifest.json"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (pack / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["month"] == MONTH and manifest["tz"] == "Asia/Shanghai"
    assert manifest["programme"] is None
    assert manifest["gpuledger_version"] == gpuledger.__version__
    assert manifest["lake"] == str(lake.resolve())
    for name, path in TABLES.items():
        assert manifest["tables"][name] == DeltaTable(str(lake / path)).version()
    lineage = json.loads((pack / "lineage.json").read_text())["lineage"]
    assert lineage["tables"] == manifest["tables"] and lineage["as_of"] == manifest["as_of"]
    assert (pack / "thresholds.toml").read_bytes() == (
        Path(gpuledger.__file__).parent / "deploy" / "audit" / "thresholds.toml"
    ).read_bytes()
    # the signing time lives in the manifest only (and as the HTML page's generated time)
    day = manifest["signed_at"][:10]
    for name in manifest["files"]:
        if name.endswith((".json", ".csv", ".txt")):
            assert day not in (pack / name).read_text(), name


def _raw_coverage(lake: Path, spans: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """(covered, busy) GPU-hours per claim straight from the raw Delta samples: each sample
    covers [ts, ts + min(interval, next ts - ts)), clipped to the claimed span."""
    gpus = sorted({g for s in spans for g in s["gpu_uuids"]})
    table = DeltaTable(str(lake / "gpu_samples")).to_pyarrow_table(
        columns=["gpu_uuid", "ts", "interval_s", "util"]
    )
    table = table.filter(pc.is_in(table["gpu_uuid"], value_set=pa.array(gpus)))
    samples: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for r in table.to_pylist():
        ts = int(r["ts"].timestamp() * 1000)
        samples[r["gpu_uuid"]].append((ts, int(r["interval_s"] * 1000), r["util"]))
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for gpu in samples:
        rows = sorted(samples[gpu])
        for i, (ts, iv, util) in enumerate(rows):
            end = ts + min(iv, rows[i + 1][0] - ts) if i + 1 < len(rows) else ts + iv
            for s in spans:
                if gpu in s["gpu_uuids"]:
                    ms = max(0, min(end, s["e_ms"]) - max(ts, s["s_ms"]))
                    out[s["claim_id"]][0] += ms / 3_600_000
                    out[s["claim_id"]][1] += util * ms / 3_600_000
    return {c: (v[0], v[1]) for c, v in out.items()}


def test_evidence_adds_up_to_the_findings_from_raw_samples(lake: Path, pack: Path) -> None:
    report = json.loads((pack / "findings.json").read_text())
    claims = {r["claim_id"]: r for r in pq.read_table(pack / "evidence/claims.parquet").to_pylist()}
    spans = pq.read_table(pack / "evidence/allocations.parquet").to_pylist()
    hours = pq.read_table(pack / "evidence/gpu_hours.parquet").to_pylist()
    month = {f["claim_id"] for f in report["findings"]} | set(report["clean"])
    cited = {
        c
        for f in report["findings"]
        for c in f["evidence"]["claim_ids"] + f["evidence"].get("earlier_claim_ids", [])
    }
    assert month <= set(claims) and cited <= set(claims)
    assert cited == {s["claim_id"] for s in spans}
    raw = _raw_coverage(lake, spans)
    for claim in sorted(cited):
        row = claims[claim]
        metered = sum(s["metered_gpu_h"] for s in spans if s["claim_id"] == claim)
        assert row["metered_gpu_h"] == pytest.approx(metered, abs=1e-9)
        covered = sum(h["covered_gpu_h"] for h in hours if h["claim_id"] == claim)
        busy = sum(h["busy_gpu_h"] for h in hours if h["claim_id"] == claim)
        assert row["covered_gpu_h"] == pytest.approx(covered, abs=1e-6)
        assert row["busy_gpu_h"] == pytest.approx(busy, abs=1e-6)
        assert (covered, busy) == pytest.approx(raw.get(claim, (0.0, 0.0)), abs=1e-6)
        assert all(h["covered_gpu_h"] <= 1 + 1e-12 for h in hours if h["claim_id"] == claim)
    no_tel = next(f for f in report["findings"] if f["finding"] == "NO_TELEMETRY")
    assert claims[no_tel["claim_id"]]["covered_gpu_h"] == no_tel["evidence"]["covered_gpu_h"]


def test_verify_passes_and_names_a_tampered_file(
    pack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = cli(capsys, "audit", "verify", str(pack))
    assert rc == 0, out
    assert "verified: all 9 files" in out
    target = pack / "evidence" / "gpu_hours.parquet"
    original = target.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    target.write_bytes(bytes(damaged))
    try:
        rc, out = cli(capsys, "audit", "verify", str(pack))
    finally:
        target.write_bytes(original)
    assert rc == 1
    problems = [line for line in out.splitlines() if line.startswith("DIFFERS")]
    assert problems and all("evidence/gpu_hours.parquet" in line for line in problems), out
    assert any("does not match the manifest" in line for line in problems)
    assert "ok       findings.json" in out
    assert cli(capsys, "audit", "verify", str(pack))[0] == 0


def test_verify_names_a_figure_changed_with_a_matching_hash(
    pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forger who also rewrites the manifest's hash is caught by the re-run."""
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(pack, forged)
    report = json.loads((forged / "findings.json").read_text())
    report["findings"][0]["cny_at_stake"] = 0.0
    text = (json.dumps(report, indent=2, default=str, ensure_ascii=False) + "\n").encode()
    (forged / "findings.json").write_bytes(text)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["files"]["findings.json"] = {
        "sha256": hashlib.sha256(text).hexdigest(),
        "bytes": len(text),
    }
    (forged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rc, out = cli(capsys, "audit", "verify", str(forged))
    assert rc == 1
    problems = [line for line in out.splitlines() if line.startswith("DIFFERS")]
    assert len(problems) == 1 and problems[0].startswith("DIFFERS  findings.json: the audit re-run")


def test_hmac_signed_pack(
    lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "s3cret")
    out = tmp_path / "pack"
    assert cli(capsys, "audit", "--lake", str(lake), "--month", MONTH, "--programme", "SH-CV",
               "--sign", "--out", str(out))[0] == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["programme"] == "SH-CV" and len(manifest["hmac_sha256"]) == 64
    assert "s3cret" not in (out / "manifest.json").read_text()
    assert cli(capsys, "audit", "verify", str(out))[0] == 0
    monkeypatch.setenv(KEY_ENV, "other")
    rc, text = cli(capsys, "audit", "verify", str(out))
    assert rc == 1 and "HMAC does not match" in text
    monkeypatch.delenv(KEY_ENV)
    rc, text = cli(capsys, "audit", "verify", str(out))
    assert rc == 1 and "carries an HMAC" in text


def test_sign_refuses_a_folder_in_use(
    lake: Path, pack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (pack / "manifest.json").read_bytes()
    rc, _ = cli(
        capsys, "audit", "--lake", str(lake), "--month", MONTH, "--sign", "--out", str(pack)
    )
    assert rc == 1
    assert (pack / "manifest.json").read_bytes() == before
    assert cli(capsys, "audit", "--lake", str(lake), "--month", MONTH, "--sign")[0] == 2
