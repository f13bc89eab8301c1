"""``gpuledger datacentres import``: parses arguments and prints the outcome, nothing more.

``gpuledger/cli.py`` wires it in with ``add_commands(sub)``; the import itself is
``pipeline.entities.import_datacentres`` (the voucher entity import, README "Data-centre
registry").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_LAKE = Path("lake")


def cmd_datacentres_import(a: argparse.Namespace) -> int:
    from pipeline.entity_import import VoucherImportError, import_datacentres

    try:
        result = import_datacentres(a.lake, a.files)
    except VoucherImportError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    written = result.written["datacentre"]
    print(f"datacentre: {written} new or changed, {result.unchanged['datacentre']} unchanged")
    print(
        f"import {result.import_id}: {written} record version(s) written"
        if written
        else "nothing changed"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``datacentres import`` to the top-level sub-parsers."""
    p = sub.add_parser("datacentres", help="the data-centre registry (region, ownership, hub)")
    dsub = p.add_subparsers(dest="datacentres", required=True, metavar="ACTION")
    d = dsub.add_parser(
        "import",
        help="import data-centre registry files (CSV, Parquet, JSON lines)",
        description="Columns: datacentre, name, region, operator, ownership (public|private), "
        "hub (a national computing hub or empty). Strict import: any bad row refuses the "
        "whole import with file:line; re-importing changes nothing; corrections become new "
        "versions kept in datacentres_history.",
    )
    d.add_argument("--lake", type=Path, default=DEFAULT_LAKE)
    d.add_argument("files", type=Path, nargs="+", metavar="FILE")
    d.set_defaults(func=cmd_datacentres_import)
