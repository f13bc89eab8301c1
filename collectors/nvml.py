"""NVML on the local host -> ``gpu_sample`` records, one per GPU and per MIG instance.

Reads through ``nvidia-ml-py`` (``import pynvml``), imported only when a pass runs, so the
package is an optional extra (``gpuledger[nvml]``). The library is behind the ``nvml``
constructor argument: anything with pynvml's functions and its ``NVMLError`` class, so tests
feed recorded readings. Without the package, the driver or a GPU, ``collect()`` raises
``SourceError`` saying which (``probe()`` does the same check up front for the CLI).

Per device: ``nvmlDeviceGetUtilizationRates().gpu`` / 100 (NVML's kernel-active percentage;
not reported for MIG instances), memory used / total (bytes), power (mW -> W), temperature.
A reading the device does not support is NULL and counted by field in ``nulled``; a device
that fails otherwise (fallen off the bus) is skipped and counted.

Workload hints: the PIDs of compute processes on the device are looked up under ``proc_root``
(``/proc``): a Slurm job from the cgroup path (``.../job_<id>/...``) or ``SLURM_JOB_ID`` in the
environment, a pod from a ``kubepods`` cgroup and the process's ``HOSTNAME`` (the pod name),
``POD_NAMESPACE`` when the pod sets it. Processes of different jobs or pods on one device
(time slicing) give no hint (counted as ``conflicting_<hint>``), as in ``collectors.dcgm``.
"""

from __future__ import annotations

import importlib
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from collectors.base import Emitted
from collectors.errors import SourceError
from pipeline.records import GPU_SAMPLE, Record

log = logging.getLogger(__name__)

SOURCE = "nvml"
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_TEMPERATURE_GPU = 0
_SLURM_JOB = re.compile(r"/job_(\d+)(?:/|$)")


