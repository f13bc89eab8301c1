"""Command-line wiring of the collectors: arguments in, a collector object out.

``collect <source>`` and ``backfill <source>`` share these definitions, so the streaming and the
backfill path run the very same collector code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collectors.base import Collector
from collectors.pace import parse_speed
from pipeline.records import KINDS


@dataclass(frozen=True)
class Built:
    collector: Collector
    repeat_every_s: float | None = None
    """Scrape again every N seconds (None = one pass)."""
    describe: str = ""


def _iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} needs a UTC offset, e.g. 2023-06-01T00:00:00+08:00"
        )
    return value


def _speed(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _speed_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="X",
        help="replay at X times real time; 'max' (default) = as fast as possible",
    )


def _site_args(p: argparse.ArgumentParser, dc: str, cluster: str) -> None:
    p.add_argument("--datacentre", default=dc, help=f"data centre id (default {dc})")
    p.add_argument("--cluster", default=cluster, help=f"cluster id (default {cluster})")


def _dcgm(a: argparse.Namespace) -> Built:
    from collectors.dcgm import DcgmCollector

    c = DcgmCollector(
        a.url, datacentre=a.datacentre, cluster=a.cluster, interval_s=a.interval, node=a.node
    )
    return Built(c, None if a.once else a.interval, f"dcgm {a.url}")


def _helios(a: argparse.Namespace) -> Built:
    from collectors.replay.helios import DEFAULT_HELIOS_DIR, HeliosReplay

    data_dir = a.data_dir or DEFAULT_HELIOS_DIR
    return Built(HeliosReplay(data_dir, speed=a.speed), describe=f"helios {data_dir}")


def _openb(a: argparse.Namespace) -> Built:
    from collectors.replay.openb import OpenbReplay

    return Built(
        OpenbReplay(a.data_dir, start=a.start, speed=a.speed), describe=f"openb {a.data_dir}"
    )


def _genai(a: argparse.Namespace) -> Built:
    from collectors.replay.genai import GenaiReplay

    return Built(
        GenaiReplay(a.data_dir, start=a.start, speed=a.speed), describe=f"genai {a.data_dir}"
    )


def _dlrm(a: argparse.Namespace) -> Built:
    from collectors.replay.dlrm import DlrmReplay

    return Built(
        DlrmReplay(a.data_dir, start=a.start, speed=a.speed), describe=f"dlrm {a.data_dir}"
    )


def _spot(a: argparse.Namespace) -> Built:
    from collectors.replay.spot import spot_replay

    return Built(spot_replay(a.data_dir, start=a.start), describe=f"spot {a.data_dir}")


def _pai(a: argparse.Namespace) -> Built:
    from collectors.replay.pai import pai_replay

    return Built(pai_replay(a.data_dir, start=a.start), describe=f"pai {a.data_dir}")


def _philly(a: argparse.Namespace) -> Built:
    from collectors.replay.philly import philly_replay

    c = philly_replay(a.data_dir, start=a.start, counts=a.gpu_counts)
    return Built(c, describe=f"philly {a.gpu_counts} {a.data_dir}")


def _start_arg(p: argparse.ArgumentParser, default: str, what: str) -> None:
    p.add_argument(
        "--start", type=_iso, default=_iso(default), help=f"instant of {what} (default {default})"
    )


def _dcgm_file(a: argparse.Namespace) -> Built:
    from collectors.replay.dcgm_file import DcgmFileReplay

    c = DcgmFileReplay(
        a.file,
        datacentre=a.datacentre,
        cluster=a.cluster,
        interval_s=a.interval,
        speed=a.speed,
        node=a.node,
    )
    return Built(c, describe=f"dcgm-file {a.file}")


def _records(a: argparse.Namespace) -> Built:
    from collectors.records_file import RecordsFileCollector

    return Built(RecordsFileCollector(KINDS[a.kind], a.file), describe=f"records {a.kind} {a.file}")


def add_sources(sub: argparse._SubParsersAction) -> None:
    """Add one sub-command per source; each sets ``args.build``."""

    def source(
        parent: argparse._SubParsersAction,
        name: str,
        help_: str,
        build: Callable[[argparse.Namespace], Built],
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(build=build)
        return p

    p = source(sub, "dcgm", "scrape a dcgm-exporter /metrics endpoint", _dcgm)
    p.add_argument("--url", required=True, help="e.g. http://node1:9400/metrics")
    _site_args(p, "default", "default")
    p.add_argument("--node", help="node name (default: the exporter's Hostname/hostname label)")
    p.add_argument(
        "--interval", type=float, default=30.0, help="seconds between scrapes (default 30)"
    )
    p.add_argument("--once", action="store_true", help="scrape once and exit")

    replay = sub.add_parser(
        "replay", help="replay a public trace", description="replay a public trace"
    )
    rsub = replay.add_subparsers(dest="trace", required=True, metavar="TRACE")
    p = source(
        rsub,
        "helios",
        "SenseTime Helios Earth per-minute VC occupancy, May 2020 (shipped)",
        _helios,
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder of <vc>_cluster_sequence_vc.csv.gz (default: shipped copy)",
    )
    _speed_arg(p)
    p = source(rsub, "openb", "Alibaba openb 2023 nodes (inventory) and pods (allocations)", _openb)
    p.add_argument("--data-dir", type=Path, required=True, help="folder with openb_*.csv")
    p.add_argument(
        "--start",
        type=_iso,
        default=_iso("2023-01-01T00:00:00+08:00"),
        help="instant of trace second 0 (default 2023-01-01T00:00:00+08:00)",
    )
    _speed_arg(p)
    p = source(rsub, "genai", "Alibaba GenAI 2026 per-pod GPU duty cycle and memory", _genai)
    p.add_argument("--data-dir", type=Path, required=True, help="folder with pod_gpu_*_anon.csv.gz")
    p.add_argument(
        "--start",
        type=_iso,
        default=None,
        help="instant of the first sample (default: the anonymised epoch as is)",
    )
    _speed_arg(p)
    p = source(rsub, "dlrm", "Alibaba DLRM serving 2025: GPU-node instances (allocations)", _dlrm)
    p.add_argument(
        "--data-dir", type=Path, required=True, help="folder with disaggregated_DLRM_trace.csv"
    )
    _start_arg(p, "2025-01-01T00:00:00+08:00", "trace second 0")
    _speed_arg(p)
    p = source(rsub, "spot", "Alibaba spot-GPU 2026 node table (inventory)", _spot)
    p.add_argument("--data-dir", type=Path, required=True, help="folder with node_info_df.csv")
    _start_arg(p, "2026-01-01T00:00:00+08:00", "the inventory's valid_from")
    p = source(rsub, "pai", "Alibaba PAI 2020 machine spec (inventory)", _pai)
    p.add_argument(
        "--data-dir", type=Path, required=True, help="folder with pai_machine_spec.csv (header)"
    )
    _start_arg(p, "2020-07-01T00:00:00+08:00", "the inventory's valid_from")
    p = source(rsub, "philly", "Microsoft Philly machines (inventory), listed or seen", _philly)
    p.add_argument("--data-dir", type=Path, required=True, help="folder with cluster_machine_list")
    _start_arg(p, "2017-10-03T00:00:00-07:00", "the inventory's valid_from")
    p.add_argument(
        "--gpu-counts",
        choices=("machine-list", "telemetry"),
        default="machine-list",
        help="GPUs per machine as listed (cluster_machine_list, default) or as reporting in "
        "the GPU telemetry (revised_machine_list.csv); the last one loaded is used",
    )
    p = source(rsub, "dcgm-file", "a file of timestamped dcgm-exporter scrapes", _dcgm_file)
    p.add_argument("--file", type=Path, required=True)
    _site_args(p, "default", "default")
    p.add_argument("--node", help="node name (default: the Hostname/hostname label)")
    p.add_argument(
        "--interval", type=float, default=300.0, help="scrape interval in the file (default 300)"
    )
    _speed_arg(p)

    from gpuledger.sources_schedulers import add_scheduler_sources

    add_scheduler_sources(sub, source)

    p = source(sub, "records", "contract records from a JSON-lines, CSV or Parquet file", _records)
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--file", type=Path, required=True)
