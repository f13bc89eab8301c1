"""Decoding a run of messages at once (``pipeline.wire_batch``, ``ingest_buffer.take``) against
decoding and validating each message alone: the same rows land (to the bit) and the same dead
letters come out (offset, index, class, reason, raw), for JSON v1 and Arrow v2 messages,
good, hostile and mixed; and the column-wise path is really the one taken where it can be."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from pipeline.bounds import show
from pipeline.columnar import land, to_records
from pipeline.dedup import dedup
from pipeline.ingest_buffer import Letter, PartitionBuffer, take
from pipeline.records import ALLOCATION, GPU_SAMPLE, KINDS, OCCUPANCY, Kind, RecordError
from pipeline.validate import validate_batch
from pipeline.wire import decode, encode, encode_record
from pipeline.wire_arrow import (
    ARROW_V2,
    ARROW_V2_HEADERS,
    WIRE_HEADER,
    decode_arrow,
    encode_arrow,
    wire_of,
)
from pipeline.wire_batch import decode_batch
from pipeline.write import to_table
from tests.test_columnar import batch, exact, fixed_window, good_record  # noqa: F401 (fixture)
from tests.test_poison import T0, record


@dataclass
class Message:
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None


def envelope(k: Kind, raws: list[Any]) -> bytes:
    """A v1 envelope of any raws (``wire.encode`` takes only JSON-able records)."""
    body = ",".join(encode_record(r).decode() for r in raws)
    return f'{{"v":1,"kind":"{k.name}","records":[{body}]}}'.encode()


def alone(k: Kind, messages: list[Message], topic: str) -> tuple[list[Letter], pa.Table]:
    """What validating each message alone gives: its letters, and the rows landed."""
    letters: list[Letter] = []
    good: list[dict[str, Any]] = []
    for m in messages:
        try:
            wire = wire_of(m.headers)
            if wire == ARROW_V2:
                raws: list[Any] = decode_arrow(k, m.value, topic).to_pylist()
            elif wire is not None:
                text = show(wire.decode())
                raise RecordError(
                    f"unknown wire format {text} (header {WIRE_HEADER})", "bad_envelope"
                )
            else:
                got, raws = decode(m.value)
                if got is not k:
                    raise RecordError(f"{got.name} records on topic {topic}", "wrong_topic")
        except RecordError as err:
            letters.append(
                Letter(m.offset, m.value or b"", err.reason, err.error_class, None, None)
            )
            continue
        ok, bad = validate_batch(k, raws)
        good += ok
        letters += [
            Letter(m.offset, encode_record(r.raw), r.error.reason, r.error.error_class, k, r.index)
            for r in bad
        ]
    result = dedup(k, good)
    rows, _ = to_table(k, result.records)
    return letters, rows


def together(k: Kind, messages: list[Message], topic: str) -> tuple[list[Letter], pa.Table]:
    buf = PartitionBuffer(k, first=messages[0].offset)
    letters = take(buf, messages, topic)
    rows, _, _, refused = land(k, buf.parts)
    assert not refused
    assert buf.rejected == len(letters)
    return letters, rows


def assert_same(k: Kind, messages: list[Message], topic: str | None = None) -> None:
    topic = topic or k.topic
    want_letters, want_rows = alone(k, messages, topic)
    got_letters, got_rows = together(k, messages, topic)
    assert got_letters == want_letters
    assert got_rows.equals(want_rows)
    assert exact(to_records(k, got_rows)) == exact(to_records(k, want_rows))  # -0.0 is not 0.0


def good_messages(k: Kind, n: int, per: int, rng: random.Random) -> list[Message]:
    return [Message(i, envelope(k, [good_record(k, rng) for _ in range(per)])) for i in range(n)]


@pytest.mark.parametrize("k", list(KINDS.values()), ids=lambda k: k.name)
@pytest.mark.parametrize("seed", range(4))
def test_a_run_of_hostile_and_good_messages_decodes_as_each_alone(k: Kind, seed: int) -> None:
    rng = random.Random(seed)
    messages = []
    for offset in range(40):
        raws = batch(k, rng, rng.choice([1, 3, 64]), hostile=rng.choice([0.0, 0.05, 0.3]))
        value = rng.choice([envelope(k, raws)] * 8 + [b"\x00junk", None, encode(OCCUPANCY, [])])
        messages.append(Message(offset, value))
    assert_same(k, messages)


@pytest.mark.parametrize("k", list(KINDS.values()), ids=lambda k: k.name)
def test_good_json_runs_take_the_column_path_and_land_the_same(k: Kind) -> None:
    rng = random.Random(7)
    messages = good_messages(k, 30, 17, rng)
    assert decode_batch(k, messages, k.topic).columns is not None
    assert_same(k, messages)


def test_one_bad_record_among_good_ones_stays_on_the_column_path() -> None:
    k = GPU_SAMPLE
    records = [dict(record(k), ts=T0 + i * 60_000) for i in range(64 * 20)]
    records[64 * 7 + 5]["util"] = 1.7  # out of range: the JSON reader takes it, the checks not
    messages = [Message(100 + i, encode(k, records[64 * i : 64 * (i + 1)])) for i in range(20)]
    assert decode_batch(k, messages, k.topic).columns is not None
    letters, rows = together(k, messages, k.topic)
    assert [(x.offset, x.index, x.error_class) for x in letters] == [(107, 5, "out_of_range")]
    assert b'"util":1.7' in letters[0].raw and "util" in letters[0].reason
    assert rows.num_rows == 64 * 20 - 1
    assert_same(k, messages)


def _rest(without: str) -> str:
    """A good gpu_sample's fields but one, as JSON object members."""
    good = dict(record(GPU_SAMPLE), ts=T0)
    del good[without]
    return encode_record(good).decode()[1:-1]


