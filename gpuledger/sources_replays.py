"""Command-line wiring of the trace replays (``collect replay <trace>``): their
``SourceSpec`` entries for the source table in ``gpuledger.sources``."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpuledger.source_spec import AddArgs, Build, Built, SourceSpec, iso_type, speed_arg

_iso = iso_type("2023-06-01T00:00:00+08:00")


def site_args(p: argparse.ArgumentParser, dc: str, cluster: str) -> None:
    p.add_argument("--datacentre", default=dc, help=f"data centre id (default {dc})")
    p.add_argument("--cluster", default=cluster, help=f"cluster id (default {cluster})")


def _data_dir(p: argparse.ArgumentParser, help_: str) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help=help_)


def _start(p: argparse.ArgumentParser, default: str, what: str) -> None:
    p.add_argument(
        "--start", type=_iso, default=_iso(default), help=f"instant of {what} (default {default})"
    )


def _helios(a: argparse.Namespace) -> Built:
    from collectors.replay.helios import DEFAULT_HELIOS_DIR, HeliosReplay

    data_dir = a.data_dir or DEFAULT_HELIOS_DIR
    return Built(HeliosReplay(data_dir, speed=a.speed), describe=f"helios {data_dir}")


def _helios_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder of <vc>_cluster_sequence_vc.csv.gz (default: shipped copy)",
    )
    speed_arg(p)


def _openb(a: argparse.Namespace) -> Built:
    from collectors.replay.openb import OpenbReplay

    return Built(
        OpenbReplay(a.data_dir, start=a.start, speed=a.speed), describe=f"openb {a.data_dir}"
    )


def _openb_args(p: argparse.ArgumentParser) -> None:
    _data_dir(p, "folder with openb_*.csv")
    _start(p, "2023-01-01T00:00:00+08:00", "trace second 0")
    speed_arg(p)


def _genai(a: argparse.Namespace) -> Built:
    from collectors.replay.genai import GenaiReplay

    return Built(
        GenaiReplay(a.data_dir, start=a.start, speed=a.speed), describe=f"genai {a.data_dir}"
    )


def _genai_args(p: argparse.ArgumentParser) -> None:
    _data_dir(p, "folder with pod_gpu_*_anon.csv.gz")
    p.add_argument(
        "--start",
        type=_iso,
        default=None,
        help="instant of the first sample (default: the anonymised epoch as is)",
    )
    speed_arg(p)


def _dlrm(a: argparse.Namespace) -> Built:
    from collectors.replay.dlrm import DlrmReplay

    return Built(
        DlrmReplay(a.data_dir, start=a.start, speed=a.speed), describe=f"dlrm {a.data_dir}"
    )


def _dlrm_args(p: argparse.ArgumentParser) -> None:
    _data_dir(p, "folder with disaggregated_DLRM_trace.csv")
    _start(p, "2025-01-01T00:00:00+08:00", "trace second 0")
    speed_arg(p)


def _spot(a: argparse.Namespace) -> Built:
    from collectors.replay.spot import spot_replay

    return Built(spot_replay(a.data_dir, start=a.start), describe=f"spot {a.data_dir}")


def _spot_args(p: argparse.ArgumentParser) -> None:
    _data_dir(p, "folder with node_info_df.csv")
    _start(p, "2026-01-01T00:00:00+08:00", "the inventory's valid_from")


def _pai(a: argparse.Namespace) -> Built:
    from collectors.replay.pai import pai_replay

    return Built(pai_replay(a.data_dir, start=a.start), describe=f"pai {a.data_dir}")


def _pai_args(p: argparse.ArgumentParser) -> None:
    _data_dir(p, "folder with pai_machine_spec.csv (header)")
    _start(p, "2020-07-01T00:00:00+08:00", "the inventory's valid_from")


def _philly(a: argparse.Namespace) -> Built:
    from collectors.replay.philly import philly_replay

    c = philly_replay(a.data_dir, start=a.start, counts=a.gpu_counts)
    return Built(c, describe=f"philly {a.gpu_counts} {a.data_dir}")


def _philly_args(p: argparse.ArgumentParser) -> None:
    _data_dir(p, "folder with cluster_machine_list")
    _start(p, "2017-10-03T00:00:00-07:00", "the inventory's valid_from")
    p.add_argument(
        "--gpu-counts",
        choices=("machine-list", "telemetry"),
        default="machine-list",
        help="GPUs per machine as listed (cluster_machine_list, default) or as reporting in "
        "the GPU telemetry (revised_machine_list.csv); the last one loaded is used",
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


def _dcgm_file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", type=Path, required=True)
    site_args(p, "default", "default")
    p.add_argument("--node", help="node name (default: the Hostname/hostname label)")
    p.add_argument(
        "--interval", type=float, default=300.0, help="scrape interval in the file (default 300)"
    )
    speed_arg(p)


def _replay(name: str, help_: str, add_args: AddArgs, build: Build) -> SourceSpec:
    return SourceSpec(name, help_, add_args, build, group="replay")


REPLAYS = (
    _replay(
        "helios",
        "SenseTime Helios Earth per-minute VC occupancy, May 2020 (shipped)",
        _helios_args,
        _helios,
    ),
    _replay(
        "openb", "Alibaba openb 2023 nodes (inventory) and pods (allocations)", _openb_args, _openb
    ),
    _replay("genai", "Alibaba GenAI 2026 per-pod GPU duty cycle and memory", _genai_args, _genai),
    _replay(
        "dlrm", "Alibaba DLRM serving 2025: GPU-node instances (allocations)", _dlrm_args, _dlrm
    ),
    _replay("spot", "Alibaba spot-GPU 2026 node table (inventory)", _spot_args, _spot),
    _replay("pai", "Alibaba PAI 2020 machine spec (inventory)", _pai_args, _pai),
    _replay(
        "philly", "Microsoft Philly machines (inventory), listed or seen", _philly_args, _philly
    ),
    _replay(
        "dcgm-file", "a file of timestamped dcgm-exporter scrapes", _dcgm_file_args, _dcgm_file
    ),
)
"""The ``replay`` sub-commands, in the order ``--help`` lists them."""
