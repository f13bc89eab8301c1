"""The record contract v1 (DESIGN §3): the one definition every other layer derives from.

The Arrow schema (``Kind.arrow_schema``), the Parquet files, the DuckDB views
(``Kind.duckdb_columns``) and the wire format (``pipeline.wire``) are all computed from the
``KINDS`` table below; nothing else lists the fields. ``coerce`` turns one loosely typed
mapping (a decoded JSON object, a CSV row) into a canonical record or raises ``RecordError``.

Canonical in-memory form: a plain ``dict``; timestamps are ``int`` epoch milliseconds (UTC),
lists are ``list[str]``, absent nullable fields are ``None``.

Value bounds (``pipeline.bounds``): every accepted value fits the lake (int64, finite doubles,
UTF-8 text without NUL, representable instants); the telemetry kinds below also bound every
timestamp by the plausibility window (``bounds.TimeWindow``: 2000-01-01 .. now + 1 day unless
set otherwise), ids and list entries to ``MAX_ID_CHARS`` characters and lists to
``MAX_LIST_ITEMS`` entries.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from pipeline.bounds import (
    FLOAT_MAX,
    INT64_MAX,
    INT64_MIN,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_TS_MS,
    MIN_TS_MS,
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

CONTRACT_VERSION = 1
MAX_K8S_CHARS = 320
"""Kubernetes names: a pod name may have 253 characters, an allocation ``namespace/pod`` more."""
MAX_PARTITION_CHARS = 200
"""``datacentre`` becomes a partition folder name: URL-encoded it must stay under 255 bytes."""
Record = dict[str, Any]


DLQ_SUFFIX = ".dlq"
"""A dead-letter topic is its origin topic's name with this suffix: ``gpu.samples.v1.dlq``."""


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic`` (namespaced or not): ``ns.gpu.samples.v1.dlq``."""
    return topic + DLQ_SUFFIX


def origin_topic(dlq_topic: str) -> str:
    """The topic whose rejects ``dlq_topic`` holds (the inverse of ``dead_letter_topic``)."""
    return dlq_topic.removesuffix(DLQ_SUFFIX)


class FieldType(StrEnum):
    TIMESTAMP = "timestamp"
    STRING = "string"
    FLOAT = "float"
    INT = "int"
    STRING_LIST = "string_list"


_ARROW: dict[FieldType, pa.DataType] = {
    FieldType.TIMESTAMP: pa.timestamp("ms", tz="UTC"),
    FieldType.STRING: pa.string(),
    FieldType.FLOAT: pa.float64(),
    FieldType.INT: pa.int64(),
    FieldType.STRING_LIST: pa.list_(pa.string()),
}

_DUCKDB: dict[FieldType, str] = {
    FieldType.TIMESTAMP: "TIMESTAMPTZ",
    FieldType.STRING: "VARCHAR",
    FieldType.FLOAT: "DOUBLE",
    FieldType.INT: "BIGINT",
    FieldType.STRING_LIST: "VARCHAR[]",
}


class _Never:
    """A type no decoded value has: fields of this kind always take the general path."""


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    nullable: bool = False
    doc: str = ""
    min: float | None = None
    max: float | None = None
    max_chars: int | None = None
    """STRING / STRING_LIST: the longest text (entry) accepted; None = no limit."""
    max_items: int | None = None
    """STRING_LIST: the most entries accepted; None = no limit."""
    windowed: bool = False
    """TIMESTAMP: bounded by the plausibility window (``pipeline.bounds.TimeWindow``)."""


@dataclass(frozen=True)
class Kind:
    name: str
    topic: str
    table: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    """Identity of one record: same key = the same record (DESIGN §4 duplicates)."""
    partition_key: tuple[str, ...]
    """Kafka message key: keeps one GPU / one scope / one allocation in one partition."""
    time_field: str
    """The instant that places the record in the lake's ``date=`` partition (UTC date)."""

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic of this kind's records (``dead_letter_topic``)."""
        return dead_letter_topic(self.topic)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @functools.cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    @functools.cached_property
    def plan(self) -> tuple[tuple[str, Any, Any, Any, Field], ...]:
        """Per field: name, the exact Python type taken as is, and its bounds; used by
        ``coerce_fields``' fast path. Text: lo None and hi the longest length, taken as is
        when non-empty, ASCII and without NUL. Timestamps: the representable range (the
        window, which moves with the clock, is checked after, see ``windowed``)."""
        plan: list[tuple[str, Any, Any, Any, Field]] = []
        for f in self.fields:
            if f.type is FieldType.STRING_LIST:
                plan.append((f.name, _Never, None, None, f))
            elif f.type is FieldType.STRING:
                plan.append((f.name, str, None, f.max_chars or sys.maxsize, f))
            elif f.type is FieldType.TIMESTAMP:
                plan.append((f.name, int, MIN_TS_MS, MAX_TS_MS, f))
            elif f.type is FieldType.INT:
                lo = INT64_MIN if f.min is None else max(f.min, INT64_MIN)
                hi = INT64_MAX if f.max is None else min(f.max, INT64_MAX)
                plan.append((f.name, int, lo, hi, f))
            else:
                # Finite floats only: inf fails the bounds below, NaN fails every comparison.
                lo = -FLOAT_MAX if f.min is None else max(f.min, -FLOAT_MAX)
                hi = FLOAT_MAX if f.max is None else min(f.max, FLOAT_MAX)
                plan.append((f.name, float, lo, hi, f))
        return tuple(plan)

    @functools.cached_property
    def windowed(self) -> tuple[str, ...]:
        """The TIMESTAMP fields bounded by the plausibility window."""
        return tuple(f.name for f in self.fields if f.windowed)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(f.name, _ARROW[f.type], nullable=f.nullable) for f in self.fields],
            metadata={"gpuledger.kind": self.name, "gpuledger.contract": str(CONTRACT_VERSION)},
        )

    def duckdb_columns(self) -> list[tuple[str, str]]:
        return [(f.name, _DUCKDB[f.type]) for f in self.fields]

    def message_key(self, record: Mapping[str, Any]) -> bytes:
        return "/".join(str(record.get(k) or "") for k in self.partition_key).encode()


