"""How a record kind is described: its fields (``Field``, ``FieldType``) and the ``Kind`` that
holds them, with everything derived from that one description (the Arrow schema, the DuckDB
columns, the Kafka message key, the dead-letter topic, the plan of ``coerce_fields``). The kinds
themselves, the contract, are defined in :mod:`pipeline.records`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa

from pipeline.bounds import FLOAT_MAX, INT64_MAX, INT64_MIN, MAX_TS_MS, MIN_TS_MS

CONTRACT_VERSION = 1
Record = dict[str, Any]
"""A record in canonical in-memory form (see :mod:`pipeline.records`)."""


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
    """Identity of one record: same key = the same record (a duplicate)."""
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
