"""Wire format v2: a Kafka message whose value is an Arrow IPC stream of one kind's records.

A message carries v2 when its header ``gpuledger-wire`` is ``arrow-ipc-v2`` (no header: the
JSON envelope of ``pipeline.wire``, v1). The stream holds record batches (the publisher sends
one) with exactly the contract's columns for the topic's kind, in order and of the contract's
types (``Kind.arrow_schema()``: timestamps are ``timestamp[ms, UTC]``); nullability and schema
metadata are not compared, except that a ``gpuledger.kind`` in the metadata must name the
topic's kind. Every record is then validated exactly as a JSON one (``pipeline.columnar``).
Format and reasons: docs/wire.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from pipeline.bounds import show
from pipeline.records import FieldType, Kind, RecordError

WIRE_HEADER = "gpuledger-wire"
ARROW_V2 = b"arrow-ipc-v2"
ARROW_V2_HEADERS = [(WIRE_HEADER, ARROW_V2)]
"""The headers of a v2 message (``KafkaProducer.send(..., headers=ARROW_V2_HEADERS)``)."""


def wire_of(headers: Sequence[tuple[str, bytes | None]] | None) -> bytes | None:
    """The ``gpuledger-wire`` header's value (None: none, the JSON envelope)."""
    for key, value in headers or ():
        if key == WIRE_HEADER:
            return value or b""
    return None


def encode_arrow(k: Kind, records: Sequence[Mapping[str, Any]]) -> bytes:
    """Records (as ``pipeline.wire.encode`` takes them: timestamps epoch ms) as one v2 value;
    raises when Arrow will not hold them (the publisher then sends them as JSON)."""
    schema = k.arrow_schema()
    batch = pa.RecordBatch.from_pylist(list(records), schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_arrow(k: Kind, value: bytes | None, topic: str) -> pa.Table:
    """A v2 value as a table of the contract's columns with timestamps as int64 epoch ms (what
    ``columnar.validate_arrays`` reads); ``RecordError`` when it is not one: "bad_envelope" (not
    an Arrow IPC stream, or invalid Arrow data), "bad_schema" (other columns or types) or
    "wrong_topic" (its metadata names another kind)."""
    table = read_arrow(k, value, topic)
    check_data(table)
    return as_epoch_ms(k, table)


def read_arrow(k: Kind, value: bytes | None, topic: str) -> pa.Table:
    """``decode_arrow`` without its last two steps: the table as sent (the contract's schema),
    its data not yet validated (``check_data``)."""
    if not value:
        raise RecordError("empty message (tombstone)", "bad_envelope")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(value)).read_all()
    except Exception as exc:
        raise RecordError(
            f"message is not an Arrow IPC stream: {type(exc).__name__}: {show(exc)}",
            "bad_envelope",
        ) from None
    _check_schema(k, table.schema, topic)
    # the contract's names and types, nullable and without metadata: any two such tables concat
    try:
        return pa.Table.from_arrays(table.columns, names=list(k.names))
    except pa.ArrowInvalid:  # offsets beyond the data, found by its light validation
        check_data(table)  # its "bad_envelope", as for a message read by its batch
        raise


_CONTINUATION = b"\xff\xff\xff\xff"
_EOS = _CONTINUATION + b"\x00\x00\x00\x00"


@dataclass
class ArrowRun:
    """What ``read_arrows`` makes of a run of values."""

    read: list[pa.Table | Exception | int]
    """Per value: its table (what ``read_arrow`` makes of it: data not yet checked), what it
    raised, or the row of ``rows`` (values read together, in order, data checked) with it."""
    rows: pa.Table | None = None


class _Group(NamedTuple):
    """Values that open with the same schema message and batch metadata, of one length."""

    key: bytes  # the schema message, then the batch message's framing and metadata
    length: int
    start: int  # where the batch message starts (the schema message's length)
    schema: pa.Schema
    members: list[int]


_MAX_GROUPS = 64
"""Most groups of values a run is sorted into (the rest are read by their batch alone)."""
_MIN_STACK = 4
"""Fewest values of a group read together (fewer: each by its batch)."""


