"""``audit --sign``, ``audit verify`` and ``audit --since`` / ``--since-version``: they parse
what ``gpuledger.audit_cli`` passes and print; the logic is in ``warehouse.vouchers.pack`` and
``warehouse.vouchers.restate`` (docs/audit-packs.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def since_version_arg(text: str) -> Any:
    """``--since-version``: N (every table at version N, or its latest when it has fewer), or
    the ``--as-of`` forms (``table=version,...``, an ISO-8601 instant)."""
    if text.strip().isdigit():
        return int(text)
    from gpuledger.lake_args import as_of_arg

    return as_of_arg(text)


def add_pack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign",
        action="store_true",
        help="write a signed audit pack of the month to --out (docs/audit-packs.md)",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="with --sign: a new or empty folder")
    p.add_argument(
        "--register",
        action="store_true",
        help="with --sign: also register the pack in <lake>/_audit/packs/<month>/<programme|all>/ "
        "(the exporter's gpuledger_audit_restated_findings compares the lake with it)",
    )
    since = p.add_mutually_exclusive_group()
    since.add_argument(
        "--since", type=Path, metavar="PACK", help="restatement: the month now against a pack"
    )
    since.add_argument(
        "--since-version",
        type=since_version_arg,
        metavar="N|VERSIONS|ISO-TIME",
        help="restatement: the month now against the lake as of version N (each table at N or "
        "its latest), table=version,... or an instant",
    )


def add_verify(audit_parser: argparse.ArgumentParser) -> None:
    sub = audit_parser.add_subparsers(dest="audit_action", metavar="ACTION")
    v = sub.add_parser(
        "verify",
        help="re-run a signed audit pack at its recorded versions and compare every byte",
        description="Exit 0 when every file of the pack hashes to its manifest and equals the "
        "audit re-run at the recorded lake versions with the pack's thresholds; exit 1 with the "
        "list of what differs otherwise.",
    )
    v.add_argument("pack", type=Path, metavar="DIR")
    v.add_argument(
        "--lake",
        dest="verify_lake",
        type=Path,
        help="the lake (default: the one the manifest names)",
    )
    v.set_defaults(func=cmd_verify)


def cmd_sign(a: argparse.Namespace) -> int:
    from warehouse.vouchers.pack import PackError, registered_path, sign

    if a.out is None:
        print("audit --sign needs --out DIR", file=sys.stderr)
        return 2
    if a.engine != "duckdb" or a.since is not None or a.since_version is not None:
        print("audit --sign runs on --engine duckdb and without --since", file=sys.stderr)
        return 2
    try:
        manifest = sign(
            a.lake,
            a.out,
            month=a.month,
            programme=a.programme,
            tz=a.tz,
            thresholds=a.thresholds,
            as_of=a.as_of,
            register=a.register,
        )
    except PackError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"signed audit pack {a.out}: {manifest['month']}, {len(manifest['files'])} files")
    print(f"lake versions: {manifest['as_of']}")
    if a.register:
        print(f"registered at {registered_path(a.lake, a.month, a.programme)}")
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    from warehouse.vouchers.pack import PackError, verify

    try:
        result = verify(a.pack, a.verify_lake)
    except PackError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for name in result.checked:
        print(f"ok       {name}")
    for problem in result.problems:
        print(f"DIFFERS  {problem}")
    if result.ok:
        print(f"verified: all {len(result.checked)} files of {a.pack} match the lake")
        return 0
    print(f"NOT verified: {len(result.problems)} problem(s) in {a.pack}")
    return 1


def _then(a: argparse.Namespace) -> tuple[Any, str | None, str]:
    """The compared state, and the programme filter and time zone to audit with."""
    from warehouse.vouchers.audit import load_thresholds
    from warehouse.vouchers.audit_format import open_snapshot
    from warehouse.vouchers.restate import state_from_pack, state_of, versions_at

    if a.since is not None:
        then, manifest = state_from_pack(a.since)
        if manifest["month"] != a.month or (a.programme or None) not in (
            None,
            manifest["programme"],
        ):
            raise ValueError(
                f"{a.since} is the pack of {manifest['month']} "
                f"(programme {manifest['programme'] or 'all'})"
            )
        return then, manifest["programme"], manifest["tz"]
    as_of = a.since_version
    label = f"the lake as of {a.since_version}"
    if isinstance(as_of, int):
        as_of = versions_at(a.lake, as_of)
    con = open_snapshot(a.lake, as_of)
    try:
        then = state_of(
            con,
            month=a.month,
            programme=a.programme,
            tz=a.tz,
            thresholds=load_thresholds(a.thresholds),
            label=label,
        )
    finally:
        con.close()
    return then, a.programme, a.tz


def cmd_since(a: argparse.Namespace) -> int:
    from warehouse.reports.render import duckdb_engine, name_engine
    from warehouse.vouchers.audit_format import format_restatement, open_snapshot
    from warehouse.vouchers.pack import PackError
    from warehouse.vouchers.restate import restate, state_of

    if a.engine != "duckdb":
        print("audit --since runs on --engine duckdb", file=sys.stderr)
        return 2
    try:
        then, programme, tz = _then(a)
    except (PackError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    con = open_snapshot(a.lake, a.as_of)
    try:
        now = state_of(con, month=a.month, programme=programme, tz=tz, thresholds=then.thresholds)
        restatement = restate(then, now, con, a.lake)
    finally:
        con.close()
    name_engine(restatement, duckdb_engine())
    if a.format == "html":
        from gpuledger.ops_cli import write_page
        from warehouse.html import audit_html

        report = name_engine(now.report, duckdb_engine())
        write_page(audit_html(report, restatement=restatement), a.output)
        return 0
    sys.stdout.write(format_restatement(restatement, a.format))
    return 0
