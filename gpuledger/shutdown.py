"""Stopping a long-running command cleanly on SIGINT/SIGTERM (``collect``, ``backfill``,
``ingest``, ``exporter``, ``alerts``): docs/operations.md, "Shutdown"."""

from __future__ import annotations

import os
import signal
import sys
import threading

SHUTDOWN_GRACE_S = 10.0


def stop_on_signals(grace_s: float | None = SHUTDOWN_GRACE_S) -> threading.Event:
    """An event set by SIGINT/SIGTERM.

    With ``grace_s`` (commands that write: ``collect``, ``backfill``, ``ingest``) the command
    then finishes the record in hand, flushes and exits; a line on stderr says so, and if that
    takes longer than ``grace_s`` the process exits with status 3 (what was buffered may not
    all be written), so ``docker stop`` never has to SIGKILL it blind. ``None`` (the exporter,
    alerts: nothing buffered) only sets the event."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            return
        stop.set()
        if grace_s is None:
            return
        print(
            f"\n{signal.Signals(signum).name}: flushing what is buffered, then exiting",
            file=sys.stderr,
            flush=True,
        )
        watchdog = threading.Timer(grace_s, _overdue, args=(grace_s,))
        watchdog.daemon = True
        watchdog.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return stop


def _overdue(grace_s: float) -> None:
    print(f"shutdown took longer than {grace_s:.0f}s; exiting without finishing", file=sys.stderr)
    os._exit(3)
