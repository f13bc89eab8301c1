"""Command-line wiring of the trace replays (``collect replay <trace>``): their
``SourceSpec`` entries for the source table in ``gpuledger.sources``."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FolderReplay:
    """A replay of a folder of trace files, one entry of ``FOLDER_REPLAYS``: ``--data-dir`` (the
    folder, holding ``files``), ``--start`` (default ``start``, the instant of ``start_what``)
    and, when ``paced``, ``--speed``. ``make`` names the collector's constructor
    (``module:name``, imported when the command runs), called as ``make(data_dir, start=...)``
    (and ``speed=...`` when paced)."""

    name: str
    help: str
    make: str
    files: str
    start: str | None
    start_what: str
    paced: bool = True
    start_note: str = ""
    """The ``--start`` help's note on its default, when ``start`` is None."""

    def add_args(self, p: argparse.ArgumentParser) -> None:
        _data_dir(p, self.files)
        if self.start is None:
            note = f"instant of {self.start_what} ({self.start_note})"
            p.add_argument("--start", type=_iso, default=None, help=note)
        else:
            _start(p, self.start, self.start_what)
        if self.paced:
            speed_arg(p)

    def build(self, a: argparse.Namespace) -> Built:
        module, name = self.make.split(":")
        make = getattr(importlib.import_module(module), name)
        speed = {"speed": a.speed} if self.paced else {}
        return Built(make(a.data_dir, start=a.start, **speed), describe=f"{self.name} {a.data_dir}")

    def spec(self) -> SourceSpec:
        return _replay(self.name, self.help, self.add_args, self.build)


FOLDER_REPLAYS = (
    FolderReplay(
        "openb",
        "Alibaba openb 2023 nodes (inventory) and pods (allocations)",
        "collectors.replay.openb:OpenbReplay",
        "folder with openb_*.csv",
        "2023-01-01T00:00:00+08:00",
        "trace second 0",
    ),
    FolderReplay(
        "genai",
        "Alibaba GenAI 2026 per-pod GPU duty cycle and memory",
        "collectors.replay.genai:GenaiReplay",
        "folder with pod_gpu_*_anon.csv.gz",
        None,
        "the first sample",
        start_note="default: the anonymised epoch as is",
    ),
    FolderReplay(
        "dlrm",
        "Alibaba DLRM serving 2025: GPU-node instances (allocations)",
        "collectors.replay.dlrm:DlrmReplay",
        "folder with disaggregated_DLRM_trace.csv",
        "2025-01-01T00:00:00+08:00",
        "trace second 0",
    ),
    FolderReplay(
        "spot",
        "Alibaba spot-GPU 2026 node table (inventory)",
        "collectors.replay.spot:spot_replay",
        "folder with node_info_df.csv",
        "2026-01-01T00:00:00+08:00",
        "the inventory's valid_from",
        paced=False,
    ),
    FolderReplay(
        "pai",
        "Alibaba PAI 2020 machine spec (inventory)",
        "collectors.replay.pai:pai_replay",
        "folder with pai_machine_spec.csv (header)",
        "2020-07-01T00:00:00+08:00",
        "the inventory's valid_from",
        paced=False,
    ),
)
"""The replays of a trace folder that take only ``--data-dir``, ``--start`` (and ``--speed``)."""


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
    *(r.spec() for r in FOLDER_REPLAYS),
    _replay(
        "philly", "Microsoft Philly machines (inventory), listed or seen", _philly_args, _philly
    ),
    _replay(
        "dcgm-file", "a file of timestamped dcgm-exporter scrapes", _dcgm_file_args, _dcgm_file
    ),
)
"""The ``replay`` sub-commands, in the order ``--help`` lists them."""
