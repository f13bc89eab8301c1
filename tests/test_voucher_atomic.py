"""Voucher imports are atomic (all of an import visible or none of it, whatever moment it is
killed at) and serialised (an import checked against a state that changed is refused)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline import entity_import as vouchers
from pipeline import lake as lakes
from pipeline import ledger
from pipeline.entities import VOUCHERS_DIR
from pipeline.entity_import import import_files
from tests.conftest import REPO
from tests.test_vouchers_import import GOOD
from warehouse.vouchers.attribution import open_audit


def state(lake: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = open_audit(lake)
    return {
        t: con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
        for t in ("programmes", "tenants", "vouchers", "claims")
    }


def corrected(tmp_path: Path) -> dict[str, list[Path]]:
    """The GOOD files with a corrected tenant name and a changed claim: an import that touches
    two entities."""
    out = {}
    for name, (path,) in GOOD.items():
        text = path.read_text()
        if name == "tenant":
            text = text.replace("Aurora", "Aurora Corrected")
        if name == "claim":
            text = text.replace("1000", "999")
        target = tmp_path / path.name
        target.write_text(text)
        out[name] = [target]
    return out


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_an_import_killed_between_its_commits_is_invisible(
    lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    import_files(lake, GOOD, now_ms=1_000)
    before = state(lake)
    files = corrected(tmp_path)
    real = lakes.commit
    calls = []

    def dying(*args: Any, **kw: Any) -> int:
        calls.append(args[0])
        if len(calls) == fail_at:
            raise KeyboardInterrupt("killed")  # the process dies here: no later commit
        return real(*args, **kw)

    monkeypatch.setattr(vouchers.lakes, "commit", dying)
    monkeypatch.setattr(ledger.lakes, "commit", dying)
    with pytest.raises(KeyboardInterrupt):
        import_files(lake, files, now_ms=2_000)
    monkeypatch.undo()
    assert state(lake) == before  # nothing of the half-written import shows
    again = import_files(lake, files, now_ms=3_000)  # a re-run lands it whole
    assert again.written["tenant"] == 1 and again.written["claim"] >= 1
    after = state(lake)
    assert any("Aurora Corrected" in str(r) for r in after["tenants"])
    assert after != before


def test_kill_9_at_random_moments_never_leaves_a_mixed_state(lake: Path, tmp_path: Path) -> None:
    import_files(lake, GOOD, now_ms=1_000)
    before = state(lake)
    files = corrected(tmp_path)
    args = ["--programmes", str(files["programme"][0]), "--tenants", str(files["tenant"][0])]
    args += ["--vouchers", str(files["voucher"][0]), "--claims", str(files["claim"][0])]
    cli = [sys.executable, "-m", "gpuledger.cli", "vouchers", "import", *args, "--lake"]
    argv = [*cli, str(lake)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # How long a whole import takes on this machine (on a copy of the lake), so that the kills
    # fall inside the run, most of them near its end where the commits are.
    spare = tmp_path / "spare-lake"
    shutil.copytree(lake, spare)
    started = time.perf_counter()
    subprocess.run([*cli, str(spare)], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    whole_s = time.perf_counter() - started
    assert _whole(state(spare))
    killed_mid_run = 0
    for share in (0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.3):
        delay = share * whole_s
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        killed_mid_run += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        now = state(lake)
        assert now == before or _whole(now), f"a mixed voucher state after {delay:.2f}s"
        if _whole(now):
            break
    assert killed_mid_run >= 1, "no kill hit a running import"
    subprocess.run(argv, cwd=REPO, env=env, check=True)
    assert _whole(state(lake))


def _whole(now: dict[str, list[tuple[Any, ...]]]) -> bool:
    """Both changes of the corrected import are visible (a tenant and a claim)."""
    tenant = any("Aurora Corrected" in str(r) for r in now["tenants"])
    claim = any(999.0 in r for r in now["claims"])
    return tenant and claim


def test_an_import_checked_against_a_stale_state_is_refused(
    lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_files(lake, GOOD, now_ms=1_000)
    path = ledger.ledger_path(lake, VOUCHERS_DIR)
    stale = ledger.read_state(path)
    import_files(lake, corrected(tmp_path), now_ms=2_000)  # lands meanwhile
    landed = state(lake)
    other = tmp_path / "other"
    other.mkdir()
    files = corrected(other)
    files["tenant"][0].write_text(files["tenant"][0].read_text().replace("Corrected", "Again"))
    monkeypatch.setattr(vouchers.ledger, "read_state", lambda _p: stale)  # checked long ago
    with pytest.raises(ledger.ImportRaced, match="run it again"):
        import_files(lake, files, now_ms=3_000)
    monkeypatch.undo()
    assert state(lake) == landed  # the refused import left nothing visible
    import_files(lake, files, now_ms=4_000)  # re-run: checked against the new state, lands
    assert any("Aurora Again" in str(r) for r in state(lake)["tenants"])
