"""kube-state-metrics (direct or through Prometheus) -> occupancy, inventory, allocations; with a
dcgm-exporter scrape of the same GPUs, busy-allocated GPU-hours per namespace.

Both endpoints are real loopback HTTP servers; the scrape bodies are files in
tests/fixtures/kubernetes (README there). Scrapes happen at T0 = 2026-07-01T00:00Z and T0 + 1 h.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.dcgm import DcgmCollector
from collectors.errors import SourceError
from collectors.kube_state import interpret, parse_ksm_text
from collectors.kubernetes import KubernetesCollector
from collectors.run import run_collector
from pipeline.backfill import LakeSink
from pipeline.records import ALLOCATION, OCCUPANCY, Record, coerce
from tests.conftest import source_args
from warehouse.catalog import connect
from warehouse.reports.utilisation import utilisation_report

FIXTURES = Path(__file__).parent / "fixtures" / "kubernetes"
T0 = 1_782_864_000  # 2026-07-01T00:00:00Z
H = 3600


class _Server(http.server.BaseHTTPRequestHandler):
    bodies: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/v1/query":
            query = urllib.parse.parse_qs(url.query)["query"][0]
            body, status = _prometheus_answer(self.bodies["/metrics"], query), 200
        elif url.path in self.bodies:
            body, status = self.bodies[url.path], 200
        else:
            body, status = b"not found\n", 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _prometheus_answer(exposition: bytes, query: str) -> bytes:
    """What a Prometheus scraping this KSM without honor_labels answers to our instant queries:
    the target's namespace/pod win, the workload's become exported_namespace / exported_pod."""
    name = query.split("{")[0].split(" ")[0]
    result = []
    for family in text_string_to_metric_families(exposition.decode()):
        for s in family.samples:
            labels = dict(s.labels)
            if s.name != name:
                continue
            if "nvidia_com_gpu.*" in query and not labels.get("resource", "").startswith(
                "nvidia_com_gpu"
            ):
                continue
            if "== 1" in query and s.value != 1:
                continue
            if 'condition="Ready"' in query and labels.get("status") != "true":
                continue
            for key in ("namespace", "pod"):
                if key in labels:
                    labels[f"exported_{key}"] = labels.pop(key)
            labels.update(
                __name__=s.name,
                namespace="monitoring",
                pod="kube-state-metrics-7d9f8",
                job="kube-state-metrics",
                instance="10.0.0.7:8080",
            )
            result.append({"metric": labels, "value": [T0, repr(s.value)]})
    answer = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return json.dumps(answer).encode()


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def serve(at: str) -> None:
    _Server.bodies = {
        "/metrics": (FIXTURES / f"ksm-{at}.prom").read_bytes(),
        "/dcgm": (FIXTURES / f"dcgm-{at}.prom").read_bytes(),
    }


def by_kind(out: list[tuple]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for k, r in out:
        assert coerce(k, r) == r
        groups.setdefault(k.name, []).append(r)
    return groups


def test_shared_gpus_are_fractions_and_containers_sum() -> None:
    state = interpret(parse_ksm_text((FIXTURES / "ksm-0000.prom").read_text()))
    assert state.pods[("team-a", "train-a")].gpus == 2.0  # cpu requests and sidecar ignored
    assert state.pods[("team-b", "infer-b")].gpus == 0.25  # 1 of 4 time-slice replicas
    assert ("web", "frontend") not in state.pods  # no GPU request
    assert state.nodes["k2"].replicas == 4 and state.nodes["k2"].model == "NVIDIA-A10G"
    assert state.skipped == {}


def test_shared_gpus_without_a_replica_count_are_counted_not_guessed() -> None:
    text = (
        (FIXTURES / "ksm-0000.prom").read_text().replace(',label_nvidia_com_gpu_replicas="4"', "")
    )
    state = interpret(parse_ksm_text(text))
    assert state.pods[("team-b", "infer-b")].gpus == 0.0
    assert state.skipped == {"shared_without_replicas": 2}  # the request and the node
    assert (
        interpret(parse_ksm_text(text), shared_replicas=2).pods[("team-b", "infer-b")].gpus == 0.5
    )


@pytest.mark.parametrize("mode", ["ksm", "prometheus"])
def test_two_scrapes_give_occupancy_inventory_and_pod_lifetimes(server: str, mode: str) -> None:
    now = [float(T0)]
    c = KubernetesCollector(
        datacentre="dc1",
        cluster="k8s",
        interval_s=H,
        clock=lambda: now[0],
        ksm_url=f"{server}/metrics" if mode == "ksm" else None,
        prometheus_url=server if mode == "prometheus" else None,
    )
    serve("0000")
    first = by_kind(list(c.collect()))
    assert first["occupancy"] == [
        {
            "ts": T0 * 1000,
            "interval_s": 3600.0,
            "datacentre": "dc1",
            "cluster": "k8s",
            "scope": None,
            "gpus_total": 5.0,  # k1: 4 GPUs; k2: 4 shared replicas of 1 GPU
            "gpus_allocated": 2.25,
            "gpus_down": 0.0,
            "source": "kubernetes",
        }
    ]
    assert {r["node"]: (r["gpu_count"], r["gpu_model"]) for r in first["inventory"]} == {
        "k1": (4, "NVIDIA-A100-SXM4-80GB"),
        "k2": (1, "NVIDIA-A10G"),
    }
    train = {r["allocation_id"]: r for r in first["allocation"]}["team-a/train-a"]
    assert train == {
        "allocation_id": "team-a/train-a",
        "datacentre": "dc1",
        "cluster": "k8s",
        "tenant_id": "team-a",
        "event_ts": T0 * 1000,
        "job_id": "train-a",
        "gpu_count": 2.0,
        "gpu_uuids": None,
        "nodes": ["k1"],
        "start": T0 * 1000,
        "end": None,
        "state": "Running",
        "source": "kubernetes",
    }
    now[0] += H
    serve("0100")
    second = by_kind(list(c.collect()))
    assert "inventory" not in second  # unchanged nodes
    assert [r["allocation_id"] for r in second["allocation"]] == ["team-a/train-a"]  # changed
    done = second["allocation"][0]
    assert (done["state"], done["end"], done["event_ts"]) == (
        "Succeeded",
        (T0 + H) * 1000,
        (T0 + H) * 1000,
    )
    assert second["occupancy"][0]["gpus_allocated"] == 0.25


def test_a_pod_that_vanishes_ends_at_the_last_scrape_that_saw_it(server: str) -> None:
    now = [float(T0)]
    c = KubernetesCollector(
        datacentre="dc1", cluster="k8s", ksm_url=f"{server}/metrics", clock=lambda: now[0]
    )
    serve("0000")
    list(c.collect())
    now[0] += 60
    list(c.collect())
    now[0] += 60
    text = (FIXTURES / "ksm-0000.prom").read_text()
    _Server.bodies["/metrics"] = "\n".join(
        ln for ln in text.splitlines() if 'pod="infer-b"' not in ln
    ).encode()
    gone = [r for k, r in c.collect() if k is ALLOCATION]
    assert len(gone) == 1
    assert (gone[0]["allocation_id"], gone[0]["state"], gone[0]["end"]) == (
        "team-b/infer-b",
        "Deleted",
        (T0 + 60) * 1000,
    )


def test_tenant_from_a_pod_label(server: str) -> None:
    serve("0000")
    c = KubernetesCollector(
        datacentre="dc1",
        cluster="k8s",
        prometheus_url=server,
        tenant_label="team",
        clock=lambda: float(T0),
    )
    tenants = {r["allocation_id"]: r["tenant_id"] for k, r in c.collect() if k is ALLOCATION}
    assert tenants == {"team-a/train-a": "vision", "team-b/infer-b": "team-b"}
    assert c.skipped["tenant_label_missing_namespace_used"] == 1


def test_down_and_garbage_endpoints_are_source_errors(server: str) -> None:
    c = KubernetesCollector(datacentre="d", cluster="c", ksm_url=f"{server}/nowhere")
    with pytest.raises(SourceError, match="HTTP 404"):
        list(c.collect())
    _Server.bodies = {"/metrics": b"<html><body>502 Bad Gateway</body></html>\n"}
    c = KubernetesCollector(datacentre="d", cluster="c", ksm_url=f"{server}/metrics")
    with pytest.raises(SourceError, match="no kube-state-metrics series"):
        list(c.collect())
    refused = KubernetesCollector(datacentre="d", cluster="c", prometheus_url="http://127.0.0.1:9")
    with pytest.raises(SourceError, match="cannot connect"):
        list(refused.collect())


def test_ksm_and_dcgm_scrape_pair_gives_busy_allocated_gpu_hours_per_namespace(
    server: str, lake: Path
) -> None:
    """Two scrapes an hour apart of KSM and dcgm-exporter (util = GR_ENGINE_ACTIVE), each
    sample / snapshot covering 1 h.

    Allocated: train-a 2 GPUs T0..T0+1h (Succeeded)                   = 2 GPU-h
               infer-b 0.25 GPU from T0, running; horizon = T0+2h     = 0.5 GPU-h
    Busy (Σ util x 1 h): T0: a0 .8 + a1 .6 + a2 .1 + b0 .5; T0+1h: a2 .1 + b0 .5   = 2.6
    Busy-allocated (samples whose pod an allocation holds at their ts):
               team-a: a0 .8 + a1 .6 (T0; at T0+1h train-a has ended)  = 1.4
               team-b: b0 .5 + .5                                      = 1.0   (total 2.4)
    Capacity: 5 GPUs x 2 h of occupancy coverage                       = 10
    """
    now = [float(T0)]
    sink = LakeSink(lake, "test-k8s-pair", "test")
    ksm = KubernetesCollector(
        datacentre="dc1",
        cluster="k8s",
        ksm_url=f"{server}/metrics",
        interval_s=H,
        clock=lambda: now[0],
    )
    dcgm = DcgmCollector(
        f"{server}/dcgm", datacentre="dc1", cluster="k8s", interval_s=H, clock=lambda: now[0]
    )
    for at in ("0000", "0100"):
        serve(at)
        run_collector(ksm, sink)
        run_collector(dcgm, sink)
        now[0] += H
    assert sum(sink.stats.rejected.values()) == 0
    con = connect(lake, ":memory:")
    (row,) = utilisation_report(
        con, period="day", by="cluster", date_from=date(2026, 7, 1), date_to=date(2026, 7, 1),
        tz="UTC",
    )  # fmt: skip
    assert row["allocated_gpu_h"] == pytest.approx(2.5)
    assert row["capacity_gpu_h"] == pytest.approx(10.0)
    assert row["busy_gpu_h"] == pytest.approx(2.6)
    assert row["busy_allocated_gpu_h"] == pytest.approx(2.4)
    assert row["sources"] == "capacity=occupancy;allocated=allocation;busy=gpu_samples"
    # per namespace: the allocation spans the warehouse derives, joined to covered samples the
    # way its utilisation SQL does (pod hint = the allocation's job id, held at the sample's ts)
    per_ns = con.execute(
        """
        SELECT a.tenant_id,
               sum(a.gpu_count * (a.e_ms - a.s_ms)) / 3600000.0 AS allocated_h,
               (SELECT sum(s.util * (s.e_ms - s.s_ms)) / 3600000.0
                  FROM gpu_sample_coverage AS s
                  JOIN allocation_spans AS b
                    ON s.pod = b.job_id AND s.s_ms >= b.s_ms AND s.s_ms < b.e_ms
                 WHERE b.tenant_id = a.tenant_id) AS busy_allocated_h
        FROM allocation_spans AS a
        GROUP BY a.tenant_id ORDER BY a.tenant_id
        """
    ).fetchall()
    assert [(t, pytest.approx(x), pytest.approx(y)) for t, x, y in per_ns] == [
        ("team-a", 2.0, 1.4),
        ("team-b", 0.5, 1.0),
    ]


def test_a_node_that_is_not_ready_has_its_free_gpus_down(server: str) -> None:
    text = (FIXTURES / "ksm-0000.prom").read_text()
    _Server.bodies = {
        "/metrics": text.replace(
            'node="k1",condition="Ready",status="true"} 1',
            'node="k1",condition="Ready",status="true"} 0',
        ).encode()
    }
    c = KubernetesCollector(datacentre="d", cluster="c", ksm_url=f"{server}/metrics")
    (occ,) = [r for k, r in c.collect() if k is OCCUPANCY]
    assert occ["gpus_down"] == 2.0  # k1: 4 GPUs, 2 still held by train-a


def test_cli_needs_exactly_one_endpoint(server: str) -> None:
    a = source_args(["kubernetes"])
    with pytest.raises(SystemExit, match="exactly one of --prometheus URL and --ksm-url"):
        a.build(a)
    a = source_args(["kubernetes", "--prometheus", server, "--interval", "15"])
    built = a.build(a)
    assert built.repeat_every_s == 15.0
    serve("0000")
    kinds = [k.name for k, _ in built.collector.collect()]
    assert kinds.count("allocation") == 2


def test_state_file_ends_a_pod_that_vanished_across_a_restart(server: str, tmp_path: Path) -> None:
    state = tmp_path / "k8s-state.json"
    serve("0000")

    def collector(at: float) -> KubernetesCollector:
        return KubernetesCollector(
            datacentre="dc1",
            cluster="k8s",
            ksm_url=f"{server}/metrics",
            state_file=state,
            clock=lambda: at,
        )

    assert len([1 for k, _ in collector(T0).collect() if k is ALLOCATION]) == 2
    # restarted an hour later; infer-b was deleted meanwhile, train-a still runs
    text = (FIXTURES / "ksm-0000.prom").read_text()
    _Server.bodies["/metrics"] = "\n".join(
        ln for ln in text.splitlines() if 'pod="infer-b"' not in ln
    ).encode()
    out = [r for k, r in collector(T0 + H).collect() if k is ALLOCATION]
    assert [(r["allocation_id"], r["state"], r["end"]) for r in out] == [
        ("team-b/infer-b", "Deleted", T0 * 1000)  # train-a unchanged: not emitted again
    ]
