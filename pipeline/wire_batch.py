"""Decoding a run of one partition's messages at once, into Arrow columns.

JSON v1 messages are parsed together by Arrow's JSON reader (one line per message, the
envelope and its records read against the contract's columns), Arrow v2 messages
(``pipeline.wire_arrow``) by IPC; the records of every live message, in message order, then
come out as one set of columns for ``columnar.validate_arrays``. The JSON reader is only
trusted where it reads exactly what ``json.loads`` reads: a message that is not plain ASCII on
one line, or a run where the reader fails or sees anything the per-message path would judge
differently (an envelope that is not ``{"v": 1, "kind": <the topic's>, "records": [...]}``, a
record that is not an object, another type than the column's, a duplicate or unknown field, an
integer ``-0``), is decoded message by message with ``wire.decode`` instead
(``Batch.columns`` is then None and the records go through ``columnar.validate``). Either way
a message that cannot be decoded is one dead letter with its reason (``Batch.dead``), and the
raw records of any message are at hand (``Batch.raw_records``) for the rows the column-wise
checks cannot vouch for.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pipeline.bounds import show
from pipeline.records import CONTRACT_VERSION, FieldType, Kind, RecordError
from pipeline.wire import all_plain, decode, int_minus_zero, plain
from pipeline.wire_arrow import (
    ARROW_V2,
    ARROW_V2_HEADERS,
    WIRE_HEADER,
    as_epoch_ms,
    check_data,
    read_arrows,
    records_of,
    wire_of,
)

_BUILD = {
    FieldType.TIMESTAMP: pa.int64(),
    FieldType.STRING: pa.string(),
    FieldType.FLOAT: pa.float64(),
    FieldType.INT: pa.int64(),
    FieldType.STRING_LIST: pa.list_(pa.string()),
}
"""Each contract type as the columns carry it (timestamps as int64 epoch ms)."""
_MIN_BLOCK = 1 << 20


@cache
def build_schema(k: Kind) -> pa.Schema:
    """The columns' schema: the contract's names, timestamps as int64."""
    return pa.schema([pa.field(f.name, _BUILD[f.type]) for f in k.fields])


@cache
def _envelope_options(k: Kind) -> pj.ParseOptions:
    records = pa.list_(pa.struct(list(build_schema(k))))
    schema = pa.schema([("v", pa.int64()), ("kind", pa.string()), ("records", records)])
    return pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")


@dataclass
class Batch:
    """The decoded messages of a run: per message its dead letter (or None); for the live
    ones (in order) their record counts and either all their records as ``columns`` or, when
    the run is decoded message by message, None."""

    kind: Kind
    values: list[Any]
    dead: list[RecordError | None]
    sizes: list[int] = field(default_factory=list)
    columns: dict[str, pa.Array] | None = None
    live: list[int] = field(default_factory=list)
    """Index (in the run) of each live message."""
    _raws: dict[int, list[Any]] = field(default_factory=dict)
    _tables: dict[int, pa.Table] = field(default_factory=dict)
    _rows: dict[int, int] = field(default_factory=dict)
    """v2 messages read together: the row of ``_stacked`` holding each one's record."""
    _stacked: pa.Table | None = None

    @property
    def n(self) -> int:
        return sum(self.sizes)

    def raw_records(self, i: int) -> list[Any]:
        """Message ``i``'s records as decoded mappings (what ``json.loads`` makes of them)."""
        if i not in self._raws:
            row = self._rows.get(i)
            table = self._tables.get(i) if row is None else self._stacked_row(row)
            self._raws[i] = (
                records_of(self.kind, table) if table is not None else decode(self.values[i])[1]
            )
        return self._raws[i]

    def _stacked_row(self, row: int) -> pa.Table:
        assert self._stacked is not None
        return self._stacked.slice(row, 1)

    def records(self) -> list[list[Any]]:
        """The records of each live message, in order."""
        return [self.raw_records(i) for i in self.live]

    def raws_of(self, rows: list[int]) -> list[Any]:
        """The raw records at ``rows`` of ``columns`` (``validate_arrays``' ``raws_of``)."""
        starts = np.cumsum([0, *self.sizes])
        at = np.searchsorted(starts, rows, side="right") - 1
        raw = self.raw_records
        return [raw(self.live[m])[r - starts[m]] for m, r in zip(at, rows, strict=True)]


