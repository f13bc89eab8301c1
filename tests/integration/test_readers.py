"""Readers never block each other: ten reports at once beside a live ingest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import lake_rows
from tests.integration.test_ingest import _ingest_process, publish

pytestmark = pytest.mark.integration


def _report(lake: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpuledger.cli",
            "report",
            "utilisation",
            "--lake",
            str(lake),
            "--period",
            "day",
            "--format",
            "csv",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


def test_ten_reports_at_once_beside_a_live_ingest(kafka: str, namespace: str, lake: Path) -> None:
    publish(kafka, namespace, 60_000, gpus=20, batch=16)
    ingest = _ingest_process(kafka, namespace, lake, idle=3.0, batch=1000)
    try:
        deadline = time.monotonic() + 120
        while not lake_rows(lake, "gpu_samples"):
            assert time.monotonic() < deadline, "ingest landed nothing"
            time.sleep(0.1)
        reports = [_report(lake) for _ in range(10)]
        results = [p.communicate(timeout=180) for p in reports]
        for p, (out, err) in zip(reports, results, strict=True):
            assert p.returncode == 0, err.decode()[-2000:]
            assert out.startswith(b"# lake versions: ") and b"capacity_gpu_h" in out
        assert ingest.poll() is None or ingest.returncode == 0, "ingest was disturbed"
    finally:
        out, _ = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, out[-2000:]
    assert len(lake_rows(lake, "gpu_samples")) == 60_000
