"""Built-in alerting for sites without Prometheus: the idle-capacity and stale-telemetry
conditions of ``gpuledger/deploy/prometheus/rules.yml``, evaluated over the warehouse.

``Evaluator.evaluate(now_ms)`` computes every rule's condition at ``now_ms`` from
``warehouse.ops.fleet`` (the exporter's own figures) and runs Prometheus' alert life cycle per
(rule, label set): the condition becomes true -> *pending*; true for ``for_s`` -> *firing*
(one notification); false again -> *resolved* (one notification, ``endsAt`` set). Pending
alerts that clear vanish silently. Notifications are deduplicated by construction: one per
transition. ``state()``/``restore()`` carry the life cycle across runs (``--state FILE``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb

from warehouse.ops import fleet

Condition = Literal["idle_capacity", "stale_telemetry"]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``"30m"``, ``"90s"``, ``"1h"``, ``"1.5h"`` or a bare number of seconds."""
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 1h)")
    return float(m[1]) * _UNIT_S[m[2] or "s"]


@dataclass(frozen=True)
class AlertRule:
    name: str
    condition: Condition
    threshold: float
    for_s: float
    severity: str = "warning"
    summary: str = ""
    kinds: tuple[str, ...] = ("gpu_sample", "occupancy")
    for_text: str = ""


def load_rules(path: Path) -> tuple[AlertRule, ...]:
    """Rules from a TOML file of ``[[rule]]`` tables (``DEFAULT_RULES_FILE`` is one)."""
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    rules = []
    for i, r in enumerate(doc.get("rule", [])):
        where = f"{path}: rule {i + 1}"
        unknown = set(r) - {"name", "condition", "threshold", "for", "severity", "summary", "kinds"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        if r.get("condition") not in ("idle_capacity", "stale_telemetry"):
            raise ValueError(f"{where}: condition must be idle_capacity or stale_telemetry")
        try:
            rules.append(
                AlertRule(
                    name=str(r["name"]),
                    condition=r["condition"],
                    threshold=float(r["threshold"]),
                    for_s=parse_duration(r.get("for", 0)),
                    severity=str(r.get("severity", "warning")),
                    summary=str(r.get("summary", "")),
                    kinds=tuple(r.get("kinds", ("gpu_sample", "occupancy"))),
                    for_text=str(r.get("for", "0s")),
                )
            )
        except KeyError as exc:
            raise ValueError(f"{where}: missing {exc.args[0]!r}") from None
    if not rules:
        raise ValueError(f"{path}: no [[rule]] tables")
    return tuple(rules)


DEFAULT_RULES_FILE = Path(str(resources.files("gpuledger") / "deploy" / "alerts" / "rules.toml"))
"""The package's rules file (an installed wheel carries it; ``gpuledger deploy export`` copies
it out): the one statement of the default rules."""
DEFAULT_RULES = load_rules(DEFAULT_RULES_FILE)


@dataclass(frozen=True)
class Observation:
    """One label set for which a rule's condition holds at an instant, with its value."""

    labels: dict[str, str]
    value: float


def observe(
    rule: AlertRule,
    now: list[fleet.FleetNow],
    newest: list[fleet.Newest],
    now_ms: int,
) -> list[Observation]:
    if rule.condition == "idle_capacity":
        idle: dict[str, float] = {}
        cap: dict[str, float] = {}
        for r in now:
            if r.idle is not None and r.capacity:
                idle[r.datacentre] = idle.get(r.datacentre, 0.0) + r.idle
                cap[r.datacentre] = cap.get(r.datacentre, 0.0) + r.capacity
        return [
            Observation({"datacentre": dc}, idle[dc] / cap[dc])
            for dc in sorted(cap)
            if cap[dc] > 0 and idle[dc] / cap[dc] > rule.threshold
        ]
    out = []
    for n in newest:
        age = (now_ms - n.newest_ms) / 1000.0
        if n.kind in rule.kinds and age > rule.threshold:
            out.append(
                Observation({"datacentre": n.datacentre, "cluster": n.cluster, "kind": n.kind}, age)
            )
    return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Alert:
    """An alert in Alertmanager's webhook shape (plus ``value``)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str  # noqa: N815 - Alertmanager's field names
    endsAt: str  # noqa: N815
    fingerprint: str
    value: float
    generatorURL: str = ""  # noqa: N815

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(labels: dict[str, str]) -> str:
    text = json.dumps(labels, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Tracked:
    rule: str
    labels: dict[str, str]
    active_ms: int
    value: float
    firing: bool = False
    annotations: dict[str, str] = field(default_factory=dict)


class Evaluator:
    def __init__(self, rules: Iterable[AlertRule], horizon_s: float = 3600.0) -> None:
        self.rules = tuple(rules)
        self.horizon_s = horizon_s
        self._tracked: dict[str, _Tracked] = {}

    def evaluate(self, con: duckdb.DuckDBPyConnection, now_ms: int) -> list[Alert]:
        """Notifications due at ``now_ms``: newly firing and newly resolved alerts."""
        now = fleet.fleet_now(con, now_ms, self.horizon_s)
        newest = fleet.telemetry_newest(con, now_ms)
        out: list[Alert] = []
        for rule in self.rules:
            seen = set()
            for ob in observe(rule, now, newest, now_ms):
                labels = {"alertname": rule.name, **ob.labels, "severity": rule.severity}
                fp = fingerprint(labels)
                seen.add(fp)
                t = self._tracked.get(fp)
                if t is None:
                    t = self._tracked[fp] = _Tracked(rule.name, labels, now_ms, ob.value)
                t.value = ob.value
                if not t.firing and now_ms - t.active_ms >= rule.for_s * 1000:
                    t.firing = True
                    t.annotations = _annotations(rule, ob)
                    out.append(self._alert(t, fp, "firing", ZERO_TIME))
            for fp, t in list(self._tracked.items()):
                if t.rule == rule.name and fp not in seen:
                    del self._tracked[fp]
                    if t.firing:
                        out.append(self._alert(t, fp, "resolved", iso(now_ms)))
        return out

    @staticmethod
    def _alert(t: _Tracked, fp: str, status: Literal["firing", "resolved"], ends: str) -> Alert:
        return Alert(
            status, dict(t.labels), dict(t.annotations), iso(t.active_ms), ends, fp, t.value
        )

    def firing(self) -> list[dict[str, str]]:
        return [t.labels for t in self._tracked.values() if t.firing]

    def state(self) -> dict[str, Any]:
        return {fp: asdict(t) for fp, t in self._tracked.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self._tracked = {fp: _Tracked(**t) for fp, t in state.items()}


def _annotations(rule: AlertRule, ob: Observation) -> dict[str, str]:
    if not rule.summary:
        return {}
    try:
        text = rule.summary.format(**ob.labels, value=ob.value, **{"for": rule.for_text})
    except (KeyError, ValueError, IndexError) as exc:
        text = f"{rule.name} {ob.labels} value {ob.value:g} (bad summary template: {exc})"
    return {"summary": text}
