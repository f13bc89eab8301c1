"""Small lakes for the operator-surface tests (exporter, alerts, Prometheus, HTML)."""

from __future__ import annotations

from pathlib import Path

from pipeline.records import ALLOCATION, GPU_SAMPLE, OCCUPANCY, coerce
from pipeline.write import write_records

MIN = 60_000


def occupancy(ts: int, scope: str | None, total: float, allocated: float, dc: str = "dc1") -> dict:
    return coerce(
        OCCUPANCY,
        {
            "ts": ts,
            "interval_s": 60.0,
            "datacentre": dc,
            "cluster": "c1",
            "scope": scope,
            "gpus_total": total,
            "gpus_allocated": allocated,
            "source": "test",
        },
    )


def sample(ts: int, gpu: str, util: float | None, dc: str = "dc2", cluster: str = "k1") -> dict:
    return coerce(
        GPU_SAMPLE,
        {
            "ts": ts,
            "interval_s": 60.0,
            "datacentre": dc,
            "cluster": cluster,
            "node": "n1",
            "gpu_uuid": gpu,
            "util": util,
            "source": "test",
        },
    )


def allocation(start: int, gpus: list[str], dc: str = "dc2", cluster: str = "k1") -> dict:
    return coerce(
        ALLOCATION,
        {
            "allocation_id": "a1",
            "datacentre": dc,
            "cluster": cluster,
            "tenant_id": "tenant-1",
            "event_ts": start,
            "gpu_count": float(len(gpus)),
            "gpu_uuids": gpus,
            "start": start,
            "state": "running",
            "source": "test",
        },
    )


def write_occupancy(lake: Path, records: list[dict], name: str) -> None:
    write_records(lake, OCCUPANCY, records, name, origin="test")


def mixed_lake(lake: Path, now_ms: int) -> None:
    """dc1/c1: occupancy in two scopes (8 GPUs each, 2 and 6 allocated) for the last 10 minutes.
    dc2/k1: 4 GPUs sampled every minute (util 0.5, 0.5, 0.0, 1.0) for the last 10 minutes and
    one allocation holding GPU g0 and g2 since 10 minutes ago."""
    occ = [
        occupancy(now_ms - i * MIN, scope, 8, alloc)
        for i in range(10)
        for scope, alloc in (("a", 2), ("b", 6))
    ]
    write_occupancy(lake, occ, "occ")
    utils = {"g0": 0.5, "g1": 0.5, "g2": 0.0, "g3": 1.0}
    smp = [sample(now_ms - i * MIN, g, u) for i in range(10) for g, u in utils.items()]
    write_records(lake, GPU_SAMPLE, smp, "smp", origin="test", rejected=2)
    write_records(lake, ALLOCATION, [allocation(now_ms - 10 * MIN, ["g0", "g2"])], "alc")
