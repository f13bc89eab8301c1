"""Column-wise validation and dedup (``pipeline.columnar``) against the per-record path: for
seeded random batches mixing good and hostile records, the same accepted records (as Arrow
rows, to the bit) and the same rejects (index, class, reason); dedup counts the same; ingest
dead-letters the same letters per message."""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from pipeline import columnar
from pipeline.bounds import MAX_ID_CHARS, PLAUSIBLE_FROM_MS, TimeWindow, using_time_window
from pipeline.columnar import (
    dedup_table,
    land,
    land_table,
    records_of,
    to_records,
    validate,
    validate_arrays,
    validate_table,
)
from pipeline.dead_letter import DLQ_MAX_RAW_BYTES, DeadLetter
from pipeline.dedup import dedup
from pipeline.ingest import Ingestor, IngestSettings, IngestStats
from pipeline.ingest_buffer import PartitionBuffer as _Buffer
from pipeline.ingest_metrics import IngestMetrics
from pipeline.lake import open_table
from pipeline.records import (
    ALLOCATION,
    GPU_SAMPLE,
    INVENTORY,
    KINDS,
    OCCUPANCY,
    Kind,
    RecordError,
    lake_date,
)
from pipeline.validate import Reject, validate_batch
from pipeline.wire import decode, encode_record
from pipeline.write import to_table, with_dates
from tests.test_poison import _POOL, HOSTILE, T0, _Exploding, record

DAY = 86_400_000
WINDOW = TimeWindow(PLAUSIBLE_FROM_MS, T0 + 400 * DAY)
"""A fixed window: reasons that name it do not change with the clock between two paths."""


@pytest.fixture(autouse=True)
def fixed_window() -> Iterator[None]:
    with using_time_window(WINDOW):
        yield


def good_record(k: Kind, rng: random.Random) -> dict[str, Any]:
    """A valid record with varied keys and values (canonical or not: ints for floats, NaN and
    empty text for nullable fields, non-ASCII text)."""
    raw = record(k)
    raw["datacentre"] = rng.choice(["dc1", "dc2", "\u8282\u70b9", "d" * 66, "\u00e9" * 33])
    raw["cluster"] = rng.choice(["c1", "c2", "\U0001f600"])
    ts = T0 + rng.randrange(5) * 60_000
    if k is GPU_SAMPLE:
        raw.update(ts=ts, gpu_uuid=rng.choice(["GPU-0", "GPU-1", "GPU-2"]))
        raw["util"] = rng.choice([0, 1, 0.25, -0.0, None, float("nan"), 0.5])
        raw["temp_c"] = rng.choice([55.0, -40, float("nan"), None, -0.0, 2**53])
        raw["pod"] = rng.choice([None, "", "p" * 320, "pod-1"])
        raw["mem_used_bytes"] = rng.choice([None, 0, 1 << 30, 80 << 30])
    elif k is OCCUPANCY:
        raw.update(
            ts=ts, scope=rng.choice([None, "", "vc1", "vc2"]), gpus_down=rng.choice([0, 1.5])
        )
    elif k is ALLOCATION:
        raw.update(event_ts=ts, allocation_id=rng.choice(["a1", "a2", "x" * 320]))
        raw["nodes"] = rng.choice([None, [], ["n1", "n2"], ["\u00e9" * MAX_ID_CHARS]])
        raw["end"] = rng.choice([None, T0, T0 + DAY])
    else:
        raw.update(valid_from=ts, node=rng.choice(["n1", "n2"]), gpu_count=rng.choice([0, 8]))
        raw["valid_to"] = rng.choice([None, ts + 1, ts + DAY])
    return raw


def _bad_relation(k: Kind) -> dict[str, Any]:
    if k is GPU_SAMPLE:
        return {"mem_used_bytes": 2, "mem_total_bytes": 1}
    if k is ALLOCATION:
        return {"start": T0, "end": T0 - 1}
    if k is INVENTORY:
        return {"valid_to": T0}
    return {"datacentre": "\u00e9" * 40}  # 240 characters once URL-encoded


_ODD_RAWS: list[Any] = ["text", 42, None, [1, 2], b"bytes", OrderedDict(a=1)]