def _f(name: str, type_: FieldType, nullable: bool = False, doc: str = "", **kw: Any) -> Field:
    """A telemetry contract field: timestamps windowed, text and lists bounded (ids)."""
    if type_ is FieldType.TIMESTAMP:
        kw.setdefault("windowed", True)
    elif type_ is FieldType.STRING:
        kw.setdefault("max_chars", MAX_ID_CHARS)
    elif type_ is FieldType.STRING_LIST:
        kw.setdefault("max_chars", MAX_ID_CHARS)
        kw.setdefault("max_items", MAX_LIST_ITEMS)
    return Field(name, type_, nullable, doc, **kw)


T, S, F, N, L = (
    FieldType.TIMESTAMP,
    FieldType.STRING,
    FieldType.FLOAT,
    FieldType.INT,
    FieldType.STRING_LIST,
)

GPU_SAMPLE = Kind(
    name="gpu_sample",
    topic="gpu.samples.v1",
    table="gpu_samples",
    fields=(
        _f("ts", T, doc="sample instant (UTC)"),
        _f(
            "interval_s",
            F,
            doc="sampling interval; coverage is [ts, ts+min(interval, next-ts))",
            min=1e-3,
        ),
        _f("datacentre", S),
        _f("cluster", S),
        _f("node", S),
        _f("gpu_uuid", S, doc="GPU (or MIG instance) identity"),
        _f("gpu_index", N, nullable=True, min=0),
        _f("gpu_model", S, nullable=True),
        _f("util", F, nullable=True, doc="busy fraction 0-1", min=0.0, max=1.0),
        _f("mem_used_bytes", N, nullable=True, min=0),
        _f("mem_total_bytes", N, nullable=True, min=0),
        _f("power_w", F, nullable=True, min=0.0),
        _f("temp_c", F, nullable=True),
        _f("sm_active", F, nullable=True, doc="0-1", min=0.0, max=1.0),
        _f("pod", S, nullable=True, max_chars=MAX_K8S_CHARS),
        _f("namespace", S, nullable=True),
        _f("job_id", S, nullable=True),
        _f("source", S, doc="collector that produced it, e.g. dcgm, nvml, replay:genai"),
    ),
    key=("datacentre", "cluster", "gpu_uuid", "ts"),
    partition_key=("datacentre", "cluster", "gpu_uuid"),
    time_field="ts",
)

