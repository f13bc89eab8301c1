"""nvidia-smi --query-gpu CSV -> gpu_sample records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from collectors.errors import SourceError
from collectors.nvidia_smi import QUERY_FIELDS, NvidiaSmiCollector, smi_command
from pipeline.records import GPU_SAMPLE, Record, coerce, parse_ts
from tests.conftest import source_args

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia_smi"
NOUNITS = FIXTURES / "query-gpu-noheader-nounits.csv"
UNITS = FIXTURES / "query-gpu-header-units.csv"
MIB = 2**20


def records(c: NvidiaSmiCollector) -> list[Record]:
    out = []
    for k, r in c.collect():
        assert k is GPU_SAMPLE
        assert coerce(GPU_SAMPLE, r) == r
        out.append(r)
    return out


def test_noheader_nounits_rows_become_samples() -> None:
    c = NvidiaSmiCollector(datacentre="dc1", cluster="c1", node="gn01", file=NOUNITS)
    got = records(c)
    assert len(got) == 5
    first = got[0]
    assert first == {
        "ts": parse_ts("2026-07-01T08:00:00.125+00:00"),
        "interval_s": 30.0,
        "datacentre": "dc1",
        "cluster": "c1",
        "node": "gn01",
        "gpu_uuid": "GPU-1a2b3c4d-0000-1111-2222-333344445555",
        "gpu_index": 0,
        "gpu_model": "NVIDIA A100-SXM4-80GB",
        "util": 0.97,
        "mem_used_bytes": 61440 * MIB,
        "mem_total_bytes": 81920 * MIB,
        "power_w": 312.45,
        "temp_c": 64.0,
        "sm_active": None,
        "pod": None,
        "namespace": None,
        "job_id": None,
        "source": "nvidia-smi",
    }
    assert [r["util"] for r in got] == [0.97, 0.0, None, 1.0, 0.12]


def test_placeholders_are_null_and_counted() -> None:
    c = NvidiaSmiCollector(datacentre="dc1", cluster="c1", node="gn01", file=NOUNITS)
    gpu2 = records(c)[2]
    assert (gpu2["util"], gpu2["mem_used_bytes"], gpu2["power_w"]) == (None, None, None)
    assert gpu2["mem_total_bytes"] == 81920 * MIB and gpu2["temp_c"] == 35.0
    assert c.nulled == {"utilization.gpu": 1, "memory.used": 1, "power.draw": 1}
    # the GPU that fell off the bus has no UUID: its row is skipped and counted
    assert c.skipped == {"no_timestamp_or_uuid": 1}


def test_header_with_units_in_another_order_and_a_local_clock() -> None:
    c = NvidiaSmiCollector(
        datacentre="dc1", cluster="c1", node="g5", file=UNITS, tz="Asia/Shanghai"
    )
    a, b = records(c)
    assert a["ts"] == parse_ts("2026-07-01T08:00:00.500+00:00")  # 16:00 at UTC+8
    assert (a["gpu_model"], a["gpu_index"], a["util"]) == ("NVIDIA A10G", 0, 0.97)
    assert (a["mem_used_bytes"], a["mem_total_bytes"]) == (2926 * MIB, 23028 * MIB)
    assert a["power_w"] == 180.31
    assert b["power_w"] is None and b["util"] == 0.0


class FakeSmi:
    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_live_query_command_and_timezone() -> None:
    fake = FakeSmi(NOUNITS.read_text())
    c = NvidiaSmiCollector(datacentre="dc1", cluster="c1", node="n", run=fake, tz="UTC")
    assert len(records(c)) == 5
    assert fake.calls == [
        ["nvidia-smi", "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"]
    ]
    assert smi_command()[0] == "nvidia-smi"


def test_driver_failure_and_garbage_are_source_errors() -> None:
    down = FakeSmi(
        SourceError(
            "nvidia-smi: exit status 9: NVIDIA-SMI has failed because it couldn't "
            "communicate with the NVIDIA driver."
        )
    )
    with pytest.raises(SourceError, match="couldn't communicate"):
        list(NvidiaSmiCollector(datacentre="d", cluster="c", node="n", run=down).collect())
    garbage = FakeSmi("No devices were found\n")
    with pytest.raises(SourceError, match="no row is nvidia-smi --query-gpu CSV"):
        list(NvidiaSmiCollector(datacentre="d", cluster="c", node="n", run=garbage).collect())


def test_missing_binary_is_a_clear_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    c = NvidiaSmiCollector(datacentre="d", cluster="c", node="n")
    with pytest.raises(SourceError, match="nvidia-smi: not found on this host"):
        list(c.collect())


def test_cli_reads_a_saved_file_once() -> None:
    a = source_args(["nvidia-smi", "--file", str(NOUNITS), "--node", "gn01"])
    built = a.build(a)
    assert built.repeat_every_s is None
    assert len(list(built.collector.collect())) == 5
