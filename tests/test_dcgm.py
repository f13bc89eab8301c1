"""dcgm-exporter collector: canned real-format scrapes, the metric catalogues, a real HTTP server,
and the file replay of a generated stream."""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from collectors.dcgm import MIB, DcgmCollector, parse_exposition
from collectors.errors import SourceError
from collectors.replay.dcgm_file import DcgmFileReplay
from pipeline.records import GPU_SAMPLE, RecordError, coerce

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "dcgm"
SHARED = Path(os.environ.get("GPULEDGER_SHARED_DATA", REPO.parent / "shared" / "data"))
CATALOGUES = SHARED / "format-fixtures" / "dcgm-exporter"
ALLTYPES = SHARED / "format-fixtures" / "prometheus" / "alltypes.237mfs.prom.txt"
SCRAPE_MS = 1_700_000_000_000

A100_0 = "GPU-5a7c2b1e-3f0d-4c8e-9b61-0e2f4d7a9c13"
A100_1 = "GPU-c0e8a4f2-71b9-4d3a-8e52-6a1f9b0d2e47"


def rec(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ts": SCRAPE_MS,
        "interval_s": 30.0,
        "datacentre": "dc-sh-01",
        "cluster": "c1",
        "node": None,
        "gpu_uuid": None,
        "gpu_index": None,
        "gpu_model": None,
        "util": None,
        "mem_used_bytes": None,
        "mem_total_bytes": None,
        "power_w": None,
        "temp_c": None,
        "sm_active": None,
        "pod": None,
        "namespace": None,
        "job_id": None,
        "source": "dcgm",
    }
    assert set(fields) <= set(base), set(fields) - set(base)
    return {**base, **fields}


def parse(name: str, node: str | None = None) -> Any:
    return parse_exposition(
        (FIXTURES / name).read_text(),
        datacentre="dc-sh-01",
        cluster="c1",
        scrape_ts_ms=SCRAPE_MS,
        interval_s=30.0,
        node=node,
    )


def shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found (set GPULEDGER_SHARED_DATA to the shared data folder)")
    return path


# ------------------------------------------------------------------------ canned scrapes

DEFAULT_K8S = [
    rec(
        node="nvidia-dcgm-exporter-57pvc",  # released images: Hostname = the exporter's pod
        gpu_uuid=A100_0,
        gpu_index=0,
        gpu_model="NVIDIA A100-SXM4-80GB",
        util=0.912345,  # GR_ENGINE_ACTIVE, not GPU_UTIL=100
        mem_used_bytes=37213 * MIB,
        mem_total_bytes=(37213 + 44102 + 605) * MIB,
        power_w=312.457,
        temp_c=61.0,
        pod="llm-train-0",
        namespace="team-a",
    ),
    rec(
        node="nvidia-dcgm-exporter-57pvc",
        gpu_uuid=A100_1,
        gpu_index=1,
        gpu_model="NVIDIA A100-SXM4-80GB",
        util=0.0,
        mem_used_bytes=0,
        mem_total_bytes=(81313 + 607) * MIB,
        power_w=61.043,
        temp_c=32.0,
    ),
]

MIG_UUID = "GPU-ed1353d6-2b7c-4f0e-a1d9-8c3b5e6f7a20"
T4 = "GPU-e1200d64-e918-4277-cad9-75da90b9f618"