def hostile_record(k: Kind, rng: random.Random) -> Any:
    raw = good_record(k, rng)
    names = [f.name for f in k.fields]
    pick = rng.randrange(12)
    if pick == 0:
        for f in rng.sample(k.fields, rng.randint(1, 3)):
            raw[f.name] = rng.choice(_POOL)
    elif pick == 1:
        _, name, value, _ = rng.choice([h for h in HOSTILE if h[0] is k])
        raw[name] = value
    elif pick == 2:
        del raw[rng.choice(names)]
    elif pick == 3:
        raw[rng.choice(["extra", "\ud800", "Ts"])] = 1
    elif pick == 4:
        return rng.choice(_ODD_RAWS)
    elif pick == 5:
        return rng.choice([_Exploding(raw), OrderedDict(raw)])
    elif pick == 6:
        raw.update(_bad_relation(k))
    elif pick == 7:  # accepted by coerce, but not in the wire's exact types
        time_field = {GPU_SAMPLE: "ts", OCCUPANCY: "ts"}.get(k, names[4])
        raw[time_field] = rng.choice(
            ["2020-05-01T00:00:00Z", 1.5882624e12, datetime(2020, 5, 1, tzinfo=UTC)]
        )
    elif pick == 8:  # numpy scalars: a float64 is a float, an int64 is not an int
        num = {GPU_SAMPLE: "power_w", OCCUPANCY: "gpus_total", ALLOCATION: "gpu_count"}
        raw[num.get(k, "gpu_count")] = rng.choice([np.float64(2.5), np.int64(3), True])
    elif pick == 9:
        raw["source"] = rng.choice([123, "", "x" * (MAX_ID_CHARS + 1), "a\x00", np.str_("s")])
    elif pick == 10 and k is ALLOCATION:
        raw["nodes"] = rng.choice([("n1",), "n1;n2", ["n1", None], ["n", b"x"], ["a\x00"]])
    else:
        raw[rng.choice(names)] = None
    return raw


def batch(k: Kind, rng: random.Random, size: int, hostile: float) -> list[Any]:
    return [
        hostile_record(k, rng) if rng.random() < hostile else good_record(k, rng)
        for _ in range(size)
    ]


def rejects_of(bad: list[Reject]) -> list[tuple[int, str, str]]:
    return [(r.index, r.error.error_class, r.error.reason) for r in bad]


def exact(rows: list[dict[str, Any]]) -> str:
    """Records as JSON: 1 and 1.0, 0.0 and -0.0 differ."""
    return json.dumps(rows)


def assert_same_as_per_record(k: Kind, raws: list[Any]) -> None:
    good, bad = validate_batch(k, raws)
    fast = validate_table(k, raws)
    assert fast is not None
    table, rejects = fast
    assert rejects_of(rejects) == rejects_of(bad)
    assert [r.raw is raws[r.index] for r in rejects] == [True] * len(rejects)
    expected, unwritable = to_table(k, good)
    assert not unwritable
    assert table.schema == k.arrow_schema()
    assert table.equals(expected.drop_columns(["date"]))
    assert exact(to_records(k, table)) == exact(good)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_random_batches_agree_with_the_per_record_path(name: str) -> None:
    k = KINDS[name]
    rng = random.Random(f"columnar-{name}")
    for trial in range(60):
        size = rng.choice([0, 1, 2, 17, 200, 600])
        assert_same_as_per_record(k, batch(k, rng, size, hostile=[0.0, 0.05, 0.5, 1.0][trial % 4]))


@pytest.mark.parametrize(
    ("k", "name", "value", "error_class"),
    HOSTILE,
    ids=[f"{k.name}.{n}-{i}" for i, (k, n, _, _) in enumerate(HOSTILE)],
)
def test_each_hostile_value_among_good_neighbours(
    k: Kind, name: str, value: Any, error_class: str
) -> None:
    raws = [record(k) for _ in range(40)]
    raws[17] = record(k, **{name: value})
    _, rejects = validate_table(k, raws) or pytest.fail("no column-wise answer")
    assert [(r.index, r.error.error_class) for r in rejects] == [(17, error_class)]
    assert_same_as_per_record(k, raws)