def read_arrows(k: Kind, values: Sequence[bytes | None], topic: str) -> ArrowRun:
    """``read_arrow`` of each value, at a fraction of the cost for a run of streams that share
    their schema: a value that starts with the very schema message of an earlier one that was
    read, then holds exactly one record batch and the end-of-stream marker, has only its batch
    read, against that schema (what ``read_arrow`` makes of it; anything else is read alone).
    Such values whose batch message has the same metadata (and so the same buffers) and one
    record, after a schema read with one record, are read together, column by column
    (``_stack``); their rows are then checked."""
    out: list[pa.Table | Exception | int | None] = []
    prefix: bytes | None = None
    schema = pa.schema([])
    stackable = all(f.type in _STACKABLE for f in k.fields)
    stack = False  # the schema's first value held one record: look for others like it
    groups: list[_Group] = []
    for i, value in enumerate(values):
        if type(value) is bytes:
            n = len(value)
            for g in groups:
                if g.length == n and value.startswith(g.key):
                    g.members.append(i)
                    out.append(None)
                    break
            else:
                g = None
            if g is not None:
                continue
        if prefix is not None and type(value) is bytes and value.startswith(prefix):
            head = _head(value, len(prefix)) if stack else None
            if head is not None and len(groups) < _MAX_GROUPS:  # read with its group, below
                groups.append(_Group(prefix + head, len(value), len(prefix), schema, [i]))
                out.append(None)
                continue
            table = _one_batch(value, len(prefix), schema)
            if table is not None:
                out.append(table)
                continue
        try:
            table = read_arrow(k, value, topic)
        except Exception as exc:  # the message's dead letter
            out.append(exc)
            continue
        out.append(table)
        prefix, schema = _schema_message(value), table.schema
        stack = stackable and table.num_rows == 1
    return _stacked_run(out, _stack_groups(k, values, groups, out, topic))


def _stack_groups(
    k: Kind,
    values: Sequence[Any],
    groups: list[_Group],
    out: list[pa.Table | Exception | int | None],
    topic: str,
) -> list[tuple[list[int], pa.Table]]:
    """Each group read together where it can be (``_stack``), its other values one by one."""
    stacked: list[tuple[list[int], pa.Table]] = []
    for g in groups:
        got = _stack(k, values, g) if len(g.members) >= _MIN_STACK else None
        left = g.members if got is None else sorted(set(g.members) - set(got[0]))
        for i in left:  # as read_arrows reads each
            out[i] = _one_batch(values[i], g.start, g.schema)
            if out[i] is None:
                try:
                    out[i] = read_arrow(k, values[i], topic)
                except Exception as exc:  # the message's dead letter
                    out[i] = exc
        if got is not None:
            stacked.append(got)
    return stacked


def _stacked_run(
    out: list[pa.Table | Exception | int | None], stacked: list[tuple[list[int], pa.Table]]
) -> ArrowRun:
    """The run with the rows read together in value order (each group's checked alone)."""
    if not stacked:
        return ArrowRun([x for x in out if x is not None])
    at = np.concatenate([np.asarray(m, np.int64) for m, _ in stacked])
    rows = pa.concat_tables([t for _, t in stacked])
    if len(stacked) > 1:
        order = np.argsort(at, kind="stable")
        rows = rows.combine_chunks().take(order)
        at = at[order]
    for row, i in enumerate(at.tolist()):
        out[i] = row
    return ArrowRun([x for x in out if x is not None], rows)


def _schema_message(value: Any) -> bytes | None:
    """The bytes of the schema message that opens a stream (None: not framed as today's)."""
    if type(value) is not bytes or not value.startswith(_CONTINUATION) or len(value) < 8:
        return None
    end = 8 + int.from_bytes(value[4:8], "little", signed=True)
    return value[:end] if 8 < end <= len(value) else None


def _one_batch(value: bytes, start: int, schema: pa.Schema) -> pa.Table | None:
    """The one record batch between ``start`` and the closing end-of-stream marker, as a
    table of ``schema``; None when the value is not just that."""
    batch = _batch_of(value, start, schema)
    return None if batch is None else pa.Table.from_batches([batch])


