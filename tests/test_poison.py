"""Poison records: hostile input is rejected with a ``RecordError`` class, never an exception
that takes a batch (or the writer, later) down, and whatever the contract accepts fits Arrow."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.bounds import (
    DEFAULT_TIME_WINDOW,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_REASON_CHARS,
    PLAUSIBLE_FROM_MS,
    TimeWindow,
    set_time_window,
    time_window,
    using_time_window,
)
from pipeline.dead_letter import DLQ_MAX_RAW_BYTES, DeadLetter, write_quarantine
from pipeline.records import (
    ALLOCATION,
    GPU_SAMPLE,
    INVENTORY,
    KINDS,
    OCCUPANCY,
    Field,
    FieldType,
    Kind,
    RecordError,
    coerce,
    coerce_fields,
    lake_date,
)
from pipeline.validate import validate_batch
from pipeline.wire import decode, encode, encode_record
from pipeline.write import write_records
from warehouse.catalog import connect

T0 = 1_588_262_400_000  # 2020-04-30T16:00:00Z
DAY = 86_400_000
YEAR_10000_MS = 253_402_300_800_000

BASE: dict[str, dict[str, Any]] = {
    "gpu_sample": {
        "ts": T0,
        "interval_s": 60.0,
        "datacentre": "dc1",
        "cluster": "c1",
        "node": "n1",
        "gpu_uuid": "GPU-0",
        "gpu_index": 0,
        "gpu_model": "A100",
        "util": 0.5,
        "mem_used_bytes": 1 << 30,
        "mem_total_bytes": 80 << 30,
        "power_w": 250.0,
        "temp_c": 55.0,
        "sm_active": None,
        "pod": None,
        "namespace": None,
        "job_id": None,
        "source": "test",
    },
    "occupancy": {
        "ts": T0,
        "interval_s": 60.0,
        "datacentre": "dc1",
        "cluster": "c1",
        "scope": "vc1",
        "gpus_total": 8.0,
        "gpus_allocated": 4.0,
        "gpus_down": None,
        "source": "test",
    },
    "allocation": {
        "allocation_id": "a1",
        "datacentre": "dc1",
        "cluster": "c1",
        "tenant_id": "t1",
        "event_ts": T0,
        "job_id": "1",
        "gpu_count": 1.0,
        "gpu_uuids": ["GPU-0"],
        "nodes": ["n1"],
        "start": T0 - 60_000,
        "end": None,
        "state": "RUNNING",
        "source": "test",
    },
    "inventory": {
        "datacentre": "dc1",
        "cluster": "c1",
        "node": "n1",
        "valid_from": T0,
        "valid_to": None,
        "gpu_model": "A100",
        "gpu_count": 8,
        "source": "test",
    },
}


def record(k: Kind, **change: Any) -> dict[str, Any]:
    return dict(BASE[k.name], **change)


def deep_list(depth: int) -> list[Any]:
    """``[[[...]]]`` ``depth`` levels deep, built without recursion."""
    inner: list[Any] = []
    for _ in range(depth):
        inner = [inner]
    return inner


def assert_fits_the_lake(k: Kind, records: list[dict[str, Any]]) -> None:
    """What the writer does with accepted records: Arrow table, back to Python, date partition."""
    table = pa.Table.from_pylist(records, schema=k.arrow_schema())
    assert table.num_rows == len(records)
    table.to_pylist()  # every timestamp converts back to a datetime
    for r in records:
        lake_date(k, r)


def assert_header_safe(err: RecordError) -> None:
    err.reason.encode("utf-8")  # a Kafka header value, a quarantine line
    assert len(err.reason) <= MAX_REASON_CHARS + 40
    assert err.error_class


@pytest.fixture(autouse=True)
def default_window() -> Iterator[None]:
    previous = set_time_window(None)
    yield
    set_time_window(previous)


HOSTILE: list[tuple[Kind, str, Any, str]] = [
    # timestamps: beyond the plausibility window, unrepresentable, unparseable
    (GPU_SAMPLE, "ts", YEAR_10000_MS, "out_of_range"),
    (GPU_SAMPLE, "ts", 1e300, "out_of_range"),
    (GPU_SAMPLE, "ts", -1e300, "out_of_range"),
    (GPU_SAMPLE, "ts", 2**70, "out_of_range"),
    (GPU_SAMPLE, "ts", -(2**70), "out_of_range"),
    (GPU_SAMPLE, "ts", "9999-12-31T23:59:59+00:00", "out_of_range"),
    (GPU_SAMPLE, "ts", "0001-01-01T00:00:00+14:00", "out_of_range"),
    (GPU_SAMPLE, "ts", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "out_of_range"),
    (GPU_SAMPLE, "ts", "10000-01-01T00:00:00+00:00", "bad_timestamp"),
    (GPU_SAMPLE, "ts", "1" * 30, "out_of_range"),
    (GPU_SAMPLE, "ts", "1" * 5000, "out_of_range"),  # int() would raise ValueError
    (GPU_SAMPLE, "ts", "--12", "bad_timestamp"),
    (GPU_SAMPLE, "ts", "\u00b2", "bad_timestamp"),  # str.isdigit() but not int()-able
    (GPU_SAMPLE, "ts", 0, "out_of_range"),
    (GPU_SAMPLE, "ts", PLAUSIBLE_FROM_MS - 1, "out_of_range"),
    (GPU_SAMPLE, "ts", "1999-12-31T23:59:59Z", "out_of_range"),
    (GPU_SAMPLE, "ts", int(time.time() * 1000) + 3 * DAY, "out_of_range"),
    (GPU_SAMPLE, "ts", float("nan"), "bad_timestamp"),
    (GPU_SAMPLE, "ts", deep_list(500), "bad_timestamp"),
    (OCCUPANCY, "ts", float("inf"), "bad_timestamp"),
    (ALLOCATION, "event_ts", "9999-12-31T23:59:59+00:00", "out_of_range"),
    (ALLOCATION, "start", 2**70, "out_of_range"),
    (ALLOCATION, "end", YEAR_10000_MS, "out_of_range"),
    (INVENTORY, "valid_from", 1e300, "out_of_range"),
    (INVENTORY, "valid_to", "9999-12-31T23:59:59+00:00", "out_of_range"),
    # integers beyond int64
    (GPU_SAMPLE, "gpu_index", 2**70, "out_of_range"),
    (GPU_SAMPLE, "gpu_index", 1e300, "out_of_range"),
    (GPU_SAMPLE, "mem_used_bytes", -(2**64), "out_of_range"),
    (GPU_SAMPLE, "mem_total_bytes", 2**63, "out_of_range"),
    (INVENTORY, "gpu_count", 10**400, "out_of_range"),
    (INVENTORY, "gpu_count", float("inf"), "bad_type"),
    # floats: too large for a double, not finite
    (GPU_SAMPLE, "power_w", 10**400, "out_of_range"),
    (GPU_SAMPLE, "temp_c", -(10**400), "out_of_range"),
    (GPU_SAMPLE, "temp_c", float("inf"), "out_of_range"),
    (GPU_SAMPLE, "interval_s", float("nan"), "out_of_range"),
    (OCCUPANCY, "gpus_total", 10**400, "out_of_range"),
    (ALLOCATION, "gpu_count", float("-inf"), "out_of_range"),
    # text: lone surrogates, NUL, too long, no decimal text
    (GPU_SAMPLE, "node", "\ud800", "bad_text"),
    (GPU_SAMPLE, "gpu_uuid", "GPU-\udfff", "bad_text"),
    (GPU_SAMPLE, "pod", "p\ud800od", "bad_text"),
    (GPU_SAMPLE, "datacentre", "dc\x001", "bad_text"),
    (GPU_SAMPLE, "node", "x" * (MAX_ID_CHARS + 1), "too_long"),
    (GPU_SAMPLE, "gpu_model", "\u00e9" * (MAX_ID_CHARS + 1), "too_long"),
    (GPU_SAMPLE, "source", "s" * 10_000_000, "too_long"),
    (GPU_SAMPLE, "job_id", 10**5000, "too_long"),
    (OCCUPANCY, "scope", "\ud800", "bad_text"),
    (ALLOCATION, "tenant_id", "t" * (MAX_ID_CHARS + 1), "too_long"),
    (ALLOCATION, "state", "\x00", "bad_text"),
    (INVENTORY, "node", "\udc80abc", "bad_text"),
    # lists
    (ALLOCATION, "gpu_uuids", ["GPU-0", "\ud800"], "bad_text"),
    (ALLOCATION, "gpu_uuids", ["x" * (MAX_ID_CHARS + 1)], "too_long"),
    (ALLOCATION, "nodes", ["n"] * (MAX_LIST_ITEMS + 1), "too_long"),
    (ALLOCATION, "nodes", "n1;n\ud8002", "bad_text"),
    (ALLOCATION, "nodes", ["n1", "\x00"], "bad_text"),
    (ALLOCATION, "gpu_uuids", deep_list(500), "bad_type"),
]


@pytest.mark.parametrize(
    ("k", "name", "value", "error_class"),
    HOSTILE,
    ids=[f"{k.name}.{n}-{i}" for i, (k, n, _, _) in enumerate(HOSTILE)],
)
def test_hostile_value_is_rejected_and_its_neighbours_pass(
    k: Kind, name: str, value: Any, error_class: str
) -> None:
    before, after = record(k), record(k)
    good, bad = validate_batch(k, [before, record(k, **{name: value}), after])
    assert [r.index for r in bad] == [1]
    assert bad[0].error.error_class == error_class, bad[0].error.reason
    assert_header_safe(bad[0].error)
    assert good == [coerce(k, before), coerce(k, after)]
    assert_fits_the_lake(k, good)
    raw = encode_record(bad[0].raw)
    assert isinstance(raw, bytes)
    raw.decode("utf-8")


def test_window_reason_says_what_the_window_is_and_how_to_change_it() -> None:
    with pytest.raises(RecordError) as info:
        coerce(GPU_SAMPLE, record(GPU_SAMPLE, ts="9999-12-31T23:59:59+00:00"))
    reason = info.value.reason
    assert reason.startswith("ts 9999-12-31T23:59:59Z is outside the plausible window ")
    assert "2000-01-01T00:00:00Z .. " in reason and "set_time_window" in reason


@pytest.mark.parametrize(
    ("k", "change"),
    [
        (GPU_SAMPLE, {"ts": PLAUSIBLE_FROM_MS}),
        (GPU_SAMPLE, {"ts": int(time.time() * 1000)}),
        (GPU_SAMPLE, {"ts": "2020-05-01T00:00:00+08:00"}),
        (GPU_SAMPLE, {"ts": 1.5882624e12}),
        (GPU_SAMPLE, {"ts": datetime(2020, 5, 1, tzinfo=UTC)}),
        (GPU_SAMPLE, {"node": "x" * MAX_ID_CHARS, "gpu_uuid": "\u00e9" * MAX_ID_CHARS}),
        (GPU_SAMPLE, {"pod": "\u8282\u70b9-1", "namespace": "\U0001f600"}),
        (GPU_SAMPLE, {"util": float("nan"), "temp_c": float("nan")}),  # nullable NaN = None
        (GPU_SAMPLE, {"mem_used_bytes": 2**63 - 1, "mem_total_bytes": 2**63 - 1}),
        (GPU_SAMPLE, {"gpu_index": 7.0, "power_w": 1.7976931348623157e308, "temp_c": -(2**1000)}),
        (GPU_SAMPLE, {"job_id": 2**70}),  # an int id is text
        (OCCUPANCY, {"scope": None, "gpus_total": 10**300}),
        (ALLOCATION, {"start": None, "end": None}),
        (ALLOCATION, {"nodes": [f"n{i}" for i in range(MAX_LIST_ITEMS)], "gpu_uuids": []}),
        (ALLOCATION, {"nodes": "n1;n2;;", "gpu_uuids": None}),
        (ALLOCATION, {"end": "2020-05-01T00:00:00Z"}),
        (INVENTORY, {"valid_to": T0 + DAY}),
    ],
)
def test_edge_values_are_accepted_and_fit_the_lake(k: Kind, change: dict[str, Any]) -> None:
    good, bad = validate_batch(k, [record(k, **change)])
    assert not bad, bad[0].error.reason
    assert_fits_the_lake(k, good)


@pytest.mark.parametrize("raw", ["text", 42, None, [1, 2], deep_list(500), b"bytes"])
def test_a_record_that_is_not_an_object_is_bad_type(raw: Any) -> None:
    good, bad = validate_batch(GPU_SAMPLE, [record(GPU_SAMPLE), raw])
    assert len(good) == 1 and [r.error.error_class for r in bad] == ["bad_type"]


def test_unknown_field_names_are_shown_safely() -> None:
    good, bad = validate_batch(
        GPU_SAMPLE, [record(GPU_SAMPLE, **{"\ud800": 1, "x" * 10_000: 2}), record(GPU_SAMPLE)]
    )
    assert len(good) == 1 and bad[0].error.error_class == "unknown_field"
    assert_header_safe(bad[0].error)
    assert "\\ud800" in bad[0].error.reason


class _Exploding(dict):  # type: ignore[type-arg]
    """A mapping whose lookups fail with something that is not a RecordError."""

    def get(self, key: Any, default: Any = None) -> Any:
        raise ZeroDivisionError(f"no {key}")


def test_any_exception_rejects_one_record_as_unexpected_error() -> None:
    good, bad = validate_batch(
        GPU_SAMPLE, [record(GPU_SAMPLE), _Exploding(record(GPU_SAMPLE)), record(GPU_SAMPLE)]
    )
    assert len(good) == 2
    [reject] = bad
    assert reject.index == 1 and reject.error.error_class == "unexpected_error"
    assert "ZeroDivisionError('no ts')" in reject.error.reason
    assert_header_safe(reject.error)


def test_the_time_window_can_be_changed() -> None:
    old = 631_152_000_000  # 1990-01-01
    assert time_window() == DEFAULT_TIME_WINDOW
    with pytest.raises(RecordError):
        coerce(GPU_SAMPLE, record(GPU_SAMPLE, ts=old))
    with using_time_window(TimeWindow(lo_ms=0)):
        assert coerce(GPU_SAMPLE, record(GPU_SAMPLE, ts=old))["ts"] == old
        assert validate_batch(INVENTORY, [record(INVENTORY, valid_from=old)])[1] == []
    assert time_window() == DEFAULT_TIME_WINDOW
    previous = set_time_window(TimeWindow(T0, T0 + DAY))
    try:
        assert previous == DEFAULT_TIME_WINDOW
        with pytest.raises(RecordError) as info:
            coerce(GPU_SAMPLE, record(GPU_SAMPLE, ts=T0 + DAY + 1))
        assert info.value.error_class == "out_of_range"
        # A window never lets an unrepresentable instant through.
        set_time_window(TimeWindow(-(2**80), 2**80))
        with pytest.raises(RecordError):
            coerce(GPU_SAMPLE, record(GPU_SAMPLE, ts=YEAR_10000_MS))
    finally:
        set_time_window(previous)
    with pytest.raises(ValueError):
        TimeWindow(T0, T0 - 1)


@pytest.mark.parametrize("delta", [-1, 0, 1])
@pytest.mark.parametrize("edge", ["lo", "hi"])
def test_window_edges_agree_on_the_fast_and_the_general_path(edge: str, delta: int) -> None:
    lo, hi = T0, T0 + DAY
    ms = (lo if edge == "lo" else hi) + delta
    inside = lo <= ms <= hi
    iso = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    with using_time_window(TimeWindow(lo, hi)):
        for value in (ms, iso, float(ms)):  # exact int: fast path; the others: general path
            for k, name in [(GPU_SAMPLE, "ts"), (ALLOCATION, "end"), (INVENTORY, "valid_to")]:
                raw = record(k, **{name: value})
                if k is ALLOCATION:
                    raw["start"] = T0  # the other instants inside the window
                if inside:
                    assert coerce_fields(k, raw)[name] == ms
                else:
                    with pytest.raises(RecordError) as info:
                        coerce_fields(k, raw)
                    assert info.value.error_class == "out_of_range", (value, name)


def test_fields_outside_the_telemetry_contract_are_bounded_but_not_windowed() -> None:
    """``Field`` defaults (used by the voucher entities): future instants and long text are
    fine, unrepresentable values and unencodable text are not."""
    k = Kind(
        "entity",
        "",
        "entities",
        (Field("id", FieldType.STRING), Field("expires", FieldType.TIMESTAMP)),
        ("id",),
        ("id",),
        "expires",
    )
    far = 4_102_444_800_000  # 2100-01-01
    assert coerce_fields(k, {"id": "x" * 1000, "expires": far}) == {
        "id": "x" * 1000,
        "expires": far,
    }
    for change, cls in [
        ({"expires": YEAR_10000_MS}, "out_of_range"),
        ({"expires": 2**70}, "out_of_range"),
        ({"id": "\ud800"}, "bad_text"),
    ]:
        with pytest.raises(RecordError) as info:
            coerce_fields(k, dict({"id": "a", "expires": far}, **change))
        assert info.value.error_class == cls


# --------------------------------------------------------------------- property (seeded)

_POOL: list[Any] = [
    None,
    "",
    "x",
    "12",
    "GPU-1",
    "\u8282\u70b9",
    "\ud800",
    "\x00",
    "x" * (MAX_ID_CHARS + 1),
    "2020-05-01T00:00:00Z",
    "9999-12-31T23:59:59+00:00",
    "1" * 5000,
    "\u00b2",
    0,
    1,
    -1,
    7,
    T0,
    2**62,
    2**63,
    2**70,
    -(2**64),
    10**400,
    10**5000,
    0.0,
    0.5,
    1.5,
    1e-9,
    1.5882624e12,
    1e300,
    -1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
    [],
    ["a"],
    ["\ud800"],
    [1],
    ["n"] * (MAX_LIST_ITEMS + 1),
    {},
    {"a": 1},
    deep_list(300),
    datetime(2020, 5, 1, tzinfo=UTC),
    datetime(2020, 5, 1),
    b"bytes",
    object(),
]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_random_poison_never_escapes_validation(name: str) -> None:
    """Seeded random records (1-3 fields replaced from a pool of good and hostile values):
    validate_batch never raises, every reject is a header-safe RecordError whose raw bytes
    can be kept, and every accepted record fits the lake."""
    k = KINDS[name]
    rng = random.Random(f"poison-{name}")
    raws = []
    for _ in range(3000):
        raw = record(k)
        for f in rng.sample(k.fields, rng.randint(1, 3)):
            raw[f.name] = rng.choice(_POOL)
        raws.append(raw)
    good, bad = validate_batch(k, raws)
    assert len(good) + len(bad) == len(raws)
    assert good and bad
    for reject in bad:
        assert reject.error.error_class != "unexpected_error", reject.error.reason
        assert_header_safe(reject.error)
        assert isinstance(encode_record(reject.raw), bytes)
    assert_fits_the_lake(k, good)
    assert decode(encode(k, good))[1] == good  # accepted records travel on the wire as they are


# ----------------------------------------------------------------------------- the wire

ENVELOPE = b'{"v":1,"kind":"gpu_sample","records":['


@pytest.mark.parametrize(
    "value",
    [
        ENVELOPE + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        ENVELOPE + b"[" * 100_000,
        ENVELOPE + b'{"ts":' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
        b'{"v":1,"kind":' + b"9" * 5000 + b',"records":[]}',  # int() digit limit
        b'{"v":1,"kind":"gpu_sample","records":[' + b"9" * 5000 + b"]}",
        b"\xff\xfe",
        b'"\\ud800"',
        b"",
    ],
    ids=[
        "deep",
        "deep-unclosed",
        "deep-in-record",
        "huge-kind",
        "huge-int",
        "not-utf8",
        "str",
        "empty",
    ],
)
def test_decode_raises_only_bad_envelope(value: bytes) -> None:
    with pytest.raises(RecordError) as info:
        decode(value)
    assert info.value.error_class == "bad_envelope"
    assert_header_safe(info.value)


def test_decode_of_nesting_it_can_parse_leaves_it_to_validation() -> None:
    value = ENVELOPE + json.dumps({**BASE["gpu_sample"], "ts": deep_list(400)}).encode() + b"]}"
    try:
        k, raws = decode(value)
    except RecordError as err:  # the parser's depth limit depends on the stack it runs on
        assert err.error_class == "bad_envelope"
        return
    good, bad = validate_batch(k, raws)
    assert not good and bad[0].error.error_class == "bad_timestamp"
    assert_header_safe(bad[0].error)


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    "raw",
    [
        {"node": "\ud800"},
        deep_list(100_000),
        {"deep": deep_list(100_000)},
        {("tuple", "key"): 1},
        {"x": _Unprintable()},
        _Unprintable(),
        {"n": float("nan"), "big": 10**5000},
    ],
    ids=["surrogate", "deep", "deep-value", "tuple-key", "unprintable-value", "unprintable", "odd"],
)
def test_encode_record_never_raises(raw: Any) -> None:
    out = encode_record(raw)
    assert isinstance(out, bytes) and out
    out.decode("utf-8")


def test_encode_record_keeps_a_surrogate_as_its_json_escape() -> None:
    assert encode_record({"node": "\ud800"}) == b'{"node":"\\ud800"}'


# ------------------------------------------------------------------------- dead letters


def _letter(raw: bytes, reason: str = "why") -> DeadLetter:
    return DeadLetter(raw, reason, "too_long", "gpu_sample", "gpu.samples.v1", 3, 42, 7)


def test_fitted_truncates_a_large_raw_and_round_trips_through_headers() -> None:
    raw = b"x" * (DLQ_MAX_RAW_BYTES + 10)
    letter = _letter(raw).fitted(DLQ_MAX_RAW_BYTES)
    assert letter.raw == raw[:DLQ_MAX_RAW_BYTES]
    assert letter.truncated_from == len(raw)
    assert letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
    back = DeadLetter.from_headers(letter.raw, letter.headers())
    assert back == letter
    as_json = letter.to_json()
    assert as_json["truncated_from"] == len(raw)
    assert as_json["raw_sha256"] == letter.raw_sha256
    assert letter.fitted(10).truncated_from == len(raw)  # cutting again keeps the original
    assert letter.fitted(10).raw_sha256 == letter.raw_sha256


def test_fitted_leaves_a_small_letter_alone() -> None:
    letter = _letter(b"small")
    assert letter.fitted() is letter
    assert [k for k, _ in letter.headers()] == [
        "reason",
        "error_class",
        "kind",
        "origin_topic",
        "origin_partition",
        "origin_offset",
        "record_index",
    ]
    assert DeadLetter.from_headers(letter.raw, letter.headers()) == letter


def test_a_dead_letter_with_a_surrogate_reason_is_still_written(tmp_path: Path) -> None:
    letter = _letter(encode_record({"node": "\ud800"}), reason="bad \ud800 reason")
    dict(letter.headers())["reason"].decode("utf-8")
    path = write_quarantine(tmp_path, "load-1", [letter])
    assert path is not None
    line = json.loads(path.read_text(encoding="utf-8"))
    assert line["reason"] == "bad \\ud800 reason"


def test_a_datacentre_too_long_for_a_partition_folder_is_rejected_not_a_crash(
    tmp_path: Path,
) -> None:
    from tests.conftest import gpu_sample

    fits = gpu_sample(1_588_262_400_000, datacentre="北" * 22)  # 198 characters URL-encoded
    too_long = gpu_sample(1_588_262_400_000, datacentre="北" * 23, gpu_uuid="GPU-1")
    good, bad = validate_batch(GPU_SAMPLE, [fits, too_long])
    assert [r.error.error_class for r in bad] == ["too_long"]
    write_records(tmp_path, GPU_SAMPLE, good, "load-1")  # the folder name fits: no OSError
    con = connect(tmp_path, ":memory:")
    assert con.execute("SELECT datacentre FROM gpu_samples").fetchall() == [("北" * 22,)]
