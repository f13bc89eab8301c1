"""Where built-in alerts go: stdout (JSON lines), an Alertmanager-compatible webhook, and/or
the ``alerts.v1`` Kafka topic. Each sink has one method, ``deliver(alerts)``; ``select_sinks``
picks those of one ``alerts`` run.

A webhook that fails keeps its undelivered alerts and sends them first on the next call, so a
receiver that was down still gets every firing and resolved message, in order.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TextIO

from pipeline.kafka_config import KafkaSecurity, client_kwargs
from pipeline.kafka_connect import connect
from pipeline.topics import create_topics
from warehouse.ops.alerts.rules import Alert

log = logging.getLogger(__name__)

ALERTS_TOPIC = "alerts.v1"


class AlertSink(Protocol):
    def deliver(self, alerts: Sequence[Alert]) -> None: ...


class StdoutSink:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def deliver(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            self.stream.write(json.dumps(a.to_json(), sort_keys=True) + "\n")
        self.stream.flush()


def webhook_payload(alerts: Sequence[Alert], receiver: str = "gpuledger") -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for alerts of one group."""
    common_labels = dict(alerts[0].labels)
    for a in alerts[1:]:
        common_labels = {k: v for k, v in common_labels.items() if a.labels.get(k) == v}
    common_ann = dict(alerts[0].annotations)
    for a in alerts[1:]:
        common_ann = {k: v for k, v in common_ann.items() if a.annotations.get(k) == v}
    group = {"alertname": alerts[0].labels["alertname"]}
    return {
        "version": "4",
        "groupKey": "{}:" + json.dumps(group, sort_keys=True),
        "truncatedAlerts": 0,
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": common_labels,
        "commonAnnotations": common_ann,
        "externalURL": "",
        "alerts": [{k: v for k, v in a.to_json().items() if k != "value"} for a in alerts],
    }


Post = Callable[[str, bytes], None]


def _post(url: str, body: bytes) -> None:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


class WebhookSink:
    def __init__(self, url: str, post: Post = _post) -> None:
        self.url = url
        self.post = post
        self.backlog: list[Alert] = []

    def deliver(self, alerts: Sequence[Alert]) -> None:
        self.backlog.extend(alerts)
        while self.backlog:
            name = self.backlog[0].labels["alertname"]
            batch = [a for a in self.backlog if a.labels["alertname"] == name]
            try:
                self.post(self.url, json.dumps(webhook_payload(batch)).encode())
            except (OSError, urllib.error.URLError) as exc:
                log.warning(
                    "webhook %s failed (%s); %d alerts kept", self.url, exc, len(self.backlog)
                )
                return
            self.backlog = [a for a in self.backlog if a.labels["alertname"] != name]


class KafkaAlertSink:
    """Publishes each notification to ``[<namespace>.]alerts.v1`` (one partition: in order),
    keyed by the alert's fingerprint, value = the alert's JSON."""

    def __init__(
        self, bootstrap: str, namespace: str = "", security: KafkaSecurity | None = None
    ) -> None:
        from kafka import KafkaProducer

        self.topic = f"{namespace}.{ALERTS_TOPIC}" if namespace else ALERTS_TOPIC
        # one partition: alerts stay in order
        create_topics(bootstrap, {self.topic: 1}, security=security)
        self.producer = connect(
            lambda ms: KafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                retries=5,
                bootstrap_timeout_ms=ms,
                **client_kwargs(security),
            ),
            bootstrap,
            security,
            30.0,
            "publish alerts",
        )

    def deliver(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            self.producer.send(
                self.topic,
                key=a.fingerprint.encode(),
                value=json.dumps(a.to_json(), sort_keys=True).encode(),
            )
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.close(10)


def select_sinks(
    stream: TextIO,
    *,
    stdout: bool = False,
    webhook: str | None = None,
    kafka: str | None = None,
    namespace: str = "",
    security: KafkaSecurity | None = None,
) -> list[AlertSink]:
    """The sinks of one run: JSON lines on ``stream`` when ``stdout`` is asked for or no other
    sink is given, the ``webhook``, the alerts topic on ``kafka``. ``close_sinks`` ends them."""
    sinks: list[AlertSink] = []
    if stdout or not (webhook or kafka):
        sinks.append(StdoutSink(stream))
    if webhook:
        sinks.append(WebhookSink(webhook))
    if kafka:
        sinks.append(KafkaAlertSink(kafka, namespace, security))
    return sinks


def undelivered(sinks: Sequence[AlertSink]) -> int:
    """Alerts the webhook sinks still hold (their receiver failed)."""
    return sum(len(s.backlog) for s in sinks if isinstance(s, WebhookSink))


def close_sinks(sinks: Sequence[AlertSink]) -> None:
    for s in sinks:
        if isinstance(s, KafkaAlertSink):
            s.close()