_ENV = '{"v":1,"kind":"gpu_sample","records":%s}'


@pytest.mark.parametrize(
    "value",
    [
        _ENV % f'[{{{_rest("util")},"util":-0}}]',  # -0: 0 for json.loads, -0.0 for Arrow
        _ENV % f'[{{{_rest("temp_c")},"temp_c": -0}}]',
        _ENV % f'[{{{_rest("util")},"util":-0.0}}]',
        _ENV % f'[{{{_rest("util")},"util":0.5,"util":0.25}}]',  # a repeated key
        _ENV % f'[{{{_rest("util")},"util":true}}]',
        _ENV % f'[{{{_rest("util")},"util":NaN}}]',
        _ENV % f'[{{{_rest("temp_c")},"temp_c":Infinity}}]',
        _ENV % f'[{{{_rest("source")},"source":"\\ud800"}}]',
        _ENV % f'[{{{_rest("pod")},"pod":"\u00e9"}}]',
        _ENV % f"[{{{_rest('pod')}}}]",  # a field left out
        _ENV % "[null]",
        _ENV % "null",
        _ENV % "[]" + " " + _ENV % "[]",
        '{"v":1,"kind":"gpu_sample","records":[],"extra":1}',
        '{"v":2,"kind":"gpu_sample","records":[]}',
        '{"v":1,"kind":"occupancy","records":[]}',
        '{"v":1,\n"kind":"gpu_sample","records":[]}',
        "",
    ],
)
def test_what_the_json_reader_may_read_otherwise_is_decoded_as_alone(value: str) -> None:
    k = GPU_SAMPLE
    messages = good_messages(k, 5, 3, random.Random(1))
    messages.insert(2, Message(2, value.encode()))
    for i, m in enumerate(messages):
        m.offset = i
    assert_same(k, messages)


def test_arrow_v2_round_trip_equals_the_json_records() -> None:
    k = GPU_SAMPLE
    records = [dict(record(k), ts=T0 + i * 60_000, pod=None if i % 2 else "p") for i in range(9)]
    table = decode_arrow(k, encode_arrow(k, records), k.topic)
    assert table.to_pylist() == decode(encode(k, records))[1]


