"""NVML collector: recorded readings through the ``nvml=`` seam, the real library on a GPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from collectors.errors import SourceError
from collectors.nvml import NvmlCollector, workload_of_pid
from pipeline.records import GPU_SAMPLE, Record, coerce
from tests.conftest import source_args

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"


class NVMLError(Exception):
    """pynvml's exception shape: the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class RecordedNvml:
    """pynvml's functions answering from a recorded JSON reading ({"error": N} raises)."""

    NVMLError = NVMLError

    def __init__(self, data: dict[str, Any], init_error: int | None = None) -> None:
        self.devices = data["devices"]
        self.init_error = init_error
        self.inits = self.shutdowns = 0

    @staticmethod
    def _get(handle: dict[str, Any], key: str) -> Any:
        if "error" in handle:
            raise NVMLError(handle["error"])
        value = handle[key]
        if isinstance(value, dict) and "error" in value:
            raise NVMLError(value["error"])
        return value

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:  # noqa: N802
        return self.devices[i]

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> str:  # noqa: N802
        return self._get(h, "name")

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> bytes:  # noqa: N802
        return self._get(h, "uuid").encode()  # older bindings answer bytes

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:  # noqa: N802
        return SimpleNamespace(**self._get(h, "util"))

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:  # noqa: N802
        return SimpleNamespace(**self._get(h, "memory"))

    def nvmlDeviceGetPowerUsage(self, h: dict[str, Any]) -> int:  # noqa: N802
        return self._get(h, "power_mw")

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> int:  # noqa: N802
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return self._get(h, "temperature")

    def nvmlDeviceGetMigMode(self, h: dict[str, Any]) -> list[int]:  # noqa: N802
        return self._get(h, "mig_mode")

    def nvmlDeviceGetMaxMigDeviceCount(self, h: dict[str, Any]) -> int:  # noqa: N802
        return self._get(h, "max_mig")

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: dict[str, Any], i: int) -> Any:  # noqa: N802
        mig = self._get(h, "mig")[i]
        if mig is None:
            raise NVMLError(6)  # NVML_ERROR_NOT_FOUND: no instance in this slot
        return mig

    def nvmlDeviceGetComputeRunningProcesses(self, h: dict[str, Any]) -> list[Any]:  # noqa: N802
        return [SimpleNamespace(**p) for p in self._get(h, "processes")]


def fake_proc(root: Path) -> Path:
    def proc(pid: int, cgroup: str, environ: dict[str, str] | None = None) -> None:
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "cgroup").write_text(cgroup)
        env = environ or {"PATH": "/usr/bin"}
        (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in env.items()))

    proc(4242, "0::/system.slice/slurmstepd.scope/job_777/step_0/user/task_0\n")
    proc(4243, "12:devices:/slurm/uid_1000/job_777/step_batch/task_0\n")
    proc(6000, "0::/system.slice/slurmstepd.scope/job_888/step_0/user/task_0\n")
    proc(6001, "0::/user.slice\n", {"SLURM_JOB_ID": "889"})
    proc(
        5151,
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/"
        "cri-containerd-0a1b.scope\n",
        {"HOSTNAME": "infer-b", "POD_NAMESPACE": "team-b"},
    )
    return root


def collect(tmp_path: Path) -> tuple[NvmlCollector, list[Record], RecordedNvml]:
    nv = RecordedNvml(json.loads((FIXTURES / "dgx-a100-mig.json").read_text()))
    c = NvmlCollector(
        datacentre="dc1",
        cluster="c1",
        node="gn07",
        nvml=nv,
        proc_root=fake_proc(tmp_path / "proc"),
        clock=lambda: 1_782_864_000.0,
    )
    out = []
    for k, r in c.collect():
        assert k is GPU_SAMPLE and coerce(GPU_SAMPLE, r) == r
        out.append(r)
    return c, out, nv


def test_recorded_readings_become_samples(tmp_path: Path) -> None:
    c, out, nv = collect(tmp_path)
    assert [r["gpu_uuid"][-4:] for r in out] == ["a000", "a001", "a002", "0001"]
    assert out[0] == {
        "ts": 1_782_864_000_000,
        "interval_s": 30.0,
        "datacentre": "dc1",
        "cluster": "c1",
        "node": "gn07",
        "gpu_uuid": "GPU-5f3c1d2e-0000-4000-8000-00000000a000",
        "gpu_index": 0,
        "gpu_model": "NVIDIA A100-SXM4-80GB",
        "util": 0.97,
        "mem_used_bytes": 42949672960,
        "mem_total_bytes": 85899345920,
        "power_w": 312.456,
        "temp_c": 64.0,
        "sm_active": None,
        "pod": None,
        "namespace": None,
        "job_id": "777",  # both processes (cgroup v2 and v1 paths) belong to job 777
        "source": "nvml",
    }
    assert (nv.inits, nv.shutdowns) == (1, 1)