def test_a_clean_batch_never_takes_the_per_record_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(k: Kind, raws: list[Any], window_ms: Any = None) -> Any:
        calls.append(len(raws))
        return validate_batch(k, raws, window_ms)

    monkeypatch.setattr(columnar, "validate_batch", counted)
    rng = random.Random(1)
    for k in KINDS.values():
        raws = [good_record(k, rng) for _ in range(300)]
        table, rejects = validate_table(k, raws) or pytest.fail("no column-wise answer")
        assert table.num_rows == 300 and not rejects
    assert calls == []
    raws = [record(GPU_SAMPLE) for _ in range(300)]
    raws[5] = record(GPU_SAMPLE, ts="2020-05-01T00:00:00Z")  # fine, but only coerce parses it
    raws[9] = record(GPU_SAMPLE, util=1.5)
    table, rejects = validate_table(GPU_SAMPLE, raws) or pytest.fail("no column-wise answer")
    assert calls == [2] and table.num_rows == 299 and [r.index for r in rejects] == [9]
    assert table.column("ts")[5].value == 1_588_291_200_000  # in its place


def test_validate_falls_back_record_by_record(monkeypatch: pytest.MonkeyPatch) -> None:
    raws = batch(GPU_SAMPLE, random.Random(2), 300, hostile=0.3)
    good, bad = validate_batch(GPU_SAMPLE, raws)

    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    for fake in (broken, lambda *_: None):
        monkeypatch.setattr(columnar, "validate_table", fake)
        parts, rejects = validate(GPU_SAMPLE, raws)
        assert parts == [good] and rejects_of(rejects) == rejects_of(bad)


def test_a_kind_outside_the_contract_is_left_to_the_per_record_path() -> None:
    other = Kind("x", "t", "x", GPU_SAMPLE.fields, ("ts",), ("ts",), "ts")
    assert validate_table(other, [record(GPU_SAMPLE)]) is None


# --------------------------------------------------------------------------------- dedup


@pytest.mark.parametrize("name", sorted(KINDS))
def test_dedup_on_arrow_counts_and_keeps_what_dedup_does(name: str) -> None:
    k = KINDS[name]
    rng = random.Random(f"dedup-{name}")
    for _ in range(40):
        raws = [good_record(k, rng) for _ in range(rng.choice([0, 1, 5, 60, 300]))]
        raws += [dict(r) for r in rng.sample(raws, len(raws) // 3)]  # identical repeats
        rng.shuffle(raws)
        good, bad = validate_batch(k, raws)
        assert not bad
        expected = dedup(k, good)
        table, _ = validate_table(k, raws) or pytest.fail("no column-wise answer")
        rows, duplicates, conflicts = dedup_table(k, table)
        assert (duplicates, conflicts) == (expected.duplicates, expected.conflicts)
        assert exact(to_records(k, rows)) == exact(expected.records)
        # parts of both kinds land the same rows
        half = len(good) // 2
        parts = [table.slice(0, half), good[half:]]
        landed = land_table(k, parts)
        assert landed is not None
        want, _ = to_table(k, expected.records)
        assert landed[0].equals(want) and landed[1:] == (duplicates, conflicts)
        assert land(k, parts)[0].equals(want) and land(k, parts)[1:] == landed[1:] + ([],)


def test_records_arrow_refuses_take_the_per_record_path() -> None:
    good = [dict(record(GPU_SAMPLE), ts=T0 + i) for i in range(4)]
    refused = dict(good[0], gpu_index="not an int")  # coerce would never let it through
    overwritten = dict(good[1], ts=T0 + 9, gpu_index="not an int")
    parts: list[Any] = [validate_table(GPU_SAMPLE, good[:2])[0], [refused, overwritten]]  # type: ignore[index]
    parts.append([dict(good[2], ts=T0 + 9)])  # same key as ``overwritten``: it never lands
    assert land_table(GPU_SAMPLE, parts) is None
    rows, duplicates, conflicts, unwritable = land(GPU_SAMPLE, parts)
    result = dedup(GPU_SAMPLE, records_of(GPU_SAMPLE, parts))
    want, expected = to_table(GPU_SAMPLE, result.records)
    assert rows.equals(want) and rows.num_rows == 2 and rows.column_names[-1] == "date"
    assert (duplicates, conflicts) == (result.duplicates, result.conflicts) == (0, 2)
    assert [r for r, _ in unwritable] == [refused] and len(expected) == 1
    assert repr(unwritable[0][1]) == repr(expected[0].error)


def test_a_null_entry_in_a_text_list_from_arrow_is_rejected_as_record_by_record() -> None:
    good = record(ALLOCATION, nodes=["n1"])
    bad = dict(good, allocation_id="j2", nodes=["n1", None])
    rows = [good, bad, dict(good, allocation_id="j3")]
    table = pa.Table.from_pylist(rows, schema=ALLOCATION.arrow_schema())
    columns = {
        name: (col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col).combine_chunks()
        for name, col in zip(table.column_names, table.columns, strict=True)
    }
    checked = validate_arrays(ALLOCATION, columns, 3, lambda at: [rows[i] for i in at])
    assert checked is not None
    accepted, rejects = checked
    _, expected = validate_batch(ALLOCATION, rows)
    got = [(r.index, r.error.reason, r.error.error_class) for r in rejects]
    assert got == [(r.index, r.error.reason, r.error.error_class) for r in expected]
    assert [(i, c) for i, _, c in got] == [(1, "bad_type")]
    assert accepted.column("allocation_id").to_pylist() == [good["allocation_id"], "j3"]


def test_the_date_partition_is_the_utc_date_over_the_representable_range() -> None:
    rng = np.random.default_rng(4)
    ms = rng.integers(-62_135_596_800_000, 253_402_300_799_999, 200_000).tolist()
    ms += [-62_135_596_800_000, 253_402_300_799_999, 0, -1, 1, -DAY, -DAY - 1, T0]
    table = pa.table({"ts": pa.array(ms).cast(pa.timestamp("ms", tz="UTC"))})
    dates = with_dates(GPU_SAMPLE, table).column("date")
    assert dates.equals(pc.strftime(table.column("ts"), format="%Y-%m-%d"))
    assert dates[-1].as_py() == lake_date(GPU_SAMPLE, {"ts": T0})


# -------------------------------------------------------------------------------- ingest


@dataclass
class _Message:
    offset: int
    value: bytes | None


class _Future:
    def add_errback(self, _: Any) -> None:
        pass


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, list[tuple[str, bytes]]]] = []

    def send(self, _topic: str, key: bytes, value: bytes, headers: Any) -> _Future:
        self.sent.append((value, headers))
        return _Future()