def load_pynvml() -> Any:
    """Import nvidia-ml-py's ``pynvml``; a clear ``SourceError`` when it is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise SourceError(
            "nvml: the nvidia-ml-py package is not installed "
            "(pip install 'gpuledger[nvml]' or pip install nvidia-ml-py)"
        ) from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def workload_of_pid(proc_root: Path, pid: int) -> dict[str, str]:
    """job_id / pod / namespace hints for one process (empty when the host does not tell)."""
    hints: dict[str, str] = {}
    base = proc_root / str(pid)
    try:
        cgroup = (base / "cgroup").read_text()
    except OSError:
        cgroup = ""
    try:
        raw = (base / "environ").read_bytes()
        env = dict(
            item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
        )
    except OSError:
        env = {}
    match = _SLURM_JOB.search(cgroup)
    job = match.group(1) if match else env.get("SLURM_JOB_ID")
    if job:
        hints["job_id"] = job
    if "kubepods" in cgroup and env.get("HOSTNAME"):
        hints["pod"] = env["HOSTNAME"]
        if env.get("POD_NAMESPACE"):
            hints["namespace"] = env["POD_NAMESPACE"]
    return hints


class NvmlCollector:
    """One ``collect()`` = one NVML reading of every GPU (and MIG instance) on this host."""

    def __init__(
        self,
        *,
        datacentre: str,
        cluster: str,
        node: str | None = None,
        interval_s: float = 30.0,
        nvml: Any = None,
        proc_root: Path = Path("/proc"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.datacentre = datacentre
        self.cluster = cluster
        self.node = node or socket.gethostname()
        self.interval_s = interval_s
        self._nvml = nvml
        self.proc_root = proc_root
        self._clock = clock
        self.skipped: Counter[str] = Counter()
        self.nulled: Counter[str] = Counter()

    def _lib(self) -> Any:
        if self._nvml is None:
            self._nvml = load_pynvml()
        return self._nvml

    def _init(self) -> Any:
        nv = self._lib()
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise SourceError(
                f"nvml: cannot initialise NVML on {self.node} (no NVIDIA GPU or driver?): {exc}"
            ) from exc
        return nv

    def probe(self) -> int:
        """The number of GPUs NVML sees; ``SourceError`` when there is no GPU or no NVML."""
        nv = self._init()
        try:
            count = int(nv.nvmlDeviceGetCount())
        except nv.NVMLError as exc:
            raise SourceError(f"nvml: cannot count GPUs: {exc}") from exc
        finally:
            nv.nvmlShutdown()
        if count == 0:
            raise SourceError(f"nvml: NVML found no GPU on {self.node}")
        return count

    def collect(self) -> Iterator[Emitted]:
        nv = self._init()
        try:
            ts = int(round(self._clock() * 1000))
            try:
                count = int(nv.nvmlDeviceGetCount())
            except nv.NVMLError as exc:
                raise SourceError(f"nvml: cannot count GPUs: {exc}") from exc
            if count == 0:
                raise SourceError(f"nvml: NVML found no GPU on {self.node}")
            records: list[Record] = []
            for index in range(count):
                try:
                    records += self._device(nv, index, ts)
                except nv.NVMLError as exc:
                    self.skipped["device_error"] += 1
                    log.warning("nvml: GPU %d skipped: %s", index, exc)
        finally:
            nv.nvmlShutdown()
        for record in records:
            yield GPU_SAMPLE, record

    def _read(self, nv: Any, field: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except nv.NVMLError as exc:
            if _code(exc) in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NOT_FOUND):
                self.nulled[field] += 1
                return None
            raise

    def _device(self, nv: Any, index: int, ts: int) -> list[Record]:
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        model = _text(nv.nvmlDeviceGetName(handle))
        out = [self._sample(nv, handle, _text(nv.nvmlDeviceGetUUID(handle)), index, model, ts)]
        mode = self._read(nv, "mig_mode", lambda: nv.nvmlDeviceGetMigMode(handle))
        if mode is not None and mode[0] == 1:
            for slot in range(int(nv.nvmlDeviceGetMaxMigDeviceCount(handle))):
                mig = self._read(
                    nv, "mig_slot", partial(nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
                )
                if mig is not None:
                    uuid = _text(nv.nvmlDeviceGetUUID(mig))
                    out.append(self._sample(nv, mig, uuid, index, model, ts))
        return out

    def _sample(self, nv: Any, handle: Any, uuid: str, index: int, model: str, ts: int) -> Record:
        util = self._read(nv, "util", lambda: nv.nvmlDeviceGetUtilizationRates(handle))
        mem = self._read(nv, "memory", lambda: nv.nvmlDeviceGetMemoryInfo(handle))
        power = self._read(nv, "power", lambda: nv.nvmlDeviceGetPowerUsage(handle))
        temp = self._read(
            nv, "temperature", lambda: nv.nvmlDeviceGetTemperature(handle, NVML_TEMPERATURE_GPU)
        )
        procs = self._read(nv, "processes", lambda: nv.nvmlDeviceGetComputeRunningProcesses(handle))
        return {
            "ts": ts,
            "interval_s": float(self.interval_s),
            "datacentre": self.datacentre,
            "cluster": self.cluster,
            "node": self.node,
            "gpu_uuid": uuid,
            "gpu_index": index,
            "gpu_model": model,
            "util": None if util is None else util.gpu / 100.0,
            "mem_used_bytes": None if mem is None else int(mem.used),
            "mem_total_bytes": None if mem is None else int(mem.total),
            "power_w": None if power is None else power / 1000.0,
            "temp_c": None if temp is None else float(temp),
            "sm_active": None,
            **self._hints(procs or []),
            "source": SOURCE,
        }

    def _hints(self, procs: list[Any]) -> dict[str, str | None]:
        found: dict[str, set[str]] = {"pod": set(), "namespace": set(), "job_id": set()}
        for proc in procs:
            for name, value in workload_of_pid(self.proc_root, int(proc.pid)).items():
                found[name].add(value)
        hints: dict[str, str | None] = {}
        for name, values in found.items():
            if len(values) > 1:
                self.nulled[f"conflicting_{name}"] += 1
            hints[name] = next(iter(values)) if len(values) == 1 else None
        return hints
