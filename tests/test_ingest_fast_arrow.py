"""Arrow v2 messages of one record each, read together (``wire_arrow._stack``): the same rows
land (to the bit) and the same dead letters come out as when each message is decoded alone,
whatever a message's bytes say (validity, offsets, text that is not UTF-8), and the stacked
path is really the one taken for plain ones."""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa
import pytest

from pipeline.records import ALLOCATION, GPU_SAMPLE, KINDS, Kind
from pipeline.wire import encode
from pipeline.wire_arrow import ARROW_V2_HEADERS, encode_arrow
from pipeline.wire_batch import decode_batch
from tests.test_columnar import fixed_window, good_record  # noqa: F401 (fixture)
from tests.test_poison import T0, record
from tests.test_wire_batch import Message, assert_same, together

K = GPU_SAMPLE


def one(k: Kind, r: dict[str, Any], offset: int) -> Message:
    """A message of one record: v2 where Arrow holds it, else JSON (as the publisher does)."""
    try:
        return Message(offset, encode_arrow(k, [r]), ARROW_V2_HEADERS)
    except Exception:
        return Message(offset, encode(k, [r]))


def plain(i: int) -> dict[str, Any]:
    return dict(
        record(K), ts=T0 + i * 30_000, node=f"n{i % 13}", gpu_uuid=f"GPU-{i % 300}", pod=None
    )


def where(value: bytes, column: str, buffer: int) -> int:
    """Where a buffer of a one-record v2 value's column lies in ``value``."""
    reader = pa.ipc.open_stream(pa.py_buffer(value))
    found = reader.read_next_batch().column(column).buffers()[buffer]
    assert found is not None
    return int(found.address - pa.py_buffer(value).address)


def patched(value: bytes, at: int, new: bytes) -> bytes:
    return value[:at] + new + value[at + len(new) :]


def test_plain_one_record_messages_are_read_together_and_land_as_each_alone() -> None:
    messages = [one(K, plain(i), i) for i in range(300)]
    batch = decode_batch(K, messages, K.topic)
    assert batch._stacked is not None and len(batch._rows) >= 290
    assert batch.columns is not None
    assert_same(K, messages)


@pytest.mark.parametrize("k", list(KINDS.values()), ids=lambda k: k.name)
@pytest.mark.parametrize("seed", range(3))
def test_varied_one_record_messages_land_as_each_alone(k: Kind, seed: int) -> None:
    rng = random.Random(seed)
    messages = [one(k, good_record(k, rng), i) for i in range(120)]
    if k is not ALLOCATION:  # lists of texts: read message by message
        assert decode_batch(k, messages, k.topic)._rows
    assert_same(k, messages)


def test_a_reject_among_stacked_records_is_named_by_its_message() -> None:
    records = [plain(i) for i in range(64)]
    records[17]["util"] = 2.0
    records[40]["mem_used_bytes"] = records[40]["mem_total_bytes"] + 1
    messages = [one(K, r, 500 + i) for i, r in enumerate(records)]
    letters, rows = together(K, messages, K.topic)
    assert [(x.offset, x.index, x.error_class) for x in letters] == [
        (517, 0, "out_of_range"),
        (540, 0, "out_of_range"),
    ]
    assert rows.num_rows == 62
    assert_same(K, messages)


def _hostile(value: bytes, how: str) -> bytes:
    """``value`` (a plain one-record v2 message) with its body bytes made to say otherwise."""
    if how == "offset beyond the text":
        return patched(value, where(value, "source", 1) + 4, (99).to_bytes(4, "little"))
    if how == "offset before the text":
        return patched(value, where(value, "source", 1), (1).to_bytes(4, "little"))
    if how == "null marked valid":
        return patched(value, where(value, "pod", 0), b"\x01")
    if how == "null bitmap's other bits":
        return patched(value, where(value, "pod", 0), b"\xfe")
    if how == "text not UTF-8":
        return patched(value, where(value, "source", 2), b"\xff")
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "offset beyond the text",
        "offset before the text",
        "null marked valid",
        "null bitmap's other bits",
        "text not UTF-8",
    ],
)
def test_a_message_whose_bytes_say_otherwise_is_decoded_as_alone(how: str) -> None:
    messages = [one(K, plain(0), i) for i in range(40)]  # one metadata: one group
    for i in (3, 30):
        messages[i].value = _hostile(messages[i].value or b"", how)
    assert_same(K, messages)
    letters, rows = together(K, messages, K.topic)
    if how in ("null bitmap's other bits", "offset before the text"):  # valid Arrow still
        assert letters == [] and rows.num_rows == 1  # one key 40 times: the last write kept
    else:
        assert [(x.offset, x.error_class) for x in letters] == [
            (3, "bad_envelope"),
            (30, "bad_envelope"),
        ]


def test_one_record_v2_messages_mixed_with_json_and_longer_v2_land_as_each_alone() -> None:
    messages: list[Message] = []
    for i in range(90):
        if i % 7 == 3:
            messages.append(Message(i, encode(K, [plain(i)])))
        elif i % 11 == 5:
            records = [plain(1000 + i * 3 + j) for j in range(3)]
            messages.append(Message(i, encode_arrow(K, records), ARROW_V2_HEADERS))
        elif i % 13 == 6:
            messages.append(Message(i, b"junk", ARROW_V2_HEADERS))
        else:
            messages.append(one(K, plain(i), i))
    batch = decode_batch(K, messages, K.topic)
    assert batch._rows and batch._tables and batch.columns is not None
    assert_same(K, messages)
