"""Lake partitions as the rollups see them: their files, row counts and ``_version`` ranges
from a Delta snapshot's log, the fingerprint a partition's bins are built from, and which
partitions a connection serves from stored bins (docs/rollups.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
from deltalake import DeltaTable

from pipeline.bounds import DAY_MS

Part = tuple[str | None, str]
"""A lake partition: (datacentre, UTC date as YYYY-MM-DD)."""


@dataclass
class PartStats:
    files: list[str] = field(default_factory=list)
    rows: int = 0
    vmin: int | None = None
    vmax: int | None = None
    iv_max: float | None = None
    """The greatest ``interval_s`` of its rows (the files' statistics); None when unknown."""
    iv_known: bool = True

    def fp(self) -> str:
        return f"{self.rows}:{self.vmin}:{self.vmax}"


def next_day(date: str) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()


def with_next_days(parts: Iterable[Part]) -> set[Part]:
    """``parts`` and the day after each (whose first rows end the coverage of its last)."""
    parts = set(parts)
    return parts | {(dc, next_day(d)) for dc, d in parts}


def day_ms(date: str) -> tuple[int, int]:
    d0 = dt.datetime.combine(dt.date.fromisoformat(date), dt.time(), dt.UTC)
    start = int(d0.timestamp() * 1000)
    return start, start + DAY_MS


def partition_stats(table: DeltaTable | None) -> dict[Part, PartStats]:
    """Files, row count and ``_version`` range of every partition of the snapshot."""
    out: dict[Part, PartStats] = defaultdict(PartStats)
    if table is None:
        return out
    root = urllib.parse.unquote(table.table_uri.removeprefix("file://")).rstrip("/")
    actions = pa.table(table.get_add_actions(flatten=True))
    names = set(actions.column_names)
    cols = ["path", "num_records", "partition.datacentre", "partition.date"]
    stats = [c for c in ("min._version", "max._version", "max.interval_s") if c in names]
    for row in actions.select(cols + stats).to_pylist():
        s = out[(row["partition.datacentre"], row["partition.date"])]
        rel = urllib.parse.unquote(row["path"])
        s.files.append(rel if rel.startswith("/") else f"{root}/{rel}")
        s.rows += int(row["num_records"] or 0)
        iv = row.get("max.interval_s")
        if iv is None:
            s.iv_known = False
        elif s.iv_max is None or iv > s.iv_max:
            s.iv_max = float(iv)
        for key, pick in (("min._version", min), ("max._version", max)):
            value = row.get(key)
            if value is None:  # no statistics: a fingerprint that never matches
                s.vmin = s.vmax = -1
                continue
            attr = "vmin" if key.startswith("min") else "vmax"
            old = getattr(s, attr)
            setattr(s, attr, value if old is None else pick(old, value))
    return out


def files_fp(stats: Mapping[Part, PartStats], part: Part) -> str:
    """What a partition's bins are computed from: its raw rows and the next day's."""
    dc, date = part
    here = stats[part].fp() if part in stats else "-"
    after = (dc, next_day(date))
    there = stats[after].fp() if after in stats else "-"
    return hashlib.sha256(f"{here}|{there}".encode()).hexdigest()[:32]


def built_from_files(
    manifest: Mapping[Part, tuple[str, str, int, int]], stats: Mapping[Part, PartStats]
) -> dict[Part, int]:
    """The partitions whose newest manifest row (files_fp, holds_fp, bins version, reach)
    names the raw files they have now, with that row's bins version."""
    return {
        p: v for p, (ffp, _, v, _) in manifest.items() if p in stats and ffp == files_fp(stats, p)
    }


def closed_and_stale(
    stats: Mapping[Part, PartStats], fresh: Mapping[Part, int], today: dt.date
) -> tuple[list[Part], list[Part]]:
    """The closed partitions (UTC date before ``today``) and, sorted, those of them that are
    not ``fresh``: what a build (re)computes."""
    closed = [p for p in stats if p[1] < today.isoformat()]
    stale = sorted((p for p in closed if p not in fresh), key=lambda p: (p[0] or "", p[1]))
    return closed, stale


def lit(value: str | None) -> str:
    from pipeline.sqltext import sql_literal

    return "NULL" if value is None else sql_literal(value)


def parts_values(parts: Iterable[Part], reach: Mapping[Part, int] | None = None) -> str:
    """A ``VALUES`` list of (datacentre, date[, d0_ms, d1_ms]) for ``parts`` (trusted values
    from the lake's own log, as SQL literals); with ``reach``, d1_ms is the end of the UTC day
    or the partition's reach, whichever is later."""
    rows = []
    for p in sorted(parts, key=lambda p: (p[0] or "", p[1])):
        cells = [lit(p[0]), f"DATE {lit(p[1])}"]
        if reach is not None:
            d0, d1 = day_ms(p[1])
            cells += [str(d0), str(max(d1, reach.get(p, d1)))]
        rows.append("(" + ", ".join(cells) + ")")
    return ", ".join(rows)


@dataclass
class OccupancyState:
    """Which occupancy partitions the stored bins serve (``fresh``: partition -> bins commit)
    (``warehouse.catalog.occupancy_rollup``)."""

    stats: dict[Part, PartStats]
    manifest: dict[Part, tuple[str, str, int, int]]
    fresh: dict[Part, int] = field(default_factory=dict)
