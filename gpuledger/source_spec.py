"""What the source table is made of: a source's builder result (``Built``), one registered
source (``SourceSpec``: name, help, argument adder, builder) and the argument helpers the
sources share. ``gpuledger.sources`` lists every source in one table."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from collectors.base import Collector
from collectors.pace import parse_speed


@dataclass(frozen=True)
class Built:
    collector: Collector
    repeat_every_s: float | None = None
    """Scrape again every N seconds (None = one pass)."""
    describe: str = ""


Build = Callable[[argparse.Namespace], Built]
AddArgs = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class SourceSpec:
    """One ``collect`` / ``backfill`` sub-command: ``add_args`` adds its options, ``build``
    turns the parsed arguments into a collector."""

    name: str
    help: str
    add_args: AddArgs
    build: Build
    group: str | None = None
    """None: a sub-command of its own; else the group it is listed under (``replay``)."""


def iso_type(example: str) -> Callable[[str], datetime]:
    """An argparse ``type`` for an ISO-8601 instant with a UTC offset (``Z`` allowed); the
    error for a naive instant shows ``example``."""

    def _iso(text: str) -> datetime:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. {example}")
        return value

    return _iso


def _speed(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def speed_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="X",
        help="replay at X times real time; 'max' (default) = as fast as possible",
    )


def host_site_args(p: argparse.ArgumentParser, cluster_default: str | None = "default") -> None:
    """``--datacentre`` and ``--cluster`` of the scheduler and host sources."""
    p.add_argument("--datacentre", default="default", help="data centre id (default: default)")
    p.add_argument(
        "--cluster",
        default=cluster_default,
        help=f"cluster id (default: {cluster_default})"
        if cluster_default
        else "cluster id (required with node occupancy; default for sacct alone: its cluster)",
    )


def loop_args(p: argparse.ArgumentParser, every: float, extra: str = "") -> None:
    """``--interval`` (default ``every`` seconds) and ``--once``."""
    p.add_argument(
        "--interval",
        type=float,
        default=every,
        help=f"seconds between passes (default {every:g}){extra}",
    )
    p.add_argument("--once", action="store_true", help="one pass and exit")
