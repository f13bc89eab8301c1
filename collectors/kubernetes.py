"""Kubernetes GPU capacity and pod allocations from kube-state-metrics (notes b6).

Read either from kube-state-metrics' own ``/metrics`` (``ksm_url``) or from a Prometheus that
scrapes it (``prometheus_url``: instant queries on ``/api/v1/query``). Series used:

- ``kube_node_status_capacity{node,resource}`` for ``nvidia_com_gpu`` (whole GPUs) and
  ``nvidia_com_gpu_shared`` (time-sliced replicas, ``renameByDefault=true``);
- ``kube_node_labels`` ``label_nvidia_com_gpu_replicas`` / ``label_nvidia_com_gpu_product``
  (GPU feature discovery; KSM exports them when allow-listed) for the replica count and model;
  without a replica label the ``shared_replicas`` setting is used, and without either the
  shared GPUs are skipped and counted (``shared_without_replicas``), never guessed;
- ``kube_node_status_condition{condition="Ready",status="true"}`` 0 = a node whose free GPUs
  are down;
- ``kube_pod_container_resource_requests{namespace,pod,uid,container,node,resource}`` summed
  over the pod's containers; a shared request counts ``1 / replicas`` of a GPU;
- ``kube_pod_start_time``, ``kube_pod_completion_time``, ``kube_pod_status_phase`` (value 1);
- ``kube_pod_labels`` when the tenant is a pod label (``tenant_label="team"`` reads
  ``label_team``); else the tenant is the namespace.

After a Prometheus scrape without ``honor_labels``, ``exported_namespace`` / ``exported_pod`` /
``exported_node`` are the workload's labels and win over the target's.

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
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from collectors.base import Emitted
from collectors.dcgm import http_get
from collectors.errors import SourceError
from pipeline.records import ALLOCATION, INVENTORY, OCCUPANCY, Record

log = logging.getLogger(__name__)

SOURCE = "kubernetes"
GPU = "nvidia_com_gpu"
SHARED = "nvidia_com_gpu_shared"
ENDED_PHASES = frozenset({"Succeeded", "Failed"})
METRICS = (
    "kube_node_status_capacity",
    "kube_node_labels",
    "kube_node_status_condition",
    "kube_pod_container_resource_requests",
    "kube_pod_start_time",
    "kube_pod_completion_time",
    "kube_pod_status_phase",
    "kube_pod_labels",
)
PROMQL: dict[str, str] = {
    "kube_node_status_capacity": 'kube_node_status_capacity{resource=~"nvidia_com_gpu.*"}',
    "kube_node_labels": "kube_node_labels",
    "kube_node_status_condition": 'kube_node_status_condition{condition="Ready",status="true"}',
    "kube_pod_container_resource_requests": (
        'kube_pod_container_resource_requests{resource=~"nvidia_com_gpu.*"}'
    ),
    "kube_pod_start_time": "kube_pod_start_time",
    "kube_pod_completion_time": "kube_pod_completion_time",
    "kube_pod_status_phase": "kube_pod_status_phase == 1",
    "kube_pod_labels": "kube_pod_labels",
}

Sample = tuple[str, dict[str, str], float]


def _label(labels: Mapping[str, str], name: str) -> str:
    return labels.get(f"exported_{name}") or labels.get(name) or ""


def parse_ksm_text(text: str) -> list[Sample]:
    """kube-state-metrics exposition -> the samples of ``METRICS`` (others are ignored)."""
    wanted = set(METRICS)
    lines = [ln for ln in text.splitlines() if ln.split("{", 1)[0].split(" ", 1)[0] in wanted]
    try:
        return [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families("\n".join(lines) + "\n")
            for s in family.samples
        ]
    except (ValueError, IndexError, KeyError) as exc:
        raise SourceError(f"not Prometheus exposition text ({exc})") from exc


def parse_prometheus_answer(name: str, body: bytes) -> list[Sample]:
    """A ``/api/v1/query`` JSON answer (instant vector) -> samples named ``name``."""
    try:
        data = json.loads(body)
        if data.get("status") != "success":
            raise SourceError(f"query failed: {data.get('error', data)!s:.200}")
        out: list[Sample] = []
        for item in data["data"]["result"]:
            labels = dict(item["metric"])
            labels.pop("__name__", None)
            out.append((name, labels, float(item["value"][1])))
        return out
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise SourceError(f"not a Prometheus query answer ({type(exc).__name__}: {exc})") from exc


@dataclass
class _Pod:
    namespace: str
    name: str
    node: str = ""
    gpus: float = 0.0
    start: int | None = None
    end: int | None = None
    phase: str = "Unknown"
    labels: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, float]] = field(default_factory=list)
    completion: int | None = None


@dataclass
class _Node:
    gpus: int = 0
    shared: int = 0
    replicas: int | None = None
    model: str | None = None
    ready: bool = True


@dataclass
class Cluster:
    nodes: dict[str, _Node]
    pods: dict[tuple[str, str], _Pod]
    """Pods with a GPU request, by (namespace, pod)."""
    skipped: dict[str, int]


def _node_sample(
    nodes: dict[str, _Node], name: str, labels: Mapping[str, str], value: float
) -> None:
    node = nodes.setdefault(_label(labels, "node"), _Node())
    if name == "kube_node_status_capacity":
        if labels.get("resource") == GPU:
            node.gpus = int(value)
        elif labels.get("resource") == SHARED:
            node.shared = int(value)
    elif name == "kube_node_labels":
        replicas = labels.get("label_nvidia_com_gpu_replicas", "")
        if replicas.isdigit() and int(replicas) > 0:
            node.replicas = int(replicas)
        product = labels.get("label_nvidia_com_gpu_product")
        if product:
            node.model = product.removesuffix("-SHARED")
    elif (
        name == "kube_node_status_condition"
        and labels.get("condition") == "Ready"
        and labels.get("status") == "true"
    ):
        node.ready = value == 1


def _pod_sample(pod: _Pod, name: str, labels: Mapping[str, str], value: float) -> None:
    if name == "kube_pod_container_resource_requests":
        resource = labels.get("resource", "")
        if resource in (GPU, SHARED):
            pod.requests.append((resource, value))
            pod.node = pod.node or _label(labels, "node")
    elif name == "kube_pod_status_phase":
        if value == 1:
            pod.phase = labels.get("phase", "Unknown")
    elif name == "kube_pod_labels":
        pod.labels = dict(labels)
    elif name == "kube_pod_start_time" and value > 0:
        pod.start = int(round(value * 1000))
    elif name == "kube_pod_completion_time" and value > 0:
        pod.completion = int(round(value * 1000))


def interpret(samples: list[Sample], shared_replicas: int | None = None) -> Cluster:
    """Samples -> GPU nodes and GPU-requesting pods (pods without a GPU request are left out)."""
    nodes: dict[str, _Node] = {}
    pods: dict[tuple[str, str], _Pod] = {}
    skipped: Counter[str] = Counter()
    for name, labels, value in samples:
        if name.startswith("kube_node_"):
            if name != "kube_node_status_capacity" or labels.get("resource") in (GPU, SHARED):
                _node_sample(nodes, name, labels, value)
        else:
            key = (_label(labels, "namespace"), _label(labels, "pod"))
            pod = pods.get(key)
            if pod is None:
                pod = pods[key] = _Pod(*key)
            _pod_sample(pod, name, labels, value)
    gpu_pods: dict[tuple[str, str], _Pod] = {}
    for key, pod in pods.items():
        if not pod.requests:
            continue
        replicas = nodes.get(pod.node, _Node()).replicas or shared_replicas
        for resource, value in pod.requests:
            if resource == GPU:
                pod.gpus += value
            elif replicas:
                pod.gpus += value / replicas
            else:
                skipped["shared_without_replicas"] += 1
        pod.end = pod.completion if pod.phase in ENDED_PHASES else None
        gpu_pods[key] = pod
    for node_name, n in nodes.items():
        if n.shared and not (n.replicas or shared_replicas):
            skipped["shared_without_replicas"] += 1
            log.warning("node %s has shared GPUs but no replica count: not counted", node_name)
    return Cluster(nodes, gpu_pods, dict(skipped))


def node_gpus(node: _Node, shared_replicas: int | None) -> float:
    replicas = node.replicas or shared_replicas
    return node.gpus + (node.shared / replicas if replicas else 0.0)


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
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({"pods": pods}, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

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

    def _tenant(self, pod: _Pod) -> str:
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

    def _allocation(self, pod: _Pod, ts: int, site: Mapping[str, str]) -> Record:
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
