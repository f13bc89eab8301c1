"""``gpuledger.arguments``: argument types shared by the sub-commands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gpuledger.arguments import instant
from gpuledger.ops_cli import main


def test_instant_takes_z_and_offsets_and_refuses_naive_times() -> None:
    parse = instant("2023-06-01T00:00:00+08:00")
    assert parse("2020-05-01T00:00Z") == datetime(2020, 5, 1, tzinfo=UTC)
    assert parse("2020-05-01T08:00+08:00") == datetime(
        2020, 5, 1, 8, tzinfo=timezone(timedelta(hours=8))
    )
    with pytest.raises(argparse.ArgumentTypeError, match=r"e\.g\. 2023-06-01T00:00:00\+08:00"):
        parse("2020-05-01T00:00")
    with pytest.raises(ValueError):
        parse("yesterday")


def test_alerts_at_needs_an_offset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["alerts", "--lake", "x", "--once", "--at", "2020-05-01T00:00"])
    assert exit_.value.code == 2
    assert "needs a UTC offset, e.g. 2020-05-01T00:00Z" in capsys.readouterr().err