def v2(k: Kind, records: list[dict[str, Any]], offset: int) -> Message:
    return Message(offset, encode_arrow(k, records), ARROW_V2_HEADERS)


def test_v2_and_v1_messages_in_one_run_land_as_each_alone() -> None:
    k = GPU_SAMPLE
    rng = random.Random(5)
    messages: list[Message] = []
    for i in range(24):
        records = [dict(record(k), ts=T0 + (i * 8 + j) * 60_000) for j in range(8)]
        if i % 5 == 0:
            records[3]["util"] = 2.0  # a reject inside a v2 message
        messages.append(v2(k, records, i) if i % 2 else Message(i, encode(k, records)))
    messages.append(Message(24, b"not arrow", ARROW_V2_HEADERS))
    messages.append(Message(25, encode(k, [good_record(k, rng)]), [(WIRE_HEADER, b"csv")]))
    assert decode_batch(k, messages, k.topic).columns is not None
    letters, _ = together(k, messages, k.topic)
    classes = [(x.offset, x.index, x.error_class) for x in letters]
    assert (24, None, "bad_envelope") in classes and (25, None, "bad_envelope") in classes
    assert (5, 3, "out_of_range") in classes
    assert_same(k, messages)


def test_a_v2_message_of_another_schema_or_kind_is_one_dead_letter() -> None:
    k = GPU_SAMPLE
    good = dict(record(k), ts=T0)
    wrong_types = pa.table({f.name: pa.array([None], pa.string()) for f in k.fields})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, wrong_types.schema) as w:
        w.write_table(wrong_types)
    other = dict(record(OCCUPANCY), ts=T0)
    messages = [
        v2(k, [good], 0),
        Message(1, sink.getvalue().to_pybytes(), ARROW_V2_HEADERS),
        Message(2, encode_arrow(OCCUPANCY, [other]), ARROW_V2_HEADERS),
        Message(3, None, ARROW_V2_HEADERS),
        Message(4, encode_arrow(k, [good])[:-20], ARROW_V2_HEADERS),
        v2(k, [dict(good, ts=T0 + 1)], 5),
    ]
    letters, rows = together(k, messages, k.topic)
    assert [(x.offset, x.error_class) for x in letters] == [
        (1, "bad_schema"),
        (2, "wrong_topic"),
        (3, "bad_envelope"),
        (4, "bad_envelope"),
    ]
    assert "schema" in letters[0].reason and "gpu_sample" in letters[0].reason
    assert letters[0].raw == messages[1].value
    assert rows.num_rows == 2
    assert_same(k, messages)


def test_v2_text_that_is_not_utf8_is_a_dead_letter_not_a_row() -> None:
    k = GPU_SAMPLE
    good = dict(record(k), ts=T0)
    value = encode_arrow(k, [dict(good, source="SOURCEX")])
    broken = value.replace(b"SOURCEX", b"SOURC\xff\xfe")
    letters, rows = together(k, [Message(0, broken, ARROW_V2_HEADERS)], k.topic)
    assert [(x.error_class, x.index) for x in letters] == [("bad_envelope", None)]
    assert "invalid" in letters[0].reason and rows.num_rows == 0


def test_the_publisher_sends_v2_with_its_header_and_json_when_arrow_cannot_hold_it() -> None:
    from collectors.publish import encode_message

    k = GPU_SAMPLE
    good = [dict(record(k), ts=T0)]
    value, headers = encode_message(k, good, "arrow")
    assert headers == ARROW_V2_HEADERS
    assert decode_arrow(k, value, k.topic).to_pylist() == decode(encode(k, good))[1]
    odd = [dict(record(k), ts=T0, util="busy")]
    value, headers = encode_message(k, odd, "arrow")
    assert headers is None and decode(value)[1] == odd
    assert encode_message(k, good) == (encode(k, good), None)