def decode_batch(k: Kind, messages: Sequence[Any], topic: str, *, arrow_json: bool = True) -> Batch:
    """Decode a run of one partition's messages (``topic``'s kind is ``k``); with
    ``arrow_json=False`` every JSON message by ``json.loads``, and the run has no columns."""
    values = [m.value for m in messages]
    batch = Batch(k, values, [None] * len(messages))
    wires = _wires(messages)
    arrows = [i for i, wire in enumerate(wires) if wire == ARROW_V2]
    run = read_arrows(k, [values[i] for i in arrows], topic)
    batch._stacked = run.rows
    for i, read in zip(arrows, run.read, strict=True):
        if isinstance(read, int):
            batch._rows[i] = read
        elif isinstance(read, pa.Table):
            batch._tables[i] = read
        else:
            batch.dead[i] = _as_error(read)
    runs = _json_runs(batch, wires, topic, arrow_json)
    _check_tables(batch)
    parsed = parse_json(k, [values[i] for i in runs]) if runs else None
    if runs and parsed is None:
        for i in runs:
            try:
                batch._raws[i] = decode_json(k, values[i], topic)
            except Exception as exc:
                batch.dead[i] = _as_error(exc)
    if batch.dead.count(None) == len(batch.dead):
        batch.live = list(range(len(batch.dead)))
    else:
        batch.live = [i for i, why in enumerate(batch.dead) if why is None]
    if batch._raws or not arrow_json:
        batch.sizes = [len(rs) for rs in batch.records()]
        return batch
    pieces, sizes = _pieces(k, batch, runs, parsed)
    batch.sizes = sizes
    table = pa.concat_tables(pieces) if pieces else build_schema(k).empty_table()
    if len(pieces) > 1:
        table = table.combine_chunks()  # at once: much faster than column by column
    batch.columns = {name: table.column(name).combine_chunks() for name in k.names}
    if not _trusted(k, batch.columns):
        batch.columns = None  # the caller decodes the run again, message by message
    return batch


def _pieces(
    k: Kind, batch: Batch, runs: list[int], parsed: tuple[pa.Table, np.ndarray] | None
) -> tuple[list[pa.Table], list[int]]:
    """The live messages' records as tables in message order (consecutive JSON messages as
    one slice of the parsed records), and each live message's record count."""
    if parsed is not None and not (batch._tables or batch._rows) and len(runs) == len(batch.live):
        return [parsed[0]], parsed[1].tolist()  # every live message is one of the JSON run
    schema = build_schema(k)
    json_at = {i: j for j, i in enumerate(runs)}
    starts = np.cumsum([0, *parsed[1]]) if parsed is not None else np.zeros(1, np.int64)
    pieces: list[pa.Table] = []
    sizes: list[int] = []
    lo = hi = 0  # the slice of parsed records not yet cut
    arrow: list[pa.Table | int] = []  # consecutive v2 tables (or rows read together) not cut

    def cut() -> None:
        if hi > lo and parsed is not None:
            pieces.append(parsed[0].slice(lo, hi - lo))
        if arrow:
            combined = pa.concat_tables(_v2_tables(batch, arrow)).combine_chunks()  # one cast
            pieces.append(as_epoch_ms(k, combined).cast(schema))
            arrow.clear()

    for i in batch.live:
        j = json_at.get(i)
        if j is not None:
            start, end = int(starts[j]), int(starts[j + 1])
            if start != hi or arrow:
                cut()
                lo = start
            hi = end
            sizes.append(end - start)
            continue
        if hi > lo:
            cut()
            lo = hi
        row = batch._rows.get(i)
        if row is not None:
            sizes.append(1)
            arrow.append(row)
            continue
        table = batch._tables[i]
        sizes.append(table.num_rows)
        if table.num_rows:
            arrow.append(table)
    cut()
    return pieces, sizes


def _v2_tables(batch: Batch, items: list[pa.Table | int]) -> list[pa.Table]:
    """Consecutive v2 messages' tables, those read together as slices of ``_stacked``."""
    out: list[pa.Table] = []
    lo = hi = -1  # rows of _stacked not yet cut

    def cut() -> None:
        if hi > lo and batch._stacked is not None:
            out.append(batch._stacked.slice(lo, hi - lo))

    for item in items:
        if isinstance(item, int) and item == hi:
            hi += 1
            continue
        cut()
        lo = hi = -1
        if isinstance(item, int):
            lo, hi = item, item + 1
        else:
            out.append(item)
    cut()
    return out


def _json_runs(
    batch: Batch, wires: list[bytes | None | Exception], topic: str, arrow_json: bool
) -> list[int]:
    """The messages that are not v2: those for Arrow's JSON reader (returned), the others
    decoded (``batch._raws``) or dead (``batch.dead``) at once."""
    k, values = batch.kind, batch.values
    jsons = [i for i, wire in enumerate(wires) if wire is None]
    every = arrow_json and all_plain([values[i] for i in jsons])
    if every and len(jsons) == len(wires):
        return jsons
    runs: list[int] = []
    for i, wire in enumerate(wires):
        if wire == ARROW_V2:
            continue
        try:
            if isinstance(wire, BaseException):
                raise wire
            if wire is not None:
                text = show(wire.decode("utf-8", "replace"))
                raise RecordError(
                    f"unknown wire format {text} (header {WIRE_HEADER})", "bad_envelope"
                )
            if every or (arrow_json and plain(values[i])):
                runs.append(i)
            else:
                batch._raws[i] = decode_json(k, values[i], topic)
        except Exception as exc:  # the whole message is one dead letter, whatever raised
            batch.dead[i] = _as_error(exc)
    return runs


