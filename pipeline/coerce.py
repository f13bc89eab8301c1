"""Validation of one loosely typed mapping against a ``Kind``, field by field: types, ranges,
required and unknown fields, text and list bounds, the plausibility window. Shared by every
table defined like ``Kind`` (the contract's kinds in :mod:`pipeline.records`, the voucher
entities); the checks between fields of a contract kind are ``pipeline.records.coerce``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pipeline.bounds import (
    RecordError,
    check_int,
    check_list,
    check_text,
    check_ts,
    outside_window,
    parse_ts,
    show,
    text_of,
    to_float,
    window_bounds,
)
from pipeline.schema import Field, FieldType, Kind, Record


def coerce_value(f: Field, value: Any) -> Any:
    """One present (non-None) value of field ``f``, canonical, or ``RecordError``; the general
    path of ``coerce_fields`` (which takes exact wire types in range without calling it)."""
    if f.type is FieldType.TIMESTAMP:
        ms = value if type(value) is int else parse_ts(value)
        return check_ts(f.name, ms, f.windowed)
    if f.type is FieldType.STRING:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise RecordError(f"{f.name} must be text, got {show(value)}", "bad_type")
        text = check_text(f.name, text_of(f.name, value), f.max_chars)
        if not text and not f.nullable:
            raise RecordError(f"{f.name} must not be empty", "missing_field")
        return text or None
    if f.type is FieldType.STRING_LIST:
        return check_list(f.name, value, f.max_chars, f.max_items)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{f.name} must be a number, got {show(value)}", "bad_type")
    if f.type is FieldType.INT:
        if isinstance(value, float) and not value.is_integer():
            raise RecordError(f"{f.name} must be an integer, got {value!r}", "bad_type")
        value = check_int(f.name, int(value))
    else:
        value = to_float(f.name, value)
    if f.min is not None and value < f.min:
        raise RecordError(f"{f.name}={value!r} is below {f.min}", "out_of_range")
    if f.max is not None and value > f.max:
        raise RecordError(f"{f.name}={value!r} is above {f.max}", "out_of_range")
    return value


def coerce_fields(
    k: Kind, raw: Mapping[str, Any], window_ms: tuple[int, int] | None = None
) -> Record:
    """Field-by-field validation of one mapping (types, ranges, required, unknown fields),
    without the checks between fields; shared by every table defined like ``Kind``."""
    if not isinstance(raw, Mapping):
        raise RecordError(
            f"a {k.name} record must be an object, got {type(raw).__name__}", "bad_type"
        )
    unknown = raw.keys() - k.name_set
    if unknown:
        names = sorted(n if type(n) is str and len(n) <= 60 else show(n) for n in unknown)
        raise RecordError(
            f"unknown field(s) for {k.name}: {', '.join(names[:20])}", "unknown_field"
        )
    out: Record = {}
    get = raw.get
    for name, exact, lo, hi, f in k.plan:
        value: Any = get(name)
        # Fast path: the exact type the wire format carries, in range (same result as below).
        if type(value) is exact and (
            lo <= value <= hi
            if lo is not None
            else (value and len(value) <= hi and value.isascii() and "\x00" not in value)
        ):
            out[name] = value
            continue
        if value is None or (isinstance(value, float) and math.isnan(value) and f.nullable):
            if not f.nullable:
                raise RecordError(f"{k.name}.{f.name} is required", "missing_field")
            out[f.name] = None
            continue
        out[f.name] = coerce_value(f, value)
    if k.windowed:  # the fast path took any representable instant
        wlo, whi = window_bounds() if window_ms is None else window_ms
        for name in k.windowed:
            ms = out[name]
            if ms is not None and not wlo <= ms <= whi:
                raise outside_window(name, ms, wlo, whi)
    return out
