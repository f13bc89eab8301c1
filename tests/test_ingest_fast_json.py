"""JSON v1 envelopes of one record each, read by their record objects alone
(``wire_batch._one_record_each``): the same rows land (to the bit) and the same dead letters
come out as when each message is decoded alone, whatever the envelope's text holds, and that
read is really the one taken for plain ones."""

from __future__ import annotations

import random

import pytest

from pipeline import wire_batch
from pipeline.records import GPU_SAMPLE, KINDS, Kind
from pipeline.wire import encode, encode_record
from tests.test_columnar import (  # noqa: F401 (fixture)
    batch,
    fixed_window,
    good_record,
    hostile_record,
)
from tests.test_poison import T0, record
from tests.test_wire_batch import Message, assert_same, envelope


def by_records(k: Kind, messages: list[Message]) -> bool:
    """Whether the run's envelopes are read by their records alone."""
    values = [m.value or b"" for m in messages]
    return wire_batch._one_record_each(k, values, b"\n".join(values)) is not None


def one_each(k: Kind, n: int, rng: random.Random) -> list[Message]:
    return [Message(i, envelope(k, [good_record(k, rng)])) for i in range(n)]


@pytest.mark.parametrize("k", list(KINDS.values()), ids=lambda k: k.name)
def test_one_record_envelopes_are_read_by_their_records_and_land_as_each_alone(k: Kind) -> None:
    messages = one_each(k, 60, random.Random(3))
    values = [m.value or b"" for m in messages]
    if wire_batch.parse_json(k, values) is not None:  # else message by message (e.g. NaN)
        assert by_records(k, messages)
    assert_same(k, messages)


def test_plain_one_record_envelopes_take_the_column_path() -> None:
    k = GPU_SAMPLE
    messages = [Message(i, encode(k, [dict(record(k), ts=T0 + i * 60_000)])) for i in range(50)]
    assert by_records(k, messages)
    assert wire_batch.decode_batch(k, messages, k.topic).columns is not None
    assert_same(k, messages)


@pytest.mark.parametrize("k", list(KINDS.values()), ids=lambda k: k.name)
@pytest.mark.parametrize("seed", range(3))
def test_hostile_one_record_envelopes_decode_as_each_alone(k: Kind, seed: int) -> None:
    rng = random.Random(seed)
    messages = [Message(i, envelope(k, batch(k, rng, 1, hostile=0.03))) for i in range(40)]
    assert_same(k, messages)


@pytest.mark.parametrize("k", list(KINDS.values()), ids=lambda k: k.name)
def test_one_hostile_record_among_good_ones_read_by_records_lands_as_each_alone(k: Kind) -> None:
    """A hostile record the record-wise read takes (about half of them): judged by the
    column checks, it is the same reject as when its message is decoded alone."""
    taken = 0
    for seed in range(60):
        rng = random.Random(seed)
        raws = [good_record(k, rng) for _ in range(5)]
        raws.insert(rng.randrange(6), hostile_record(k, rng))
        messages = [Message(i, envelope(k, [r])) for i, r in enumerate(raws)]
        taken += by_records(k, messages)
        assert_same(k, messages)
    assert taken >= 10


def _good() -> str:
    return encode_record(dict(record(GPU_SAMPLE), ts=T0)).decode()


_HEAD = '{"v":1,"kind":"gpu_sample","records":['


@pytest.mark.parametrize(
    "value",
    [
        _HEAD + _good()[:-1] + ',"extra":1}]}',  # a field outside the contract
        _HEAD + _good()[:-1] + ',"util":0.25}]}',  # a repeated key
        _HEAD + "null]}",
        _HEAD + "{}]}",
        _HEAD + _good() + " " + _good() + "]}",  # two records, no comma
        _HEAD + _good() + _good() + "]}",
        _HEAD + _good() + "," + _good() + "]}",
        _HEAD + _good() + '],"extra":[' + _good() + "]}",
        _HEAD + _good() + " ]}",
        _HEAD + _good()[:-1] + ',"pod":{"a":1}}]}',
        _HEAD + _good().replace('"util":', '"util":-0,"x":') + "]}",
        _HEAD + _good().replace('"pod":null', '"pod":"\\u00e9"') + "]}",
        '{"v":1,"kind":"occupancy","records":[' + _good() + "]}",
        '{"v":2,"kind":"gpu_sample","records":[' + _good() + "]}",
    ],
)
def test_an_odd_one_record_envelope_is_decoded_as_alone(value: str) -> None:
    k = GPU_SAMPLE
    messages = [Message(i, encode(k, [dict(record(k), ts=T0 + i)])) for i in range(6)]
    messages.insert(3, Message(3, value.encode()))
    for i, m in enumerate(messages):
        m.offset = i
    assert_same(k, messages)
