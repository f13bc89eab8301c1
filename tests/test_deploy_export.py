"""``gpuledger deploy export``: the package's operator files, written byte for byte, never over
existing files unless forced (the installed wheel's export: tests/test_wheel.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuledger.cli import main
from gpuledger.deploy_files import PARTS, ExportRefused, deploy_files, export
from tests.conftest import REPO

DEPLOY = REPO / "gpuledger" / "deploy"


def test_every_packaged_file_is_exported_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ops"
    assert main(["deploy", "export", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    expected = sorted(
        p.relative_to(DEPLOY)
        for part in PARTS
        for p in (DEPLOY / part).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert written == expected
    assert sorted(Path(p).relative_to(out) for p in printed) == expected
    for rel in expected:
        assert (out / rel).read_bytes() == (DEPLOY / rel).read_bytes(), rel
    for rel in ("prometheus/rules.yml", "alerts/rules.toml", "kafka/pom.xml"):
        assert Path(rel) in expected
    assert any(r.parts[:2] == ("grafana", "dashboards") and r.suffix == ".json" for r in expected)


def test_existing_files_refuse_the_export_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "alerts").mkdir()
    mine = tmp_path / "alerts" / "rules.toml"
    mine.write_text("# my own rules\n")
    assert main(["deploy", "export", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and str(mine) in err
    assert mine.read_text() == "# my own rules\n"
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == [mine]
    with pytest.raises(ExportRefused):
        export(tmp_path, parts=["alerts"])


def test_force_overwrites_only_the_exported_files(tmp_path: Path) -> None:
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "rules.toml").write_text("# old\n")
    (tmp_path / "alerts" / "site.toml").write_text("# kept\n")
    target = tmp_path / "elsewhere.toml"
    target.write_text("# not written through\n")
    (tmp_path / "prometheus").mkdir()
    link = tmp_path / "prometheus" / "rules.yml"
    link.symlink_to(target)
    argv = ["deploy", "export", "--out", str(tmp_path), "--only", "alerts", "--only", "prometheus"]
    assert main(argv) == 2  # rules.toml and the link exist
    assert (tmp_path / "alerts" / "rules.toml").read_text() == "# old\n"
    assert main([*argv, "--force"]) == 0
    for rel in ("alerts/rules.toml", "prometheus/rules.yml", "prometheus/rules_test.yml"):
        assert (tmp_path / rel).read_bytes() == (DEPLOY / rel).read_bytes(), rel
    assert (tmp_path / "alerts" / "site.toml").read_text() == "# kept\n"
    assert not link.is_symlink()
    assert target.read_text() == "# not written through\n"
    assert not (tmp_path / "grafana").exists()


def test_deploy_files_names_parts_and_refuses_unknown_ones() -> None:
    names = [str(rel) for rel, _ in deploy_files(["alerts"])]
    assert names == ["alerts/rules.toml"]
    with pytest.raises(ValueError, match="unknown deploy part"):
        deploy_files(["nope"])
