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
from typing import Any, NamedTuple

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
    results = compact(a.lake, a.table, a.before, progress=progress, zstd_level=a.zstd_level)
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
        memory_limit=a.memory_limit,
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


def _before_arg(p: argparse.ArgumentParser, help_: str) -> None:
    p.add_argument("--before", type=_day, metavar="YYYY-MM-DD", help=help_)


def _format_arg(p: argparse.ArgumentParser, *choices: str) -> None:
    p.add_argument(
        "--format", choices=list(choices), default="table", help="output (default table)"
    )


def _compact_options(c: argparse.ArgumentParser) -> None:
    tables = [k.table for k in KINDS.values()]
    c.add_argument("--table", choices=tables, help="only this table (default: every table)")
    _before_arg(
        c,
        "compact dates before this one (default yesterday, UTC: today's and yesterday's "
        "partitions still take late data)",
    )
    c.add_argument(
        "--zstd-level",
        type=_zstd_level,
        default=19,
        metavar="N",
        help="zstd level of the compacted files, 1 to 22 (default 19, the smallest files). On "
        "a 1,000-GPU day 15 took half the CPU of 19 for 1%% more bytes, 9 a sixth for 19%% "
        "more (docs/lake.md)",
    )
    _format_arg(c, "table", "json")


def _zstd_level(text: str) -> int:
    from pipeline.maintain import ZSTD_LEVELS

    try:
        level = int(text)
    except ValueError:
        level = 0
    if level not in ZSTD_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a zstd level: give {ZSTD_LEVELS[0]} to {ZSTD_LEVELS[-1]}"
        )
    return level


def _vacuum_options(v: argparse.ArgumentParser) -> None:
    v.add_argument(
        "--retain-days",
        type=int,
        default=400,
        metavar="N",
        help="keep what the versions of the last N days read (default 400: a year of audits "
        "stays reproducible with --as-of)",
    )
    v.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")


def _history_options(h: argparse.ArgumentParser) -> None:
    h.add_argument("--table", help="only this table (e.g. gpu_samples, vouchers/claims)")
    _format_arg(h, "table", "json", "csv")


def _rollup_options(r: argparse.ArgumentParser) -> None:
    _before_arg(
        r, "roll up dates before this one (default today, UTC: today's partitions are read raw)"
    )
    r.add_argument(
        "--memory-limit",
        type=_memory_size,
        metavar="SIZE",
        help="cap the build's memory, e.g. 2GB (default DuckDB's: 80%% of RAM); above it the "
        "coverage window of a big partition spills to disk and runs slower",
    )
    _format_arg(r, "table", "json")


def _memory_size(text: str) -> str:
    from warehouse.catalog.rollup_build import memory_limit_arg

    try:
        return memory_limit_arg(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _migrate_options(m: argparse.ArgumentParser) -> None:
    m.add_argument(
        "--remove-old",
        action="store_true",
        help="delete <lake>/_pre_delta copies of tables that are Delta now",
    )


class LakeCommand(NamedTuple):
    """One ``lake`` sub-command: its name, one-line help and ``--help`` description, the
    command and its options besides ``--lake``."""

    name: str
    help: str
    description: str
    cmd: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None]


LAKE_COMMANDS = (
    LakeCommand(
        "compact",
        "rewrite each closed partition as one sorted file (one commit per partition)",
        "Rewrite every closed (datacentre, date) partition that has several files, or one not yet "
        "compacted, as one file sorted by GPU and time. Views and --as-of reads are unchanged; a "
        "partition touched by a concurrent commit is skipped and reported.",
        cmd_compact,
        _compact_options,
    ),
    LakeCommand(
        "vacuum",
        "delete files no version within the retention reads (e.g. replaced by compact)",
        "Delete the data files that no table version of the last N days reads. --as-of reads "
        "older than the retention stop working; _staging and _pre_delta are left alone.",
        cmd_vacuum,
        _vacuum_options,
    ),
    LakeCommand(
        "history",
        "every commit of every table: loads, compactions, vacuums",
        "List the commits of the lake's tables (oldest first per table): operation, load id, "
        "rows, files added/removed, origin, Kafka offsets (json/csv).",
        cmd_history,
        _history_options,
    ),
    LakeCommand(
        "rollup",
        "build or refresh the GPU and occupancy rollups (15-minute bins) of closed partitions",
        "Compute the 15-minute GPU-sample bins of every closed (datacentre, date) partition that "
        "has none or whose raw rows, next day or allocation holds changed since, and commit them "
        "with a manifest of what they were built from; likewise the 15-minute occupancy bins "
        "per scope of every closed partition whose raw occupancy or next day changed. Reports "
        "read fresh bins and compute "
        "everything else from raw rows, with the same figures. Running it again with nothing "
        "changed does nothing.",
        cmd_rollup,
        _rollup_options,
    ),
    LakeCommand(
        "migrate",
        "turn an old-layout lake (plain Hive Parquet) into Delta tables",
        "Convert every old-layout table to a Delta table in one commit (same rows, same duplicate "
        "winners); the old files move to <lake>/_pre_delta. Stop the writers first. Tables that "
        "are Delta already are skipped.",
        cmd_migrate,
        _migrate_options,
    ),
)
"""The ``lake`` sub-commands, in ``--help`` order."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``lake`` and its sub-commands to the CLI's sub-command parsers."""
    p = sub.add_parser("lake", help="lake maintenance: compact, vacuum, history, migrate, rollup")
    lake_sub = p.add_subparsers(dest="lake_command", required=True, metavar="COMMAND")
    for c in LAKE_COMMANDS:
        s = lake_sub.add_parser(c.name, help=c.help, description=c.description)
        s.add_argument(
            "--lake", type=Path, default=DEFAULT_LAKE, help=f"lake folder (default {DEFAULT_LAKE})"
        )
        c.options(s)
        s.set_defaults(func=_guarded(c.cmd))  # on an existing lake, errors as one line