def _batch_of(value: bytes, start: int, schema: pa.Schema) -> pa.RecordBatch | None:
    """``_one_batch``'s record batch (its buffers in ``value`` itself, as read)."""
    if not value.endswith(_EOS) or len(value) - len(_EOS) <= start:
        return None
    try:
        body = pa.py_buffer(value)[start : len(value) - len(_EOS)]
        reader = pa.BufferReader(body)
        message = pa.ipc.read_message(reader)
        if message.type != "record batch" or reader.tell() != body.size:
            return None
        return pa.ipc.read_record_batch(message, schema)
    except Exception:  # read alone, where whatever is wrong has its dead letter
        return None


_STACKABLE = frozenset({FieldType.TIMESTAMP, FieldType.FLOAT, FieldType.INT, FieldType.STRING})
"""The contract types whose one-record columns ``_stack`` reads."""


def _head(value: bytes, start: int) -> bytes | None:
    """The framing and metadata of the one message between a schema message of ``start``
    bytes and the closing end-of-stream marker, when it has a body (None: not framed so)."""
    if value[start : start + 4] != _CONTINUATION or not value.endswith(_EOS):
        return None
    end = start + 8 + int.from_bytes(value[start + 4 : start + 8], "little", signed=True)
    return value[start:end] if start + 8 < end < len(value) - len(_EOS) else None


class _Layout(NamedTuple):
    """Where a one-record column's buffers lie in the body of its record batch message."""

    type: pa.DataType
    null: bool  # the record's value is null (the message's null count)
    validity: int | None  # the validity bitmap's byte (only where the value is null)
    at: int  # the value (fixed width) or the two offsets (text)
    data: int  # text: its bytes
    size: int  # fixed width: its bytes; text: the size of its data buffer


def _stack(k: Kind, values: Sequence[Any], g: _Group) -> tuple[list[int], pa.Table] | None:
    """A group's values of one record each, read together: the members whose every buffer
    holds what reading each alone gives (validity, offsets spanning the whole text), and
    their records as one table of ``read_arrow``'s columns, its data checked (None: read each
    alone). Where the buffers lie comes from reading the first: the metadata is the same."""
    members = g.members
    first = values[members[0]]
    batch = _batch_of(first, g.start, g.schema)
    if batch is None or batch.num_rows != 1:
        return None
    body_at = len(g.key)
    size = len(first) - len(_EOS) - body_at
    try:
        batch.validate(full=True)
    except Exception:
        return None
    base = pa.py_buffer(first).address + body_at
    layouts = [_layout(col, base, size) for col in batch.columns]
    if any(x is None for x in layouts):
        return None
    joined = np.frombuffer(b"".join([values[i] for i in members]), np.uint8)
    body = joined.reshape(len(members), len(first))[:, body_at : body_at + size]
    ok = np.ones(len(members), dtype=bool)
    for x in layouts:
        ok &= _fits(x, body)  # type: ignore[arg-type]
    if not ok.any() or max((x.size for x in layouts if x), default=0) * len(members) >= 2**31:
        return None
    body = body[ok]
    arrays = [_column(x, body) for x in layouts]  # type: ignore[arg-type]
    table = pa.Table.from_arrays(arrays, names=list(k.names))
    try:
        table.validate(full=True)  # e.g. text that is not UTF-8: each alone finds which
    except Exception:
        return None
    return [m for m, good in zip(members, ok.tolist(), strict=True) if good], table


def _layout(col: pa.Array, base: int, size: int) -> _Layout | None:
    """Where ``col`` (one record, read from a body at address ``base`` of ``size`` bytes)
    has its buffers; None when it is not a column ``_stack`` reads."""
    t = col.type
    text = pa.types.is_string(t)
    if col.offset or len(col) != 1:
        return None
    if not (text or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t)):
        return None
    buffers = col.buffers()
    null = col.null_count == 1
    validity = None if buffers[0] is None else _at(buffers[0], base, size, 1)
    if null is (validity is None):  # a null value has its bitmap, a valid one none
        return None
    width = 8 if text else t.bit_width // 8
    at = _at(buffers[1], base, size, width)
    data = buffers[2] if text else None
    data_size = 0 if data is None else data.size
    data_at = _at(data, base, size, data_size) if data_size else 0
    if at is None or data_at is None:
        return None
    return _Layout(t, null, validity, at, data_at, data_size if text else width)


