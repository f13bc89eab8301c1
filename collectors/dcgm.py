"""dcgm-exporter ``/metrics`` -> ``gpu_sample`` records.

``parse_exposition`` turns one scrape (Prometheus text exposition) into one record per GPU, or per
MIG instance, per sample timestamp. ``DcgmCollector`` fetches one scrape per ``collect()``.

Quirks of the real format handled here:
- names: ``DCGM_FI_*``, the same lower-cased (``dcgm_fi_prof_gr_engine_active``), and the 1.x
  names (``dcgm_gpu_utilization``, ``dcgm_fb_used``, ...);
- identity labels ``UUID`` / ``uuid`` / ``gpu_uuid``; MIG adds ``GPU_I_ID`` (or DRA's
  ``dra_mig_device_uuid``); host label ``Hostname`` (released images) or ``hostname`` (master);
- DCGM "blank" sentinels (int64 >= 2**63-1000, fp64 ``DCGM_FP64_BLANK`` = 2**47 .. +3) and NaN
  become NULL, counted in ``ParseResult.nulled``;
- string-valued lines (``DCGM_FI_DEV_NAME{...} Tesla T4``) make prometheus_client's parser raise,
  so every line is checked first (:mod:`collectors.exposition`); such lines are skipped and
  counted, the rest of the scrape is kept.
Nothing is clamped: a utilisation outside 0..1 is passed on for the pipeline to reject (counted).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from collectors.base import Emitted
from collectors.errors import SourceError
from collectors.exposition import SeriesCache, scan_samples
from collectors.http import http_get
from pipeline.records import GPU_SAMPLE, Record

log = logging.getLogger(__name__)

SOURCE = "dcgm"
INT64_BLANK_MIN = 2**63 - 1000
FP64_BLANK = 140737488355328.0  # DCGM_FP64_BLANK; +1 NOT_FOUND, +2 NOT_SUPPORTED, +3 NOT_PERMITTED
MIB = 2**20

GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
FB_RESERVED = "DCGM_FI_DEV_FB_RESERVED"
POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"
GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"
MAPPED = frozenset(
    {GR_ENGINE_ACTIVE, GPU_UTIL, SM_ACTIVE, FB_USED, FB_FREE, FB_RESERVED, POWER_USAGE, GPU_TEMP}
)
"""The DCGM fields that feed a gpu_sample; every other DCGM series is counted as unused."""

LEGACY_NAMES: dict[str, str] = {
    # etc/1.x-compatibility-metrics.csv name -> DCGM field (the dcgm_fi_prof_* rows are simply
    # the field names lower-cased and need no entry)
    "dcgm_sm_clock": "DCGM_FI_DEV_SM_CLOCK",
    "dcgm_memory_clock": "DCGM_FI_DEV_MEM_CLOCK",
    "dcgm_memory_temp": "DCGM_FI_DEV_MEMORY_TEMP",
    "dcgm_gpu_temp": GPU_TEMP,
    "dcgm_power_usage": POWER_USAGE,
    "dcgm_total_energy_consumption": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "dcgm_pcie_replay_counter": "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "dcgm_gpu_utilization": GPU_UTIL,
    "dcgm_mem_copy_utilization": "DCGM_FI_DEV_MEM_COPY_UTIL",
    "dcgm_enc_utilization": "DCGM_FI_DEV_ENC_UTIL",
    "dcgm_dec_utilization": "DCGM_FI_DEV_DEC_UTIL",
    "dcgm_xid_errors": "DCGM_FI_DEV_XID_ERRORS",
    "dcgm_fb_free": FB_FREE,
    "dcgm_fb_used": FB_USED,
    "dcgm_nvlink_bandwidth_total": "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
}

_UUID_LABELS = ("UUID", "uuid", "gpu_uuid")
_NODE_LABELS = ("node", "kubernetes_node")
_HOST_LABELS = ("Hostname", "hostname")
_MODEL_LABELS = ("modelName", "model_name")


@dataclass
class ParseResult:
    records: list[Record]
    skipped: dict[str, int]
    """Exposition lines/series that did not become a record field, by reason."""
    nulled: dict[str, int] = field(default_factory=dict)
    """Values present in the text but stored as NULL, by reason (blank_sentinel, nan, ...)."""
    samples: int = 0
    """Sample lines the exposition parser accepted (0 with skipped lines = not exposition text)."""


def canonical_name(name: str) -> str | None:
    """The DCGM field a series name stands for (any spelling), or None if it is not DCGM's."""
    low = name.lower()
    if not low.startswith("dcgm_"):
        return None
    return LEGACY_NAMES.get(low) or name.upper()


