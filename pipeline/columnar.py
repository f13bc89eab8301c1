"""Column-wise validation and dedup: the fast path of ``validate_batch``, ``dedup`` and
``to_table`` for a whole batch of decoded records (a poll of one partition, a backfill chunk).

``validate_table`` builds each contract column with Arrow and checks the rules of
``records.coerce`` vectorised: types, required fields, unknown fields, ranges, the plausibility
window, text and list limits, NUL, and the checks between fields. A record these checks cannot
vouch for (a value of another Python type than the wire's, a value Arrow refuses, a failed
check) is a *slow row*: it goes through ``coerce`` itself, which rejects it with its reason and
class, or accepts it (its canonical values are then put back in place). So the column-wise
checks only ever need to be at least as strict as ``coerce``, which stays the one judge of what
is refused and why: same records accepted, same rejects (index, reason, class).

``land`` turns validated parts into the lake's rows, deduplicated like ``dedup.dedup`` (the last
write of a key wins, in the order of last writes; identical repeats are duplicates, differing
ones conflicts), with the ``date`` column. Where the column-wise step cannot answer
(``validate_table`` or ``land_table`` give None: a kind outside the contract, records Arrow
will not hold), ``validate`` and ``land`` take the per-record path (``validate_batch``,
``dedup``, ``to_table``) for the batch, so a record Arrow refuses is still "unwritable".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, pairwise, repeat
from operator import itemgetter
from types import NoneType
from typing import Any, TypeAlias
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.bounds import FLOAT_MAX, MAX_TS_MS, MIN_TS_MS, window_bounds
from pipeline.dedup import dedup
from pipeline.records import (
    ALLOCATION,
    GPU_SAMPLE,
    INVENTORY,
    KINDS,
    MAX_PARTITION_CHARS,
    Field,
    FieldType,
    Kind,
    Record,
)
from pipeline.validate import Reject, validate_batch
from pipeline.write import to_table, with_dates

log = logging.getLogger(__name__)
Part: TypeAlias = pa.Table | list[Record]
"""Validated records in order: Arrow rows (contract schema, no ``date``), or canonical records
(the per-record path)."""

_ALLOWED: dict[FieldType, frozenset[type]] = {
    FieldType.TIMESTAMP: frozenset({int, NoneType}),
    FieldType.STRING: frozenset({str, NoneType}),
    FieldType.FLOAT: frozenset({float, int, NoneType}),
    FieldType.INT: frozenset({int, NoneType}),
    FieldType.STRING_LIST: frozenset({list, NoneType}),
}
"""The exact Python types a column takes as is (what ``json.loads`` makes); any other value,
even one ``coerce`` accepts (ISO-8601 text, ``7.0`` for an int, an int id), is a slow row."""
_BUILD: dict[FieldType, pa.DataType] = {
    FieldType.TIMESTAMP: pa.int64(),
    FieldType.STRING: pa.string(),
    FieldType.FLOAT: pa.float64(),
    FieldType.INT: pa.int64(),
    FieldType.STRING_LIST: pa.list_(pa.string()),
}
COLUMNAR_FROM = 128
"""Fewer records than this are validated record by record (a column-wise pass costs about
half a millisecond whatever its length)."""
_TS = pa.timestamp("ms", tz="UTC")
_NO_STRING = pa.scalar(None, pa.string())
_NO_FLOAT = pa.scalar(None, pa.float64())


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
    for f, col in zip(k.fields, _columns(k, raws, slow), strict=True):
        arrays[f.name] = _column(f, col, slow, window)
    _relations(k, arrays, slow)
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
        arr = _arrow_column(f, columns.get(f.name), n)
        if arr is None:
            return None
        arrays[f.name] = _check(f, arr, slow, window)
    _relations(k, arrays, slow)
    for f in k.fields:
        if f.type is FieldType.TIMESTAMP:
            arrays[f.name] = arrays[f.name].cast(_TS)
    return _settle(k, arrays, slow, raws_of, window)


def _arrow_column(f: Field, arr: pa.Array | None, n: int) -> pa.Array | None:
    """``arr`` as field ``f``'s build type when that cast is exactly what ``coerce`` would
    make of each value; None when it is not (another type)."""
    target = _BUILD[f.type]
    if arr is None:
        return pa.nulls(n, target)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    ok = {
        FieldType.TIMESTAMP: pa.types.is_integer(t),
        FieldType.INT: pa.types.is_integer(t),
        FieldType.FLOAT: pa.types.is_floating(t) or pa.types.is_integer(t),
        FieldType.STRING: pa.types.is_string(t) or pa.types.is_large_string(t),
        FieldType.STRING_LIST: (pa.types.is_list(t) or pa.types.is_large_list(t))
        and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)),
    }[f.type]
    if not ok:
        return None
    try:
        return arr.cast(target, safe=f.type is not FieldType.FLOAT)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. a uint64 beyond int64
        return None


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


def _columns(k: Kind, raws: Sequence[Any], slow: set[int]) -> list[list[Any]]:
    """Each field's values, in order; rows that are not plain dicts of known fields are slow."""
    names = k.names
    dicts: Sequence[Any] = raws
    if set(map(type, raws)) - {dict}:
        dicts = [r if type(r) is dict else {} for r in raws]
        slow.update(i for i, r in enumerate(raws) if type(r) is not dict)
    try:  # every field there (a missing one is None) and no other: only these fields
        columns = [list(map(itemgetter(name), dicts)) for name in names]
        if set(map(len, dicts)) - {len(names)}:
            slow.update(i for i, r in enumerate(dicts) if len(r) != len(names))
    except KeyError:
        known = k.name_set.issuperset
        slow.update(i for i, ok in enumerate(map(known, dicts)) if not ok)
        get = dict.get
        columns = [list(map(get, dicts, repeat(name))) for name in names]
    return columns