def test_mig_instance_and_unsupported_readings(tmp_path: Path) -> None:
    c, out, _ = collect(tmp_path)
    parent, mig = out[2], out[3]
    assert parent["util"] is None and parent["mem_used_bytes"] == 10737418240
    assert mig["gpu_uuid"] == "MIG-7b8c9d0e-1111-5222-9333-000000000001"
    assert (mig["gpu_index"], mig["util"], mig["power_w"], mig["temp_c"]) == (2, None, None, None)
    assert mig["mem_total_bytes"] == 42949672960
    assert (mig["pod"], mig["namespace"], mig["job_id"]) == ("infer-b", "team-b", None)
    assert c.nulled == {
        "mig_mode": 1,  # GPU 0: MIG not supported
        "util": 2,  # GPU 2 (MIG on) and its instance
        "power": 1,
        "temperature": 1,
        "mig_slot": 6,  # empty MIG slots
        "conflicting_job_id": 1,  # GPU 1: jobs 888 and 889 time-slice it
    }


def test_lost_gpu_is_skipped_and_counted(tmp_path: Path) -> None:
    c, out, _ = collect(tmp_path)
    assert c.skipped == {"device_error": 1}
    assert out[1]["job_id"] is None  # the conflicting GPU


def test_workload_of_an_unreadable_process_is_empty(tmp_path: Path) -> None:
    assert workload_of_pid(tmp_path, 99999) == {}


def test_no_driver_is_a_clear_source_error() -> None:
    nv = RecordedNvml({"devices": []}, init_error=9)  # NVML_ERROR_DRIVER_NOT_LOADED
    c = NvmlCollector(datacentre="d", cluster="c", node="n", nvml=nv)
    with pytest.raises(SourceError, match="cannot initialise NVML on n .no NVIDIA GPU or driver"):
        c.probe()
    with pytest.raises(SourceError, match="no NVIDIA GPU or driver"):
        list(c.collect())


def test_no_gpu_is_a_clear_source_error() -> None:
    nv = RecordedNvml({"devices": []})
    c = NvmlCollector(datacentre="d", cluster="c", node="n", nvml=nv)
    with pytest.raises(SourceError, match="NVML found no GPU on n"):
        c.probe()
    assert nv.shutdowns == 1


def test_cli_without_gpu_or_package_exits_non_zero_with_the_reason() -> None:
    a = source_args(["nvml", "--once"])
    if _real_gpu() is None:
        pytest.skip("this host has a GPU; the no-GPU path cannot be shown here")
    with pytest.raises(SystemExit) as exc:
        a.build(a)
    assert exc.value.code != 0
    assert "nvml:" in str(exc.value.code)


def _real_gpu() -> str | None:
    """None when NVML works and sees a GPU, else the reason it does not."""
    if importlib.util.find_spec("pynvml") is None:
        return "nvidia-ml-py (pynvml) is not installed"
    try:
        NvmlCollector(datacentre="d", cluster="c").probe()
    except SourceError as exc:
        return str(exc)
    return None


def test_real_gpu_under_load() -> None:
    reason = _real_gpu()
    if reason is not None:
        pytest.skip(f"no real GPU to read: {reason}")
    import threading

    stop = threading.Event()
    load = threading.Thread(target=_gpu_load, args=(stop,), daemon=True)
    load.start()
    try:
        import time

        time.sleep(2.0)
        records = [r for _, r in NvmlCollector(datacentre="d", cluster="c").collect()]
    finally:
        stop.set()
        load.join(timeout=10)
    assert records
    for r in records:
        assert coerce(GPU_SAMPLE, r) == r
        assert r["mem_total_bytes"] is None or r["mem_total_bytes"] > 0
    if _load_available():
        assert max(r["util"] or 0.0 for r in records) > 0.0


def _load_available() -> bool:
    return (
        importlib.util.find_spec("torch") is not None
        or importlib.util.find_spec("cupy") is not None
    )


def _gpu_load(stop: Any) -> None:
    """Keep GPU 0 busy with matrix products while ``stop`` is unset (torch or cupy, if any)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        x = torch.randn(4096, 4096, device="cuda")
        while not stop.is_set():
            x = (x @ x).tanh()
        torch.cuda.synchronize()
    elif importlib.util.find_spec("cupy") is not None:
        import cupy

        y = cupy.random.rand(4096, 4096)
        while not stop.is_set():
            y = cupy.tanh(y @ y)
        cupy.cuda.Device().synchronize()
