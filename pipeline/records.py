"""The record contract v1 (DESIGN §3): the one definition every other layer derives from.

The Arrow schema (``Kind.arrow_schema``), the Parquet files, the DuckDB views
(``Kind.duckdb_columns``) and the wire format (``pipeline.wire``) are all computed from the
``KINDS`` table below; nothing else lists the fields. ``coerce`` turns one loosely typed
mapping (a decoded JSON object, a CSV row) into a canonical record or raises ``RecordError``.

Canonical in-memory form: a plain ``dict``; timestamps are ``int`` epoch milliseconds (UTC),
lists are ``list[str]``, absent nullable fields are ``None``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa

CONTRACT_VERSION = 1
Record = dict[str, Any]


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


class RecordError(ValueError):
    """A terminal problem with one record: it goes to the dead-letter path, never retried."""

    def __init__(self, reason: str, error_class: str = "invalid_record") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    nullable: bool = False
    doc: str = ""
    min: float | None = None
    max: float | None = None


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
        return f"{self.topic}.dlq"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @functools.cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    @functools.cached_property
    def plan(self) -> tuple[tuple[str, type, Any, Any, Field], ...]:
        """Per field: name, the exact Python type taken as is, and its bounds (None = text,
        taken as is when non-empty); used by ``coerce_fields``' fast path."""
        inf = float("inf")
        plan: list[tuple[str, type, Any, Any, Field]] = []
        for f in self.fields:
            if f.type is FieldType.STRING_LIST:
                plan.append((f.name, _Never, None, None, f))
            elif f.type is FieldType.STRING:
                plan.append((f.name, str, None, None, f))
            else:
                lo = -inf if f.min is None else f.min
                hi = inf if f.max is None else f.max
                # Finite floats only: inf fails the bounds below, NaN fails every comparison.
                exact = float if f.type is FieldType.FLOAT else int
                plan.append((f.name, exact, max(lo, -1.7e308), min(hi, 1.7e308), f))
        return tuple(plan)

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
        _f("pod", S, nullable=True),
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
        _f("allocation_id", S),
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
            f"unknown record kind {name!r}; expected one of {', '.join(KINDS)}", "unknown_kind"
        ) from None


# ---------------------------------------------------------------------------- coercion


def parse_ts(value: Any) -> int:
    """An instant as epoch ms: int/float epoch milliseconds, or ISO-8601 text with an offset."""
    if isinstance(value, bool):
        raise RecordError(f"timestamp must be epoch ms or ISO-8601, got {value!r}", "bad_timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"timestamp is not finite: {value!r}", "bad_timestamp")
        return int(round(value))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise RecordError(f"timestamp {value!r} has no UTC offset", "bad_timestamp")
        return int(round(value.timestamp() * 1000))
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"timestamp {value!r} is not ISO-8601", "bad_timestamp") from None
        if parsed.tzinfo is None:
            raise RecordError(
                f"timestamp {value!r} has no UTC offset (write e.g. 2020-05-01T00:00:00+08:00)",
                "bad_timestamp",
            )
        return int(round(parsed.timestamp() * 1000))
    raise RecordError(f"timestamp must be epoch ms or ISO-8601, got {value!r}", "bad_timestamp")


def coerce_value(f: Field, value: Any) -> Any:
    # Fast paths for what the wire format carries (exact types, in range); the general
    # checks below give the same answers, only slower.
    kind_of = type(value)
    if kind_of is str and f.type is FieldType.STRING and value:
        return value
    if (kind_of is float or kind_of is int) and f.type is FieldType.FLOAT:
        number = float(value)
        if (
            math.isfinite(number)
            and (f.min is None or number >= f.min)
            and (f.max is None or number <= f.max)
        ):
            return number
    if kind_of is int and f.type is FieldType.TIMESTAMP:
        return value
    if f.type is FieldType.TIMESTAMP:
        return parse_ts(value)
    if f.type is FieldType.STRING:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise RecordError(f"{f.name} must be text, got {value!r}", "bad_type")
        text = str(value)
        if not text and not f.nullable:
            raise RecordError(f"{f.name} must not be empty", "missing_field")
        return text or None
    if f.type is FieldType.STRING_LIST:
        if isinstance(value, str):
            value = [v for v in value.split(";") if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise RecordError(f"{f.name} must be a list of text, got {value!r}", "bad_type")
        return list(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{f.name} must be a number, got {value!r}", "bad_type")
    if f.type is FieldType.INT:
        if isinstance(value, float):
            if not value.is_integer():
                raise RecordError(f"{f.name} must be an integer, got {value!r}", "bad_type")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise RecordError(f"{f.name} is not finite: {value!r}", "out_of_range")
    if f.min is not None and value < f.min:
        raise RecordError(f"{f.name}={value!r} is below {f.min}", "out_of_range")
    if f.max is not None and value > f.max:
        raise RecordError(f"{f.name}={value!r} is above {f.max}", "out_of_range")
    return value


def coerce(k: Kind, raw: Mapping[str, Any]) -> Record:
    """Validate one mapping against the contract; return the canonical record."""
    out = coerce_fields(k, raw)
    _check_relations(k, out)
    return out


def coerce_fields(k: Kind, raw: Mapping[str, Any]) -> Record:
    """Field-by-field validation of one mapping (types, ranges, required, unknown fields),
    without the checks between fields; shared by every table defined like ``Kind``."""
    if not isinstance(raw, Mapping):
        raise RecordError(
            f"a {k.name} record must be an object, got {type(raw).__name__}", "bad_type"
        )
    unknown = raw.keys() - k.name_set
    if unknown:
        raise RecordError(
            f"unknown field(s) for {k.name}: {', '.join(sorted(unknown))}", "unknown_field"
        )
    out: Record = {}
    get = raw.get
    for name, exact, lo, hi, f in k.plan:
        value: Any = get(name)
        # Fast path: the exact type the wire format carries, in range (same result as below).
        if type(value) is exact and (lo <= value <= hi if lo is not None else value):
            out[name] = value
            continue
        if value is None or (isinstance(value, float) and math.isnan(value) and f.nullable):
            if not f.nullable:
                raise RecordError(f"{k.name}.{f.name} is required", "missing_field")
            out[f.name] = None
            continue
        out[f.name] = coerce_value(f, value)
    return out


def _check_relations(k: Kind, r: Record) -> None:
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