def _flag(slow: set[int], failed: pa.Array | pa.ChunkedArray) -> None:
    """Rows where ``failed`` is true are slow (null = not failed)."""
    if pc.any(failed).as_py():
        slow.update(pc.indices_nonzero(failed).to_pylist())


def _column(f: Field, col: Sequence[Any], slow: set[int], window: tuple[int, int]) -> pa.Array:
    """Field ``f``'s column as Arrow (timestamps still int64), canonical as ``coerce`` makes it;
    the rows whose value it cannot vouch for are added to ``slow`` (their value here is null)."""
    allowed = _ALLOWED[f.type]
    if not set(map(type, col)) <= allowed:
        odd = [i for i, v in enumerate(col) if type(v) not in allowed]
        slow.update(odd)
        col = list(col)
        for i in odd:
            col[i] = None
    if f.type is FieldType.STRING_LIST and not set(
        map(type, chain.from_iterable(filter(None, col)))
    ) <= {str}:
        odd = [i for i, v in enumerate(col) if v and not all(type(e) is str for e in v)]
        slow.update(odd)
        col = list(col)
        for i in odd:
            col[i] = None
    return _check(f, _convert(col, _BUILD[f.type], slow), slow, window)


def _check(f: Field, arr: pa.Array, slow: set[int], window: tuple[int, int]) -> pa.Array:
    """Field ``f``'s rules on its built column: rows that break one are added to ``slow``;
    the column made canonical (empty text and NaN in nullable fields are null)."""
    if not f.nullable and arr.null_count:
        _flag(slow, arr.is_null())
    if f.type is FieldType.STRING:
        return _text(f, arr, slow)
    if f.type is FieldType.STRING_LIST:
        if f.max_items is not None:
            _flag(slow, pc.greater(pc.list_value_length(arr), f.max_items))
        flat, parents = pc.list_flatten(arr), pc.list_parent_indices(arr)
        for bad in _text_faults(f, flat, pc.binary_length(flat)):
            slow.update(pc.filter(parents, bad).to_pylist())
        return arr
    if f.type is FieldType.FLOAT:
        lo = -FLOAT_MAX if f.min is None else max(f.min, -FLOAT_MAX)
        hi = FLOAT_MAX if f.max is None else min(f.max, FLOAT_MAX)
        total = pc.sum(arr).as_py()
        if total is None or math.isfinite(total):  # neither NaN nor an infinity
            _bounds(arr, lo, hi, slow)
            return arr
        if f.nullable and pc.any(pc.is_nan(arr)).as_py():  # NaN in a nullable field is null
            arr = pc.if_else(pc.is_nan(arr), _NO_FLOAT, arr)
        # NaN fails both comparisons, inf the bounds: only finite doubles are in range
        _flag(slow, pc.invert(pc.and_(pc.greater_equal(arr, lo), pc.less_equal(arr, hi))))
        return arr
    if f.type is FieldType.TIMESTAMP:
        _bounds(arr, *(window if f.windowed else (MIN_TS_MS, MAX_TS_MS)), slow)
    else:
        _bounds(arr, f.min, f.max, slow)
    return arr