def _at(buf: pa.Buffer | None, base: int, size: int, need: int) -> int | None:
    """Where ``buf``'s first ``need`` bytes lie in the body (None: not inside it)."""
    if buf is None or buf.size < need:
        return None
    at = buf.address - base
    return at if at >= 0 and at + need <= size else None


def _fits(x: _Layout, body: np.ndarray) -> np.ndarray:
    """Per member, whether its bytes say what ``x`` says of the first: a null value's bit
    unset, text offsets spanning exactly the data buffer."""
    ok = np.ones(len(body), dtype=bool)
    if x.validity is not None:
        ok &= (body[:, x.validity] & 1) == 0
    if pa.types.is_string(x.type):
        offsets = np.ascontiguousarray(body[:, x.at : x.at + 8]).view(np.int32)
        ok &= (offsets[:, 0] == 0) & (offsets[:, 1] == x.size)
    return ok


def _column(x: _Layout, body: np.ndarray) -> pa.Array:
    """The members' values of one column, as one array."""
    n = len(body)
    if x.null:
        return pa.nulls(n, x.type)
    if pa.types.is_string(x.type):
        data = np.ascontiguousarray(body[:, x.data : x.data + x.size])
        offsets = np.arange(n + 1, dtype=np.int32) * np.int32(x.size)
        return pa.Array.from_buffers(x.type, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    fixed = np.ascontiguousarray(body[:, x.at : x.at + x.size])
    return pa.Array.from_buffers(x.type, n, [None, pa.py_buffer(fixed)])


def check_data(table: pa.Table) -> None:
    """Raise "bad_envelope" unless the data is valid Arrow (offsets in bounds, every text
    UTF-8): nothing invalid goes on to validation or the lake."""
    try:
        table.validate(full=True)
    except Exception as exc:
        raise RecordError(f"message's Arrow data is invalid: {show(exc)}", "bad_envelope") from None


def _check_schema(k: Kind, schema: pa.Schema, topic: str) -> None:
    named = (schema.metadata or {}).get(b"gpuledger.kind")
    if named is not None and named != k.name.encode():
        raise RecordError(
            f"{show(named.decode('utf-8', 'replace'))} records on topic {topic}", "wrong_topic"
        )
    want = _contract(k)
    if schema.equals(want):
        return
    got = [(f.name, f.type) for f in schema]
    if got != [(f.name, f.type) for f in want]:
        shown = ", ".join(f"{show(name)}: {typ}" for name, typ in got[:40])
        raise RecordError(
            f"Arrow schema is not the {k.name} contract's (want "
            f"{', '.join(f'{f.name}: {f.type}' for f in want)}; got {shown})",
            "bad_schema",
        )


_CONTRACTS: dict[str, pa.Schema] = {}


def _contract(k: Kind) -> pa.Schema:
    """``k.arrow_schema()``, made once per kind (by name: hashing a ``Kind`` costs more)."""
    schema = _CONTRACTS.get(k.name)
    if schema is None:
        schema = _CONTRACTS[k.name] = k.arrow_schema()
    return schema


def as_epoch_ms(k: Kind, table: pa.Table) -> pa.Table:
    """``table`` (the contract's columns) with its timestamps as int64 epoch ms."""
    columns = [
        table.column(f.name).cast(pa.int64())
        if f.type is FieldType.TIMESTAMP
        else table.column(f.name)
        for f in k.fields
    ]
    return pa.Table.from_arrays(columns, names=list(k.names))


def records_of(k: Kind, table: pa.Table) -> list[dict[str, Any]]:
    """The rows of a v2 table (as sent, its data checked) as the raw records the per-record
    path judges (timestamps epoch ms)."""
    rows: list[dict[str, Any]] = as_epoch_ms(k, table).to_pylist()
    return rows
