"""Command-line wiring of the collectors: arguments in, a collector object out.

``collect <source>`` and ``backfill <source>`` share these definitions, so the streaming and the
backfill path run the very same collector code. Every source is one ``SourceSpec`` (name,
help, argument adder, builder) in ``SOURCES``; the replays, the schedulers and the host
collectors keep theirs in ``sources_replays``, ``sources_schedulers`` and ``sources_hosts``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gpuledger.source_spec import Built, SourceSpec
from gpuledger.sources_hosts import NVIDIA_SMI, NVML
from gpuledger.sources_replays import REPLAYS, site_args
from gpuledger.sources_schedulers import KUBERNETES, SLURM
from pipeline.records import KINDS

__all__ = ["GROUPS", "SOURCES", "Built", "SourceSpec", "add_sources"]


def _dcgm(a: argparse.Namespace) -> Built:
    from collectors.dcgm import DcgmCollector

    c = DcgmCollector(
        a.url, datacentre=a.datacentre, cluster=a.cluster, interval_s=a.interval, node=a.node
    )
    return Built(c, None if a.once else a.interval, f"dcgm {a.url}")


def _dcgm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="e.g. http://node1:9400/metrics")
    site_args(p, "default", "default")
    p.add_argument("--node", help="node name (default: the exporter's Hostname/hostname label)")
    p.add_argument(
        "--interval", type=float, default=30.0, help="seconds between scrapes (default 30)"
    )
    p.add_argument("--once", action="store_true", help="scrape once and exit")


def _records(a: argparse.Namespace) -> Built:
    from collectors.records_file import RecordsFileCollector

    return Built(RecordsFileCollector(KINDS[a.kind], a.file), describe=f"records {a.kind} {a.file}")


def _records_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--file", type=Path, required=True)


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("dcgm", "scrape a dcgm-exporter /metrics endpoint", _dcgm_args, _dcgm),
    *REPLAYS,
    SLURM,
    NVIDIA_SMI,
    KUBERNETES,
    NVML,
    SourceSpec(
        "records",
        "contract records from a JSON-lines, CSV or Parquet file",
        _records_args,
        _records,
    ),
)
"""Every source, in the order ``--help`` lists them."""

GROUPS = {"replay": ("replay a public trace", "trace", "TRACE")}
"""Group name -> (help, ``dest`` and metavar of its sub-command)."""


def add_sources(sub: argparse._SubParsersAction) -> None:
    """Add one sub-command per source of ``SOURCES`` to ``sub``; each sets ``args.build``."""
    groups: dict[str, argparse._SubParsersAction] = {}
    for spec in SOURCES:
        parent = sub
        if spec.group is not None:
            if spec.group not in groups:
                help_, dest, metavar = GROUPS[spec.group]
                g = sub.add_parser(spec.group, help=help_, description=help_)
                groups[spec.group] = g.add_subparsers(dest=dest, required=True, metavar=metavar)
            parent = groups[spec.group]
        p: argparse.ArgumentParser = parent.add_parser(
            spec.name, help=spec.help, description=spec.help
        )
        p.set_defaults(build=spec.build)
        spec.add_args(p)