def _wires(messages: Sequence[Any]) -> list[bytes | None | Exception]:
    """Each message's ``_wire``: at once where none has headers or every one v2's."""
    try:
        headers = [m.headers for m in messages]
        if not any(headers):
            return [None] * len(headers)
        if headers.count(ARROW_V2_HEADERS) == len(headers):
            return [ARROW_V2] * len(headers)
    except Exception:  # headers of another shape: message by message
        pass
    return [_wire(msg) for msg in messages]


def _wire(msg: Any) -> bytes | None | Exception:
    """The message's ``gpuledger-wire`` header (None: JSON), or what raised reading it."""
    try:
        return wire_of(getattr(msg, "headers", None))
    except Exception as exc:
        return exc


def _check_tables(batch: Batch) -> None:
    """Check the data of the v2 tables at once; when that fails, each alone, and a table that
    fails is its message's dead letter."""
    if not batch._tables:
        return
    try:
        check_data(pa.concat_tables(batch._tables.values()))
        return
    except RecordError:
        pass
    for i, table in list(batch._tables.items()):
        try:
            check_data(table)
        except RecordError as err:
            batch.dead[i] = err
            del batch._tables[i]


def _trusted(k: Kind, columns: dict[str, pa.Array]) -> bool:
    """Whether the column-wise checks see what the per-record path would: a null inside a list
    of texts is one they do not look for."""
    return all(
        pc.list_flatten(columns[f.name]).null_count == 0
        for f in k.fields
        if f.type is FieldType.STRING_LIST
    )


def parse_json(k: Kind, values: list[bytes]) -> tuple[pa.Table, np.ndarray] | None:
    """The records of JSON envelopes (plain, one per value) as one table of the columns, and
    each envelope's record count; None when Arrow's reader cannot be trusted with them."""
    data = b"\n".join(values)
    if int_minus_zero(data):
        return None
    alone = _one_record_each(k, values, data)
    if alone is not None:
        return alone
    table = _read_json(data, max(map(len, values)), _envelope_options(k))
    if table is None or table.num_rows != len(values):  # e.g. two JSON values on one line
        return None
    v, kinds, lists = (table.column(c).combine_chunks() for c in ("v", "kind", "records"))
    if v.null_count or kinds.null_count or lists.null_count:
        return None
    if not (
        pc.all(pc.equal(v, CONTRACT_VERSION)).as_py() and pc.all(pc.equal(kinds, k.name)).as_py()
    ):
        return None
    records = lists.flatten()
    if records.null_count:  # a record that is null: not an object
        return None
    columns = records.flatten()
    out = pa.Table.from_arrays(columns, schema=build_schema(k))
    return out, pc.list_value_length(lists).to_numpy(zero_copy_only=False)


def _one_record_each(
    k: Kind, values: list[bytes], joined: bytes
) -> tuple[pa.Table, np.ndarray] | None:
    """``parse_json`` of envelopes that are each exactly ``{"v":1,"kind":<k>,"records":[{..}]}``
    as ``wire.encode`` writes them: their record objects read alone, one per line (less to
    parse than the envelopes, the same columns); None when any is not that."""
    head = _one_record_head(k)
    if b"},{" in joined:  # records after records (or such text): the envelopes are read
        return None
    if not all(v.startswith(head) and v.endswith(b"}]}") for v in values):
        return None
    start = len(head) - 1
    data = b"\n".join([v[start:-2] for v in values])
    table = _read_json(data, max(map(len, values)), _record_options(k))
    if table is None or table.num_rows != len(values):  # e.g. two records, not one
        return None
    return table, np.ones(len(values), dtype=np.int64)


@cache
def _one_record_head(k: Kind) -> bytes:
    return f'{{"v":{CONTRACT_VERSION},"kind":"{k.name}","records":[{{'.encode()


@cache
def _record_options(k: Kind) -> pj.ParseOptions:
    return pj.ParseOptions(explicit_schema=build_schema(k), unexpected_field_behavior="error")


def _read_json(data: bytes, longest: int, options: pj.ParseOptions) -> pa.Table | None:
    """Arrow's JSON reader over ``data`` (lines of at most ``longest`` bytes); None when it
    fails (not JSON, or not the columns' types)."""
    block = max(_MIN_BLOCK, 2 * longest + 2)
    try:
        return pj.read_json(
            io.BytesIO(data),
            # one block: parsed on this thread (a pool's hand-off costs more than it saves)
            read_options=pj.ReadOptions(block_size=block, use_threads=len(data) > block),
            parse_options=options,
        )
    except Exception:  # message by message
        return None


def decode_json(k: Kind, value: Any, topic: str) -> list[Any]:
    """One JSON message's records (``wire.decode``), checked to be of the topic's kind."""
    got, raws = decode(value)
    if got is not k:
        raise RecordError(f"{got.name} records on topic {topic}", "wrong_topic")
    return raws


def _as_error(exc: BaseException) -> RecordError:
    return exc if isinstance(exc, RecordError) else RecordError(repr(exc), "unexpected")
