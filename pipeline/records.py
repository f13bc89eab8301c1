"""The record contract v1: the one definition every other layer derives from.

The Arrow schema (``Kind.arrow_schema``), the Parquet files, the DuckDB views
(``Kind.duckdb_columns``) and the wire format (``pipeline.wire``) are all computed from the
``KINDS`` table below; nothing else lists the fields. ``coerce`` turns one loosely typed
mapping (a decoded JSON object, a CSV row) into a canonical record or raises ``RecordError``.
How a kind is described lives in ``pipeline.schema``, the field-by-field validation in
``pipeline.coerce``.

Canonical in-memory form: a plain ``dict``; timestamps are ``int`` epoch milliseconds (UTC),
lists are ``list[str]``, absent nullable fields are ``None``.

Value bounds (``pipeline.bounds``): every accepted value fits the lake (int64, finite doubles,
UTF-8 text without NUL, representable instants); the telemetry kinds below also bound every
timestamp by the plausibility window (``bounds.TimeWindow``: 2000-01-01 .. now + 1 day unless
set otherwise), ids and list entries to ``MAX_ID_CHARS`` characters and lists to
``MAX_LIST_ITEMS`` entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pipeline.bounds import MAX_ID_CHARS, MAX_LIST_ITEMS, RecordError, parse_ts, show
from pipeline.coerce import coerce_fields, coerce_value
from pipeline.schema import (
    CONTRACT_VERSION,
    DLQ_SUFFIX,
    Field,
    FieldType,
    Kind,
    Record,
    dead_letter_topic,
    origin_topic,
)

# The contract's interface: its kinds and lookups defined here, and the description types,
# validation and topic naming they are built from, so that callers import the contract from one
# module.
__all__ = [
    "ALLOCATION",
    "BY_TABLE",
    "BY_TOPIC",
    "CONTRACT_VERSION",
    "DLQ_SUFFIX",
    "GPU_SAMPLE",
    "INVENTORY",
    "KINDS",
    "MAX_K8S_CHARS",
    "MAX_PARTITION_CHARS",
    "OCCUPANCY",
    "Field",
    "FieldType",
    "Kind",
    "Record",
    "RecordError",
    "coerce",
    "coerce_fields",
    "coerce_value",
    "dead_letter_topic",
    "kind",
    "lake_date",
    "ms_to_iso",
    "origin_topic",
    "parse_ts",
]

MAX_K8S_CHARS = 320
"""Kubernetes names: a pod name may have 253 characters, an allocation ``namespace/pod`` more."""
MAX_PARTITION_CHARS = 200
"""``datacentre`` becomes a partition folder name: URL-encoded it must stay under 255 bytes."""


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


def coerce(k: Kind, raw: Mapping[str, Any], window_ms: tuple[int, int] | None = None) -> Record:
    """Validate one mapping against the contract; return the canonical record.

    ``window_ms``: the plausibility window's (lo, hi) epoch ms, as ``bounds.window_bounds()``
    gives it (a batch reads the clock once); None = the current window, read now."""
    out = coerce_fields(k, raw, window_ms)
    _check_relations(k, out)
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
