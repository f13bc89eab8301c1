"""``gpuledger.shutdown.stop_on_signals`` without a grace period, in this process (with one, a
watchdog may end the process: ``test_shutdown`` runs those in a subprocess)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from gpuledger.shutdown import stop_on_signals


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_quiet_stop_sets_the_event_and_says_nothing(
    handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = stop_on_signals(grace_s=None)
    assert not stop.is_set()
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.wait(5)
    assert capsys.readouterr().err == ""