def _ingestor(lake: Path) -> Ingestor:
    ingestor = Ingestor.__new__(Ingestor)  # no Kafka: only the validation and landing steps
    ingestor.settings = IngestSettings(bootstrap="-", lake=lake)
    ingestor.metrics = IngestMetrics(CollectorRegistry())
    ingestor.stats = IngestStats()
    ingestor.buffers = {}
    ingestor.dlq = _Producer()  # type: ignore[assignment]
    ingestor._dlq_errors = []
    ingestor._buffered = 0
    return ingestor


def _envelope(k: Kind, raws: list[Any]) -> bytes:
    body = ",".join(encode_record(r).decode() for r in raws)
    return f'{{"v":1,"kind":"{k.name}","records":[{body}]}}'.encode()


def test_ingest_letters_and_rows_match_validating_each_message_alone(tmp_path: Path) -> None:
    rng = random.Random(3)
    k = GPU_SAMPLE
    tp = TopicPartition(k.topic, 0)
    messages = []
    for offset in range(60):
        raws = batch(k, rng, rng.choice([1, 3, 64]), hostile=0.1)
        value = _envelope(k, raws)
        messages.append(_Message(offset, rng.choice([value] * 8 + [b"\x00junk", None])))
    ingestor = _ingestor(tmp_path)
    assert ingestor._take(tp, messages) == ingestor.buffers[tp].taken
    buf = ingestor.buffers[tp]
    rows = ingestor._rows(tp, buf)

    expected: list[DeadLetter] = []  # what ingest sent validating message by message
    good: list[dict[str, Any]] = []
    for m in messages:
        try:
            _, raws = decode(m.value)
        except RecordError as err:
            letter = DeadLetter(m.value or b"", err.reason, err.error_class, None, tp.topic, 0)
            expected.append(replace(letter, offset=m.offset))
            continue
        ok, bad = validate_batch(k, raws)
        good += ok
        expected += [
            DeadLetter(
                encode_record(r.raw),
                r.error.reason,
                r.error.error_class,
                k.name,
                tp.topic,
                tp.partition,
                m.offset,
                r.index,
            ).fitted(DLQ_MAX_RAW_BYTES)
            for r in bad
        ]
    sent = ingestor.dlq.sent  # type: ignore[attr-defined]
    assert [DeadLetter.from_headers(v, h) for v, h in sent] == expected
    assert any(e.index is None for e in expected) and any(e.index for e in expected)
    result = dedup(k, good)
    want, _ = to_table(k, result.records)
    assert rows.equals(want)
    assert (ingestor.stats.duplicates, ingestor.stats.conflicts) == (
        result.duplicates,
        result.conflicts,
    )
    assert buf.rejected == ingestor.stats.rejected == len(expected)


