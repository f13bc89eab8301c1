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
from typing import Any

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
    return pa.Table.from_arrays(table.columns, names=list(k.names))


_CONTINUATION = b"\xff\xff\xff\xff"
_EOS = _CONTINUATION + b"\x00\x00\x00\x00"


def read_arrows(
    k: Kind, values: Sequence[bytes | None], topic: str
) -> list[pa.Table | RecordError]:
    """``read_arrow`` of each value (its table, or the ``RecordError`` it raised), at a
    fraction of the cost for a run of streams that share their schema: a value that starts
    with the very schema message of an earlier one that was read, then holds exactly one
    record batch and the end-of-stream marker, has only its batch read, against that schema
    (what ``read_arrow`` makes of it; anything else is read alone)."""
    out: list[pa.Table | Exception] = []
    prefix: bytes | None = None
    schema = pa.schema([])
    for value in values:
        if prefix is not None and type(value) is bytes and value.startswith(prefix):
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
    return out


def _schema_message(value: Any) -> bytes | None:
    """The bytes of the schema message that opens a stream (None: not framed as today's)."""
    if type(value) is not bytes or not value.startswith(_CONTINUATION) or len(value) < 8:
        return None
    end = 8 + int.from_bytes(value[4:8], "little", signed=True)
    return value[:end] if 8 < end <= len(value) else None


def _one_batch(value: bytes, start: int, schema: pa.Schema) -> pa.Table | None:
    """The one record batch between ``start`` and the closing end-of-stream marker, as a
    table of ``schema``; None when the value is not just that."""
    if not value.endswith(_EOS) or len(value) - len(_EOS) <= start:
        return None
    try:
        body = pa.py_buffer(value)[start : len(value) - len(_EOS)]
        reader = pa.BufferReader(body)
        message = pa.ipc.read_message(reader)
        if message.type != "record batch" or reader.tell() != body.size:
            return None
        return pa.Table.from_batches([pa.ipc.read_record_batch(message, schema)])
    except Exception:  # read alone, where whatever is wrong has its dead letter
        return None


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