@pytest.mark.parametrize("arrow", [False, True], ids=["json", "arrow"])
def test_a_null_inside_a_list_of_texts_is_judged_record_by_record(arrow: bool) -> None:
    k = ALLOCATION
    records = [dict(record(k), allocation_id=f"a{i}", nodes=["n1", "n2"]) for i in range(12)]
    records[4]["nodes"] = ["n1", None]
    messages = [
        v2(k, records[i : i + 3], i) if arrow else Message(i, encode(k, records[i : i + 3]))
        for i in range(0, 12, 3)
    ]
    letters, rows = together(k, messages, k.topic)
    assert [(x.offset, x.index) for x in letters] == [(3, 1)]
    assert rows.num_rows == 11
    assert_same(k, messages)


def test_v2_messages_whose_schemas_differ_only_in_nullability_and_metadata_land_together() -> None:
    k = GPU_SAMPLE
    loose = pa.schema([pa.field(f.name, f.type) for f in k.arrow_schema()])  # all nullable
    values = []
    for i, schema in enumerate([k.arrow_schema(), loose, loose.with_metadata({"x": "y"})]):
        batch_ = pa.RecordBatch.from_pylist([dict(record(k), ts=T0 + i)], schema=schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as w:
            w.write_batch(batch_)
        values.append(sink.getvalue().to_pybytes())
    messages = [Message(i, v, ARROW_V2_HEADERS) for i, v in enumerate(values)]
    assert decode_batch(k, messages, k.topic).columns is not None
    letters, rows = together(k, messages, k.topic)
    assert letters == [] and rows.num_rows == 3
    assert_same(k, messages)


def _stream(schema: pa.Schema, *batches: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        for b in batches:
            w.write_batch(b)
    return sink.getvalue().to_pybytes()


def test_v2_streams_sharing_a_schema_are_read_by_their_batch_as_each_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run of v2 streams of one schema has each later stream's batch read against the first
    one's schema; what is not just one batch and the end marker is read alone, and every
    outcome is what reading each message alone gives."""
    from pipeline import wire_arrow

    calls: list[bytes | None] = []
    read_arrow = wire_arrow.read_arrow

    def counted(k: Kind, value: bytes | None, topic: str) -> pa.Table:
        calls.append(value)
        return read_arrow(k, value, topic)

    monkeypatch.setattr(wire_arrow, "read_arrow", counted)
    k = GPU_SAMPLE
    schema = k.arrow_schema()
    rows = [[dict(record(k), ts=T0 + (i * 4 + j) * 60_000) for j in range(4)] for i in range(12)]
    one = [pa.RecordBatch.from_pylist(r, schema=schema) for r in rows]
    good = [_stream(schema, b) for b in one]
    odd = {
        3: _stream(schema, one[3], one[3]),  # two batches
        4: _stream(schema),  # none
        5: good[5] + b"trailing",
        6: good[6] + good[6][-8:],  # a second end marker
        7: good[7][:-40] + good[7][-8:],  # a body cut short
        8: good[8][: len(good[8]) // 2] + b"\xff" * 8 + good[8][len(good[8]) // 2 + 8 :],
    }
    rows[9][1]["util"] = 2.0  # a reject inside a batch read alone or not
    good[9] = _stream(schema, pa.RecordBatch.from_pylist(rows[9], schema=schema))
    values = [odd.get(i, v) for i, v in enumerate(good)]
    messages = [Message(i, v, ARROW_V2_HEADERS) for i, v in enumerate(values)]
    assert_same(k, messages)
    calls.clear()
    letters, landed = together(k, messages, k.topic)
    assert calls and len(calls) < len(messages) - 4  # the plain ones by their batch only
    assert good[10] not in calls and good[11] not in calls
    assert (9, 1, "out_of_range") in [(x.offset, x.index, x.error_class) for x in letters]
    assert landed.num_rows > 30
