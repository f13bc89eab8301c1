"""``gpuledger lake ...``: maintenance of the Delta lake (compact, vacuum, history, migrate)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lake", help="lake maintenance: compact, vacuum, history, migrate")
    p.add_subparsers(dest="lake_command", required=True, metavar="COMMAND")
