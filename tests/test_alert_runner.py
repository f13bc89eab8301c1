"""``warehouse.ops.alerts.runner`` and ``alert_sinks.select_sinks``: the alert runs the ``alerts``
command makes, called directly."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

from tests.ops_lake import MIN
from tests.test_alerts import T0, idle_period_lake
from warehouse.ops.alerts.rules import DEFAULT_RULES, Alert, Evaluator
from warehouse.ops.alerts.runner import run_once, run_replay
from warehouse.ops.alerts.sinks import (
    AlertSink,
    StdoutSink,
    WebhookSink,
    close_sinks,
    select_sinks,
    undelivered,
)


class Collect:
    def __init__(self) -> None:
        self.got: list[Alert] = []

    def deliver(self, alerts: Sequence[Alert]) -> None:
        self.got.extend(alerts)


def test_stdout_is_the_sink_when_no_other_is_given() -> None:
    out = io.StringIO()
    [only] = select_sinks(out)
    assert isinstance(only, StdoutSink) and only.stream is out
    sinks = select_sinks(out, webhook="http://127.0.0.1:9/hook")
    assert [type(s) for s in sinks] == [WebhookSink]
    sinks = select_sinks(out, stdout=True, webhook="http://127.0.0.1:9/hook")
    assert [type(s) for s in sinks] == [StdoutSink, WebhookSink]
    close_sinks(sinks)  # nothing to close but Kafka producers


def test_run_once_saves_the_state_only_when_everything_was_delivered(
    lake: Path, tmp_path: Path
) -> None:
    idle_period_lake(lake)
    state = tmp_path / "state.json"
    down = WebhookSink("http://127.0.0.1:9/hook", post=_refuse)
    sinks: list[AlertSink] = [down]
    assert run_once(lake, Evaluator(DEFAULT_RULES), sinks, T0 + 15 * MIN, state) == 0
    saved = json.loads(state.read_text(encoding="utf-8"))  # pending, nothing to deliver
    assert run_once(lake, Evaluator(DEFAULT_RULES), sinks, T0 + 45 * MIN, state) == 1
    assert undelivered(sinks) == 1
    assert json.loads(state.read_text(encoding="utf-8")) == saved  # not saved: firing again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "state.json"]


def test_run_replay_delivers_every_transition(lake: Path) -> None:
    idle_period_lake(lake)
    sink = Collect()
    left = run_replay(lake, Evaluator(DEFAULT_RULES), [sink], T0, T0 + 99 * MIN, 60.0)
    assert left == 0
    assert [a.status for a in sink.got] == ["firing", "resolved"]


def _refuse(_url: str, _body: bytes) -> None:
    raise OSError("connection refused")
