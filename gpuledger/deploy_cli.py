"""``gpuledger deploy export``: parses arguments and prints what was written, nothing more.

``gpuledger/cli.py`` wires it in with ``add_commands(sub)``; the files and their export are
``gpuledger.deploy_files``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpuledger.deploy_files import PARTS

DESCRIPTION = """\
Write the operator files this installed gpuledger ships into DIR, byte for byte:
  prometheus/  rules.yml (alert and recording rules), rules_test.yml (their promtool unit
               tests), prometheus.yml (scrape config), alertmanager.yml, README.md (metrics)
  alerts/      rules.toml, the default rules of `gpuledger alerts` (edit, pass with --rules)
  grafana/     dashboards/ (fleet overview) and provisioning/ (datasource, dashboard provider)
  kafka/       the local broker's recipe (pom.xml, server.properties, log4j2, secure listener)
  audit/       thresholds.toml, the audit's defaults (edit, pass with --thresholds)
Each file written is printed, one path a line. If any of them exists already, nothing is
written (exit 2) unless --force, which overwrites those files; other files in DIR are kept."""

EPILOG = """\
then, e.g.:  promtool check rules DIR/prometheus/rules.yml
             gpuledger alerts --lake LAKE --rules DIR/alerts/rules.toml"""


def cmd_deploy_export(a: argparse.Namespace) -> int:
    from gpuledger.deploy_files import export

    written = export(a.out, parts=a.only or PARTS, force=a.force)
    for path in written:
        print(path)
    print(
        f"{len(written)} file{'' if len(written) == 1 else 's'} written under {a.out}",
        file=sys.stderr,
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``deploy export`` to the top-level sub-parsers."""
    p = sub.add_parser(
        "deploy", help="the operator files shipped in the package (Prometheus, Grafana, ...)"
    )
    dsub = p.add_subparsers(dest="deploy", required=True, metavar="ACTION")
    e = dsub.add_parser(
        "export",
        help="write the Prometheus rules, alert rules, Grafana files and broker recipe to DIR",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into")
    e.add_argument("--force", action="store_true", help="overwrite files that exist")
    e.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        metavar="PART",
        help=f"export only this part ({', '.join(PARTS)}); repeat for several (default: all)",
    )
    e.set_defaults(func=cmd_deploy_export)
