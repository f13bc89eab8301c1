"""The instant arguments of ``alerts`` (``--at``, ``--replay-from``, ``--replay-to``)."""

from __future__ import annotations

import pytest

from gpuledger.ops_cli import _instant_ms, main


def test_instants_take_z_and_offsets() -> None:
    assert _instant_ms("2020-05-01T00:00Z") == 1_588_291_200_000
    assert _instant_ms("2020-05-01T08:00+08:00") == 1_588_291_200_000


def test_alerts_at_needs_an_offset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["alerts", "--lake", "x", "--once", "--at", "2020-05-01T00:00"])
    assert exit_.value.code == 2
    assert "needs a UTC offset, e.g. 2020-05-01T00:00Z" in capsys.readouterr().err