def _bounds(arr: pa.Array, lo: float | None, hi: float | None, slow: set[int]) -> None:
    """Rows of values below ``lo`` or above ``hi`` (None: no bound) are slow; NaN is not seen."""
    if arr.null_count == len(arr) or (lo is None and hi is None):
        return
    least, most = pc.min_max(arr).values()
    if lo is not None and least.as_py() < lo:
        _flag(slow, pc.less(arr, lo))
    if hi is not None and most.as_py() > hi:
        _flag(slow, pc.greater(arr, hi))


def _text(f: Field, arr: pa.Array, slow: set[int]) -> pa.Array:
    lengths = pc.binary_length(arr)
    for bad in _text_faults(f, arr, lengths):
        _flag(slow, bad)
    if arr.null_count < len(arr) and pc.min(lengths).as_py() == 0:
        empty = pc.equal(lengths, 0)
        if not f.nullable:
            _flag(slow, empty)  # "missing_field"
        else:  # empty text in a nullable field is null
            arr = pc.if_else(empty, _NO_STRING, arr)
    return arr


def _text_faults(f: Field, arr: pa.Array, lengths: pa.Array) -> list[pa.Array]:
    """Masks of the texts ``check_text`` refuses (NUL, too long), only those that can hit."""
    if arr.null_count == len(arr):
        return []
    faults = []
    if pc.any(pc.match_substring(arr, "\x00")).as_py():
        faults.append(pc.match_substring(arr, "\x00"))
    if f.max_chars is not None and pc.max(lengths).as_py() > f.max_chars:
        faults.append(pc.greater(pc.utf8_length(arr), f.max_chars))  # characters <= bytes
    return faults


def _convert(values: Sequence[Any], typ: pa.DataType, slow: set[int], at: int = 0) -> pa.Array:
    """``values`` as an Arrow array of ``typ``; a value Arrow refuses (a lone surrogate, an int
    beyond int64 or not exact as a double) is null and its row slow, found by halving."""
    try:
        return pa.array(values, type=typ)
    except Exception:
        if len(values) > 16:
            mid = len(values) // 2
            return pa.concat_arrays(
                [
                    _convert(values[:mid], typ, slow, at),
                    _convert(values[mid:], typ, slow, at + mid),
                ]
            )
    out = list(values)
    for i, v in enumerate(values):
        try:
            pa.array([v], type=typ)
        except Exception:
            out[i] = None
            slow.add(at + i)
    return pa.array(out, type=typ)


def _relations(k: Kind, a: dict[str, pa.Array], slow: set[int]) -> None:
    """``records._check_relations``, vectorised (timestamps still int64)."""
    dc = a["datacentre"]
    longest = pc.max(pc.binary_length(dc)).as_py() if len(dc) else None
    if longest is not None and 3 * longest > MAX_PARTITION_CHARS:  # a byte quotes to <= 3
        long = [
            v
            for v in pc.unique(dc).to_pylist()
            if v is not None and len(quote(v, safe="")) > MAX_PARTITION_CHARS
        ]
        if long:
            _flag(slow, pc.is_in(dc, value_set=pa.array(long, pa.string())))
    if k is ALLOCATION:
        _flag(slow, pc.less(a["end"], a["start"]))
    elif k is INVENTORY:
        _flag(slow, pc.less_equal(a["valid_to"], a["valid_from"]))
    elif k is GPU_SAMPLE:
        _flag(slow, pc.greater(a["mem_used_bytes"], a["mem_total_bytes"]))


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
    if n < 2:
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
