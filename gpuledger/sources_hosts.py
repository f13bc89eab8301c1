"""Command-line wiring of the host collectors (NVML, nvidia-smi): their ``SourceSpec`` entries
for the source table in ``gpuledger.sources``."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpuledger.source_spec import Built, SourceSpec, host_site_args, loop_args


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


def _nvidia_smi_args(p: argparse.ArgumentParser) -> None:
    host_site_args(p)
    loop_args(p, 30.0)
    p.add_argument("--node", help="node name (default: this host's name)")
    p.add_argument("--file", type=Path, help="read saved --query-gpu CSV output instead")
    p.add_argument(
        "--tz",
        help="zone of nvidia-smi's timestamps (default: this host's zone; UTC for --file)",
    )


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


def _nvml_args(p: argparse.ArgumentParser) -> None:
    host_site_args(p)
    loop_args(p, 30.0)
    p.add_argument("--node", help="node name (default: this host's name)")


NVIDIA_SMI = SourceSpec(
    "nvidia-smi",
    "nvidia-smi --query-gpu on this host (or a saved CSV): utilisation, memory, power",
    _nvidia_smi_args,
    _nvidia_smi,
)
NVML = SourceSpec(
    "nvml",
    "NVML on this host (nvidia-ml-py): utilisation, memory, power, temperature per GPU/MIG",
    _nvml_args,
    _nvml,
)