def test_pyarrow_takes_what_the_contract_schema_names() -> None:
    """The column types the fast path builds are the contract's (a schema change that the
    fast path does not know fails here, not in the lake)."""
    for k in KINDS.values():
        table, _ = validate_table(k, [record(k)]) or pytest.fail("no column-wise answer")
        assert table.schema.equals(k.arrow_schema(), check_metadata=True)
        assert isinstance(table, pa.Table)


def test_ingest_dead_letters_a_record_arrow_refuses_at_its_origin(tmp_path: Path) -> None:
    ingestor = _ingestor(tmp_path)
    tp = TopicPartition(GPU_SAMPLE.topic, 3)
    good = [dict(record(GPU_SAMPLE), ts=T0 + i) for i in range(3)]
    refused = dict(good[0], ts=T0 + 7, gpu_index="not an int")
    buf = _Buffer(GPU_SAMPLE, first=40, last=41)
    table, _ = validate_table(GPU_SAMPLE, good[:2]) or pytest.fail("no column-wise answer")
    buf.parts = [table, [good[2], refused]]
    buf.origins = [(41, 0), (41, 1)]
    rows = ingestor._rows(tp, buf)
    assert rows.num_rows == 3 and buf.rejected == 1
    [(value, headers)] = ingestor.dlq.sent  # type: ignore[attr-defined]
    letter = DeadLetter.from_headers(value, headers)
    assert (letter.error_class, letter.partition, letter.offset, letter.index) == (
        "unwritable",
        3,
        41,
        1,
    )
    assert letter.reason.startswith("not writable: ") and json.loads(value) == refused


class _Consumer:
    """The consumer calls of a flush: offsets for lag monitoring, seeks after a fence."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []

    def commit_async(self, _offsets: Any, callback: Any = None) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def _worker(lake: Path) -> Ingestor:
    ingestor = _ingestor(lake)
    ingestor.settings = IngestSettings(bootstrap="-", lake=lake, max_batch_records=10)
    ingestor.consumer = _Consumer()
    ingestor.dlq.flush = lambda timeout=None: None
    ingestor._unconfirmed = {}
    ingestor._refetch = set()
    ingestor._backlog, ingestor._settled = False, True  # a live stream, read at its end
    return ingestor


def test_a_flush_fenced_inside_a_poll_takes_none_of_the_rest_of_that_partition(
    tmp_path: Path,
) -> None:
    """A zombie whose flush inside a poll is fenced part-way into its batch must not land the
    poll's later records of that partition: they would skip the records between the lake's
    offset and the end of the dropped batch."""
    k = GPU_SAMPLE
    tp = TopicPartition(k.topic, 0)
    messages = [_Message(o, _envelope(k, [record(k, ts=T0 + o * 60_000)])) for o in range(20)]
    owner = _worker(tmp_path)
    owner._buffered = owner._take(tp, messages[:6])
    owner.flush()  # the partition's new owner landed offsets 0-5
    zombie = _worker(tmp_path)
    zombie._take_polled({tp: messages}, set())  # flushes 0-9 inside the poll: fenced
    zombie.flush()
    assert zombie.stats.fenced == 1 and zombie.stats.landed == 0
    assert zombie.consumer.seeks == [(tp, 6)]
    zombie._take_polled({tp: messages[6:]}, set())  # read again after the lake's offset
    zombie.flush()
    table = open_table(tmp_path / k.table)
    assert table is not None
    ts = table.to_pyarrow_table(columns=["ts"]).column("ts").cast(pa.timestamp("ms"))
    assert sorted(ts.cast(pa.int64()).to_pylist()) == [T0 + o * 60_000 for o in range(20)]
