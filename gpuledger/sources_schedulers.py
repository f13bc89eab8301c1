"""Command-line wiring of the scheduler collectors (Slurm, Kubernetes): their ``SourceSpec``
entries for the source table in ``gpuledger.sources``. How the Slurm parts combine is
``collectors.slurm_setup``."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from gpuledger.source_spec import Built, SourceSpec, host_site_args, iso_type, loop_args

_iso = iso_type("2026-07-01T00:00:00Z")


def _slurm(a: argparse.Namespace) -> Built:
    from collectors.slurm_setup import ClusterRequired, slurm_setup

    try:
        setup = slurm_setup(
            datacentre=a.datacentre,
            cluster=a.cluster,
            interval_s=a.interval,
            sinfo_file=a.sinfo_file,
            sacct_file=a.sacct_file,
            at=a.at,
            by_partition=a.by_partition,
            file_tz=a.file_tz,
            state_file=a.state_file,
            clusters=a.clusters,
            lookback=timedelta(hours=a.lookback_hours),
        )
    except ClusterRequired:
        raise SystemExit("slurm: --cluster is required when node occupancy is read") from None
    repeat = None if (a.once or setup.from_files) else a.interval
    return Built(setup.collector, repeat, f"slurm {setup.describe}")


def _slurm_args(p: argparse.ArgumentParser) -> None:
    host_site_args(p, cluster_default=None)
    loop_args(p, 300.0, "; for a saved node snapshot, the seconds it stands for")
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


def _kubernetes_args(p: argparse.ArgumentParser) -> None:
    host_site_args(p)
    loop_args(p, 60.0)
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


SLURM = SourceSpec(
    "slurm",
    "Slurm: allocations from sacct, GPU capacity/occupancy from scontrol show node",
    _slurm_args,
    _slurm,
)
KUBERNETES = SourceSpec(
    "kubernetes",
    "Kubernetes GPU capacity and pod allocations from kube-state-metrics",
    _kubernetes_args,
    _kubernetes,
)
