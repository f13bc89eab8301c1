"""The ``gpuledger`` command line: parses arguments and formats output, nothing more."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from gpuledger import audit_cli, datacentres_cli, deploy_cli, lake_cli, ops_cli, stream_cli
from pipeline.defaults import DEFAULT_TZ
from pipeline.errors import TerminalError, TransientError

DEFAULT_LAKE = Path("lake")


# ------------------------------------------------------------------------------- reports
def cmd_report_utilisation(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from warehouse.reports.utilisation import lineage, render, utilisation_report

    # a private in-memory catalogue: any number of reports run side by side while ingest writes
    con, engine = audit_cli.open_engine(a.lake, a.as_of, a.engine)
    try:
        rows = utilisation_report(
            con, period=a.period, by=a.by, date_from=a.date_from, date_to=a.date_to, tz=a.tz
        )
        read = replace(lineage(con), engine=engine)
    finally:
        con.close()
    if a.format == "html":
        from warehouse.html import utilisation_html

        ops_cli.write_page(utilisation_html(rows, lineage=read), a.output)
        return 0
    sys.stdout.write(render(rows, a.format, lineage=read))
    return 0


# ------------------------------------------------------------------------------- sql
def cmd_sql(a: argparse.Namespace) -> int:
    from warehouse.reports.query import QueryFailed, QueryRefused, run_query
    from warehouse.reports.render import render

    try:
        result = run_query(a.lake, a.query, a.as_of)
    except QueryRefused as exc:
        print(f"gpuledger sql: refused: {exc}", file=sys.stderr)
        return 2
    except QueryFailed as exc:
        print(f"gpuledger sql: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(result.rows, a.format, result.columns))
    print(result.lineage.note(), file=sys.stderr)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from gpuledger.demo import run_demo

    return run_demo(lake=a.lake, port=a.port, data_dir=a.kafka_dir)


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from gpuledger import statement_cli

    parser = argparse.ArgumentParser(
        prog="gpuledger",
        description="GPU data-centre telemetry: collectors -> Kafka -> Parquet lake -> DuckDB "
        "utilisation reports and compute-voucher audits.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stream_cli.add_commands(sub)
    _add_report(sub)
    _add_sql(sub)
    audit_cli.add_commands(sub)
    statement_cli.add_commands(sub)
    datacentres_cli.add_commands(sub)
    ops_cli.add_commands(sub)
    lake_cli.add_commands(sub)
    deploy_cli.add_commands(sub)
    _add_demo(sub)
    return parser


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="reports from the warehouse")
    rsub = p.add_subparsers(dest="report", required=True, metavar="REPORT")
    audit_cli.add_effectiveness_report(rsub)
    _add_report_utilisation(rsub)


def _add_report_utilisation(rsub: argparse._SubParsersAction) -> None:
    r = rsub.add_parser(
        "utilisation",
        help="capacity, allocated and busy GPU-hours per period",
        description="Capacity, allocated, busy GPU-hours and rates (docs/semantics.md).",
    )
    r.add_argument("--lake", type=Path, default=DEFAULT_LAKE)
    r.add_argument("--period", choices=["day", "month"], default="month")
    r.add_argument(
        "--by",
        choices=["datacentre", "cluster", "scope", "region", "ownership"],
        default="cluster",
        help="rows per cluster (default), data centre, scope, or per region / ownership of the "
        "data-centre registry (unregistered data centres in an 'unregistered' group)",
    )
    r.add_argument(
        "--from",
        dest="date_from",
        type=date.fromisoformat,
        metavar="DATE",
        help="first local date (inclusive)",
    )
    r.add_argument(
        "--to",
        dest="date_to",
        type=date.fromisoformat,
        metavar="DATE",
        help="last local date (inclusive)",
    )
    r.add_argument("--tz", default=DEFAULT_TZ, help=f"data-centre time zone (default {DEFAULT_TZ})")
    r.add_argument("--format", choices=["table", "csv", "json", "html"], default="table")
    r.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="with --format html: write the page here (default stdout)",
    )
    audit_cli.add_as_of(r)
    audit_cli.add_engine(r)
    r.set_defaults(func=cmd_report_utilisation)


def _add_sql(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sql",
        help="read-only SQL over the warehouse views",
        description="Run one query (SELECT, FROM, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE) over "
        "the warehouse views of a lake snapshot, in memory: file access outside the lake is "
        "off and any other statement is refused (exit 2). Instants are printed in UTC. The "
        "lake versions read go to stderr.",
    )
    p.add_argument("--lake", type=Path, default=DEFAULT_LAKE)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    audit_cli.add_as_of(p)
    p.add_argument("query", metavar="SQL", help='one query, e.g. "FROM _snapshot"')
    p.set_defaults(func=cmd_sql)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job: a real trace through Kafka into the lake and out as reports"
    )
    p.add_argument(
        "--lake", type=Path, default=Path("demo-lake"), help="lake folder (default demo-lake)"
    )
    p.add_argument("--port", type=int, default=9092, help="local broker port (default 9092)")
    p.add_argument("--kafka-dir", type=Path, default=Path(".gpuledger/kafka"))
    p.set_defaults(func=cmd_demo)


EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (TerminalError, 2),  # bad input or settings, a refused import: the same run fails again
    (TransientError, 2),  # broker or source away, a raced commit: running it again may work
    # errors of libraries: the file system, bad values, kafka-python's KafkaError (a RuntimeError)
    (OSError, 2),
    (ValueError, 2),
    (RuntimeError, 2),
)
"""Error type -> exit code; the first match decides. ``main`` prints ``gpuledger: error:
<message>`` for these and lets anything else (a bug) raise with its traceback
(docs/operations.md, "Exit codes")."""


def exit_code(exc: Exception) -> int | None:
    """The exit code ``main`` gives for ``exc`` (``EXIT_CODES``), None for an unexpected error."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.ERROR if not args.verbose else logging.DEBUG)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's one place to turn errors into a message
        if args.verbose:
            raise
        code = exit_code(exc)
        if code is None:
            raise
        print(f"gpuledger: error: {exc}", file=sys.stderr)
        return code


def run() -> None:
    """The console entry point: ``main()``, then leave the way Python would, minus the last step.

    Non-daemon threads are joined and ``atexit`` functions run as at a normal exit; then the
    process ends with ``os._exit``, skipping interpreter finalisation. Tearing down modules that
    hold native thread pools (DuckDB's, Arrow's) in that last step can abort a process whose work
    is complete ("terminate called without an active exception", exit 134), now and then."""
    import atexit
    import os
    import threading
    import traceback

    try:
        rc: int = main()
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
        if code is None or isinstance(code, int):
            rc = code or 0
        else:
            print(code, file=sys.stderr)
            rc = 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            rc = rc or 1
    logging.shutdown()
    os._exit(rc)


if __name__ == "__main__":
    run()
