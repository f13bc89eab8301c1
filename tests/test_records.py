"""The contract round trip: wire -> coerce -> Arrow -> Parquet -> DuckDB agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.lake import open_table
from pipeline.records import (
    ALLOCATION,
    GPU_SAMPLE,
    INVENTORY,
    KINDS,
    OCCUPANCY,
    RecordError,
    coerce,
    coerce_fields,
    coerce_value,
    parse_ts,
)
from pipeline.wire import decode, encode
from pipeline.write import write_records
from tests.conftest import gpu_sample
from warehouse.catalog import connect

EXAMPLES = {
    "gpu_sample": gpu_sample(
        1_588_262_400_000, pod="p1", namespace="ns", job_id="j1", sm_active=0.3
    ),
    "occupancy": {
        "ts": "2020-05-01T00:00:00+08:00",
        "interval_s": 60,
        "datacentre": "helios",
        "cluster": "earth",
        "scope": "vc6YE",
        "gpus_total": 208,
        "gpus_allocated": 190.5,
        "gpus_down": None,
        "source": "test",
    },
    "allocation": {
        "allocation_id": "a1",
        "datacentre": "dc1",
        "cluster": "c1",
        "tenant_id": "t1",
        "event_ts": 1_600_000_000_000,
        "job_id": "123",
        "gpu_count": 0.5,
        "gpu_uuids": ["GPU-0", "GPU-1"],
        "nodes": ["n1"],
        "start": 1_599_990_000_000,
        "end": None,
        "state": "RUNNING",
        "source": "test",
    },
    "inventory": {
        "datacentre": "dc1",
        "cluster": "c1",
        "node": "n1",
        "valid_from": 1_577_836_800_000,
        "valid_to": None,
        "gpu_model": "A100",
        "gpu_count": 8,
        "source": "test",
    },
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_round_trip_wire_arrow_parquet_duckdb(name: str, tmp_path: Path) -> None:
    k = KINDS[name]
    canonical = coerce(k, EXAMPLES[name])
    kind, raws = decode(encode(k, [canonical]))
    assert kind is k
    again = coerce(k, raws[0])
    assert again == canonical
    version = write_records(tmp_path, k, [again], "part-test")
    dt = open_table(tmp_path / k.table)
    assert dt is not None and dt.version() == version
    stored = dt.to_pyarrow_table().select(list(k.names))
    # Delta stores timestamps in microseconds; the cast back to the contract's ms is exact
    table = stored.cast(k.arrow_schema(), safe=True)
    assert [f.name for f in stored.schema] == list(k.names)
    back = table.to_pylist()[0]
    for f in k.fields:  # Arrow gives datetimes back; compare as epoch ms
        value = back[f.name]
        if hasattr(value, "timestamp"):
            value = int(value.timestamp() * 1000)
        assert value == canonical[f.name], f.name
    con = connect(tmp_path, ":memory:")
    described = con.execute(f"DESCRIBE {k.table}").fetchall()
    assert [(r[0], r[1]) for r in described] == [
        (n, t.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")) for n, t in k.duckdb_columns()
    ]


def test_iso_with_offset_and_epoch_ms_agree() -> None:
    assert (
        parse_ts("2020-05-01T00:00:00+08:00")
        == parse_ts("2020-04-30T16:00:00Z")
        == 1_588_262_400_000
    )
    assert parse_ts(1_588_262_400_000) == parse_ts("1588262400000")


@pytest.mark.parametrize(
    ("kind", "change", "error_class"),
    [
        (GPU_SAMPLE, {"util": 1.5}, "out_of_range"),
        (GPU_SAMPLE, {"util": "high"}, "bad_type"),
        (GPU_SAMPLE, {"ts": "2020-05-01 00:00:00"}, "bad_timestamp"),
        (GPU_SAMPLE, {"gpu_uuid": None}, "missing_field"),
        (GPU_SAMPLE, {"colour": "red"}, "unknown_field"),
        (GPU_SAMPLE, {"interval_s": 0}, "out_of_range"),
        (GPU_SAMPLE, {"mem_used_bytes": 81 << 30}, "out_of_range"),
        (OCCUPANCY, {"gpus_total": -1}, "out_of_range"),
        (ALLOCATION, {"end": 1_599_000_000_000}, "bad_interval"),
        (INVENTORY, {"gpu_count": 2.5}, "bad_type"),
        (INVENTORY, {"valid_to": 1_577_836_800_000}, "bad_interval"),
    ],
)
def test_invalid_records_are_rejected_with_a_reason(kind, change, error_class) -> None:  # type: ignore[no-untyped-def]
    raw = dict(EXAMPLES[kind.name], **change)
    with pytest.raises(RecordError) as info:
        coerce(kind, raw)
    assert info.value.error_class == error_class
    assert info.value.reason


def test_bad_envelopes_are_terminal_errors() -> None:
    for value, cls in [
        (b"not json", "bad_envelope"),
        (b'{"v": 2, "kind": "gpu_sample", "records": []}', "bad_version"),
        (b'{"v": 1, "kind": "nope", "records": []}', "unknown_kind"),
        (None, "bad_envelope"),
    ]:
        with pytest.raises(RecordError) as info:
            decode(value)
        assert info.value.error_class == cls


@pytest.mark.parametrize("name", sorted(KINDS))
def test_fast_path_agrees_with_the_general_checks(name: str) -> None:
    """coerce_fields' exact-type fast path gives the same answer as coerce_value for any value."""
    k = KINDS[name]
    base = coerce(k, EXAMPLES[name])
    probes = [
        0,
        1,
        -1,
        0.0,
        0.5,
        1.0,
        1.5,
        -0.5,
        1e-9,
        2**62,
        float("nan"),
        float("inf"),
        "",
        "x",
        "12",
        True,
        None,
        ["a"],
    ]
    for f in k.fields:
        for value in probes:
            try:
                expected = (
                    None
                    if value is None or (isinstance(value, float) and value != value and f.nullable)
                    else coerce_value(f, value)
                )
                if expected is None and not f.nullable:
                    raise RecordError("required", "missing_field")
            except RecordError as err:
                with pytest.raises(RecordError) as info:
                    coerce_fields(k, dict(base, **{f.name: value}))
                assert info.value.error_class == err.error_class, (f.name, value)
                continue
            got = coerce_fields(k, dict(base, **{f.name: value}))[f.name]
            assert got == expected and type(got) is type(expected), (f.name, value)
