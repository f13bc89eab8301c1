"""Writing contract records into their Delta table (``pipeline.lake``).

``to_table`` turns validated records into the table's Arrow rows (the contract's columns plus
the ``date`` partition, the UTC date of the kind's time field). A record that validation let
through but Arrow still cannot hold is returned apart, with the error, so the caller can
dead-letter it instead of failing the whole batch. ``write_records`` is the one commit of a
batch of records of one kind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import lake as lakes
from pipeline.records import Kind, Record

_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


@dataclass(frozen=True)
class Unwritable:
    index: int
    """Position of the record in the batch given to ``to_table``."""
    error: Exception


def safe_part(value: str) -> str:
    """A value made safe for a file name (quarantine files)."""
    return _SAFE.sub("_", value) or "_"


def row_schema(k: Kind) -> pa.Schema:
    """The contract's columns and the ``date`` partition column (no lake columns)."""
    return k.arrow_schema().append(pa.field(lakes.DATE_COL, pa.string(), nullable=False))


def with_dates(k: Kind, table: pa.Table) -> pa.Table:
    """``table`` with the ``date`` partition column: the UTC date of the kind's time field."""
    # = pc.strftime(..., format="%Y-%m-%d") over 0001..9999, an order of magnitude faster;
    # each distinct day formatted once
    days = table.column(k.time_field).cast(pa.date32())
    distinct = pc.unique(days)
    dates = pc.take(distinct.cast(pa.string()), pc.index_in(days, value_set=distinct))
    return table.append_column(row_schema(k).field(lakes.DATE_COL), dates)


def to_table(k: Kind, records: Sequence[Record]) -> tuple[pa.Table, list[Unwritable]]:
    """The Arrow rows of ``records``; records Arrow refuses are returned apart, by index."""
    schema = k.arrow_schema()
    try:
        return with_dates(k, pa.Table.from_pylist(list(records), schema=schema)), []
    except Exception:  # find the records at fault; the rest are written
        good: list[Record] = []
        bad: list[Unwritable] = []
        for i, r in enumerate(records):
            try:
                pa.Table.from_pylist([r], schema=schema)
                good.append(r)
            except Exception as exc:
                bad.append(Unwritable(i, exc))
        return with_dates(k, pa.Table.from_pylist(good, schema=schema)), bad


def table_of(lake: Path, k: Kind) -> Path:
    return lakes.table_path(lake, k.table)


def write_records(
    lake: Path,
    k: Kind,
    records: Sequence[Record],
    load_id: str,
    *,
    origin: str = "",
    rejected: int = 0,
) -> int:
    """Commit validated ``records`` of one kind as load ``load_id``; return the version.

    Raises ``ValueError`` when one of them cannot be written (``to_table``)."""
    rows, unwritable = to_table(k, records)
    if unwritable:
        u = unwritable[0]
        raise ValueError(f"{len(unwritable)} record(s) not writable, first {u.index}: {u.error!r}")
    return commit_rows(lake, k, rows, load_id=load_id, origin=origin or load_id, rejected=rejected)


def commit_rows(
    lake: Path,
    k: Kind,
    rows: pa.Table,
    *,
    load_id: str,
    origin: str,
    rejected: int = 0,
    offsets: Iterable[lakes.Offsets] = (),
    replace_load: bool = False,
) -> int:
    """Commit ``rows`` (from ``to_table``) to ``k``'s table as load ``load_id``; the version.

    The commit's metadata is the load log entry (``_loads``): kind, origin, rows, rejects and
    the Kafka offsets consumed."""
    offsets = list(offsets)
    meta = load_metadata(k, origin, rows.num_rows, rejected, offsets)
    return lakes.commit(
        table_of(lake, k),
        rows,
        load_id=load_id,
        offsets=offsets,
        metadata=meta,
        replace_load=replace_load,
    )


def load_metadata(
    k: Kind, origin: str, rows: int, rejected: int, offsets: Sequence[lakes.Offsets] = ()
) -> dict[str, Any]:
    """A commit's load-log entry (read back by the ``_loads`` view)."""
    return {
        "gpuledger.kind": k.name,
        "gpuledger.origin": origin,
        "gpuledger.rows": rows,
        "gpuledger.rejected": rejected,
        "gpuledger.offsets": json.dumps({o.app_id: [o.first, o.last] for o in offsets}),
    }