CASES: dict[str, tuple[list[dict[str, Any]], dict[str, int], dict[str, int]]] = {
    # 2 GPUs x 25 series of the default counter set; 18 of them feed no record field
    "default-counters-kubernetes.prom": (DEFAULT_K8S, {"unused_metric": 36}, {}),
    "mig-old-namespace-lowercase.prom": (
        [
            rec(
                node="gpu-a100-03",  # master's lower-case `hostname`
                gpu_uuid=f"{MIG_UUID}/1",
                gpu_index=0,
                gpu_model="NVIDIA A100 80GB PCIe",
                util=0.0,
                mem_used_bytes=13 * MIB,
                mem_total_bytes=(13 + 40147) * MIB,
                sm_active=0.0,  # pod_name="" etc. -> NULL hints
            ),
            rec(
                node="gpu-a100-03",
                gpu_uuid=f"{MIG_UUID}/2",
                gpu_index=0,
                gpu_model="NVIDIA A100 80GB PCIe",
                util=0.734412,
                mem_used_bytes=28641 * MIB,
                mem_total_bytes=(28641 + 11519) * MIB,
                sm_active=0.512036,
                pod="bert-ft-7d9c",
                namespace="nlp",
            ),
        ],
        {},
        {},
    ),
    "dra-mig.prom": (
        [
            rec(
                node="nvidia-dcgm-exporter-p2w7r",
                gpu_uuid="MIG-4e0b9c7a-2d51-5f3e-8a6c-1b9d7e5f3a20",
                gpu_index=0,
                gpu_model="NVIDIA H100 80GB HBM3",
                util=0.21588,
                mem_used_bytes=6144 * MIB,
                mem_total_bytes=(6144 + 3584) * MIB,
                pod="jupyter-lin-0",
                namespace="research",
            )
        ],
        {},
        {},
    ),
    "legacy-1x.prom": (
        [
            rec(
                gpu_uuid="GPU-8f6b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
                gpu_index=0,
                util=0.87,  # dcgm_gpu_utilization / 100
                mem_used_bytes=12051 * MIB,
                mem_total_bytes=(12051 + 4109) * MIB,
                power_w=141.302,
                temp_c=67.0,
            ),
            rec(
                gpu_uuid="GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
                gpu_index=1,
                util=0.0,
                mem_used_bytes=0,
                mem_total_bytes=16160 * MIB,
                power_w=25.87,
                temp_c=29.0,
            ),
        ],
        {"unused_metric": 6},
        {},
    ),
    "hpc-bare-metal.prom": (
        [
            rec(
                node="gn12",
                gpu_uuid="GPU-3b9f0c1a-7d2e-4a58-9c6b-5e0d1f2a3b4c",
                gpu_index=0,
                gpu_model="Tesla V100-SXM2-16GB",
                util=0.73,  # GR_ENGINE_ACTIVE is DCGM_FP64_BLANK -> falls back to GPU_UTIL/100
                mem_used_bytes=13896 * MIB,
                mem_total_bytes=(13896 + 2264) * MIB,
                power_w=203.118,
                temp_c=58.0,
                job_id="4107166",
            ),
            rec(
                node="gn12",
                gpu_uuid="GPU-7c1d2e3f-8a9b-4c0d-9e1f-2a3b4c5d6e7f",
                gpu_index=1,
                gpu_model="Tesla V100-SXM2-16GB",
                util=0.0,
                mem_used_bytes=0,
                mem_total_bytes=16160 * MIB,
                power_w=None,  # NaN
                temp_c=34.0,
            ),
        ],
        {"unused_metric": 2},
        {"blank_sentinel": 1, "nan": 1},
    ),
    "prometheus-federate.prom": (
        [
            # each sample's own timestamp; `node` beats Hostname; exported_pod is the workload
            {**DEFAULT_K8S[0], "ts": 1715003130123, "node": "worker-gpu-07", "util": 1.0},
            {
                **DEFAULT_K8S[1],
                "ts": 1715003130123,
                "node": "worker-gpu-07",  # pod= here is the exporter's own pod: no hint
            },
            rec(
                ts=1715003131456,
                node="worker-gpu-08",  # kubernetes_node
                gpu_uuid="GPU-9e3d7b21-0a4c-4f6e-b8d2-3c5a7e9f1b04",
                gpu_index=0,
                gpu_model="NVIDIA H100 80GB HBM3",
                util=0.0,
                mem_used_bytes=0,
                mem_total_bytes=(80480 + 1079) * MIB,
                power_w=71.2,
                temp_c=29.0,
            ),
        ],
        {},
        {},
    ),
    "string-values-t4.prom": (
        [
            rec(
                node="nvidia-dcgm-exporter-ml2wh",
                gpu_uuid=T4,
                gpu_index=0,
                gpu_model="Tesla T4",
                util=0.98,
                mem_used_bytes=1285 * MIB,
                mem_total_bytes=(1285 + 13824) * MIB,
                power_w=69.871,
                pod="dcgmproftester",
                namespace="default",
            )
        ],
        {"non_numeric_value": 2, "unused_metric": 1},  # DCGM_FI_DEV_NAME, VBIOS_VERSION
        {},
    ),
    "time-sliced-shared-gpu.prom": (
        [
            rec(
                node="nvidia-dcgm-exporter-4hq8z",
                gpu_uuid="GPU-2f4e6a8c-0b1d-4e3f-a5c7-9e1b3d5f7a9c",
                gpu_index=0,
                gpu_model="NVIDIA A10G",
                util=0.64,
                mem_used_bytes=18230 * MIB,
                mem_total_bytes=(18230 + 4272) * MIB,
                pod=None,  # two pods share the GPU: never guess one
                namespace="serving",
            )
        ],
        {"duplicate_series": 3},
        {"conflicting_pod": 1},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parses_to_exact_records(name: str) -> None:
    records, skipped, nulled = CASES[name]
    result = parse(name)
    assert result.records == records
    assert result.skipped == skipped
    assert result.nulled == nulled


def test_every_fixture_is_covered() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.prom")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"legacy-1x.prom"}))
def test_fixture_records_satisfy_the_contract(name: str) -> None:
    for record in parse(name).records:
        assert coerce(GPU_SAMPLE, record) == record


def test_explicit_node_beats_labels_and_a_missing_node_is_left_to_validation() -> None:
    assert {r["node"] for r in parse("default-counters-kubernetes.prom", "k8s-gpu-1").records} == {
        "k8s-gpu-1"
    }
    legacy = parse("legacy-1x.prom")  # 1.x exporters carry no host label at all
    with pytest.raises(RecordError) as err:
        coerce(GPU_SAMPLE, legacy.records[0])
    assert err.value.error_class == "missing_field"
    assert [r["node"] for r in parse("legacy-1x.prom", node="k80-n1").records] == ["k80-n1"] * 2


def test_util_outside_0_1_is_passed_on_not_clamped() -> None:
    text = (
        'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-1",Hostname="n1"} 1.000244\n'
        'DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-2",Hostname="n1"} 130\n'
    )
    result = parse_exposition(
        text, datacentre="d", cluster="c", scrape_ts_ms=SCRAPE_MS, interval_s=30
    )
    assert [r["util"] for r in result.records] == [1.000244, 1.3]
    for record in result.records:
        with pytest.raises(RecordError) as err:
            coerce(GPU_SAMPLE, record)
        assert err.value.error_class == "out_of_range"


def test_garbage_lines_are_counted_and_the_rest_kept() -> None:
    text = (
        "<html><body>502 Bad Gateway</body></html>\n"
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",Hostname="n1"} 40 1700000000999\n'
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",Hostname="n1"} 40 17000000x\n'
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-1",Hostname="n1",} 1\n'
        "DCGM_FI_DEV_POWER_USAGE{gpu=0} 1\n"
    )
    result = parse_exposition(text, datacentre="d", cluster="c", scrape_ts_ms=5, interval_s=30)
    assert [(r["ts"], r["util"]) for r in result.records] == [(1700000000999, 0.4), (5, None)]
    assert result.records[1]["mem_used_bytes"] == MIB  # trailing comma: prometheus_client takes it
    assert result.skipped == {"unparseable_line": 3}


# ------------------------------------------------------------------------ the catalogues


def catalogue(path: Path, commented: bool = False) -> list[tuple[str, str]]:
    """(metric, type) rows of a dcgm-exporter counters CSV; ``commented``: the opt-in rows."""
    rows = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            if not commented:
                continue
            line = line.lstrip("#").strip()
        elif commented:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[1] in ("gauge", "counter", "label"):
            rows.append((parts[0], parts[1]))
    return rows


MAPPED_VALUES = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "0.625000",
    "DCGM_FI_DEV_GPU_UTIL": "41",
    "DCGM_FI_PROF_SM_ACTIVE": "0.375000",
    "DCGM_FI_DEV_FB_USED": "1000",
    "DCGM_FI_DEV_FB_FREE": "2000",
    "DCGM_FI_DEV_FB_RESERVED": "24",
    "DCGM_FI_DEV_POWER_USAGE": "250.500000",
    "DCGM_FI_DEV_GPU_TEMP": "60",
}


def render(rows: list[tuple[str, str]]) -> tuple[str, int, set[str]]:
    """An exposition text of one GPU from catalogue rows, as the exporter renders it."""
    labels = 'gpu="0",UUID="GPU-cat",pci_bus_id="00000000:07:00.0",device="nvidia0"'
    labels += ',modelName="NVIDIA A100-SXM4-80GB",Hostname="cat-node"'
    labels += "".join(f',{name}="x"' for name, kind in rows if kind == "label")
    lines, series, present = [], 0, set()
    for i, (name, kind) in enumerate(rows):
        if kind == "label":
            continue
        field = LEGACY.get(name) or (name.upper() if name.lower().startswith("dcgm_fi_") else name)
        value = MAPPED_VALUES.get(field, str(7000 + i))
        lines += [f"# HELP {name} h", f"# TYPE {name} {kind}", f"{name}{{{labels}}} {value}"]
        series += 1
        present.add(field)
    return "\n".join(lines) + "\n", series, present


LEGACY = {
    "dcgm_gpu_utilization": "DCGM_FI_DEV_GPU_UTIL",
    "dcgm_fb_used": "DCGM_FI_DEV_FB_USED",
    "dcgm_fb_free": "DCGM_FI_DEV_FB_FREE",
    "dcgm_power_usage": "DCGM_FI_DEV_POWER_USAGE",
    "dcgm_gpu_temp": "DCGM_FI_DEV_GPU_TEMP",
}


@pytest.mark.parametrize(
    "csv_name, commented",
    [
        ("default-counters.csv", False),
        ("dcp-metrics-included.csv", False),
        ("1.x-compatibility-metrics.csv", False),
        ("default-counters.csv", True),  # the opt-in rows (SM_ACTIVE, ECC, violations, ...)
    ],
)
def test_every_catalogue_metric_renders_into_a_parsed_line(csv_name: str, commented: bool) -> None:
    rows = catalogue(shared(CATALOGUES / csv_name), commented)
    text, series, present = render(rows)
    result = parse_exposition(
        text, datacentre="d", cluster="c", scrape_ts_ms=SCRAPE_MS, interval_s=30, node="n"
    )
    assert result.samples == series
    used = present & set(MAPPED_VALUES)
    assert result.skipped == ({"unused_metric": series - len(used)} if series > len(used) else {})
    [record] = result.records

    def expect(field: str, value: float | None) -> None:
        assert record[field] == value, (field, sorted(used))

    has = used.__contains__
    gr, pct = has("DCGM_FI_PROF_GR_ENGINE_ACTIVE"), has("DCGM_FI_DEV_GPU_UTIL")
    expect("util", 0.625 if gr else (0.41 if pct else None))
    expect("sm_active", 0.375 if has("DCGM_FI_PROF_SM_ACTIVE") else None)
    used_mib = 1000 if has("DCGM_FI_DEV_FB_USED") else None
    expect("mem_used_bytes", None if used_mib is None else used_mib * MIB)
    if has("DCGM_FI_DEV_FB_USED") and has("DCGM_FI_DEV_FB_FREE"):
        total = 3000 + (24 if has("DCGM_FI_DEV_FB_RESERVED") else 0)
        expect("mem_total_bytes", total * MIB)
    else:
        expect("mem_total_bytes", None)
    expect("power_w", 250.5 if has("DCGM_FI_DEV_POWER_USAGE") else None)
    expect("temp_c", 60.0 if has("DCGM_FI_DEV_GPU_TEMP") else None)


def test_catalogues_name_the_fields_we_map() -> None:
    """The active default set carries util (both kinds), memory, power and temperature."""
    names = {n for n, _ in catalogue(shared(CATALOGUES / "default-counters.csv"))}
    assert set(MAPPED_VALUES) - {"DCGM_FI_PROF_SM_ACTIVE"} <= names
    legacy = {n for n, _ in catalogue(shared(CATALOGUES / "1.x-compatibility-metrics.csv"))}
    assert set(LEGACY) | {"dcgm_fi_prof_gr_engine_active"} <= legacy


def test_real_prometheus_exposition_without_gpus_gives_no_records() -> None:
    text = shared(ALLTYPES).read_text()
    sample_lines = sum(1 for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    result = parse_exposition(text, datacentre="d", cluster="c", scrape_ts_ms=0, interval_s=15)
    assert result.records == []
    assert result.samples == sample_lines
    assert result.skipped == {"not_dcgm_metric": sample_lines}


# ------------------------------------------------------------------------ a real HTTP server


class _Exporter(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append((self.path, self.headers.get("Accept")))
        status, body = self.routes.get(self.path, (404, b"not found\n"))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    _Exporter.routes = {
        "/metrics": (200, (FIXTURES / "default-counters-kubernetes.prom").read_bytes()),
        "/strings": (200, (FIXTURES / "string-values-t4.prom").read_bytes()),
        "/error": (500, b"DCGM initialisation failed\n"),
        "/html": (200, b"<!DOCTYPE html>\n<html><body>Grafana</body></html>\n"),
        "/binary": (200, bytes(range(256))),
    }
    _Exporter.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def collector(url: str, **kw: Any) -> DcgmCollector:
    return DcgmCollector(
        url, datacentre="dc-sh-01", cluster="c1", clock=lambda: SCRAPE_MS / 1000, **kw
    )


def test_collect_scrapes_the_exporter_once(exporter: str) -> None:
    emitted = collector(f"{exporter}/metrics").collect()
    assert emitted == [(GPU_SAMPLE, r) for r in DEFAULT_K8S]
    assert _Exporter.seen == [("/metrics", "text/plain;version=0.0.4")]
    ten_s = collector(f"{exporter}/metrics", interval_s=10.0, node="gpu-07").collect()
    assert {(r["interval_s"], r["node"]) for _, r in ten_s} == {(10.0, "gpu-07")}


def test_collector_keeps_skip_counts_across_scrapes(exporter: str) -> None:
    c = collector(f"{exporter}/strings")
    assert len(c.collect()) == 1
    assert len(c.collect()) == 1
    assert c.skipped == {"non_numeric_value": 4, "unused_metric": 2}


@pytest.mark.parametrize(
    "path, says",
    [
        ("/error", "HTTP 500"),
        ("/html", "not Prometheus exposition text"),
        ("/binary", "not UTF-8"),
        ("/nowhere", "HTTP 404"),
    ],
)
def test_a_bad_answer_is_a_source_error_naming_the_url(exporter: str, path: str, says: str) -> None:
    url = f"{exporter}{path}"
    with pytest.raises(SourceError) as err:
        collector(url).collect()
    assert url in str(err.value) and says in str(err.value)


def test_connection_refused_is_a_source_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nobody listens there
    url = f"http://127.0.0.1:{port}/metrics"
    with pytest.raises(SourceError) as err:
        collector(url).collect()
    assert url in str(err.value) and "cannot connect" in str(err.value)


def test_a_failing_fetch_seam_is_a_source_error() -> None:
    def fetch(url: str) -> bytes:
        raise ConnectionResetError("peer reset")

    with pytest.raises(SourceError, match="http://x/metrics: ConnectionResetError"):
        collector("http://x/metrics", fetch=fetch).collect()


# ------------------------------------------------------------------------ file replay


def generator() -> ModuleType:
    path = REPO / "deploy" / "demo" / "make_dcgm_stream.py"
    spec = importlib.util.spec_from_file_location("make_dcgm_stream", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stream_hour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dcgm") / "hour.prom.gz"
    generator().main(["--out", str(out), "--hours", "1"])
    return out


MAY_START_MS = int(datetime(2020, 4, 30, 16, tzinfo=UTC).timestamp() * 1000)


def replay(path: Path, speed: float | None = None) -> DcgmFileReplay:
    return DcgmFileReplay(path, datacentre="helios", cluster="c1", interval_s=300, speed=speed)


def test_replay_of_a_generated_hour(stream_hour: Path) -> None:
    r = replay(stream_hour)
    emitted = list(r.collect())
    records = [rec for _, rec in emitted]
    assert all(k is GPU_SAMPLE for k, _ in emitted)
    assert len(records) == 12 * 16
    stamps = [x["ts"] for x in records]
    assert stamps == sorted(stamps)
    assert sorted(set(stamps)) == [MAY_START_MS + i * 300_000 for i in range(12)]
    assert r.scrapes == 12
    assert r.skipped == {"unused_metric": 12 * 16}  # MEMORY_TEMP (always the blank sentinel)
    assert {x["node"] for x in records} == {"earth-sim-gpu01", "earth-sim-gpu02"}
    assert len({x["gpu_uuid"] for x in records}) == 16
    for x in records:
        assert coerce(GPU_SAMPLE, x) == x
        assert x["gpu_model"] == "NVIDIA V100-SXM2-32GB"
        assert x["mem_total_bytes"] == 32510 * MIB and x["interval_s"] == 300.0
        assert x["datacentre"] == "helios" and x["source"] == "dcgm"


def test_replay_is_paced(stream_hour: Path) -> None:
    start = time.monotonic()
    n = sum(1 for _ in replay(stream_hour, speed=3300 * 20).collect())  # 55 min -> 50 ms
    assert n == 192 and time.monotonic() - start >= 0.05


def test_generator_is_deterministic_and_made_the_committed_stream(stream_hour: Path) -> None:
    committed = REPO / "gpuledger" / "data" / "dcgm" / "earth-sim-2020-05.prom.gz"
    hour = gzip.decompress(stream_hour.read_bytes())
    with gzip.open(committed, "rb") as f:
        assert f.read(len(hour)) == hour
    assert committed.stat().st_size < 8 * 2**20


def test_replay_groups_scrapes_by_timestamp(tmp_path: Path) -> None:
    lines = [
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).",
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="n1"} 10 1000',
        'DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",Hostname="n1"} 20 1000',
        'DCGM_FI_DEV_NAME{gpu="1",UUID="GPU-b",Hostname="n1"} Tesla T4 1000',
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="n1"} 30 61000',
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",Hostname="n1"} 5',  # no timestamp: same scrape
        'DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",Hostname="n1"} 40 61000',
    ]
    path = tmp_path / "two.prom"
    path.write_text("\n".join(lines) + "\n")
    r = replay(path)
    got = [(x["ts"], x["gpu_uuid"], x["util"], x["mem_used_bytes"]) for _, x in r.collect()]
    assert got == [
        (1000, "GPU-a", 0.1, None),
        (1000, "GPU-b", 0.2, None),
        (61000, "GPU-a", 0.3, 5 * MIB),
        (61000, "GPU-b", 0.4, None),
    ]
    assert r.scrapes == 2 and r.skipped == {"non_numeric_value": 1}


def test_replay_of_a_missing_or_broken_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        replay(tmp_path / "absent.prom.gz").collect()
    broken = tmp_path / "broken.prom.gz"
    whole = gzip.compress(b"".join(b'X{UUID="GPU-a"} %d %d\n' % (i, i) for i in range(999)))
    broken.write_bytes(whole[: len(whole) // 2])  # a download cut short
    with pytest.raises(SourceError, match="broken.prom.gz"):
        list(replay(broken).collect())
