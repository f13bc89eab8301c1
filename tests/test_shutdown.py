"""Clean shutdown: SIGTERM/SIGINT make a backfill finish the record in hand, flush, commit and
exit promptly with everything it read written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.lake import open_table
from tests.conftest import REPO


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_backfill_writes_what_was_read(lake: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpuledger.cli",
            "backfill",
            "--lake",
            str(lake),
            "replay",
            "helios",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    time.sleep(4.0)  # imports, then the replay is well under way (714,240 records in all)
    assert proc.poll() is None, "the backfill ended before the signal"
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "shutdown took longer than its grace period"
    assert proc.returncode == 0, err.decode()[-2000:]
    text = out.decode()
    m = re.search(r"stopped by a signal after ([\d,]+) records", text)
    assert m, text
    read = int(m.group(1).replace(",", ""))
    written = int(re.search(r"wrote occupancy ([\d,]+)", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 0 < written == read < 714_240
    dt = open_table(lake / "occupancy")
    assert dt is not None and dt.count() == written
