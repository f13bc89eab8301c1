"""kube-state-metrics, read: the series a Kubernetes GPU cluster is described by, and what
they say about its GPU nodes and GPU-requesting pods (see :mod:`collectors.kubernetes`).

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
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from collectors.errors import SourceError

log = logging.getLogger(__name__)

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
class Pod:
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
class Node:
    gpus: int = 0
    shared: int = 0
    replicas: int | None = None
    model: str | None = None
    ready: bool = True


@dataclass
class Cluster:
    nodes: dict[str, Node]
    pods: dict[tuple[str, str], Pod]
    """Pods with a GPU request, by (namespace, pod)."""
    skipped: dict[str, int]


def _node_sample(
    nodes: dict[str, Node], name: str, labels: Mapping[str, str], value: float
) -> None:
    node = nodes.setdefault(_label(labels, "node"), Node())
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


def _pod_sample(pod: Pod, name: str, labels: Mapping[str, str], value: float) -> None:
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
    nodes: dict[str, Node] = {}
    pods: dict[tuple[str, str], Pod] = {}
    skipped: Counter[str] = Counter()
    for name, labels, value in samples:
        if name.startswith("kube_node_"):
            if name != "kube_node_status_capacity" or labels.get("resource") in (GPU, SHARED):
                _node_sample(nodes, name, labels, value)
        else:
            key = (_label(labels, "namespace"), _label(labels, "pod"))
            pod = pods.get(key)
            if pod is None:
                pod = pods[key] = Pod(*key)
            _pod_sample(pod, name, labels, value)
    gpu_pods: dict[tuple[str, str], Pod] = {}
    for key, pod in pods.items():
        if not pod.requests:
            continue
        replicas = nodes.get(pod.node, Node()).replicas or shared_replicas
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


def node_gpus(node: Node, shared_replicas: int | None) -> float:
    replicas = node.replicas or shared_replicas
    return node.gpus + (node.shared / replicas if replicas else 0.0)
