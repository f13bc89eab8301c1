"""Kubernetes GPU capacity and pod allocations from kube-state-metrics.

The series read and what they mean: :mod:`collectors.kube_state`.

Allocation records: ``allocation_id`` = ``<namespace>/<pod>``, ``job_id`` = the pod name (what
dcgm-exporter's ``pod`` label carries, so GPU samples join to it), start = pod start time, end =
completion time, or, for a pod that vanished from kube-state-metrics while running, the last
scrape that saw it (with ``state_file``, also across a restart of the collector). A pod's
record is emitted when first seen and whenever it changes; ``event_ts`` = end, else start, else
the scrape instant.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from collectors.base import Emitted
from collectors.errors import SourceError
from collectors.http import http_get
from collectors.kube_state import (
    ENDED_PHASES,
    METRICS,
    PROMQL,
    Cluster,
    Pod,
    Sample,
    interpret,
    node_gpus,
    parse_ksm_text,
    parse_prometheus_answer,
)
from pipeline.atomic import write_atomic
from pipeline.records import ALLOCATION, INVENTORY, OCCUPANCY, Record

log = logging.getLogger(__name__)

SOURCE = "kubernetes"


Fetch = Callable[[str], bytes]


class KubernetesCollector:
    """One ``collect()`` = one read of kube-state-metrics (directly or through Prometheus)."""

    def __init__(
        self,
        *,
        datacentre: str,
        cluster: str,
        ksm_url: str | None = None,
        prometheus_url: str | None = None,
        tenant_label: str = "namespace",
        shared_replicas: int | None = None,
        interval_s: float = 60.0,
        state_file: Path | None = None,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (ksm_url is None) == (prometheus_url is None):
            raise ValueError("give exactly one of ksm_url and prometheus_url")
        self.datacentre = datacentre
        self.cluster = cluster
        self.ksm_url = ksm_url
        self.prometheus_url = prometheus_url
        self.tenant_label = tenant_label
        self.shared_replicas = shared_replicas
        self.interval_s = interval_s
        self._fetch = fetch or http_get
        self._clock = clock
        self.skipped: Counter[str] = Counter()
        self._emitted: dict[str, Record] = {}
        self._last_seen: dict[str, int] = {}
        self._inventory: dict[str, tuple[int, str | None]] = {}
        self.state_file = state_file
        self._loaded = state_file is None

    def _load_state(self) -> None:
        """Pods seen before a restart: one that vanished meanwhile still gets its end."""
        self._loaded = True
        assert self.state_file is not None
        try:
            data = json.loads(self.state_file.read_text())
            for allocation_id, item in data["pods"].items():
                self._emitted[allocation_id] = item["record"]
                self._last_seen[allocation_id] = int(item["last_seen"])
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{self.state_file}: unreadable pod state ({exc})") from exc

    def _save_state(self) -> None:
        assert self.state_file is not None
        pods = {a: {"record": r, "last_seen": self._last_seen[a]} for a, r in self._emitted.items()}
        write_atomic(self.state_file, json.dumps({"pods": pods}, sort_keys=True) + "\n")

    def _get(self, url: str) -> bytes:
        try:
            return self._fetch(url)
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"{url}: {type(exc).__name__}: {exc}") from exc

    def _samples(self) -> list[Sample]:
        if self.ksm_url is not None:
            body = self._get(self.ksm_url)
            try:
                return parse_ksm_text(body.decode("utf-8"))
            except (SourceError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.ksm_url}: {exc}") from exc
        assert self.prometheus_url is not None
        samples: list[Sample] = []
        base = self.prometheus_url.rstrip("/")
        for name in METRICS:
            if name == "kube_pod_labels" and self.tenant_label == "namespace":
                continue
            url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": PROMQL[name]})
            try:
                samples += parse_prometheus_answer(name, self._get(url))
            except SourceError as exc:
                raise SourceError(f"{url}: {exc}") from exc
        return samples

    def _tenant(self, pod: Pod) -> str:
        if self.tenant_label == "namespace":
            return pod.namespace
        value = pod.labels.get(f"label_{self.tenant_label}")
        if not value:
            self.skipped["tenant_label_missing_namespace_used"] += 1
        return value or pod.namespace

    def collect(self) -> Iterator[Emitted]:
        """One read; with a ``state_file``, the pods are saved once every record was taken."""
        if not self._loaded:
            self._load_state()
        ts = int(round(self._clock() * 1000))
        samples = self._samples()
        state = interpret(samples, self.shared_replicas)
        if not state.nodes and not state.pods and not samples:
            where = self.ksm_url or self.prometheus_url
            raise SourceError(f"{where}: no kube-state-metrics series in the answer")
        self.skipped.update(state.skipped)
        site = {"datacentre": self.datacentre, "cluster": self.cluster}
        yield from self._occupancy(state, ts, site)
        for name, node in state.nodes.items():
            count = int(round(node_gpus(node, self.shared_replicas)))
            if count and self._inventory.get(name) != (count, node.model):
                self._inventory[name] = (count, node.model)
                yield (
                    INVENTORY,
                    {
                        **site,
                        "node": name,
                        "valid_from": ts,
                        "valid_to": None,
                        "gpu_model": node.model,
                        "gpu_count": count,
                        "source": SOURCE,
                    },
                )
        seen: set[str] = set()
        for pod in state.pods.values():
            record = self._allocation(pod, ts, site)
            seen.add(record["allocation_id"])
            self._last_seen[record["allocation_id"]] = ts
            if self._emitted.get(record["allocation_id"]) != record:
                self._emitted[record["allocation_id"]] = record
                yield ALLOCATION, record
        for allocation_id, record in list(self._emitted.items()):
            if allocation_id in seen:
                continue
            del self._emitted[allocation_id]
            last = self._last_seen.pop(allocation_id)
            if record["end"] is None and record["start"] is not None:
                # vanished while running: held until the last scrape that saw it
                yield (
                    ALLOCATION,
                    {
                        **record,
                        "end": max(last, record["start"]),
                        "event_ts": max(last, record["start"]),
                        "state": "Deleted",
                    },
                )
        if self.state_file is not None:
            self._save_state()

    def _occupancy(self, state: Cluster, ts: int, site: Mapping[str, str]) -> Iterator[Emitted]:
        total = sum(node_gpus(n, self.shared_replicas) for n in state.nodes.values())
        held: dict[str, float] = {}
        for pod in state.pods.values():
            if pod.node and pod.phase not in ENDED_PHASES:
                held[pod.node] = held.get(pod.node, 0.0) + pod.gpus
        down = sum(
            max(0.0, node_gpus(n, self.shared_replicas) - held.get(name, 0.0))
            for name, n in state.nodes.items()
            if not n.ready
        )
        yield (
            OCCUPANCY,
            {
                "ts": ts,
                "interval_s": float(self.interval_s),
                **site,
                "scope": None,
                "gpus_total": total,
                "gpus_allocated": sum(held.values()),
                "gpus_down": down,
                "source": SOURCE,
            },
        )

    def _allocation(self, pod: Pod, ts: int, site: Mapping[str, str]) -> Record:
        return {
            "allocation_id": f"{pod.namespace}/{pod.name}",
            **site,
            "tenant_id": self._tenant(pod),
            "event_ts": pod.end or pod.start or ts,
            "job_id": pod.name,
            "gpu_count": pod.gpus,
            "gpu_uuids": None,
            "nodes": [pod.node] if pod.node else None,
            "start": pod.start,
            "end": pod.end,
            "state": pod.phase,
            "source": SOURCE,
        }
