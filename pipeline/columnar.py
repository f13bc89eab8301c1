"""Column-wise validation and dedup: the fast path of ``validate_batch``, ``dedup`` and
``to_table`` for a whole batch of decoded records (a poll of one partition, a backfill chunk).

``validate_table`` builds each contract column with Arrow and checks the rules of
``records.coerce`` vectorised: types, required fields, unknown fields, ranges, the plausibility
window, text and list limits, NUL, and the checks between fields. A record these checks cannot
vouch for (a value of another Python type than the wire's, a value Arrow refuses, a failed
check) is a *slow row*: it goes through ``coerce`` itself, which rejects it with its reason and
class, or accepts it (its canonical values are then put back in place). So the column-wise
checks only ever need to be at least as strict as ``coerce``, which stays the one judge of what
is refused and why: same records accepted, same rejects (index, reason, class). The checks
themselves are in ``pipeline.columnar_checks``.

``land`` turns validated parts into the lake's rows, deduplicated like ``dedup.dedup`` (the last
write of a key wins, in the order of last writes; identical repeats are duplicates, differing
ones conflicts), with the ``date`` column. Where the column-wise step cannot answer
(``validate_table`` or ``land_table`` give None: a kind outside the contract, records Arrow
will not hold), ``validate`` and ``land`` take the per-record path (``validate_batch``,
``dedup``, ``to_table``) for the batch, so a record Arrow refuses is still "unwritable".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, pairwise
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.bounds import window_bounds
from pipeline.columnar_checks import arrow_column, check, column, columns, relations
from pipeline.dedup import dedup
from pipeline.records import KINDS, FieldType, Kind, Record
from pipeline.validate import Reject, validate_batch
from pipeline.write import to_table, with_dates

log = logging.getLogger(__name__)
Part: TypeAlias = pa.Table | list[Record]
"""Validated records in order: Arrow rows (contract schema, no ``date``), or canonical records
(the per-record path)."""

COLUMNAR_FROM = 128
"""Fewer records than this are validated record by record (a column-wise pass costs about
half a millisecond whatever its length)."""
_TS = pa.timestamp("ms", tz="UTC")


def validate(
    k: Kind, raws: Sequence[Any], window_ms: tuple[int, int] | None = None
) -> tuple[list[Part], list[Reject]]:
    """``raws`` validated: the accepted records as parts (in order) and the rejects (by index),
    column-wise when it can be, else record by record; exactly what ``validate_batch`` finds."""
    window = window_bounds() if window_ms is None else window_ms
    fast = None
    try:
        if len(raws) >= COLUMNAR_FROM:
            fast = validate_table(k, raws, window)
    except Exception:  # a bug here must not cost a record: the per-record path decides
        log.exception("column-wise validation failed; validating record by record")
    if fast is not None:
        return [fast[0]], fast[1]
    good, bad = validate_batch(k, raws, window)
    return [good], bad


def per_message(rejects: Sequence[Reject], sizes: Iterable[int]) -> Iterator[list[Reject]]:
    """The rejects of a batch made of consecutive messages of ``sizes`` records, per message
    (the index within its message)."""
    at = j = 0
    for size in sizes:
        mine: list[Reject] = []
        while j < len(rejects) and rejects[j].index < at + size:
            r = rejects[j]
            mine.append(Reject(r.raw, r.error, r.index - at))
            j += 1
        yield mine
        at += size


def validate_table(
    k: Kind, raws: Sequence[Any], window_ms: tuple[int, int] | None = None
) -> tuple[pa.Table, list[Reject]] | None:
    """The accepted records of ``raws`` as Arrow rows (in order, the contract's schema) and the
    rejects, as ``validate_batch`` finds them; None when the per-record path must decide (a
    kind outside the contract, or accepted records Arrow will not hold)."""
    if KINDS.get(k.name) is not k:
        return None
    window = window_bounds() if window_ms is None else window_ms
    slow: set[int] = set()
    arrays: dict[str, pa.Array] = {}
    for f, col in zip(k.fields, columns(k, raws, slow), strict=True):
        arrays[f.name] = column(f, col, slow, window)
    relations(k, arrays, slow)
    for f in k.fields:
        if f.type is FieldType.TIMESTAMP:
            arrays[f.name] = arrays[f.name].cast(_TS)
    return _settle(k, arrays, slow, lambda rows: [raws[i] for i in rows], window)


def validate_arrays(
    k: Kind,
    columns: dict[str, pa.Array],
    n: int,
    raws_of: Callable[[list[int]], list[Any]],
    window_ms: tuple[int, int] | None = None,
) -> tuple[pa.Table, list[Reject]] | None:
    """``validate_table`` for records that arrive as Arrow columns (a Parquet records file):
    ``columns`` by field name (absent = all null; timestamps as int64 epoch ms), ``n`` rows;
    ``raws_of(rows)`` gives those rows as the raw mappings the per-record path judges. None
    when a column's type is not one the contract reads as is (the caller then takes the
    per-record path for the batch)."""
    if KINDS.get(k.name) is not k or set(columns) - k.name_set:
        return None
    window = window_bounds() if window_ms is None else window_ms
    slow: set[int] = set()
    arrays: dict[str, pa.Array] = {}
    for f in k.fields:
        arr = arrow_column(f, columns.get(f.name), n)
        if arr is None:
            return None
        arrays[f.name] = check(f, arr, slow, window)
    relations(k, arrays, slow)
    for f in k.fields:
        if f.type is FieldType.TIMESTAMP:
            arrays[f.name] = arrays[f.name].cast(_TS)
    return _settle(k, arrays, slow, raws_of, window)


def _settle(
    k: Kind,
    arrays: dict[str, pa.Array],
    slow: set[int],
    raws_of: Callable[[list[int]], list[Any]],
    window: tuple[int, int],
) -> tuple[pa.Table, list[Reject]] | None:
    """The checked columns as the contract's table, with the slow rows judged by the
    per-record path: refused ones dropped (and returned as rejects), accepted ones put back
    in place with their canonical values."""
    schema = k.arrow_schema()
    table = pa.Table.from_arrays(list(arrays.values()), schema=schema)
    n = table.num_rows
    if not slow:
        return table, []
    rows = sorted(slow)
    good, bad = validate_batch(k, raws_of(rows), window)
    rejects = [Reject(r.raw, r.error, rows[r.index]) for r in bad]
    refused = {r.index for r in bad}
    keep = np.ones(n, dtype=bool)
    keep[rows] = False
    table = table.filter(pa.array(keep))
    if good:
        try:
            extra = pa.Table.from_pylist(good, schema=schema)
        except Exception:  # the per-record path dead-letters it as "unwritable"
            return None
        where = np.concatenate(
            [np.flatnonzero(keep), [i for j, i in enumerate(rows) if j not in refused]]
        )
        table = pa.concat_tables([table, extra]).take(np.argsort(where, kind="stable"))
    return table, rejects


# ------------------------------------------------------------------------------- landing


def land(
    k: Kind, parts: Sequence[Part]
) -> tuple[pa.Table, int, int, list[tuple[Record, Exception]]]:
    """The lake rows of validated ``parts`` (deduplicated, with ``date``), the duplicates, the
    conflicts and the records Arrow refuses, with the error: column-wise (``land_table``),
    else by the per-record path (``dedup.dedup``, ``write.to_table``)."""
    landed = land_table(k, parts)
    if landed is not None:
        return *landed, []
    result = dedup(k, records_of(k, parts))
    rows, unwritable = to_table(k, result.records)
    refused = [(result.records[u.index], u.error) for u in unwritable]
    return rows, result.duplicates, result.conflicts, refused


def land_table(k: Kind, parts: Sequence[Part]) -> tuple[pa.Table, int, int] | None:
    """``land`` on Arrow: None when records Arrow refuses are among the parts."""
    schema = k.arrow_schema()
    tables: list[pa.Table] = []
    for part in parts:
        if isinstance(part, pa.Table):
            tables.append(part)
        elif part:
            try:
                tables.append(pa.Table.from_pylist(part, schema=schema))
            except Exception:
                return None
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    rows, duplicates, conflicts = dedup_table(k, table)
    return with_dates(k, rows), duplicates, conflicts


def dedup_table(k: Kind, table: pa.Table) -> tuple[pa.Table, int, int]:
    """``dedup.dedup`` on Arrow rows: the rows kept (each key's last, in the order of last
    writes), the duplicates and the conflicts."""
    n = table.num_rows
    if n < 2 or _distinct_keys(k, table):
        return table, 0, 0
    keyed = table.select(list(k.key)).append_column("row", pa.array(np.arange(n)))
    last = keyed.group_by(list(k.key), use_threads=False).aggregate([("row", "max")])
    if last.num_rows == n:
        return table, 0, 0
    groups = keyed.group_by(list(k.key), use_threads=False).aggregate([("row", "list")])
    repeated = groups.filter(pc.greater(pc.list_value_length(groups["row_list"]), 1))
    writes = [sorted(rows) for rows in repeated["row_list"].to_pylist()]
    involved = sorted(chain.from_iterable(writes))
    records = dict(zip(involved, to_records(k, table.take(involved)), strict=True))
    duplicates = conflicts = 0
    for rows in writes:
        for before, after in pairwise(rows):
            if records[before] == records[after]:
                duplicates += 1
            else:
                conflicts += 1
    return table.take(np.sort(last["row_max"].to_numpy())), duplicates, conflicts


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _distinct_keys(k: Kind, table: pa.Table) -> bool:
    """True when no two rows share a key, found from a 64-bit hash of the keys (distinct
    hashes prove distinct keys; a shared hash, or a null key, leaves it to the grouping)."""
    mixed = np.zeros(table.num_rows, dtype=np.uint64)
    for name in k.key:
        col = table.column(name)
        if col.null_count:
            return False
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.dictionary_encode(col).combine_chunks().indices
        elif pa.types.is_timestamp(col.type) or pa.types.is_integer(col.type):
            col = col.cast(pa.int64())
        else:
            return False
        values = col.to_numpy() if isinstance(col, pa.Array) else col.combine_chunks().to_numpy()
        mixed = mixed * _MIX + values.astype(np.uint64)
    mixed.sort()
    return not bool((mixed[1:] == mixed[:-1]).any())


def to_records(k: Kind, table: pa.Table) -> list[Record]:
    """Arrow rows back to canonical records (timestamps as epoch ms)."""
    columns = [
        table.column(f.name).cast(pa.int64())
        if f.type is FieldType.TIMESTAMP
        else table.column(f.name)
        for f in k.fields
    ]
    rows: list[Record] = pa.Table.from_arrays(columns, names=list(k.names)).to_pylist()
    return rows


def records_of(k: Kind, parts: Sequence[Part]) -> list[Record]:
    """Every record of ``parts``, in order, as canonical records."""
    return [
        r for part in parts for r in (to_records(k, part) if isinstance(part, pa.Table) else part)
    ]