def _first(labels: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return None


def workload(labels: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(pod, namespace) of the workload on the GPU; empty text = None.

    Chosen by which label family is present, not by which is non-empty. After a Prometheus
    scrape without honor_labels, ``pod``/``namespace`` are the scrape target's (the exporter's
    own pod) and the workload's became ``exported_pod``/``exported_namespace``; old-namespace
    mode's ``pod_name``/``pod_namespace`` never collide, so there too a present ``pod_name``
    is the workload. A ``pod`` equal to the ``Hostname`` label is the exporter itself (in
    Kubernetes the exporter's hostname is its pod name), so it is no workload hint either.
    """
    if "exported_pod" in labels or "exported_namespace" in labels:
        return labels.get("exported_pod") or None, labels.get("exported_namespace") or None
    if "pod_name" in labels or "pod_namespace" in labels:
        return labels.get("pod_name") or None, labels.get("pod_namespace") or None
    pod = labels.get("pod") or None
    if pod is not None and pod == _first(labels, _HOST_LABELS):
        return None, None
    return pod, labels.get("namespace") or None


def gpu_identity(labels: Mapping[str, str]) -> str | None:
    """GPU UUID, ``<UUID>/<GPU_I_ID>`` for a MIG instance, or DRA's MIG device UUID."""
    mig_uuid = labels.get("dra_mig_device_uuid")
    if mig_uuid:
        return mig_uuid
    uuid = _first(labels, _UUID_LABELS)
    if uuid is None:
        return None
    instance = labels.get("GPU_I_ID")
    return f"{uuid}/{instance}" if instance else uuid


class _Gpu:
    """Everything one scrape says about one GPU (or MIG instance) at one timestamp."""

    __slots__ = ("node", "host", "model", "index", "values", "hints", "conflicts")

    def __init__(self) -> None:
        self.node: str | None = None
        self.host: str | None = None
        self.model: str | None = None
        self.index: str | None = None
        self.values: dict[str, float | None] = {}
        self.hints: dict[str, str | None] = {}
        self.conflicts: set[str] = set()

    def describe(self, labels: Mapping[str, str]) -> None:
        """Take identity labels from the first series that carries each of them."""
        self.node = self.node or _first(labels, _NODE_LABELS)
        self.host = self.host or _first(labels, _HOST_LABELS)
        self.model = self.model or _first(labels, _MODEL_LABELS)
        self.index = self.index or labels.get("gpu") or None
        pod, namespace = workload(labels)
        for name, value in (
            ("pod", pod),
            ("namespace", namespace),
            ("job_id", labels.get("hpc_job") or None),
        ):
            if value is not None and self.hints.setdefault(name, value) != value:
                self.conflicts.add(name)


def _number(value: float, nulled: Counter[str]) -> float | None:
    if not math.isfinite(value):
        nulled["nan" if math.isnan(value) else "infinite"] += 1
        return None
    if value >= INT64_BLANK_MIN or FP64_BLANK <= value < FP64_BLANK + 4:
        nulled["blank_sentinel"] += 1
        return None
    return value


def _mib(value: float) -> int:
    return int(round(value * MIB))


def parse_exposition(
    text: str,
    *,
    datacentre: str,
    cluster: str,
    scrape_ts_ms: int,
    interval_s: float,
    node: str | None = None,
    series_cache: SeriesCache | None = None,
) -> ParseResult:
    """One dcgm-exporter scrape -> one gpu_sample per GPU (or MIG instance) per timestamp.

    Pass the same ``series_cache`` dict to consecutive calls on one stream to parse each
    series' labels once (a collector or replay keeps one).
    """
    skipped: Counter[str] = Counter()
    nulled: Counter[str] = Counter()
    samples = scan_samples(text, skipped, {} if series_cache is None else series_cache)
    gpus: dict[tuple[str, int], _Gpu] = {}
    for name, labels, value, ts_ms in samples:
        dcgm = canonical_name(name)
        if dcgm is None:
            skipped["not_dcgm_metric"] += 1
            continue
        identity = gpu_identity(labels)
        if identity is None:
            skipped["no_gpu_identity"] += 1
            continue
        ts = scrape_ts_ms if ts_ms is None else ts_ms
        gpu = gpus.get((identity, ts))
        if gpu is None:
            gpu = gpus[(identity, ts)] = _Gpu()
        gpu.describe(labels)
        if dcgm not in MAPPED:
            skipped["unused_metric"] += 1
        elif dcgm in gpu.values:
            skipped["duplicate_series"] += 1
        else:
            gpu.values[dcgm] = _number(value, nulled)
    records = [
        _record(gpu, identity, ts, datacentre, cluster, interval_s, node, nulled)
        for (identity, ts), gpu in gpus.items()
    ]
    return ParseResult(records, dict(skipped), dict(nulled), len(samples))


def _record(
    gpu: _Gpu,
    identity: str,
    ts: int,
    datacentre: str,
    cluster: str,
    interval_s: float,
    node: str | None,
    nulled: Counter[str],
) -> Record:
    v = gpu.values
    gr, pct = v.get(GR_ENGINE_ACTIVE), v.get(GPU_UTIL)
    util = float(gr) if gr is not None else (pct / 100.0 if pct is not None else None)
    used, free, reserved = v.get(FB_USED), v.get(FB_FREE), v.get(FB_RESERVED)
    total = None if used is None or free is None else used + free + (reserved or 0)
    index = gpu.index or ""
    power, temp, sm = v.get(POWER_USAGE), v.get(GPU_TEMP), v.get(SM_ACTIVE)
    hints: dict[str, str | None] = {}
    for name in ("pod", "namespace", "job_id"):
        if name in gpu.conflicts:  # e.g. a time-sliced GPU shared by two pods: never guess one
            nulled[f"conflicting_{name}"] += 1
            hints[name] = None
        else:
            hints[name] = gpu.hints.get(name)
    return {
        "ts": ts,
        "interval_s": float(interval_s),
        "datacentre": datacentre,
        "cluster": cluster,
        "node": node or gpu.node or gpu.host,
        "gpu_uuid": identity,
        "gpu_index": int(index) if index.isdigit() else None,
        "gpu_model": gpu.model,
        "util": util,
        "mem_used_bytes": None if used is None else _mib(used),
        "mem_total_bytes": None if total is None else _mib(total),
        "power_w": None if power is None else float(power),
        "temp_c": None if temp is None else float(temp),
        "sm_active": None if sm is None else float(sm),
        **hints,
        "source": SOURCE,
    }


class DcgmCollector:
    """One ``collect()`` = one scrape of a dcgm-exporter ``/metrics`` endpoint."""

    def __init__(
        self,
        url: str,
        *,
        datacentre: str,
        cluster: str,
        interval_s: float = 30.0,
        node: str | None = None,
        fetch: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.datacentre = datacentre
        self.cluster = cluster
        self.interval_s = interval_s
        self.node = node
        self._fetch = fetch or http_get
        self._clock = clock
        self.skipped: Counter[str] = Counter()
        self.nulled: Counter[str] = Counter()
        self._series: SeriesCache = {}

    def collect(self) -> list[Emitted]:
        scrape_ts_ms = int(round(self._clock() * 1000))
        try:
            body = self._fetch(self.url)
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self.url}: answer is not UTF-8 text ({exc})") from exc
        result = parse_exposition(
            text,
            datacentre=self.datacentre,
            cluster=self.cluster,
            scrape_ts_ms=scrape_ts_ms,
            interval_s=self.interval_s,
            node=self.node,
            series_cache=self._series,
        )
        bad = result.skipped.get("unparseable_line", 0) + result.skipped.get("non_numeric_value", 0)
        if result.samples == 0 and bad:
            first = next((ln for ln in text.splitlines() if ln.strip()), "")[:80]
            raise SourceError(
                f"{self.url}: answer is not Prometheus exposition text "
                f"({bad} line(s), none parseable; first: {first!r})"
            )
        self.skipped.update(result.skipped)
        self.nulled.update(result.nulled)
        if result.skipped:
            log.debug("%s: skipped %s", self.url, result.skipped)
        return [(GPU_SAMPLE, record) for record in result.records]
