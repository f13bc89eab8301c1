"""The column-wise checks behind ``pipeline.columnar.validate_table``: each contract column
built with Arrow, and the rules of ``records.coerce`` applied to it vectorised (types, required
fields, ranges, the plausibility window, text and list limits, NUL, and the checks between
fields). A row these checks cannot vouch for is added to the caller's ``slow`` set, for the
per-record path to judge; the checks only ever need to be at least as strict as ``coerce``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain, repeat
from operator import itemgetter
from types import NoneType
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.bounds import FLOAT_MAX, MAX_TS_MS, MIN_TS_MS
from pipeline.records import (
    ALLOCATION,
    GPU_SAMPLE,
    INVENTORY,
    MAX_PARTITION_CHARS,
    Field,
    FieldType,
    Kind,
)

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
_NO_STRING = pa.scalar(None, pa.string())
_NO_FLOAT = pa.scalar(None, pa.float64())


def arrow_column(f: Field, arr: pa.Array | None, n: int) -> pa.Array | None:
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


def columns(k: Kind, raws: Sequence[Any], slow: set[int]) -> list[list[Any]]:
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


def column(f: Field, col: Sequence[Any], slow: set[int], window: tuple[int, int]) -> pa.Array:
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
    return check(f, _convert(col, _BUILD[f.type], slow), slow, window)


def check(f: Field, arr: pa.Array, slow: set[int], window: tuple[int, int]) -> pa.Array:
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
        faults = _text_faults(f, flat, pc.binary_length(flat))
        if flat.null_count:  # a null entry: "must be a list of text"
            faults.append(flat.is_null())
        for bad in faults:
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
    if _may_hold_nul(arr) and pc.any(pc.match_substring(arr, "\x00")).as_py():
        faults.append(pc.match_substring(arr, "\x00"))
    if f.max_chars is not None and pc.max(lengths).as_py() > f.max_chars:
        faults.append(pc.greater(pc.utf8_length(arr), f.max_chars))  # characters <= bytes
    return faults


def _may_hold_nul(arr: pa.Array) -> bool:
    """False when no text of ``arr`` can hold a NUL: none in the bytes its offsets span (a
    scan of the data buffer, much faster than matching text by text)."""
    t = arr.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)) or not isinstance(arr, pa.Array):
        return True
    _validity, offsets, data = arr.buffers()
    if data is None or offsets is None:
        return False
    at = np.frombuffer(offsets, np.int32 if pa.types.is_string(t) else np.int64)
    lo, hi = int(at[arr.offset]), int(at[arr.offset + len(arr)])
    return not np.frombuffer(data, np.uint8, hi - lo, lo).all()


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


def relations(k: Kind, a: dict[str, pa.Array], slow: set[int]) -> None:
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
