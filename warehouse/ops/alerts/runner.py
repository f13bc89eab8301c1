"""Running the built-in alert evaluator: live (``watch``: every interval, until stopped), once
(``run_once``: cron, with a state file carrying pending/firing alerts between runs), or
replayed over past data (``run_replay``)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pipeline.atomic import write_atomic
from warehouse.ops.alerts.rules import Alert, Evaluator
from warehouse.ops.alerts.sinks import AlertSink, undelivered
from warehouse.ops.fleet import connect_ops, data_now_ms

log = logging.getLogger(__name__)


def deliver(sinks: Sequence[AlertSink], alerts: list[Alert]) -> None:
    if not alerts:
        return
    for sink in sinks:
        try:
            sink.deliver(alerts)
        except Exception:  # one broken sink must not starve the others
            log.exception("alert sink %s failed", type(sink).__name__)


def evaluate_once(
    lake: Path, evaluator: Evaluator, now_ms: int, as_of_data: bool = False
) -> list[Alert]:
    """One evaluation at ``now_ms`` (or, ``as_of_data``, at the newest instant in the lake)."""
    con = connect_ops(lake)  # in memory: never holds the warehouse file's lock
    try:
        if as_of_data:
            now_ms = data_now_ms(con) or now_ms
        return evaluator.evaluate(con, now_ms)
    finally:
        con.close()


def replay(
    lake: Path, evaluator: Evaluator, start_ms: int, end_ms: int, step_s: float
) -> Iterator[tuple[int, list[Alert]]]:
    """Evaluate at ``start_ms``, ``start_ms + step``, ... up to ``end_ms`` (inclusive)."""
    if step_s <= 0:
        raise ValueError("step must be positive")
    con = connect_ops(lake)
    try:
        t = start_ms
        while t <= end_ms:
            yield t, evaluator.evaluate(con, t)
            t += int(step_s * 1000)
    finally:
        con.close()


def load_state(evaluator: Evaluator, path: Path | None) -> None:
    if path is not None and path.exists():
        evaluator.restore(json.loads(path.read_text(encoding="utf-8")))


def save_state(evaluator: Evaluator, path: Path | None) -> None:
    if path is not None:
        write_atomic(path, json.dumps(evaluator.state(), sort_keys=True))


def run_once(
    lake: Path,
    evaluator: Evaluator,
    sinks: Sequence[AlertSink],
    now_ms: int | None = None,
    state_path: Path | None = None,
    as_of_data: bool = False,
) -> int:
    """One evaluation (cron) at ``now_ms`` (None: the wall clock) carrying the state in
    ``state_path``; returns how many alerts were not delivered. The state is saved only when
    every alert was delivered: otherwise the next run makes the same transitions again."""
    load_state(evaluator, state_path)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    deliver(sinks, evaluate_once(lake, evaluator, now_ms, as_of_data))
    left = undelivered(sinks)
    if not left:
        save_state(evaluator, state_path)
    return left


def run_replay(
    lake: Path,
    evaluator: Evaluator,
    sinks: Sequence[AlertSink],
    start_ms: int,
    end_ms: int | None,
    step_s: float,
) -> int:
    """Every notification of ``replay`` (``end_ms`` None: one evaluation at ``start_ms``) to
    ``sinks``; returns how many alerts were not delivered."""
    for _, alerts in replay(
        lake, evaluator, start_ms, start_ms if end_ms is None else end_ms, step_s
    ):
        deliver(sinks, alerts)
    return undelivered(sinks)


def watch(
    lake: Path,
    evaluator: Evaluator,
    sinks: Sequence[AlertSink],
    interval_s: float,
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
    state_path: Path | None = None,
    as_of_data: bool = False,
) -> int:
    """Evaluate every ``interval_s`` until ``stop``; returns the number of notifications."""
    load_state(evaluator, state_path)
    sent = 0
    while True:
        try:
            alerts = evaluate_once(lake, evaluator, int(clock() * 1000), as_of_data)
        except Exception:
            log.exception("alert evaluation failed; retrying in %.0f s", interval_s)
            alerts = []
        deliver(sinks, alerts)
        save_state(evaluator, state_path)
        sent += len(alerts)
        if stop.wait(interval_s):
            return sent
