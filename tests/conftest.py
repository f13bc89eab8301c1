"""Shared test helpers: canned contract records."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    return Path(os.environ.get("GPULEDGER_SHARED_DATA", REPO.parent / "shared" / "data"))


class CannedRun:
    """A ``run=`` seam for collectors that run a command: records each argv and answers
    canned output (or raises a canned exception), in order."""

    def __init__(self, answers: list[str | Exception]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def source_args(argv: list[str]) -> argparse.Namespace:
    """A source's arguments parsed by the real CLI parser (``backfill --lake - <argv>``)."""
    from gpuledger.cli import build_parser

    return build_parser().parse_args(["backfill", "--lake", "-", *argv])


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    path.mkdir()
    return path


def gpu_sample(ts: int, gpu: str = "GPU-0", util: float | None = 0.5, **kw: object) -> dict:
    record: dict = {
        "ts": ts,
        "interval_s": 60.0,
        "datacentre": "dc1",
        "cluster": "c1",
        "node": "n1",
        "gpu_uuid": gpu,
        "gpu_index": 0,
        "gpu_model": "A100",
        "util": util,
        "mem_used_bytes": 1 << 30,
        "mem_total_bytes": 80 << 30,
        "power_w": 250.0,
        "temp_c": 55.0,
        "sm_active": None,
        "pod": None,
        "namespace": None,
        "job_id": None,
        "source": "test",
    }
    record.update(kw)
    return record