OCCUPANCY = Kind(
    name="occupancy",
    topic="cluster.occupancy.v1",
    table="occupancy",
    fields=(
        _f("ts", T),
        _f("interval_s", F, min=1e-3),
        _f("datacentre", S),
        _f("cluster", S),
        _f(
            "scope",
            S,
            nullable=True,
            doc="partition / virtual cluster / pool; null = whole cluster",
        ),
        _f("gpus_total", F, min=0.0),
        _f("gpus_allocated", F, min=0.0),
        _f("gpus_down", F, nullable=True, min=0.0),
        _f("source", S),
    ),
    key=("datacentre", "cluster", "scope", "ts"),
    partition_key=("datacentre", "cluster", "scope"),
    time_field="ts",
)

ALLOCATION = Kind(
    name="allocation",
    topic="cluster.allocations.v1",
    table="allocations",
    fields=(
        _f("allocation_id", S, max_chars=MAX_K8S_CHARS),
        _f("datacentre", S),
        _f("cluster", S),
        _f("tenant_id", S),
        _f("event_ts", T, doc="when this state of the allocation was observed"),
        _f("job_id", S, nullable=True),
        _f("gpu_count", F, doc="fractional GPUs allowed", min=0.0),
        _f("gpu_uuids", L, nullable=True),
        _f("nodes", L, nullable=True),
        _f("start", T, nullable=True),
        _f("end", T, nullable=True, doc="null while running"),
        _f("state", S),
        _f("source", S),
    ),
    key=("datacentre", "cluster", "allocation_id", "event_ts"),
    partition_key=("datacentre", "cluster", "allocation_id"),
    time_field="event_ts",
)

INVENTORY = Kind(
    name="inventory",
    topic="inventory.v1",
    table="inventory",
    fields=(
        _f("datacentre", S),
        _f("cluster", S),
        _f("node", S),
        _f("valid_from", T),
        _f("valid_to", T, nullable=True, doc="null = current"),
        _f("gpu_model", S, nullable=True),
        _f("gpu_count", N, min=0),
        _f("source", S),
    ),
    key=("datacentre", "cluster", "node", "valid_from"),
    partition_key=("datacentre", "cluster", "node"),
    time_field="valid_from",
)

KINDS: dict[str, Kind] = {k.name: k for k in (GPU_SAMPLE, OCCUPANCY, ALLOCATION, INVENTORY)}
BY_TOPIC: dict[str, Kind] = {k.topic: k for k in KINDS.values()}
BY_TABLE: dict[str, Kind] = {k.table: k for k in KINDS.values()}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise RecordError(
            f"unknown record kind {show(name)}; expected one of {', '.join(KINDS)}", "unknown_kind"
        ) from None


# ---------------------------------------------------------------------------- coercion


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


def coerce(k: Kind, raw: Mapping[str, Any], window_ms: tuple[int, int] | None = None) -> Record:
    """Validate one mapping against the contract; return the canonical record.

    ``window_ms``: the plausibility window's (lo, hi) epoch ms, as ``bounds.window_bounds()``
    gives it (a batch reads the clock once); None = the current window, read now."""
    out = coerce_fields(k, raw, window_ms)
    _check_relations(k, out)
    return out


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


def _check_relations(k: Kind, r: Record) -> None:
    if len(quote(r["datacentre"], safe="")) > MAX_PARTITION_CHARS:
        raise RecordError(
            f"datacentre {r['datacentre'][:40]!r}... is too long for a lake partition "
            f"(at most {MAX_PARTITION_CHARS} characters once URL-encoded)",
            "too_long",
        )
    if (
        k is ALLOCATION
        and r["start"] is not None
        and r["end"] is not None
        and r["end"] < r["start"]
    ):
        raise RecordError("allocation end is before its start", "bad_interval")
    if k is INVENTORY and r["valid_to"] is not None and r["valid_to"] <= r["valid_from"]:
        raise RecordError("inventory valid_to is not after valid_from", "bad_interval")
    if (
        k is GPU_SAMPLE
        and r["mem_used_bytes"] is not None
        and r["mem_total_bytes"] is not None
        and r["mem_used_bytes"] > r["mem_total_bytes"]
    ):
        raise RecordError("mem_used_bytes exceeds mem_total_bytes", "out_of_range")


def lake_date(k: Kind, record: Mapping[str, Any]) -> str:
    """The UTC date (YYYY-MM-DD) of a record's time field: its ``date=`` lake partition."""
    return datetime.fromtimestamp(record[k.time_field] / 1000, tz=UTC).strftime("%Y-%m-%d")


def ms_to_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
