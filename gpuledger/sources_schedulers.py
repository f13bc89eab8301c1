"""Command-line wiring of the scheduler and host collectors (Slurm, Kubernetes, NVML,
nvidia-smi): arguments in, a collector out. ``gpuledger.sources.add_sources`` calls
``add_scheduler_sources(sub, source)`` so ``collect`` and ``backfill`` get the same options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from gpuledger.sources import Built

SourceAdder = Callable[
    [argparse._SubParsersAction, str, str, Callable[[argparse.Namespace], Built]],
    argparse.ArgumentParser,
]


def _iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-07-01T00:00:00Z")
    return value


def _site(p: argparse.ArgumentParser, cluster_default: str | None = "default") -> None:
    p.add_argument("--datacentre", default="default", help="data centre id (default: default)")
    p.add_argument(
        "--cluster",
        default=cluster_default,
        help=f"cluster id (default: {cluster_default})"
        if cluster_default
        else "cluster id (required with node occupancy; default for sacct alone: its cluster)",
    )


def _loop(p: argparse.ArgumentParser, every: float, extra: str = "") -> None:
    p.add_argument(
        "--interval",
        type=float,
        default=every,
        help=f"seconds between passes (default {every:g}){extra}",
    )
    p.add_argument("--once", action="store_true", help="one pass and exit")


def _slurm(a: argparse.Namespace) -> Built:
    from collectors.slurm import SacctCollector
    from collectors.slurm_nodes import SlurmCollector, SlurmNodesCollector

    from_files = a.sacct_file is not None or a.sinfo_file is not None
    cluster = a.cluster
    parts: list[SlurmNodesCollector | SacctCollector] = []
    if not from_files or a.sinfo_file is not None:
        if cluster is None:  # node records carry no cluster name; sacct's must match them
            raise SystemExit("slurm: --cluster is required when node occupancy is read")
        parts.append(
            SlurmNodesCollector(
                datacentre=a.datacentre,
                cluster=cluster,
                interval_s=a.interval,
                sinfo_file=a.sinfo_file,
                at=a.at,
                by_partition=a.by_partition,
            )
        )
    if not from_files or a.sacct_file is not None:
        parts.append(
            SacctCollector(
                datacentre=a.datacentre,
                cluster=cluster,
                sacct_file=a.sacct_file,
                file_tz=a.file_tz,
                state_file=a.state_file,
                clusters=a.clusters,
                lookback=timedelta(hours=a.lookback_hours),
            )
        )
    what = (
        " + ".join(str(f) for f in (a.sinfo_file, a.sacct_file) if f is not None)
        or "scontrol + sacct"
    )
    repeat = None if (a.once or from_files) else a.interval
    return Built(SlurmCollector(parts), repeat, f"slurm {what}")


def _nvidia_smi(a: argparse.Namespace) -> Built:
    from collectors.nvidia_smi import NvidiaSmiCollector

    c = NvidiaSmiCollector(
        datacentre=a.datacentre,
        cluster=a.cluster,
        node=a.node,
        interval_s=a.interval,
        file=a.file,
        tz=a.tz,
    )
    repeat = None if (a.once or a.file is not None) else a.interval
    return Built(c, repeat, f"nvidia-smi {a.file or c.node}")


def _kubernetes(a: argparse.Namespace) -> Built:
    from collectors.kubernetes import KubernetesCollector

    if (a.prometheus is None) == (a.ksm_url is None):
        raise SystemExit("kubernetes: give exactly one of --prometheus URL and --ksm-url URL")
    c = KubernetesCollector(
        datacentre=a.datacentre,
        cluster=a.cluster,
        ksm_url=a.ksm_url,
        prometheus_url=a.prometheus,
        tenant_label=a.tenant_label,
        shared_replicas=a.shared_replicas,
        interval_s=a.interval,
        state_file=a.state_file,
    )
    return Built(c, None if a.once else a.interval, f"kubernetes {a.prometheus or a.ksm_url}")


def _nvml(a: argparse.Namespace) -> Built:
    from collectors.errors import SourceError
    from collectors.nvml import NvmlCollector

    c = NvmlCollector(
        datacentre=a.datacentre, cluster=a.cluster, node=a.node, interval_s=a.interval
    )
    try:
        count = c.probe()
    except SourceError as exc:  # no package, driver or GPU: say so and exit non-zero
        raise SystemExit(str(exc)) from None
    return Built(c, None if a.once else a.interval, f"nvml {c.node} ({count} GPUs)")


def add_scheduler_sources(sub: argparse._SubParsersAction, source: SourceAdder) -> None:
    """Add ``slurm``, ``kubernetes``, ``nvml`` and ``nvidia-smi`` sub-commands to ``sub``."""
    p = source(
        sub,
        "slurm",
        "Slurm: allocations from sacct, GPU capacity/occupancy from scontrol show node",
        _slurm,
    )
    _site(p, cluster_default=None)
    _loop(p, 300.0, "; for a saved node snapshot, the seconds it stands for")
    p.add_argument("--sacct-file", type=Path, help="read saved sacct --parsable2 output instead")
    p.add_argument("--sinfo-file", type=Path, help="read saved 'scontrol show node' output instead")
    p.add_argument(
        "--at",
        type=_iso,
        help="instant of the saved node snapshot (default: the file's modification time)",
    )
    p.add_argument(
        "--file-tz",
        default="UTC",
        help="time zone the saved sacct ran in (default UTC: run it with TZ=UTC)",
    )
    p.add_argument(
        "--state-file", type=Path, help="remember the last sacct window here (incremental)"
    )
    p.add_argument("--clusters", help="sacct --clusters value (default: the local cluster)")
    p.add_argument(
        "--lookback-hours",
        type=float,
        default=24.0,
        help="first sacct window, hours back from now (default 24)",
    )
    p.add_argument(
        "--by-partition",
        action="store_true",
        help="one occupancy row per partition (each node in its first partition)",
    )

    p = source(
        sub,
        "nvidia-smi",
        "nvidia-smi --query-gpu on this host (or a saved CSV): utilisation, memory, power",
        _nvidia_smi,
    )
    _site(p)
    _loop(p, 30.0)
    p.add_argument("--node", help="node name (default: this host's name)")
    p.add_argument("--file", type=Path, help="read saved --query-gpu CSV output instead")
    p.add_argument(
        "--tz",
        help="zone of nvidia-smi's timestamps (default: this host's zone; UTC for --file)",
    )

    p = source(
        sub,
        "kubernetes",
        "Kubernetes GPU capacity and pod allocations from kube-state-metrics",
        _kubernetes,
    )
    _site(p)
    _loop(p, 60.0)
    p.add_argument("--prometheus", help="Prometheus base URL that scrapes kube-state-metrics")
    p.add_argument("--ksm-url", help="kube-state-metrics /metrics URL, read directly")
    p.add_argument(
        "--tenant-label",
        default="namespace",
        help="tenant = the namespace (default) or this pod label (needs kube_pod_labels)",
    )
    p.add_argument(
        "--shared-replicas",
        type=int,
        help="time-slicing replicas per GPU when nodes lack the nvidia.com/gpu.replicas label",
    )
    p.add_argument(
        "--state-file",
        type=Path,
        help="keep running pods here, so pods deleted while the collector was down get an end",
    )

    p = source(
        sub,
        "nvml",
        "NVML on this host (nvidia-ml-py): utilisation, memory, power, temperature per GPU/MIG",
        _nvml,
    )
    _site(p)
    _loop(p, 30.0)
    p.add_argument("--node", help="node name (default: this host's name)")
