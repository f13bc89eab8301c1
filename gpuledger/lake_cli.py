"""``gpuledger lake ...``: maintenance of the Delta lake (compact, vacuum, history, migrate,
rollup).

The commands parse arguments and format output; the work is in ``pipeline.maintain`` and
``pipeline.migrate``. An error (no such lake, unknown table, a failed check) is one line on
stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from deltalake.exceptions import DeltaError

from pipeline.records import KINDS

DEFAULT_LAKE = Path("lake")
HISTORY_COLUMNS = (
    "table",
    "version",
    "timestamp",
    "operation",
    "load_id",
    "rows",
    "files_added",
    "files_removed",
    "origin",
)


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(a: argparse.Namespace) -> int:
        if not Path(a.lake).is_dir():
            print(f"gpuledger lake: error: lake folder {a.lake} does not exist", file=sys.stderr)
            return 1
        try:
            return fn(a)
        except (ValueError, OSError, RuntimeError, DeltaError) as exc:
            print(f"gpuledger lake: error: {exc}", file=sys.stderr)
            return 1

    return run


def _ratio(size: int, rows: int) -> str:
    return f"{size / rows:.2f}" if rows else "-"


def cmd_compact(a: argparse.Namespace) -> int:
    from pipeline.maintain import compact, describe

    progress = None if a.format == "json" else lambda line: print(line, flush=True)
    results = compact(a.lake, a.table, a.before, progress=progress)
    done = [r for r in results if r.status == "compacted"]
    skipped = [r for r in results if r.status != "compacted"]
    total = {
        "partitions": len(done),
        "skipped": len(skipped),
        "rows": sum(r.rows for r in done),
        "files_before": sum(r.files_before for r in done),
        "files_after": sum(r.files_after for r in done),
        "bytes_before": sum(r.bytes_before for r in done),
        "bytes_after": sum(r.bytes_after for r in done),
    }
    if a.format == "json":
        print(json.dumps({"partitions": [r.as_dict() for r in results], "total": total}))
        return 0
    if not results:
        print("nothing to compact")
        return 0
    print(
        f"total: {total['partitions']} partition(s) compacted, {total['rows']:,} rows, "
        f"files {total['files_before']:,} -> {total['files_after']:,}, bytes "
        f"{total['bytes_before']:,} -> {total['bytes_after']:,} ("
        f"{_ratio(total['bytes_before'], total['rows'])} -> "
        f"{_ratio(total['bytes_after'], total['rows'])} bytes/row)"
        + (f"; {len(skipped)} skipped on a concurrent commit (run again)" if skipped else "")
    )
    for r in skipped:
        print(describe(r), file=sys.stderr)
    return 0


def cmd_vacuum(a: argparse.Namespace) -> int:
    from pipeline.maintain import vacuum

    removed = vacuum(a.lake, retain_days=a.retain_days, dry_run=a.dry_run)
    verb = "would delete" if a.dry_run else "deleted"
    for table, files in removed.items():
        print(f"{table}: {verb} {len(files):,} file(s)")
        if a.dry_run:
            for f in files:
                print(f"  {f}")
    print(f"total: {verb} {sum(len(f) for f in removed.values()):,} file(s)")
    return 0


def format_history(entries: Sequence[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(entries), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=[*HISTORY_COLUMNS, "rejected", "offsets"])
        w.writeheader()
        for e in entries:
            row = {c: e.get(c) for c in w.fieldnames}
            row["offsets"] = json.dumps(e.get("offsets")) if e.get("offsets") else ""
            w.writerow(row)
        return out.getvalue()
    rows = [[_cell(e.get(c)) for c in HISTORY_COLUMNS] for e in entries]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(HISTORY_COLUMNS)]
    lines = [[c.upper() for c in HISTORY_COLUMNS], *rows]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def cmd_history(a: argparse.Namespace) -> int:
    from pipeline.maintain import history

    sys.stdout.write(format_history(history(a.lake, a.table), a.format))
    return 0


def cmd_migrate(a: argparse.Namespace) -> int:
    from pipeline.migrate import migrate

    result = migrate(a.lake, remove_old=a.remove_old)
    for t in result.tables:
        if t.status == "migrated":
            print(f"{t.table}: migrated {t.rows:,} rows from {t.files:,} file(s) (v{t.version})")
        else:
            print(f"{t.table}: {t.status}")
    if result.loads_moved:
        print(f"_loads: {result.loads_moved} file(s) moved to _pre_delta/_loads")
    for r in result.removed:
        print(f"removed {r}")
    return 0


def cmd_rollup(a: argparse.Namespace) -> int:
    from warehouse.catalog.rollup_build import build_rollups

    quiet = a.format == "json"
    result = build_rollups(
        a.lake,
        today=a.before,
        progress=None if quiet else lambda line: print(line, file=sys.stderr, flush=True),
    )
    if quiet:
        print(json.dumps(result.__dict__, sort_keys=True))
    else:
        print(result.line())
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _lake_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lake", type=Path, default=DEFAULT_LAKE, help=f"lake folder (default {DEFAULT_LAKE})"
    )


def _add_compact(lake_sub: argparse._SubParsersAction, tables: list[str]) -> None:
    c = lake_sub.add_parser(
        "compact",
        help="rewrite each closed partition as one sorted file (one commit per partition)",
        description="Rewrite every closed (datacentre, date) partition that has several files, "
        "or one not yet compacted, as one file sorted by GPU and time. Views and --as-of reads "
        "are unchanged; a partition touched by a concurrent commit is skipped and reported.",
    )
    _lake_arg(c)
    c.add_argument("--table", choices=tables, help="only this table (default: every table)")
    c.add_argument(
        "--before",
        type=_day,
        metavar="YYYY-MM-DD",
        help="compact dates before this one (default yesterday, UTC: today's and yesterday's "
        "partitions still take late data)",
    )
    c.add_argument(
        "--format", choices=["table", "json"], default="table", help="output (default table)"
    )
    c.set_defaults(func=_guarded(cmd_compact))


def _add_vacuum(lake_sub: argparse._SubParsersAction) -> None:
    v = lake_sub.add_parser(
        "vacuum",
        help="delete files no version within the retention reads (e.g. replaced by compact)",
        description="Delete the data files that no table version of the last N days reads. "
        "--as-of reads older than the retention stop working; _staging and _pre_delta are "
        "left alone.",
    )
    _lake_arg(v)
    v.add_argument(
        "--retain-days",
        type=int,
        default=400,
        metavar="N",
        help="keep what the versions of the last N days read (default 400: a year of audits "
        "stays reproducible with --as-of)",
    )
    v.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")
    v.set_defaults(func=_guarded(cmd_vacuum))


def _add_history(lake_sub: argparse._SubParsersAction) -> None:
    h = lake_sub.add_parser(
        "history",
        help="every commit of every table: loads, compactions, vacuums",
        description="List the commits of the lake's tables (oldest first per table): "
        "operation, load id, rows, files added/removed, origin, Kafka offsets (json/csv).",
    )
    _lake_arg(h)
    h.add_argument("--table", help="only this table (e.g. gpu_samples, vouchers/claims)")
    h.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="output (default table)"
    )
    h.set_defaults(func=_guarded(cmd_history))


def _add_rollup(lake_sub: argparse._SubParsersAction) -> None:
    r = lake_sub.add_parser(
        "rollup",
        help="build or refresh the GPU-sample rollups (15-minute bins) of closed partitions",
        description="Compute the 15-minute GPU-sample bins of every closed (datacentre, date) "
        "partition that has none or whose raw rows, next day or allocation holds changed "
        "since, and commit them with a manifest of what they were built from. Reports read "
        "fresh bins and compute everything else from raw rows, with the same figures. "
        "Running it again with nothing changed does nothing.",
    )
    _lake_arg(r)
    r.add_argument(
        "--before",
        type=_day,
        metavar="YYYY-MM-DD",
        help="roll up dates before this one (default today, UTC: today's partitions are read raw)",
    )
    r.add_argument(
        "--format", choices=["table", "json"], default="table", help="output (default table)"
    )
    r.set_defaults(func=_guarded(cmd_rollup))


def _add_migrate(lake_sub: argparse._SubParsersAction) -> None:
    m = lake_sub.add_parser(
        "migrate",
        help="turn an old-layout lake (plain Hive Parquet) into Delta tables",
        description="Convert every old-layout table to a Delta table in one commit (same "
        "rows, same duplicate winners); the old files move to <lake>/_pre_delta. Stop the "
        "writers first. Tables that are Delta already are skipped.",
    )
    _lake_arg(m)
    m.add_argument(
        "--remove-old",
        action="store_true",
        help="delete <lake>/_pre_delta copies of tables that are Delta now",
    )
    m.set_defaults(func=_guarded(cmd_migrate))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``lake`` and its sub-commands to the CLI's sub-command parsers."""
    p = sub.add_parser("lake", help="lake maintenance: compact, vacuum, history, migrate, rollup")
    lake_sub = p.add_subparsers(dest="lake_command", required=True, metavar="COMMAND")
    _add_compact(lake_sub, [k.table for k in KINDS.values()])
    _add_vacuum(lake_sub)
    _add_history(lake_sub)
    _add_rollup(lake_sub)
    _add_migrate(lake_sub)
